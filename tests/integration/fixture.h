// Integration-test fixture: real FUSE mounts of the cowfs binary over
// read-only lowers.
//
// What is here:
//  * run()/Process: run a command with captured stdout/stderr and a deadline;
//    the child gets only fds 0-2, so a daemon it forks never holds a test fd.
//  * wait_until(): poll a predicate until it holds or a deadline passes.
//  * TempDir: a directory under /tmp, removed with everything in it (after
//    unmounting whatever is mounted inside it) when it goes out of scope.
//  * ReadOnlyBind: SRC bind-mounted read-only at DST for the object's life.
//  * Manifest: everything observable about a tree (type, mode, owner, size,
//    times, inode, links, symlink targets, xattrs, content hash), compared
//    field by field with a readable diff.
//  * CowfsMount: `cowfs mount` in the constructor, `cowfs umount` (checked) in
//    unmount(), and an unconditional forced unmount in the destructor.
//  * copy_tree(): an fd-relative cp -a (for plain-directory references).
//  * TestUser: an ordinary user (created with useradd if missing).
//  * CowfsTest: the base fixture. It builds a known lower tree, puts it
//    behind a read-only bind mount, records its manifest, mounts cowfs with a
//    fresh store, and in TearDown unmounts and checks the lower is unchanged.
//    A watchdog kills the daemon of a test that hangs, so the test fails
//    instead of blocking in the kernel forever.
//
// Environment:
//  * COWFS_IT_KEEP=1 keeps each test's /tmp directory (mounts are still
//    removed) for inspection; its path is printed.
//  * COWFS_IT_REFERENCE=1 runs the CowfsTest-based tests on a plain directory
//    instead of a mount, to check that the tests expect what a local
//    filesystem does (see reference_mode()).
//
// Helpers that cannot use ASSERT_* (they return values) throw
// std::runtime_error / std::system_error; GoogleTest reports the exception as
// a failure of the test that called them.
//
// Nothing here is thread-safe unless stated; each test runs in one thread
// (plus the fixture's watchdog thread and children the test forks).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cowfs_it {

using namespace std::chrono_literals;

// Path of the cowfs binary under test (a compile definition from CMake).
const std::string& cowfs_bin();

// ---------------------------------------------------------------------------
// Small helpers.

// errno of a failed call, 0 on success: EXPECT_EQ(err(::mkdir(p, 0755)), EEXIST).
// The argument is evaluated before errno is read, and nothing runs in between.
inline int err(long rc) { return rc < 0 ? errno : 0; }

std::string errno_name(int e);  // "ENOENT (No such file or directory)"

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Throwing wrappers (the message names the call and the path).
Fd open_or_throw(const std::string& path, int flags, mode_t mode = 0644);
Fd openat_or_throw(int dirfd, const std::string& name, int flags, mode_t mode = 0644);
struct stat stat_or_throw(const std::string& path);
struct stat lstat_or_throw(const std::string& path);
struct stat fstat_or_throw(int fd);

std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view data, mode_t mode = 0644);
void append_file(const std::string& path, std::string_view data);
std::string pread_all(int fd);                         // whole file from offset 0
std::string pread_exact(int fd, off_t off, size_t n);  // up to n bytes (short at EOF)
void pwrite_all(int fd, std::string_view data, off_t off);
void write_fd_all(int fd, std::string_view data);

// Names in a directory in readdir order, without "." and ".." (duplicates kept).
std::vector<std::string> list_dir(const std::string& path);
std::vector<std::string> sorted(std::vector<std::string> v);
// Same with d_ino, for the readdir/stat consistency check.
std::vector<std::pair<std::string, ino_t>> list_dir_inos(const std::string& path);

// "" if equal, else where two byte strings first differ (for big contents,
// where EXPECT_EQ would print megabytes).
std::string first_difference(std::string_view expected, std::string_view actual);

// Deterministic pseudo-random bytes.
std::string pattern(size_t n, uint64_t seed);
uint64_t fnv1a(std::string_view data, uint64_t h = 0xcbf29ce484222325ULL);

// Sum of st_blocks * 512 over a tree (never crossing into another mount).
int64_t disk_usage(const std::string& path);

// Removes a tree relative to directory fds (works for paths longer than
// PATH_MAX); never descends into another mount. Missing path is fine.
void remove_tree(const std::string& path);

int64_t ns_of(const struct timespec& ts);

// Copies the content of directory src into directory dst (which exists),
// fd-relative (no path-length limit): types, modes, owners, ns times,
// xattrs, symlinks, FIFOs/devices and hard links within the tree. Existing
// non-directories in dst are replaced, directories merged. Sources are read
// with O_NOATIME, so their atimes stay as they were.
void copy_tree(const std::string& src, const std::string& dst);

// ---------------------------------------------------------------------------
// Processes.

struct RunResult {
  int exit_code = -1;       // exit status, or 128 + signal number
  bool timed_out = false;   // killed at the deadline
  bool stdio_held = false;  // exited, but someone kept its stdout/stderr open
  std::string out;
  std::string err;
  // "exit 1, stderr: ..." for failure messages.
  std::string describe() const;
  // stderr split into lines (a missing final newline still counts a line).
  std::vector<std::string> err_lines() const;
};

struct RunOptions {
  std::string cwd;  // empty: inherit
  std::chrono::milliseconds timeout = 60s;
};

// A running child with its stdout and stderr on pipes. The child has only
// fds 0 (/dev/null), 1 and 2. Killed (SIGKILL) and reaped on destruction if
// still running.
class Process {
 public:
  explicit Process(const std::vector<std::string>& argv, const RunOptions& opts = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits for exit (and for stdout/stderr to reach EOF); kills at the deadline.
  RunResult wait(std::chrono::milliseconds timeout);
  // True once the child has exited (reaps it; wait() still returns output).
  bool exited();

 private:
  void pump(int timeout_ms);

  pid_t pid_ = -1;
  Fd out_;
  Fd err_;
  bool reaped_ = false;
  int status_ = 0;
  RunResult result_;
};

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// Polls pred until it returns true (→ true) or timeout passes (→ false).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------
// Mounts.

// Mount points from /proc/self/mountinfo (unescaped).
std::vector<std::string> mount_points();
// Is path (given as an absolute path without symlinks) a mount point?
bool is_mounted(const std::string& path);
// Mount points at or below dir, deepest first.
std::vector<std::string> mounts_under(const std::string& dir);
// Live (non-zombie) processes running the cowfs binary with `mountpoint`
// among their arguments.
std::vector<pid_t> cowfs_daemons(const std::string& mountpoint);
bool process_alive(pid_t pid);

// Counts the FUSE requests the kernel sends to one mount, from the kernel's
// fuse_request_send tracepoint in a tracefs instance of its own (so other
// tracers and mounts do not interfere). available() is false without root
// or tracefs; the destructor removes the instance.
class FuseRequests {
 public:
  explicit FuseRequests(const std::string& mountpoint);
  ~FuseRequests();
  FuseRequests(const FuseRequests&) = delete;
  FuseRequests& operator=(const FuseRequests&) = delete;
  bool available() const { return !dir_.empty(); }
  const std::string& why_not() const { return why_not_; }
  // Requests with this opcode (e.g. "FUSE_LOOKUP") since construction.
  int count(const std::string& opcode) const;

 private:
  std::string dir_;
  std::string why_not_;
};

// A fresh directory /tmp/<prefix>-XXXXXX (mode 0755). The destructor
// unmounts anything mounted inside it, then removes it recursively.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cowfs-it");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string sub(const std::string& rel) const { return path_ + "/" + rel; }
  // Creates (mkdir -p) and returns sub(rel).
  std::string mkdir(const std::string& rel, mode_t mode = 0755) const;

 private:
  std::string path_;
};

// Unmounts path: umount2, then a lazy detach if it is busy. Returns whether
// the path is no longer a mount point.
bool force_unmount(const std::string& path);

// `mount --bind SRC DST` + `mount -o remount,bind,ro DST`; unmounted (with
// a lazy fallback) on destruction. Throws if the bind cannot be made or does
// not end up read-only.
class ReadOnlyBind {
 public:
  ReadOnlyBind(const std::string& src, const std::string& dst);
  ~ReadOnlyBind();
  ReadOnlyBind(const ReadOnlyBind&) = delete;
  ReadOnlyBind& operator=(const ReadOnlyBind&) = delete;
  const std::string& path() const { return dst_; }

 private:
  std::string dst_;
};

struct MountSpec {
  std::string store;
  std::vector<std::string> lowers;  // top first
  std::string mountpoint;
  std::vector<std::string> extra_args;  // e.g. {"-o", "nonempty"}
  // Prepended to every cowfs command (mount and umount), e.g.
  // {"setpriv", "--reuid=U", "--regid=G", "--clear-groups", "--"}.
  std::vector<std::string> run_as;
};

std::vector<std::string> mount_argv(const MountSpec& spec);

// A live cowfs mount. The constructor runs `cowfs mount` (which returns
// only once the mount is live) and throws, with cowfs' stderr, if it fails
// or the mountpoint is not mounted afterwards.
class CowfsMount {
 public:
  explicit CowfsMount(MountSpec spec);
  ~CowfsMount();  // forced unmount if still mounted; never fails
  CowfsMount(const CowfsMount&) = delete;
  CowfsMount& operator=(const CowfsMount&) = delete;

  const MountSpec& spec() const { return spec_; }
  bool mounted() const { return mounted_; }
  pid_t daemon_pid() const { return daemon_; }

  // `cowfs umount`, then waits for the daemon to exit. Returns "" on
  // success, else what went wrong (after forcing the unmount anyway).
  std::string unmount();
  // unmount() (throwing on error) followed by a fresh mount of the same spec.
  void remount();
  // SIGKILLs the daemon (the watchdog uses this to unblock a hung test).
  void kill_daemon();

 private:
  void mount();

  MountSpec spec_;
  bool mounted_ = false;
  pid_t daemon_ = -1;
};

// Calls on_expire from a separate thread if not destroyed within timeout.
class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds timeout, std::function<void()> on_expire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// An ordinary (non-root) user for tests, created with useradd if missing
// (needs root). Throws if it cannot be had.
struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<std::string> run_as;  // setpriv prefix running a command as the user
  // Runs /bin/sh -c script as the user.
  RunResult sh(const std::string& script) const;
};
TestUser ensure_test_user();

// Sets the fuse module's enable_uring parameter (FUSE over io_uring for new
// mounts) for the guard's life, then puts the old value back. Root only;
// throws if the parameter cannot be set (a kernel without it).
class UringParameter {
 public:
  explicit UringParameter(bool on);
  ~UringParameter();
  UringParameter(const UringParameter&) = delete;
  UringParameter& operator=(const UringParameter&) = delete;

 private:
  std::string old_;
};

// The "transport" member of `cowfs layers --json` for a mounted store:
// "io_uring: ..., N requests" or "/dev/fuse (why)". run_as as in MountSpec.
std::string mount_transport(const std::string& store, const std::vector<std::string>& run_as = {});

// ---------------------------------------------------------------------------
// Manifest.

struct FileInfo {
  mode_t type = 0;  // S_IFMT bits
  mode_t perm = 0;  // 07777 bits
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;
  dev_t rdev = 0;
  std::string target;  // symlinks
  std::map<std::string, std::string> xattrs;
  uint64_t hash = 0;  // regular files: FNV-1a 64 of the content
};

enum ManifestField : unsigned {
  kType = 1u << 0,
  kPerm = 1u << 1,
  kOwner = 1u << 2,
  kSize = 1u << 3,  // non-directories
  kMtime = 1u << 4,
  kTarget = 1u << 5,
  kXattrs = 1u << 6,
  kContent = 1u << 7,
  kNlink = 1u << 8,       // non-directories
  kLinkGroups = 1u << 9,  // which paths share an inode
  kIno = 1u << 10,
  kCtime = 1u << 11,
  kDirSize = 1u << 12,
  kDirNlink = 1u << 13,
  kRdev = 1u << 14,
};
// What a user sees of a tree, independent of where it lives and of when
// its entries were last changed.
inline constexpr unsigned kShape =
    kType | kPerm | kOwner | kSize | kTarget | kXattrs | kContent | kNlink | kLinkGroups | kRdev;
inline constexpr unsigned kSemantic = kShape | kMtime;
inline constexpr unsigned kEverything = kSemantic | kIno | kCtime | kDirSize | kDirNlink;

class Manifest {
 public:
  // Walks root (fd-relative, no depth or path-length limit, not crossing
  // mounts). Entry keys are paths relative to root; root itself is ".".
  // skip(rel) excludes an entry (and, for a directory, its content).
  static Manifest take(const std::string& root,
                       const std::function<bool(const std::string&)>& skip = nullptr);

  std::map<std::string, FileInfo> entries;
};

// "" when equal in the given fields, else one line per difference.
std::string diff(const Manifest& expected, const Manifest& actual, unsigned fields = kSemantic);

// ---------------------------------------------------------------------------
// The base fixture.

// COWFS_IT_REFERENCE=1 runs the CowfsTest-based tests against a plain
// directory (a copy_tree() of the lowers) instead of a cowfs mount, to check the
// tests themselves: what passes there is what a local filesystem does.
// Store-specific checks (copy-up, store size) are skipped in that mode.
bool reference_mode();

class CowfsTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The content of lower `index` (0 = top lower). The default builds, for
  // lower 0 only, the standard tree described in fixture.cc.
  virtual void populate_lower(int index, const std::string& root);
  virtual int lower_count() const { return 1; }
  // Extra arguments of `cowfs mount` (e.g. {"-o", "no_writeback_cache"}).
  virtual std::vector<std::string> mount_args() const { return {}; }
  virtual std::chrono::milliseconds test_timeout() const { return 90s; }

  std::string mnt(const std::string& rel = "") const;
  std::string lower(const std::string& rel = "", int index = 0) const;  // read-only bind
  std::string lower_src(const std::string& rel = "", int index = 0) const;
  const std::string& store() const { return store_; }
  TempDir& tmp() { return *tmp_; }
  CowfsMount& mount() { return *mount_; }
  void remount();

  // The writable top layer's tree in the store (STORE/layers/<id>/tree).
  std::string top_tree() const;
  // Paths (relative) of everything in the top tree that is not a whiteout.
  std::vector<std::string> top_entries() const;
  bool top_has(const std::string& rel) const;
  // Store checks that are skipped in reference mode.
  void expect_top_empty(const std::string& context = "") const;
  void expect_copied_up(const std::string& rel) const;

  // A plain-directory copy of the lowers (copy_tree, bottom lower first), made on
  // first use: the reference that operations through the mount are compared
  // with.
  const std::string& ref();
  // Expects Manifest(mnt()) and Manifest(ref()) to agree in `fields`.
  void expect_same_as_ref(unsigned fields = kShape, const std::string& context = "");

  // Standard content of the default lower.
  static constexpr std::string_view kSmall = "hello from the lower layer\n";
  static constexpr size_t kBigSize = 3 * 1024 * 1024;
  static std::string big_content() { return pattern(kBigSize, 1); }
  static constexpr std::string_view kLinked = "linked content\n";
  static constexpr int64_t kSmallMtimeNs = 1'600'000'000'123'456'789LL;
  static constexpr int64_t kOldDirMtimeNs = 1'500'000'000'000'000'007LL;

 private:
  std::unique_ptr<TempDir> tmp_;
  std::vector<std::unique_ptr<ReadOnlyBind>> binds_;
  std::vector<Manifest> lower_manifests_;
  std::string store_;
  std::string ref_;
  std::unique_ptr<CowfsMount> mount_;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace cowfs_it
