#include "tests/reliability/fsdiff.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace fsdiff {

using namespace cowfs_it;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kSec = 1'000'000'000LL;
// Timestamps below this are explicit (set by the lower's builder or by a
// utimensat operation) and so must match exactly; anything newer was set to
// "now" by an operation and differs by the microseconds between the two
// applications.
constexpr int64_t kOldCutoffNs = 1'650'000'000LL * kSec;
constexpr int64_t kChunkThreshold = 65536;
constexpr int64_t kChunkSize = 4096;

// --- small helpers -----------------------------------------------------------

std::string ename(int e) {
  const char* n = ::strerrorname_np(e);
  return n ? n : ("E" + std::to_string(e));
}

// "ok", or the errno name of a failed call.
std::string rc_of(long r) { return r < 0 ? ename(errno) : std::string("ok"); }

std::string join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

std::string oct(unsigned m) {
  std::ostringstream s;
  s << "0" << std::oct << m;
  return s.str();
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

std::string join_obs(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ", ") + e;
  return "[" + s + "]";
}

void set_times_ns(const std::string& path, int64_t ns) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(ns / kSec);
  ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(ns % kSec);
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    throw std::system_error(errno, std::generic_category(), "utimensat " + path);
  }
}

void must(long rc, const std::string& what) {
  if (rc < 0) throw std::system_error(errno, std::generic_category(), what);
}

// Deterministic random numbers (xorshift64*), independent of the standard
// library's distributions so a seed means the same sequence everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL) {
    if (s_ == 0) s_ = 1;
    for (int i = 0; i < 4; ++i) next();
  }
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dULL;
  }
  // Uniform in [0, n) (n > 0).
  int64_t below(int64_t n) { return n <= 0 ? 0 : static_cast<int64_t>(next() % uint64_t(n)); }
  int64_t between(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }
  bool chance(int percent) { return below(100) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(below(static_cast<int64_t>(v.size())))];
  }

 private:
  uint64_t s_;
};

// --- the lower tree ------------------------------------------------------------

void build_lower(const std::string& root) {
  auto p = [&](const std::string& rel) { return root + "/" + rel; };
  write_file(p("small.txt"), "hello from the lower\n");
  write_file(p("empty.txt"), "");
  write_file(p("mode600.txt"), "private\n", 0600);
  must(::chmod(p("mode600.txt").c_str(), 0600), "chmod");
  write_file(p("exec.sh"), "#!/bin/sh\necho hi\n", 0755);
  must(::chmod(p("exec.sh").c_str(), 0755), "chmod");
  write_file(p("big0.bin"), pattern(200000, 11));  // chunked, last chunk partial
  write_file(p("big1.bin"), pattern(131072, 12));  // chunked, whole chunks
  {
    Fd fd = open_or_throw(p("sparse.bin"), O_WRONLY | O_CREAT | O_TRUNC);
    pwrite_all(fd.get(), std::string(4096, 'S'), 0);
    pwrite_all(fd.get(), std::string(4096, 'T'), 100 * 1024);
  }
  write_file(p("x.txt"), "with xattrs\n");
  must(::setxattr(p("x.txt").c_str(), "user.k0", "v0", 2, 0), "setxattr");
  must(::setxattr(p("x.txt").c_str(), "user.cowfs.mark", "lower", 5, 0), "setxattr");
  must(::mkdir(p("a").c_str(), 0755), "mkdir");
  must(::setxattr(p("a").c_str(), "user.d", "1", 1, 0), "setxattr");
  must(::mkdir(p("a/sub").c_str(), 0755), "mkdir");
  must(::mkdir(p("a/sub/deep").c_str(), 0755), "mkdir");
  write_file(p("a/x.txt"), "a/x\n");
  write_file(p("a/y.txt"), "a/y\n");
  write_file(p("a/sub/z.txt"), "a/sub/z\n");
  write_file(p("a/sub/deep/w.txt"), "a/sub/deep/w\n");
  must(::mkdir(p("b").c_str(), 0755), "mkdir");
  must(::mkdir(p("c").c_str(), 0700), "mkdir");
  write_file(p("c/f.txt"), "c/f\n");
  write_file(p("h1"), "linked\n");
  must(::link(p("h1").c_str(), p("a/h2").c_str()), "link");
  write_file(p("hbig"), pattern(80000, 13));  // chunked and hard-linked
  must(::link(p("hbig").c_str(), p("a/hbig2").c_str()), "link");
  must(::symlink("small.txt", p("sl").c_str()), "symlink");
  must(::symlink("a", p("dl").c_str()), "symlink");
  must(::symlink("nowhere", p("dangling").c_str()), "symlink");
  must(::mkfifo(p("fifo").c_str(), 0644), "mkfifo");
  write_file(p(".wh.x"), "a name overlays use as a marker\n");
  write_file(p("sp ace.txt"), "space\n");
  // Old, distinct, explicit timestamps on everything, children before parents.
  Manifest m = Manifest::take(root);
  std::vector<std::string> paths;
  for (const auto& [rel, fi] : m.entries) paths.push_back(rel);
  std::sort(paths.rbegin(), paths.rend());
  int64_t i = 0;
  for (const auto& rel : paths) {
    if (rel == ".") continue;
    ++i;
    set_times_ns(p(rel), (1'400'000'000LL + 1000 * i) * kSec + 123456789 + i);
  }
  set_times_ns(root, 1'400'000'000LL * kSec + 42);
}

void chown_tree(const std::string& path, uid_t uid, gid_t gid) {
  Manifest m = Manifest::take(path);
  for (const auto& [rel, fi] : m.entries) {
    std::string full = rel == "." ? path : path + "/" + rel;
    struct stat st = lstat_or_throw(full);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    must(::lchown(full.c_str(), uid, gid), "lchown " + full);
    if (!S_ISLNK(st.st_mode)) must(::chmod(full.c_str(), st.st_mode & 07777), "chmod " + full);
    must(::utimensat(AT_FDCWD, full.c_str(), ts, AT_SYMLINK_NOFOLLOW), "utimensat " + full);
  }
}

}  // namespace

// --- Op --------------------------------------------------------------------------

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::kCreate:
      return "create";
    case OpKind::kWrite:
      return "write";
    case OpKind::kAppend:
      return "append";
    case OpKind::kTruncate:
      return "truncate";
    case OpKind::kRename:
      return "rename";
    case OpKind::kUnlink:
      return "unlink";
    case OpKind::kRmdir:
      return "rmdir";
    case OpKind::kMkdir:
      return "mkdir";
    case OpKind::kLink:
      return "link";
    case OpKind::kSymlink:
      return "symlink";
    case OpKind::kMkfifo:
      return "mkfifo";
    case OpKind::kChmod:
      return "chmod";
    case OpKind::kUtimens:
      return "utimens";
    case OpKind::kSetxattr:
      return "setxattr";
    case OpKind::kRemovexattr:
      return "removexattr";
    case OpKind::kFallocate:
      return "fallocate";
    case OpKind::kMmapWrite:
      return "mmap-write";
    case OpKind::kOpenUnlinkWrite:
      return "open-unlink-write";
    case OpKind::kReaddirDuringChanges:
      return "readdir-during-changes";
    case OpKind::kWriteAcrossCheckpoint:
      return "write-across-checkpoint";
    case OpKind::kReadBack:
      return "read";
    case OpKind::kCheckpoint:
      return "checkpoint";
    case OpKind::kRewind:
      return "rewind";
    case OpKind::kReset:
      return "reset";
    case OpKind::kRemount:
      return "remount";
  }
  return "?";
}

std::string Op::describe() const {
  std::ostringstream s;
  s << op_name(kind);
  auto q = [](const std::string& p) { return quoted(p); };
  auto range = [&] {
    s << " off=" << off << " len=" << len << " data=pattern(" << data_seed << ")";
  };
  switch (kind) {
    case OpKind::kCreate:
      s << " " << q(a) << " mode=" << oct(mode) << " umask=" << oct(umask)
        << ((flags & 1) ? " O_EXCL" : "") << ((flags & 2) ? " O_TRUNC" : "")
        << " then write len=" << len << " data=pattern(" << data_seed << ")";
      break;
    case OpKind::kWrite:
    case OpKind::kMmapWrite:
    case OpKind::kOpenUnlinkWrite:
    case OpKind::kReadBack:
      s << " " << q(a);
      range();
      break;
    case OpKind::kAppend:
      s << " " << q(a) << " len=" << len << " data=pattern(" << data_seed << ")";
      break;
    case OpKind::kTruncate:
      s << " " << q(a) << " to " << len << ((flags & 1) ? " (ftruncate)" : " (truncate)");
      break;
    case OpKind::kRename:
      s << " " << q(a) << " -> " << q(b)
        << (flags == RENAME_NOREPLACE  ? " RENAME_NOREPLACE"
            : flags == RENAME_EXCHANGE ? " RENAME_EXCHANGE"
                                       : "");
      break;
    case OpKind::kUnlink:
    case OpKind::kRmdir:
      s << " " << q(a);
      break;
    case OpKind::kMkdir:
    case OpKind::kMkfifo:
      s << " " << q(a) << " mode=" << oct(mode) << " umask=" << oct(umask);
      break;
    case OpKind::kChmod:
      s << " " << q(a) << " mode=" << oct(mode);
      break;
    case OpKind::kLink:
      s << " " << q(a) << " -> new name " << q(b);
      break;
    case OpKind::kSymlink:
      s << " " << q(a) << " pointing to " << q(b);
      break;
    case OpKind::kUtimens:
      s << " " << q(a) << " atime=" << t1 << " mtime=" << t2
        << ((flags & 1) ? " AT_SYMLINK_NOFOLLOW" : "");
      break;
    case OpKind::kSetxattr:
      s << " " << q(a) << " " << name << "=" << q(value)
        << (flags == XATTR_CREATE    ? " XATTR_CREATE"
            : flags == XATTR_REPLACE ? " XATTR_REPLACE"
                                     : "");
      break;
    case OpKind::kRemovexattr:
      s << " " << q(a) << " " << name;
      break;
    case OpKind::kFallocate:
      s << " " << q(a) << " mode="
        << (mode == 0                                              ? "0"
            : mode == FALLOC_FL_KEEP_SIZE                          ? "KEEP_SIZE"
            : mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) ? "PUNCH_HOLE|KEEP_SIZE"
                                                                   : std::to_string(mode))
        << " off=" << off << " len=" << len;
      break;
    case OpKind::kReaddirDuringChanges:
      s << " dir " << q(a) << ": read 1 entry, create " << q(b)
        << (name.empty() ? "" : ", unlink " + q(name)) << ", read the rest, rewinddir";
      break;
    case OpKind::kWriteAcrossCheckpoint:
      s << " " << q(a) << ": open, write";
      range();
      s << ", checkpoint " << name << ", write again at off+len, close";
      break;
    case OpKind::kCheckpoint:
    case OpKind::kRewind:
      s << " " << name;
      break;
    case OpKind::kReset:
      break;
    case OpKind::kRemount:
      s << (flags == 1   ? " (checkpoint " + name + " while unmounted)"
            : flags == 2 ? " (rewind " + name + " while unmounted)"
                         : "");
      break;
  }
  return s.str();
}

std::string format_sequence(const std::vector<Op>& ops) {
  std::ostringstream s;
  for (size_t i = 0; i < ops.size(); ++i) s << "  #" << i << " " << ops[i].describe() << "\n";
  return s.str();
}

// --- World -------------------------------------------------------------------------

World::World(std::optional<uid_t> owner_uid, std::optional<gid_t> owner_gid) {
  ::umask(022);
  tmp_ = std::make_unique<TempDir>("fsdiff");
  dir_ = tmp_->path();
  std::string src = tmp_->mkdir("lower-src");
  build_lower(src);
  if (owner_uid) {
    chown_tree(src, *owner_uid, owner_gid.value_or(0));
    must(::chown(dir_.c_str(), *owner_uid, owner_gid.value_or(0)), "chown " + dir_);
  }
  std::string dst = tmp_->mkdir("lower");
  bind_ = std::make_unique<ReadOnlyBind>(src, dst);
  manifest_ = Manifest::take(lower());
}

std::unique_ptr<World> World::attach(const std::string& dir) {
  std::unique_ptr<World> w(new World(AttachTag{}));
  w->dir_ = dir;
  w->manifest_ = Manifest::take(w->lower());
  return w;
}

World::~World() {
  bind_.reset();
  tmp_.reset();
}

std::string World::lower_changes() const {
  return diff(manifest_, Manifest::take(lower()), kEverything);
}

std::string World::new_run_dir() {
  std::string tmpl = dir_ + "/run-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  }
  must(::chmod(tmpl.c_str(), 0755), "chmod " + tmpl);
  ++runs_;
  return tmpl;
}

// --- applying one operation to one tree --------------------------------------------

namespace {

// What an operation observed; compared between the two trees.
using Obs = std::vector<std::string>;

// Runs between the two writes of kWriteAcrossCheckpoint; returns what it saw.
using Between = std::function<std::string()>;

std::string hash_str(std::string_view data) {
  std::ostringstream s;
  s << data.size() << "B#" << std::hex << fnv1a(data);
  return s.str();
}

Obs apply_fs(const std::string& root, const Op& op, const Between& between) {
  Obs obs;
  const std::string a = join(root, op.a);
  const std::string b = join(root, op.b);
  auto rec = [&](const std::string& what, long r) { obs.push_back(what + "=" + rc_of(r)); };
  auto data = [&](int64_t len) { return pattern(static_cast<size_t>(len), op.data_seed); };
  auto write_rc = [&](int fd, const std::string& d, int64_t off) {
    ssize_t n = off < 0 ? ::write(fd, d.data(), d.size()) : ::pwrite(fd, d.data(), d.size(), off);
    if (n < 0) return rc_of(-1);
    return std::to_string(n);
  };
  // The creating operations run under the op's umask, restored after.
  struct UmaskScope {
    explicit UmaskScope(const Op& o)
        : creates(o.kind == OpKind::kCreate || o.kind == OpKind::kMkdir ||
                  o.kind == OpKind::kMkfifo),
          old(creates ? ::umask(o.umask) : 0) {}
    ~UmaskScope() {
      if (creates) ::umask(old);
    }
    bool creates;
    mode_t old;
  } umask_scope(op);
  switch (op.kind) {
    case OpKind::kCreate: {
      int flags = O_CREAT | O_WRONLY | O_NONBLOCK | O_CLOEXEC;
      if (op.flags & 1) flags |= O_EXCL;
      if (op.flags & 2) flags |= O_TRUNC;
      Fd fd(::open(a.c_str(), flags, op.mode));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      if (op.len > 0) obs.push_back("write=" + write_rc(fd.get(), data(op.len), 0));
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kWrite:
    case OpKind::kAppend: {
      int flags = O_WRONLY | O_NONBLOCK | O_CLOEXEC;
      if (op.kind == OpKind::kAppend) flags |= O_APPEND;
      Fd fd(::open(a.c_str(), flags));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      obs.push_back("write=" +
                    write_rc(fd.get(), data(op.len), op.kind == OpKind::kAppend ? -1 : op.off));
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kTruncate:
      if (op.flags & 1) {
        Fd fd(::open(a.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        rec("open", fd ? 0 : -1);
        if (!fd) break;
        rec("ftruncate", ::ftruncate(fd.get(), op.len));
        rec("close", ::close(fd.release()));
      } else {
        rec("truncate", ::truncate(a.c_str(), op.len));
      }
      break;
    case OpKind::kRename:
      rec("rename", ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), op.flags));
      break;
    case OpKind::kUnlink:
      rec("unlink", ::unlink(a.c_str()));
      break;
    case OpKind::kRmdir:
      rec("rmdir", ::rmdir(a.c_str()));
      break;
    case OpKind::kMkdir:
      rec("mkdir", ::mkdir(a.c_str(), op.mode));
      break;
    case OpKind::kLink:
      rec("link", ::linkat(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), 0));
      break;
    case OpKind::kSymlink:
      rec("symlink", ::symlink(op.b.c_str(), a.c_str()));
      break;
    case OpKind::kMkfifo:
      rec("mkfifo", ::mkfifo(a.c_str(), op.mode));
      break;
    case OpKind::kChmod:
      rec("chmod", ::chmod(a.c_str(), op.mode));
      break;
    case OpKind::kUtimens: {
      struct timespec ts[2];
      ts[0].tv_sec = static_cast<time_t>(op.t1 / kSec);
      ts[0].tv_nsec = static_cast<long>(op.t1 % kSec);
      ts[1].tv_sec = static_cast<time_t>(op.t2 / kSec);
      ts[1].tv_nsec = static_cast<long>(op.t2 % kSec);
      int fl = (op.flags & 1) ? AT_SYMLINK_NOFOLLOW : 0;
      long r = ::utimensat(AT_FDCWD, a.c_str(), ts, fl);
      rec("utimensat", r);
      if (r == 0) {
        struct stat st {};
        long s = ::fstatat(AT_FDCWD, a.c_str(), &st, fl);
        rec("stat", s);
        if (s == 0) {
          obs.push_back("atime=" + std::to_string(ns_of(st.st_atim)));
          obs.push_back("mtime=" + std::to_string(ns_of(st.st_mtim)));
        }
      }
      break;
    }
    case OpKind::kSetxattr:
      rec("lsetxattr", ::lsetxattr(a.c_str(), op.name.c_str(), op.value.data(), op.value.size(),
                                   static_cast<int>(op.flags)));
      break;
    case OpKind::kRemovexattr:
      rec("lremovexattr", ::lremovexattr(a.c_str(), op.name.c_str()));
      break;
    case OpKind::kFallocate: {
      Fd fd(::open(a.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      rec("fallocate", ::fallocate(fd.get(), static_cast<int>(op.mode), op.off, op.len));
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kMmapWrite: {
      Fd fd(::open(a.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      struct stat st {};
      rec("fstat", ::fstat(fd.get(), &st));
      if (!S_ISREG(st.st_mode) || st.st_size == 0) {
        obs.push_back("size=" + std::to_string(st.st_size));
        break;
      }
      const int64_t size = st.st_size;
      const int64_t off = op.off % size;
      const int64_t len = std::min<int64_t>(op.len, size - off);
      const int64_t map_off = off & ~int64_t(4095);
      const size_t map_len = static_cast<size_t>(off + len - map_off);
      void* p = ::mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), map_off);
      rec("mmap", p == MAP_FAILED ? -1 : 0);
      if (p == MAP_FAILED) break;
      std::string d = data(len);
      std::memcpy(static_cast<char*>(p) + (off - map_off), d.data(), d.size());
      rec("msync", ::msync(p, map_len, MS_SYNC));
      rec("munmap", ::munmap(p, map_len));
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kOpenUnlinkWrite: {
      Fd fd(::open(a.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      rec("unlink", ::unlink(a.c_str()));
      obs.push_back("pwrite=" + write_rc(fd.get(), data(op.len), op.off));
      struct stat st {};
      if (::fstat(fd.get(), &st) == 0) {
        obs.push_back("nlink=" + std::to_string(st.st_nlink));
        obs.push_back("size=" + std::to_string(st.st_size));
        if (S_ISREG(st.st_mode)) obs.push_back("content=" + hash_str(pread_all(fd.get())));
      } else {
        rec("fstat", -1);
      }
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kReaddirDuringChanges: {
      std::vector<std::string> before;
      try {
        before = sorted(list_dir(a));
      } catch (const std::system_error& e) {
        obs.push_back("list=" + ename(e.code().value()));
        break;
      }
      Fd dfd(::open(a.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      rec("opendir", dfd ? 0 : -1);
      if (!dfd) break;
      DIR* d = ::fdopendir(dfd.release());
      std::vector<std::string> seen;
      auto next = [&]() -> bool {
        errno = 0;
        struct dirent* e = ::readdir(d);
        if (e == nullptr) return false;
        std::string n = e->d_name;
        if (n != "." && n != "..") seen.push_back(n);
        return true;
      };
      next();
      next();
      next();  // "." and ".." and at least one real entry, in some order
      Fd c(::open(b.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
      rec("create", c ? 0 : -1);
      c.reset();
      bool unlinked = false;
      if (!op.name.empty()) {
        long r = ::unlink(join(a, op.name).c_str());
        rec("unlink", r);
        unlinked = r == 0;
      }
      while (next()) {
      }
      // POSIX: entries neither added nor removed meanwhile appear exactly
      // once; nothing appears that was never there.
      std::string problems;
      std::set<std::string> seen_set;
      for (const auto& n : seen) {
        if (!seen_set.insert(n).second) problems += " duplicate " + quoted(n) + ";";
      }
      std::string created = op.b.substr(op.b.find_last_of('/') + 1);
      for (const auto& n : before) {
        if (unlinked && n == op.name) continue;
        if (!seen_set.count(n)) problems += " missing " + quoted(n) + ";";
      }
      for (const auto& n : seen_set) {
        if (!std::binary_search(before.begin(), before.end(), n) && n != created) {
          problems += " unknown " + quoted(n) + ";";
        }
      }
      obs.push_back("readdir-during-changes=" + (problems.empty() ? "consistent" : problems));
      ::rewinddir(d);
      seen.clear();
      while (next()) {
      }
      std::sort(seen.begin(), seen.end());
      std::string after;
      for (const auto& n : seen) after += quoted(n) + " ";
      obs.push_back("after-rewinddir=" + after);
      ::closedir(d);
      break;
    }
    case OpKind::kWriteAcrossCheckpoint: {
      Fd fd(::open(a.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      obs.push_back("pwrite1=" + write_rc(fd.get(), data(op.len), op.off));
      obs.push_back("checkpoint=" + between());
      obs.push_back("pwrite2=" + write_rc(fd.get(),
                                          pattern(static_cast<size_t>(op.len), op.data_seed + 1),
                                          op.off + op.len));
      rec("close", ::close(fd.release()));
      break;
    }
    case OpKind::kReadBack: {
      Fd fd(::open(a.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      rec("open", fd ? 0 : -1);
      if (!fd) break;
      std::string buf(static_cast<size_t>(op.len), '\0');
      ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), op.off);
      if (n < 0) {
        rec("pread", -1);
      } else {
        buf.resize(static_cast<size_t>(n));
        obs.push_back("pread=" + hash_str(buf));
      }
      break;
    }
    default:
      throw std::logic_error("apply_fs: not a file operation");
  }
  return obs;
}

// --- one run: a store, a mount, a reference ----------------------------------------

class Run {
 public:
  Run(World& world, const Settings& settings) : world_(world), settings_(settings) {
    dir_ = world.new_run_dir();
    store_ = dir_ + "/store";
    mnt_ = dir_ + "/mnt";
    ref_ = dir_ + "/ref";
    snaps_ = dir_ + "/snaps";
    for (const auto& d : {mnt_, ref_, snaps_}) must(::mkdir(d.c_str(), 0755), "mkdir " + d);
    copy_tree(world.lower(), ref_);
    mount();
  }

  ~Run() {
    mount_.reset();
    remove_tree(dir_);
  }

  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  const Manifest& ref_manifest() const { return ref_m_; }
  const std::vector<std::string>& labels() const { return labels_; }

  // Compares the two trees; "" if they agree.
  std::string compare() {
    Manifest m;
    try {
      m = Manifest::take(mnt_);
    } catch (const std::exception& e) {
      return std::string("walking the mount failed: ") + e.what() + "\n";
    }
    ref_m_ = Manifest::take(ref_);
    if (settings_.ignore_cowfs_xattrs) {
      for (Manifest* x : {&m, &ref_m_}) {
        for (auto& [path, fi] : x->entries) {
          std::erase_if(fi.xattrs,
                        [](const auto& kv) { return kv.first.rfind("user.cowfs.", 0) == 0; });
        }
      }
    }
    std::string out = diff(ref_m_, m, settings_.ignore_nlink ? (kShape & ~kNlink) : kShape);
    std::ostringstream s;
    for (const auto& [path, r] : ref_m_.entries) {
      auto it = m.entries.find(path);
      if (it == m.entries.end()) continue;
      if (r.mtime_ns < kOldCutoffNs && it->second.mtime_ns != r.mtime_ns) {
        s << "  " << path << ": mtime " << r.mtime_ns << " != " << it->second.mtime_ns
          << " (an explicit old time that no operation changed in the reference)\n";
      }
    }
    // Inode numbers: stable per file, distinct between files.
    std::map<ino_t, ino_t> r2m, m2r;
    std::map<ino_t, std::string> m_path;
    for (const auto& [path, r] : ref_m_.entries) {
      auto it = m.entries.find(path);
      if (it == m.entries.end() || it->second.type != r.type) continue;
      ino_t mi = it->second.ino;
      auto prev = r2m_.find(r.ino);
      if (prev != r2m_.end() && prev->second != mi) {
        s << "  " << path << ": inode number changed from " << prev->second << " to " << mi
          << " (same file in the reference)\n";
      }
      auto seen = m2r.find(mi);
      if (seen != m2r.end() && seen->second != r.ino) {
        s << "  " << path << ": inode number " << mi << " is also that of " << m_path[mi]
          << ", a different file\n";
      }
      r2m[r.ino] = mi;
      m2r[mi] = r.ino;
      m_path.emplace(mi, path);
    }
    r2m_ = std::move(r2m);
    // readdir's d_ino agrees with lstat's st_ino.
    for (const auto& [path, fi] : m.entries) {
      if (fi.type != S_IFDIR) continue;
      std::vector<std::pair<std::string, ino_t>> entries;
      try {
        entries = list_dir_inos(path == "." ? mnt_ : mnt_ + "/" + path);
      } catch (const std::exception& e) {
        s << "  " << path << ": readdir failed: " << e.what() << "\n";
        continue;
      }
      for (const auto& [name, ino] : entries) {
        std::string rel = path == "." ? name : path + "/" + name;
        auto it = m.entries.find(rel);
        if (it != m.entries.end() && it->second.ino != ino) {
          s << "  " << rel << ": readdir d_ino " << ino << " != st_ino " << it->second.ino << "\n";
        }
      }
    }
    return out + s.str();
  }

  // Applies op to both trees; "" if everything agrees afterwards.
  std::string apply(const Op& op) {
    Watchdog dog(settings_.op_timeout, [this] {
      fired_ = true;
      for (pid_t pid : cowfs_daemons(mnt_)) ::kill(pid, SIGKILL);
    });
    Obs m, r;
    std::string notes;
    switch (op.kind) {
      case OpKind::kCheckpoint:
        m.push_back("checkpoint=" + layer_command("checkpoint", op.name, &notes));
        r.push_back("checkpoint=" + snapshot(op.name));
        break;
      case OpKind::kRewind:
        m.push_back("rewind=" + layer_command("rewind", op.name, &notes));
        r.push_back("rewind=" + restore(op.name));
        break;
      case OpKind::kReset:
        m.push_back("reset=" + layer_command("reset", "", &notes));
        r.push_back("reset=" + restore(""));
        break;
      case OpKind::kRemount: {
        std::string problems = mount_->unmount();
        m.push_back("unmount=" + std::string(problems.empty() ? "ok" : "failed"));
        notes += problems;
        r.push_back("unmount=ok");
        if (op.flags == 1) {
          m.push_back("offline-checkpoint=" + layer_command("checkpoint", op.name, &notes));
          r.push_back("offline-checkpoint=" + snapshot(op.name));
        } else if (op.flags == 2) {
          m.push_back("offline-rewind=" + layer_command("rewind", op.name, &notes));
          r.push_back("offline-rewind=" + restore(op.name));
        }
        try {
          mount();
          m.push_back("mount=ok");
        } catch (const std::exception& e) {
          m.push_back("mount=failed");
          notes += e.what();
        }
        r.push_back("mount=ok");
        break;
      }
      case OpKind::kWriteAcrossCheckpoint:
        m = apply_fs(mnt_, op, [&] { return layer_command("checkpoint", op.name, &notes); });
        r = apply_fs(ref_, op, [&] { return snapshot(op.name); });
        break;
      default:
        m = apply_fs(mnt_, op, nullptr);
        r = apply_fs(ref_, op, nullptr);
        break;
    }
    if (settings_.ignore_nlink) {
      for (Obs* o : {&m, &r}) {
        std::erase_if(*o, [](const std::string& e) { return e.rfind("nlink=", 0) == 0; });
      }
    }
    if (settings_.ignore_rewinddir) {
      for (Obs* o : {&m, &r}) {
        std::erase_if(*o, [](const std::string& e) { return e.rfind("after-rewinddir=", 0) == 0; });
      }
    }
    std::string out;
    if (m != r) {
      out = "results differ: cowfs " + join_obs(m) + ", plain directory " + join_obs(r) + "\n";
      if (!notes.empty()) out += "  cowfs said: " + notes + "\n";
    }
    if (fired_) out += "  the operation hung; the watchdog killed the cowfs daemon\n";
    if (!mount_->mounted()) return out + "  the mount is gone\n";
    std::string d = compare();
    if (!d.empty()) out += "trees differ after the operation (- plain directory, + cowfs):\n" + d;
    return out;
  }

  // Unmounts; "" if that and the lower check went well.
  std::string finish() {
    std::string problems = mount_->unmount();
    std::string lower = world_.lower_changes();
    if (!lower.empty()) problems += "\nthe lower changed (it must never be written):\n" + lower;
    return problems;
  }

 private:
  void mount() {
    mount_.reset();
    mount_ = std::make_unique<CowfsMount>(
        MountSpec{store_,
                  {world_.lower()},
                  mnt_,
                  {"--chunk-threshold", std::to_string(kChunkThreshold), "--chunk-size",
                   std::to_string(kChunkSize)},
                  {}});
  }

  std::string layer_command(const std::string& cmd, const std::string& label, std::string* notes) {
    std::vector<std::string> argv = {cowfs_bin(), cmd, "--store", store_};
    if (!label.empty()) argv.push_back(label);
    RunResult r = run(argv, {.cwd = "", .timeout = 60s});
    if (r.exit_code == 0 && !r.timed_out) return "ok";
    *notes += "cowfs " + cmd + " " + label + ": " + r.describe() + "; ";
    return "failed";
  }

  // The reference's side of a checkpoint.
  std::string snapshot(const std::string& label) {
    if (std::find(labels_.begin(), labels_.end(), label) != labels_.end()) return "failed";
    std::string snap = snaps_ + "/" + label;
    must(::mkdir(snap.c_str(), 0755), "mkdir " + snap);
    copy_tree(ref_, snap);
    labels_.push_back(label);
    return "ok";
  }

  // The reference's side of a rewind (label) or reset ("").
  std::string restore(const std::string& label) {
    std::string from;
    if (label.empty()) {
      from = world_.lower();
      labels_.clear();
    } else {
      auto it = std::find(labels_.begin(), labels_.end(), label);
      if (it == labels_.end()) return "failed";
      labels_.erase(it + 1, labels_.end());
      from = snaps_ + "/" + label;
    }
    remove_tree(ref_);
    must(::mkdir(ref_.c_str(), 0755), "mkdir " + ref_);
    copy_tree(from, ref_);
    r2m_.clear();  // the reference's files are new copies
    return "ok";
  }

  World& world_;
  Settings settings_;
  std::string dir_, store_, mnt_, ref_, snaps_;
  std::unique_ptr<CowfsMount> mount_;
  std::atomic<bool> fired_{false};
  std::vector<std::string> labels_;
  Manifest ref_m_;
  std::map<ino_t, ino_t> r2m_;
};

// --- the generator -------------------------------------------------------------------

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  Op next(const Manifest& ref, const std::vector<std::string>& labels) {
    files_.clear();
    dirs_.clear();
    all_.clear();
    sizes_.clear();
    dirs_.push_back("");
    for (const auto& [path, fi] : ref.entries) {
      if (path == ".") continue;
      all_.push_back(path);
      if (fi.type == S_IFREG) {
        files_.push_back(path);
        sizes_[path] = fi.size;
      }
      if (fi.type == S_IFDIR) dirs_.push_back(path);
    }
    struct Choice {
      OpKind kind;
      int weight;
    };
    static const std::vector<Choice> kChoices = {
        {OpKind::kCreate, 20},
        {OpKind::kWrite, 24},
        {OpKind::kAppend, 10},
        {OpKind::kTruncate, 12},
        {OpKind::kRename, 20},
        {OpKind::kUnlink, 10},
        {OpKind::kRmdir, 6},
        {OpKind::kMkdir, 10},
        {OpKind::kLink, 8},
        {OpKind::kSymlink, 5},
        {OpKind::kMkfifo, 2},
        {OpKind::kChmod, 8},
        {OpKind::kUtimens, 8},
        {OpKind::kSetxattr, 10},
        {OpKind::kRemovexattr, 5},
        {OpKind::kFallocate, 6},
        {OpKind::kMmapWrite, 6},
        {OpKind::kOpenUnlinkWrite, 6},
        {OpKind::kReaddirDuringChanges, 6},
        {OpKind::kWriteAcrossCheckpoint, 2},
        {OpKind::kReadBack, 6},
        {OpKind::kCheckpoint, 6},
        {OpKind::kRewind, 4},
        {OpKind::kReset, 1},
        {OpKind::kRemount, 4},
    };
    int total = 0;
    for (const auto& c : kChoices) total += c.weight;
    int64_t roll = rng_.below(total);
    OpKind kind = kChoices.back().kind;
    for (const auto& c : kChoices) {
      if (roll < c.weight) {
        kind = c.kind;
        break;
      }
      roll -= c.weight;
    }
    if (kind == OpKind::kRewind && labels.empty()) kind = OpKind::kCheckpoint;

    Op op;
    op.kind = kind;
    op.data_seed = static_cast<uint64_t>(rng_.below(1'000'000));
    // Umasks and the extra mode bits of creating operations come from the
    // data seed, not from the generator, so the sequence of a seed (the CI
    // replays some) is the same as before they were added.
    static constexpr unsigned kUmasks[] = {022, 0, 002, 077, 027, 022, 007};
    op.umask = kUmasks[op.data_seed % std::size(kUmasks)];
    const uint64_t extra = op.data_seed / std::size(kUmasks);
    switch (kind) {
      case OpKind::kCreate:
        op.a = rng_.chance(65) ? new_path() : (rng_.chance(80) ? file() : any());
        op.mode = rng_.pick(std::vector<unsigned>{0644, 0600, 0755, 0444});
        op.mode |= std::vector<unsigned>{0, 0, 0022, 04000, 02000, 06022}[extra % 6];
        op.flags = static_cast<unsigned>(rng_.below(4));
        op.len = rng_.chance(70) ? length() : 0;
        break;
      case OpKind::kWrite:
      case OpKind::kMmapWrite:
      case OpKind::kOpenUnlinkWrite:
      case OpKind::kReadBack:
        op.a = rng_.chance(90) ? file() : any();
        op.off = offset(op.a);
        op.len = length();
        break;
      case OpKind::kWriteAcrossCheckpoint:
        op.a = file();
        op.off = offset(op.a);
        op.len = length();
        op.name = label();
        break;
      case OpKind::kAppend:
        op.a = rng_.chance(90) ? file() : any();
        op.len = length();
        break;
      case OpKind::kTruncate:
        op.a = rng_.chance(90) ? file() : any();
        op.len = offset(op.a);
        op.flags = static_cast<unsigned>(rng_.below(2));
        break;
      case OpKind::kRename: {
        bool dir = rng_.chance(30);
        op.a = dir ? directory_not_root() : any();
        int r = static_cast<int>(rng_.below(100));
        if (r < 50) {
          op.b = new_path();
        } else if (r < 80) {
          op.b = any();
        } else if (r < 90) {
          op.b = directory_not_root();
        } else {
          op.b = op.a + "/" + name();  // into itself
        }
        int f = static_cast<int>(rng_.below(10));
        op.flags = f == 0 ? RENAME_NOREPLACE : f == 1 ? RENAME_EXCHANGE : 0;
        break;
      }
      case OpKind::kUnlink:
        op.a = rng_.chance(85) ? any_non_dir() : any();
        break;
      case OpKind::kRmdir:
        op.a = rng_.chance(85) ? directory_not_root() : any();
        break;
      case OpKind::kMkdir:
        op.a = rng_.chance(85) ? new_path() : any();
        op.mode = rng_.pick(std::vector<unsigned>{0755, 0700, 0775});
        op.mode |= std::vector<unsigned>{0, 0022, 01000}[extra % 3];
        break;
      case OpKind::kMkfifo:
        op.a = new_path();
        op.mode = extra % 2 ? 0666 : 0644;
        break;
      case OpKind::kLink:
        op.a = rng_.chance(85) ? any_non_dir() : any();
        op.b = rng_.chance(85) ? new_path() : any();
        break;
      case OpKind::kSymlink:
        op.a = rng_.chance(90) ? new_path() : any();
        op.b = rng_.chance(60)   ? any()
               : rng_.chance(50) ? "../" + any()
                                 : std::string("no/such/target");
        break;
      case OpKind::kChmod:
        op.a = any();
        op.mode =
            rng_.pick(std::vector<unsigned>{0644, 0600, 0755, 0700, 0444, 0640, 01777, 02755});
        break;
      case OpKind::kUtimens:
        op.a = any();
        op.t1 = rng_.between(1'000'000'000LL, 1'600'000'000LL) * kSec + rng_.below(kSec);
        op.t2 = rng_.between(1'000'000'000LL, 1'600'000'000LL) * kSec + rng_.below(kSec);
        op.flags = static_cast<unsigned>(rng_.below(2));
        break;
      case OpKind::kSetxattr:
        op.a = any();
        op.name = xattr_name();
        op.value = rng_.chance(20)
                       ? std::string()
                       : pattern(static_cast<size_t>(rng_.between(1, 40)), op.data_seed);
        op.flags = rng_.pick(std::vector<unsigned>{0, 0, XATTR_CREATE, XATTR_REPLACE});
        break;
      case OpKind::kRemovexattr:
        op.a = any();
        op.name = xattr_name();
        break;
      case OpKind::kFallocate:
        op.a = rng_.chance(90) ? file() : any();
        op.off = offset(op.a);
        op.len = length();
        op.mode = rng_.pick(std::vector<unsigned>{0, FALLOC_FL_KEEP_SIZE,
                                                  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE});
        break;
      case OpKind::kReaddirDuringChanges: {
        op.a = rng_.pick(dirs_);
        op.b = join(op.a, "r" + std::to_string(rng_.below(100)));
        std::vector<std::string> kids;
        for (const auto& p : all_) {
          auto slash = p.find_last_of('/');
          std::string parent = slash == std::string::npos ? "" : p.substr(0, slash);
          if (parent == op.a && ref.entries.at(p).type != S_IFDIR) {
            kids.push_back(p.substr(slash == std::string::npos ? 0 : slash + 1));
          }
        }
        if (!kids.empty() && rng_.chance(70)) op.name = rng_.pick(kids);
        break;
      }
      case OpKind::kCheckpoint:
        op.name = label();
        break;
      case OpKind::kRewind:
        op.name = rng_.pick(labels);
        break;
      case OpKind::kReset:
        break;
      case OpKind::kRemount: {
        int v = static_cast<int>(rng_.below(10));
        if (v < 2) {
          op.flags = 1;
          op.name = label();
        } else if (v < 4 && !labels.empty()) {
          op.flags = 2;
          op.name = rng_.pick(labels);
        }
        break;
      }
    }
    return op;
  }

 private:
  std::string name() {
    static const std::vector<std::string> kNames = {
        "n0", "n1", "n2", "f", "g", "sub", "x.txt", "big0.bin", ".wh.n", "sp ace", "a", "h1"};
    return rng_.pick(kNames);
  }
  std::string new_path() {
    std::string dir = rng_.chance(95) ? rng_.pick(dirs_) : std::string("nodir");
    return join(dir, name());
  }
  std::string file() { return files_.empty() ? new_path() : rng_.pick(files_); }
  std::string any() { return all_.empty() ? new_path() : rng_.pick(all_); }
  std::string any_non_dir() {
    std::vector<std::string> v;
    for (const auto& p : all_) {
      if (std::find(dirs_.begin(), dirs_.end(), p) == dirs_.end()) v.push_back(p);
    }
    return v.empty() ? new_path() : rng_.pick(v);
  }
  std::string directory_not_root() {
    return dirs_.size() <= 1
               ? new_path()
               : dirs_[1 + static_cast<size_t>(rng_.below(static_cast<int64_t>(dirs_.size() - 1)))];
  }
  std::string xattr_name() {
    static const std::vector<std::string> kNames = {
        "user.k0", "user.k1", "user.d", "user.cowfs.mark", "user.cowfs.u.x", "trusted.t0"};
    return rng_.pick(kNames);
  }
  std::string label() {
    return "c" + std::to_string(labels_made_++) + "-" + std::to_string(rng_.below(1000));
  }
  int64_t offset(const std::string& path) {
    auto it = sizes_.find(path);
    int64_t size = it == sizes_.end() ? 0 : it->second;
    switch (rng_.below(6)) {
      case 0:
        return 0;
      case 1:
        return rng_.below(size + 1);
      case 2:
        return size;
      case 3:
        return size + rng_.between(1, 70000);
      case 4:
        return std::max<int64_t>(0, rng_.below(size / kChunkSize + 2) * kChunkSize - rng_.below(9));
      default:
        return std::max<int64_t>(0, size - rng_.below(5000));
    }
  }
  int64_t length() {
    if (rng_.chance(10)) return rng_.between(1, 70000);
    return rng_.between(1, 9000);
  }

  Rng rng_;
  int labels_made_ = 0;
  std::vector<std::string> files_, dirs_, all_;
  std::map<std::string, int64_t> sizes_;
};

Outcome drive(World& world, const Settings& settings, size_t count,
              const std::function<Op(const Run&, size_t)>& next_op) {
  Outcome out;
  Run run(world, settings);
  std::string d = run.compare();
  if (!d.empty()) {
    out.mismatch = Mismatch{0, OpKind::kReadBack, "before any operation, the trees differ:\n" + d};
    return out;
  }
  for (size_t i = 0; i < count; ++i) {
    Op op = next_op(run, i);
    out.ops.push_back(op);
    if (settings.verbose) std::cerr << "fsdiff #" << i << " " << op.describe() << "\n";
    if (settings.drop_caches) {
      std::ofstream("/proc/sys/vm/drop_caches") << "2\n";
    }
    std::string what;
    try {
      what = run.apply(op);
    } catch (const std::exception& e) {
      what = std::string("the test itself failed: ") + e.what() + "\n";
    }
    if (!what.empty()) {
      out.mismatch = Mismatch{i, op.kind, what};
      return out;
    }
  }
  std::string problems = run.finish();
  if (!problems.empty()) {
    out.mismatch = Mismatch{out.ops.size(), OpKind::kRemount, "at the final unmount: " + problems};
  }
  return out;
}

}  // namespace

Outcome run_seed(World& world, uint64_t seed, const Settings& settings) {
  Generator gen(seed);
  return drive(world, settings, static_cast<size_t>(settings.length),
               [&](const Run& run, size_t) { return gen.next(run.ref_manifest(), run.labels()); });
}

Outcome replay(World& world, const std::vector<Op>& ops, const Settings& settings) {
  return drive(world, settings, ops.size(), [&](const Run&, size_t i) { return ops[i]; });
}

std::vector<Op> shrink(World& world, std::vector<Op> ops, const Mismatch& failure,
                       const Settings& settings, std::chrono::seconds budget, int* replays) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  auto still_fails = [&](const std::vector<Op>& candidate, std::vector<Op>* trimmed) {
    ++*replays;
    Outcome o = replay(world, candidate, settings);
    if (o.mismatch && o.mismatch->kind == failure.kind) {
      *trimmed = std::move(o.ops);
      return true;
    }
    return false;
  };
  // Delta debugging: remove chunks, halving the chunk size when nothing
  // can be removed.
  size_t parts = 2;
  while (ops.size() > 1 && std::chrono::steady_clock::now() < deadline) {
    size_t chunk = (ops.size() + parts - 1) / parts;
    bool removed = false;
    for (size_t start = 0; start < ops.size(); start += chunk) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::vector<Op> candidate(ops.begin(), ops.begin() + static_cast<long>(start));
      if (start + chunk < ops.size()) {
        candidate.insert(candidate.end(), ops.begin() + static_cast<long>(start + chunk),
                         ops.end());
      }
      if (candidate.empty()) continue;
      std::vector<Op> trimmed;
      if (still_fails(candidate, &trimmed)) {
        ops = std::move(trimmed);
        parts = std::max<size_t>(parts - 1, 2);
        removed = true;
        break;
      }
    }
    if (!removed) {
      if (chunk <= 1) break;
      parts = std::min(parts * 2, ops.size());
    }
  }
  return ops;
}

}  // namespace fsdiff
