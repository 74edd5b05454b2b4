// WorkspaceLock: one mutating command at a time per workspace.
//
// An flock() on .rehearse/lock, held for the life of the object. The file
// holds the holder's pid so a refused command can name it. flock is released
// by the kernel when the holder dies (kill -9 included), so a stale lock
// never needs cleaning. The fd is O_CLOEXEC and children get only fds 0-2,
// so a cowfs daemon started under the lock never inherits it.
#pragma once

#include <stdexcept>
#include <string>

namespace rehearse {

class LockBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class WorkspaceLock {
 public:
  // Throws LockBusy naming the holder's pid when another process holds it.
  explicit WorkspaceLock(const std::string& path);
  ~WorkspaceLock();
  WorkspaceLock(const WorkspaceLock&) = delete;
  WorkspaceLock& operator=(const WorkspaceLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace rehearse
