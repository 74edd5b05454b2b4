// FaultEnv: an Env (env.h) that fails chosen calls with a chosen errno, so
// tests can reach every error path of the code that makes data durable.
//
// A Fault names the kind of call, optionally a predicate over the call (for
// instance "a rename whose new name ends in .map"), how many matching calls
// to let through first (skip) and how many to fail after that (times). Calls
// that no armed fault matches go to the real OS.
//
// For the mounted daemon, which a test cannot reach in-process,
// install_faults_from_environment() arms faults described by the variable
// COWFS_TEST_FAULTS. It is a testing aid only: it is read only when set, and
// nothing but the tests set it. Its syntax, faults separated by ',':
//
//   OP[:TEXT][@SKIP][*TIMES]=ERRNO
//
// OP is fsync, fdatasync, syncfs, rename, link or write (write also covers
// pwrite); TEXT, if given, must occur in the call's path (the new name of a
// rename or link; for the others the fd's path from /proc/self/fd); SKIP
// matching calls succeed first (default 0); then TIMES calls fail (default:
// all); ERRNO is EIO, ENOSPC, EROFS, EDQUOT or a number, or KILL: the
// process is killed (SIGKILL) in place of the call, a crash at exactly that
// point of an operation (what a crash test cannot hit by timing).
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cowfs/sys/env.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/thread_annotations.h"

namespace cowfs::sys {

enum class Op { kFsync, kFdatasync, kSyncfs, kRename, kLink, kWrite };

// Fault::error that kills the process instead of failing the call.
inline constexpr int kCrash = -1;

// What a call is about, for a Fault's predicate.
struct Call {
  Op op;
  int fd = -1;       // fsync, fdatasync, syncfs, write: the fd; rename, link: the new dir
  std::string path;  // rename, link: the new name; others: the fd's path (resolved lazily)
};

struct Fault {
  Op op;
  int error = EIO;                         // or kCrash
  std::function<bool(const Call&)> match;  // empty: every call of op
  uint64_t skip = 0;                       // matching calls that succeed first
  uint64_t times = UINT64_MAX;             // then fail this many
};

class FaultEnv : public Env {
 public:
  // Arms f; returns its index for injected().
  size_t add(Fault f);
  void clear();
  // Calls of op seen so far (failed or not).
  uint64_t calls(Op op) const;
  // How many calls the fault at index has failed.
  uint64_t injected(size_t index) const;

  Status fsync(int fd, bool datasync) override;
  Status syncfs(int fd) override;
  Status rename(int olddir, const char* oldname, int newdir, const char* newname,
                unsigned flags) override;
  Status link(int olddir, const char* oldname, int newdir, const char* newname, int flags) override;
  Result<size_t> write(int fd, const void* buf, size_t n) override;
  Result<size_t> pwrite(int fd, const void* buf, size_t n, off_t offset) override;

 private:
  struct Armed {
    Fault fault;
    uint64_t seen = 0;
    uint64_t failed = 0;
  };
  // The errno to fail call with, or 0 to let it through.
  int decide(Call call, bool needs_path) EXCLUDES(mu_);

  // A leaf, taken inside any syscall of the daemon (so under any of its
  // locks); nothing is taken under it.
  mutable Mutex mu_;
  std::vector<Armed> faults_ GUARDED_BY(mu_);
  uint64_t calls_[6] GUARDED_BY(mu_) = {};
};

// A path-substring predicate for Fault::match.
std::function<bool(const Call&)> path_contains(std::string text);

// Parses a COWFS_TEST_FAULTS value; nullopt (and *error) if malformed.
std::optional<std::vector<Fault>> parse_faults(const std::string& spec, std::string* error);

// If COWFS_TEST_FAULTS is set: arms its faults in a process-wide FaultEnv
// and installs it. Returns an error message if the variable is malformed,
// "" otherwise. Test-only (see above).
std::string install_faults_from_environment();

}  // namespace cowfs::sys
