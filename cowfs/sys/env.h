// Env: the seam between cowfs and the OS for every call that makes data
// durable or moves it into place (as LevelDB's Env is for LevelDB).
//
// The wrappers in syscalls.h that fsync, syncfs, rename, link or write call
// env(), which is the real OS unless a test installed another Env, such as
// FaultEnv (fault_env.h), which fails chosen calls with a chosen errno.
//
// Cost on the hot path: one relaxed atomic load and one virtual call per
// wrapped syscall, nothing next to the syscall itself. The data of FUSE
// writes does not pass here (ops.cc hands it to the kernel with
// fuse_buf_copy/splice); everything the store writes on its own does.
//
// Thread-safety: the real Env is stateless. set_env() may be called at any
// time; calls already inside the old Env finish there, so an Env must
// outlive every call that might still be using it (tests install one for
// the whole test and restore the real one at the end).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string_view>

#include "cowfs/sys/result.h"

namespace cowfs::sys {

class Env {
 public:
  virtual ~Env() = default;
  // fsync(2), or fdatasync(2) with datasync.
  virtual Status fsync(int fd, bool datasync);
  virtual Status syncfs(int fd);
  // renameat2(2); flags 0 is plain renameat(2).
  virtual Status rename(int olddir, const char* oldname, int newdir, const char* newname,
                        unsigned flags);
  // linkat(2).
  virtual Status link(int olddir, const char* oldname, int newdir, const char* newname, int flags);
  // One write(2) / pwrite(2): the number of bytes written (maybe short).
  virtual Result<size_t> write(int fd, const void* buf, size_t n);
  virtual Result<size_t> pwrite(int fd, const void* buf, size_t n, off_t offset);
};

// The Env in use.
Env& env();
// Installs e for the whole process (nullptr: the real OS again); returns
// the Env that was in use.
Env* set_env(Env* e);

// Installs e for a scope, then puts back what was there.
class ScopedEnv {
 public:
  explicit ScopedEnv(Env* e) : prev_(set_env(e)) {}
  ~ScopedEnv() { set_env(prev_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  Env* prev_;
};

}  // namespace cowfs::sys
