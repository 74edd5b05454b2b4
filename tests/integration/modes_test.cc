// Modes and owners of new objects, compared with a plain directory: the
// caller's umask applies once (never the daemon's), a default ACL of the
// parent decides instead of the umask, and set-ID bits asked for at
// creation stay. Callers: root and an ordinary user of a root mount (the
// mount of an ordinary user is in unprivileged_test.cc).
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <sstream>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

struct Made {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  bool operator==(const Made&) const = default;
};

std::string describe(const std::map<std::string, Made>& m) {
  std::ostringstream out;
  for (const auto& [name, made] : m) {
    out << name << " " << std::oct << made.mode << std::dec << " " << made.uid << ":" << made.gid
        << "\n";
  }
  return out.str();
}

// In a child that runs as uid:gid (unless root) with the given umask:
// creates the objects below in dir, the way applications do. Returns what
// each became ("error ..." entries for failed calls).
std::map<std::string, Made> create_all(const std::string& dir, mode_t umask, uid_t uid, gid_t gid) {
  struct Op {
    const char* name;
    int kind;  // 0 file (open O_CREAT), 1 directory, 2 FIFO, 3 regular file by mknod
    mode_t mode;
  };
  static const Op ops[] = {
      {"f666", 0, 0666},  {"f777", 0, 0777},     {"f600", 0, 0600},    {"suid", 0, 04777},
      {"sgid", 0, 02777}, {"both", 0, 06755},    {"sticky", 0, 01666}, {"d777", 1, 0777},
      {"d755", 1, 0755},  {"dsticky", 1, 01777}, {"fifo", 2, 0666},    {"mknod", 3, 0644},
  };
  std::vector<std::string> paths;  // made before fork: the child only makes syscalls
  for (const Op& op : ops) paths.push_back(dir + "/" + op.name);
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    if (uid != 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        _exit(100);
      }
    }
    ::umask(umask);
    int code = 0;
    for (size_t i = 0; i < std::size(ops); ++i) {
      const Op& op = ops[i];
      const char* p = paths[i].c_str();
      int rc = 0;
      if (op.kind == 0) {
        int fd = ::open(p, O_WRONLY | O_CREAT | O_EXCL, op.mode);
        rc = fd < 0 ? -1 : ::close(fd);
      } else if (op.kind == 1) {
        rc = ::mkdir(p, op.mode);
      } else if (op.kind == 2) {
        rc = ::mkfifo(p, op.mode);
      } else {
        rc = ::mknod(p, S_IFREG | op.mode, 0);
      }
      if (rc != 0 && code == 0) code = static_cast<int>(i) + 1;
    }
    _exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("creating in " + dir + " failed at step " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  std::map<std::string, Made> out;
  for (const Op& op : ops) {
    struct stat st = lstat_or_throw(dir + "/" + op.name);
    out[op.name] = Made{st.st_mode, st.st_uid, st.st_gid};
  }
  return out;
}

// A minimal POSIX ACL (owner, group, other: rwx) in the kernel's xattr form.
std::string full_acl() {
  std::string v;
  auto put32 = [&](uint32_t x) { v.append(reinterpret_cast<const char*>(&x), 4); };
  auto put16 = [&](uint16_t x) { v.append(reinterpret_cast<const char*>(&x), 2); };
  put32(2);                                  // POSIX_ACL_XATTR_VERSION
  for (uint16_t tag : {0x01, 0x04, 0x20}) {  // ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER
    put16(tag);
    put16(7);
    put32(0xffffffffu);  // ACL_UNDEFINED_ID
  }
  return v;
}

class ModesTest : public CowfsTest {
 protected:
  // A fresh directory of mode 0777 in the mount and in a plain directory.
  std::pair<std::string, std::string> fresh_dirs(const std::string& name) {
    const std::string plain = tmp().mkdir("plain/" + name);
    const std::string in_mnt = mnt(name);
    if (::mkdir(in_mnt.c_str(), 0777) != 0 && errno != EEXIST) {
      throw std::system_error(errno, std::generic_category(), "mkdir " + in_mnt);
    }
    for (const auto& d : {plain, in_mnt}) {
      if (::chmod(d.c_str(), 0777) != 0) {
        throw std::system_error(errno, std::generic_category(), "chmod " + d);
      }
    }
    return {in_mnt, plain};
  }
};

TEST_F(ModesTest, NewObjectsGetTheModesOfAPlainDirectoryForEveryUmaskAndCaller) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run as another user";
  const TestUser user = ensure_test_user();
  for (bool as_user : {false, true}) {
    for (mode_t umask : {0000, 0002, 0022, 0027, 0077, 0007}) {
      std::ostringstream name;
      name << (as_user ? "user" : "root") << "-" << std::oct << umask;
      SCOPED_TRACE(name.str());
      auto [in_mnt, plain] = fresh_dirs(name.str());
      const uid_t uid = as_user ? user.uid : 0;
      const gid_t gid = as_user ? user.gid : 0;
      auto want = create_all(plain, umask, uid, gid);
      auto got = create_all(in_mnt, umask, uid, gid);
      EXPECT_EQ(describe(got), describe(want));
    }
  }
}

TEST_F(ModesTest, SetIdBitsAskedForAtCreationStay) {
  // The case: root, umask 0, mode 04777.
  ::umask(0);
  Fd fd(::open(mnt("s").c_str(), O_CREAT | O_WRONLY, 04777));
  ::umask(022);
  ASSERT_TRUE(fd) << errno_name(errno);
  EXPECT_EQ(fstat_or_throw(fd.get()).st_mode & 07777, 04777u);
  fd.reset();
  EXPECT_EQ(stat_or_throw(mnt("s")).st_mode & 07777, 04777u);
  remount();
  EXPECT_EQ(stat_or_throw(mnt("s")).st_mode & 07777, 04777u) << "after remount";
}

// The reproduction: with umask 000 directories are 0777, so another
// user may move a file between them.
TEST_F(ModesTest, AnotherUserRenamesBetweenDirectoriesMadeUnderUmask000) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run as another user";
  auto r =
      run({"/bin/sh", "-c",
           "cd '" + mnt() + "' && umask 000 && mkdir dd a b && touch ff a/f && stat -c %a dd ff"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "777\n666\n");
  r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "mv", mnt("a/f"),
           mnt("b/g")});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(stat_or_throw(mnt("b/g")).st_size == 0);
}

// Where the parent has a default ACL, the ACL decides, not the umask (as
// on the store's own filesystem); over a deleted lower name too.
TEST_F(ModesTest, ADefaultAclOfTheParentReplacesTheUmask) {
  auto [in_mnt, plain] = fresh_dirs("acl");
  const std::string acl = full_acl();
  for (const auto& d : {plain, in_mnt}) {
    if (::setxattr(d.c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0) != 0) {
      if (d == plain && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
        GTEST_SKIP() << "no ACLs on " << plain;
      }
      FAIL() << "setting a default ACL on " << d << ": " << errno_name(errno);
    }
  }
  auto want = create_all(plain, 077, 0, 0);
  auto got = create_all(in_mnt, 077, 0, 0);
  EXPECT_EQ(describe(got), describe(want));
  EXPECT_EQ(got["f666"].mode & 07777, 0666u);
}

TEST_F(ModesTest, ObjectsThatReplaceADeletedLowerNameFollowTheUmask) {
  ASSERT_EQ(err(::unlink(mnt("small.txt").c_str())), 0);
  ASSERT_EQ(err(::rmdir(mnt("empty").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("fifo").c_str())), 0);
  ::umask(002);
  Fd fd(::open(mnt("small.txt").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0666));
  const int open_err = fd ? 0 : errno;
  const int mkdir_err = err(::mkdir(mnt("empty").c_str(), 0777));
  const int fifo_err = err(::mkfifo(mnt("fifo").c_str(), 0666));
  ::umask(022);
  ASSERT_EQ(open_err, 0);
  ASSERT_EQ(mkdir_err, 0);
  ASSERT_EQ(fifo_err, 0);
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_mode & 07777, 0664u);
  EXPECT_EQ(stat_or_throw(mnt("empty")).st_mode & 07777, 0775u);
  EXPECT_EQ(lstat_or_throw(mnt("fifo")).st_mode & 07777, 0664u);
}

}  // namespace
}  // namespace cowfs_it
