#include "cowfs/core/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace cowfs {
namespace {

bool make_address(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string read_all(int fd, bool one_line) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (one_line && out.find('\n') != std::string::npos) break;
  }
  return out;
}

}  // namespace

ControlServer::~ControlServer() { stop(); }

void ControlServer::start(const std::string& store_path, Handler handler) {
  path_ = store_path + "/" + kControlSocket;
  handler_ = std::move(handler);
  sockaddr_un addr{};
  if (!make_address(path_, addr)) {
    throw std::runtime_error("store path too long for a control socket: " + path_);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  listen_.reset(fd);
  ::unlink(path_.c_str());  // left by a killed cowfs; the store lock says we own it
  mode_t old = ::umask(0077);
  int r = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (r < 0 || ::listen(fd, 16) < 0) {
    throw std::runtime_error("cannot listen on " + path_ + ": " + std::strerror(errno));
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe failed");
  wake_[0].reset(p[0]);
  wake_[1].reset(p[1]);
  thread_ = std::thread([this] { serve(); });
}

void ControlServer::stop() {
  if (!thread_.joinable()) return;
  (void)!::write(wake_[1].get(), "x", 1);
  thread_.join();
  ::unlink(path_.c_str());
}

void ControlServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {wake_[0].get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    UniqueFd conn(c);
    std::string line = read_all(c, true);
    line = line.substr(0, line.find('\n'));
    std::vector<std::string> words;
    std::istringstream in(line);
    for (std::string w; in >> w;) words.push_back(w);
    std::string reply;
    try {
      reply = "ok\n" + handler_(words);
    } catch (const std::exception& e) {
      reply = std::string("error\n") + e.what() + "\n";
    }
    write_all(c, reply);
  }
}

std::optional<ControlReply> control_request(const std::string& store_path,
                                            const std::vector<std::string>& words) {
  sockaddr_un addr{};
  if (!make_address(store_path + "/" + kControlSocket, addr)) return std::nullopt;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  UniqueFd conn(fd);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return std::nullopt;
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
  write_all(fd, line + "\n");
  std::string reply = read_all(fd, false);
  ControlReply r;
  size_t nl = reply.find('\n');
  std::string status = reply.substr(0, nl);
  r.ok = status == "ok";
  r.text = nl == std::string::npos ? "" : reply.substr(nl + 1);
  if (status != "ok" && status != "error") {
    r.ok = false;
    r.text = "the running cowfs gave no answer (did it die?)\n";
  }
  return r;
}

}  // namespace cowfs
