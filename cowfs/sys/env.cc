#include "cowfs/sys/env.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>

namespace cowfs::sys {
namespace {

Env g_real;
std::atomic<Env*> g_env{&g_real};

}  // namespace

Status Env::fsync(int fd, bool datasync) {
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) < 0) return Errno{errno};
  return {};
}

Status Env::syncfs(int fd) {
  if (::syncfs(fd) < 0) return Errno{errno};
  return {};
}

Status Env::rename(int olddir, const char* oldname, int newdir, const char* newname,
                   unsigned flags) {
  const int r = flags == 0 ? ::renameat(olddir, oldname, newdir, newname)
                           : ::renameat2(olddir, oldname, newdir, newname, flags);
  if (r < 0) return Errno{errno};
  return {};
}

Status Env::link(int olddir, const char* oldname, int newdir, const char* newname, int flags) {
  if (::linkat(olddir, oldname, newdir, newname, flags) < 0) return Errno{errno};
  return {};
}

Result<size_t> Env::write(int fd, const void* buf, size_t n) {
  ssize_t w = ::write(fd, buf, n);
  if (w < 0) return Errno{errno};
  return static_cast<size_t>(w);
}

Result<size_t> Env::pwrite(int fd, const void* buf, size_t n, off_t offset) {
  ssize_t w = ::pwrite(fd, buf, n, offset);
  if (w < 0) return Errno{errno};
  return static_cast<size_t>(w);
}

Env& env() { return *g_env.load(std::memory_order_acquire); }

Env* set_env(Env* e) { return g_env.exchange(e != nullptr ? e : &g_real); }

}  // namespace cowfs::sys
