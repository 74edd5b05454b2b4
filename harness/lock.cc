#include "harness/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace rehearse {

WorkspaceLock::WorkspaceLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (e == EWOULDBLOCK) {
      throw LockBusy("the workspace is busy: rehearse (pid " + pid +
                     ") holds it; wait for it to finish or stop it");
    }
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(e));
  }
  std::string me = std::to_string(::getpid()) + "\n";
  // Only for the "held by pid N" message of a refused second command (the
  // lock itself is the flock): a failed write costs that hint, nothing else,
  // and nothing relies on it being durable.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, me.data(), me.size(), 0);
}

WorkspaceLock::~WorkspaceLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace rehearse
