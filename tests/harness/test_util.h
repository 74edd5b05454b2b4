// Helpers shared by the harness tests: temporary directories, files, and
// polling with a deadline (never sleep-and-hope).
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <string>

namespace rehearse_test {

// A fresh /tmp/<prefix>-XXXXXX, removed recursively (never crossing into a
// mount) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "rehearse-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& data, mode_t mode = 0644);
std::string read_file(const std::string& path);
void mkdirs(const std::string& path);

// Polls pred every 10 ms until it holds (true) or timeout passes (false).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

}  // namespace rehearse_test
