// The control socket: how `cowfs checkpoint` and friends reach a running
// cowfs. STORE/control.sock, a Unix stream socket (mode 0600: only the
// store's owner may change its layers).
//
// Protocol: the client sends one request line, words separated by spaces
// ("checkpoint 1.2", "layers json", "compact 1.0,1.2", "diff json FROM TO"
// with "-" for an empty label); the server answers "ok\n" or "error\n",
// then the text for the user, and closes.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cowfs/sys/unique_fd.h"

namespace cowfs {

inline constexpr const char* kControlSocket = "control.sock";

class ControlServer {
 public:
  // handler returns the reply text or throws (the message becomes the error).
  using Handler = std::function<std::string(const std::vector<std::string>& words)>;

  ~ControlServer();
  // Listens on store_path/control.sock; throws std::runtime_error on failure.
  void start(const std::string& store_path, Handler handler);
  void stop();

 private:
  void serve();

  std::string path_;
  Handler handler_;
  UniqueFd listen_;
  UniqueFd wake_[2];  // a pipe that tells serve() to return
  std::thread thread_;
};

struct ControlReply {
  bool ok = false;
  std::string text;
};

// nullopt if no cowfs serves the store (then the command runs on disk).
std::optional<ControlReply> control_request(const std::string& store_path,
                                            const std::vector<std::string>& words);

}  // namespace cowfs
