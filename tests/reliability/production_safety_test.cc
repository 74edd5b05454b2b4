// Production safety: every writing operation, applied through the mount to a
// name that exists only in a lower, leaves the lower's bytes, times, modes,
// owners, xattrs and link counts exactly as they were, and never opens a
// lower file for writing.
//
// Run twice: with the lower on a read-only bind mount (as every test here),
// where a write attempt would fail loudly; and with the lower on its plain
// writable directory, where a write attempt would succeed silently — the
// stronger check, since a mirror of production is often writable. inotify on
// the lower's source catches even an O_RDWR open that writes nothing
// (IN_CLOSE_WRITE) and metadata changes to the same value (IN_ATTRIB).
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/reliability/crash_env.h"
#include "tests/reliability/rel_util.h"

namespace cowfs_rel {
namespace {

using namespace cowfs_it;
using namespace std::chrono_literals;

constexpr size_t kBig = 3 * 1024 * 1024;

// One target per operation, so each operation meets a name that is only in
// the lower.
const std::vector<std::string> kFileOps = {
    "open-wronly", "open-rdwr",  "open-trunc",  "open-append", "write",      "pwrite-big",
    "truncate",    "ftruncate",  "chmod",       "chown",       "utimens",    "setxattr",
    "removexattr", "unlink",     "rename-from", "rename-over", "link",       "fallocate",
    "punch-hole",  "mmap-write", "copy-range",  "flock",       "posix-lock", "exchange"};

void populate(const std::string& root) {
  for (const auto& op : kFileOps) {
    std::string p = root + "/" + op;
    if (op == "pwrite-big" || op == "punch-hole") {
      write_file(p, pattern(kBig, 5));
    } else {
      write_file(p, "lower content of " + op + "\n");
    }
    if (::setxattr(p.c_str(), "user.keep", "1", 1, 0) != 0) throw std::runtime_error("setxattr");
  }
  write_file(root + "/rename-target", "will be replaced\n");
  write_file(root + "/copy-src", "source of copy_file_range\n");
  for (const char* d :
       {"dir-chmod", "dir-utimens", "dir-setxattr", "dir-rename", "dir-rmdir", "dir-create-in",
        "dir-mkdir-in", "dir-symlink-in", "dir-mknod-in", "dir-unlink-in", "dir-over"}) {
    std::string p = root + "/" + d;
    if (::mkdir(p.c_str(), 0755) != 0) throw std::runtime_error("mkdir");
  }
  write_file(root + "/dir-unlink-in/victim", "victim\n");
  write_file(root + "/dir-rename/inside", "inside\n");
  if (::symlink("open-wronly", (root + "/symlink").c_str()) != 0) throw std::runtime_error("ln");
  // Old, fixed times everywhere, so a touched time stands out.
  Manifest m = Manifest::take(root);
  for (const auto& [rel, fi] : m.entries) {
    std::string p = rel == "." ? root : root + "/" + rel;
    struct timespec ts[2] = {{1'500'000'000, 0}, {1'500'000'000, 0}};
    ::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }
}

// Watches every directory of a tree for anything but reads.
class Watcher {
 public:
  explicit Watcher(const std::string& root) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (!fd_) throw std::runtime_error("inotify_init1");
    Manifest m = Manifest::take(root);
    for (const auto& [rel, fi] : m.entries) {
      if (fi.type != S_IFDIR) continue;
      std::string p = rel == "." ? root : root + "/" + rel;
      int wd = ::inotify_add_watch(fd_.get(), p.c_str(),
                                   IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE |
                                       IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF);
      if (wd < 0) throw std::runtime_error("inotify_add_watch " + p);
      dirs_[wd] = rel;
    }
  }
  // What happened since construction, one line per event.
  std::vector<std::string> events() {
    std::vector<std::string> out;
    alignas(struct inotify_event) char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* e = reinterpret_cast<struct inotify_event*>(p);
        std::string what;
        if (e->mask & IN_MODIFY) what += "MODIFY ";
        if (e->mask & IN_ATTRIB) what += "ATTRIB ";
        if (e->mask & IN_CLOSE_WRITE) what += "CLOSE_WRITE(opened for writing) ";
        if (e->mask & IN_CREATE) what += "CREATE ";
        if (e->mask & IN_DELETE) what += "DELETE ";
        if (e->mask & (IN_MOVED_FROM | IN_MOVED_TO | IN_MOVE_SELF)) what += "MOVE ";
        if (e->mask & IN_DELETE_SELF) what += "DELETE_SELF ";
        if (!what.empty()) {
          out.push_back(what + dirs_[e->wd] + "/" + (e->len ? std::string(e->name) : ""));
        }
        p += sizeof(struct inotify_event) + e->len;
      }
    }
    return out;
  }

 private:
  Fd fd_;
  std::map<int, std::string> dirs_;
};

// Applies every operation through the mount; each must succeed.
void apply_all(const std::string& mnt) {
  auto m = [&](const std::string& rel) { return mnt + "/" + rel; };
  auto ok = [](long rc, const std::string& what) {
    EXPECT_GE(rc, 0) << what << ": " << errno_name(errno);
  };
  {
    Fd fd(::open(m("open-wronly").c_str(), O_WRONLY));
    ok(fd.get(), "open O_WRONLY");
  }
  {
    Fd fd(::open(m("open-rdwr").c_str(), O_RDWR));
    ok(fd.get(), "open O_RDWR");
  }
  {
    Fd fd(::open(m("open-trunc").c_str(), O_WRONLY | O_TRUNC));
    ok(fd.get(), "open O_TRUNC");
  }
  {
    Fd fd(::open(m("open-append").c_str(), O_WRONLY | O_APPEND));
    ok(fd.get(), "open O_APPEND");
    if (fd) ok(::write(fd.get(), "more\n", 5), "append");
  }
  {
    Fd fd(::open(m("write").c_str(), O_WRONLY));
    if (fd) ok(::pwrite(fd.get(), "XX", 2, 3), "pwrite");
    if (fd) ok(::fsync(fd.get()), "fsync");
  }
  {
    Fd fd(::open(m("pwrite-big").c_str(), O_WRONLY));
    std::string d(70000, 'B');
    if (fd) ok(::pwrite(fd.get(), d.data(), d.size(), 1'000'000), "pwrite into a chunked file");
  }
  ok(::truncate(m("truncate").c_str(), 3), "truncate");
  {
    Fd fd(::open(m("ftruncate").c_str(), O_WRONLY));
    if (fd) ok(::ftruncate(fd.get(), 100), "ftruncate");
  }
  ok(::chmod(m("chmod").c_str(), 0600), "chmod");
  ok(::chown(m("chown").c_str(), 1234, 5678), "chown");
  struct timespec ts[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
  ok(::utimensat(AT_FDCWD, m("utimens").c_str(), ts, 0), "utimensat");
  ok(::setxattr(m("setxattr").c_str(), "user.new", "v", 1, 0), "setxattr");
  ok(::removexattr(m("removexattr").c_str(), "user.keep"), "removexattr");
  ok(::unlink(m("unlink").c_str()), "unlink");
  ok(::rename(m("rename-from").c_str(), m("renamed").c_str()), "rename from");
  ok(::rename(m("rename-target").c_str(), m("rename-over").c_str()), "rename over");
  ok(::link(m("link").c_str(), m("link2").c_str()), "link");
  {
    Fd fd(::open(m("fallocate").c_str(), O_WRONLY));
    if (fd) ok(::fallocate(fd.get(), 0, 0, 1 << 20), "fallocate");
  }
  {
    Fd fd(::open(m("punch-hole").c_str(), O_WRONLY));
    if (fd) {
      ok(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 65536),
         "punch hole");
    }
  }
  {
    Fd fd(::open(m("mmap-write").c_str(), O_RDWR));
    if (fd) {
      void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
      ok(p == MAP_FAILED ? -1 : 0, "mmap");
      if (p != MAP_FAILED) {
        static_cast<char*>(p)[0] = 'M';
        ok(::msync(p, 4096, MS_SYNC), "msync");
        ::munmap(p, 4096);
      }
    }
  }
  {
    Fd in(::open(m("copy-src").c_str(), O_RDONLY));
    Fd out(::open(m("copy-range").c_str(), O_WRONLY));
    if (in && out)
      ok(::copy_file_range(in.get(), nullptr, out.get(), nullptr, 10, 0), "copy_file_range");
  }
  {
    Fd fd(::open(m("flock").c_str(), O_RDONLY));
    if (fd) ok(::flock(fd.get(), LOCK_EX), "flock");
  }
  {
    Fd fd(::open(m("posix-lock").c_str(), O_RDWR));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd) ok(::fcntl(fd.get(), F_SETLK, &fl), "fcntl F_SETLK");
  }
  ok(::renameat2(AT_FDCWD, m("exchange").c_str(), AT_FDCWD, m("open-wronly").c_str(),
                 RENAME_EXCHANGE),
     "RENAME_EXCHANGE");
  ok(::chmod(m("dir-chmod").c_str(), 0700), "chmod dir");
  ok(::utimensat(AT_FDCWD, m("dir-utimens").c_str(), ts, 0), "utimensat dir");
  ok(::setxattr(m("dir-setxattr").c_str(), "user.new", "v", 1, 0), "setxattr dir");
  ok(::rename(m("dir-rename").c_str(), m("dir-renamed").c_str()), "rename dir");
  ok(::rmdir(m("dir-rmdir").c_str()), "rmdir");
  ok(::rename(m("dir-mkdir-in").c_str(), m("dir-over").c_str()), "rename dir over dir");
  {
    Fd fd(::open(m("dir-create-in/new").c_str(), O_WRONLY | O_CREAT, 0644));
    ok(fd.get(), "create in a lower dir");
  }
  ok(::mkdir(m("dir-over/sub").c_str(), 0755), "mkdir in a lower dir");
  ok(::symlink("x", m("dir-symlink-in/l").c_str()), "symlink in a lower dir");
  ok(::mkfifo(m("dir-mknod-in/fifo").c_str(), 0644), "mkfifo in a lower dir");
  ok(::unlink(m("dir-unlink-in/victim").c_str()), "unlink in a lower dir");
  ok(::lchown(m("symlink").c_str(), 1234, 5678), "lchown symlink");
}

void run_case(bool read_only_bind) {
  CrashEnv env("cowfs-prodsafe", populate);
  const Manifest src_before = Manifest::take(env.lower_src());
  if (!read_only_bind) {
    // Point cowfs at the writable source itself.
    env.set_store(env.tmp().sub("store"));
  }
  Watcher watch(env.lower_src());
  MountSpec spec = env.spec();
  if (!read_only_bind) spec.lowers = {env.lower_src()};
  {
    CowfsMount mount(spec);
    apply_all(spec.mountpoint);
    RunResult r = cowfs({"checkpoint", "--store", spec.store, "after-ops"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_NO_THROW(mount.remount());
    r = cowfs({"rewind", "--store", spec.store, "after-ops"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    r = cowfs({"reset", "--store", spec.store});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    apply_all(spec.mountpoint);  // once more, on the lower alone after the reset
    EXPECT_EQ(mount.unmount(), "");
  }
  EXPECT_EQ(diff(src_before, Manifest::take(env.lower_src()), kEverything), "")
      << "the lower changed (bytes, times, modes, owners, xattrs or links)";
  EXPECT_EQ(env.lower_changes(), "");
  auto events = watch.events();
  std::string ev;
  for (const auto& e : events) ev += "  " + e + "\n";
  EXPECT_TRUE(events.empty()) << "the lower saw writes:\n" << ev;
}

TEST(ProductionSafety, EveryWritingOperationOnLowerOnlyNamesReadOnlyBind) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount";
  run_case(true);
}

TEST(ProductionSafety, EveryWritingOperationOnLowerOnlyNamesWritableLower) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown through the mount)";
  run_case(false);
}

}  // namespace
}  // namespace cowfs_rel
