// cowfs runs as an ordinary user: mount (through the setuid fusermount3),
// write, unmount, all as that user.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

// Makes /dev/fuse usable by everyone (its usual mode, 0666) for the guard's
// lifetime, restoring the previous mode afterwards. libfuse opens /dev/fuse
// itself before falling back to fusermount3, so a 0600 device (as in some
// containers) stops every unprivileged FUSE mount.
class DevFuseOpen {
 public:
  DevFuseOpen() {
    struct stat st {};
    if (::stat("/dev/fuse", &st) != 0) throw std::runtime_error("no /dev/fuse");
    old_mode_ = st.st_mode & 07777;
    if ((old_mode_ & 0666) != 0666) {
      if (::chmod("/dev/fuse", 0666) != 0) throw std::runtime_error("chmod /dev/fuse");
      changed_ = true;
      std::cerr << "note: /dev/fuse was mode " << std::oct << old_mode_ << std::dec
                << "; made 0666 for this test\n";
    }
  }
  ~DevFuseOpen() {
    if (changed_) ::chmod("/dev/fuse", old_mode_);
  }
  DevFuseOpen(const DevFuseOpen&) = delete;
  DevFuseOpen& operator=(const DevFuseOpen&) = delete;

 private:
  mode_t old_mode_ = 0;
  bool changed_ = false;
};

std::string find_in_path(const std::string& prog) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}) {
    std::string p = std::string(dir) + "/" + prog;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

uid_t status_uid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::stoul(line.substr(4)));
  }
  return static_cast<uid_t>(-1);
}

TEST(UnprivilegedTest, MountWriteUmountAsOrdinaryUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create the test user and chown its dirs";
  std::string fusermount = find_in_path("fusermount3");
  ASSERT_FALSE(fusermount.empty()) << "fusermount3 is not installed";
  struct stat fm = stat_or_throw(fusermount);
  ASSERT_TRUE(fm.st_mode & S_ISUID) << fusermount << " is not setuid root";
  ASSERT_EQ(fm.st_uid, 0u);

  const TestUser user = ensure_test_user();
  const uid_t uid = user.uid;
  const gid_t gid = user.gid;
  ASSERT_NE(uid, 0u);
  DevFuseOpen dev_fuse;
  UringParameter uring(true);  // FUSE over io_uring needs no privilege

  ::umask(022);
  TempDir tmp("cowfs-unpriv");
  const std::string lower = tmp.mkdir("lower");
  write_file(lower + "/file.txt", "lower file\n");
  const std::string home = tmp.mkdir("user");  // the user's own directory
  const std::string mnt = tmp.mkdir("user/mnt");
  const std::string store = home + "/store";  // made by cowfs, as the user
  for (const auto& p : {lower, lower + "/file.txt", home, mnt}) {
    ASSERT_EQ(err(::chown(p.c_str(), uid, gid)), 0) << p;
  }
  Manifest lower_before = Manifest::take(lower);

  const std::vector<std::string> as_user = {"setpriv", "--reuid=" + std::to_string(uid),
                                            "--regid=" + std::to_string(gid), "--clear-groups",
                                            "--"};
  auto user_sh = [&](const std::string& script) {
    std::vector<std::string> argv = as_user;
    argv.insert(argv.end(), {"/bin/sh", "-c", script});
    return run(argv);
  };
  {
    CowfsMount m(MountSpec{store, {lower}, mnt, {"--io", "uring"}, as_user});
    ASSERT_GT(m.daemon_pid(), 0);
    EXPECT_EQ(status_uid(m.daemon_pid()), uid) << "the daemon should run as the user";
    const std::string transport = mount_transport(store, as_user);
    EXPECT_EQ(transport.rfind("io_uring: ", 0), 0u) << transport;

    RunResult w = user_sh("set -e; cd '" + mnt +
                          "'; cat file.txt; printf 'by user\\n' > new.txt; "
                          "printf 'changed\\n' >> file.txt; cat new.txt; id -u; "
                          "stat -c %u new.txt; mkdir d; mv new.txt d/; cat d/new.txt");
    EXPECT_EQ(w.exit_code, 0) << w.describe();
    EXPECT_EQ(w.out, "lower file\nby user\n" + std::to_string(uid) + "\n" + std::to_string(uid) +
                         "\nby user\n");
    // chown to someone else needs privilege, as on a plain filesystem.
    RunResult c = user_sh("chown 0 '" + mnt + "/d/new.txt'");
    EXPECT_NE(c.exit_code, 0) << "an ordinary user gave a file away: " << c.describe();

    // What landed in the store belongs to the user.
    struct stat st {};
    ASSERT_EQ(err(::stat((store + "/format").c_str(), &st)), 0);
    EXPECT_EQ(st.st_uid, uid) << "the store should be the user's";

    std::string problems = m.unmount();  // `cowfs umount`, as the user
    EXPECT_EQ(problems, "");
  }
  EXPECT_FALSE(is_mounted(mnt));
  {
    // Mounted again, the user's changes are there.
    CowfsMount m(MountSpec{store, {lower}, mnt, {}, as_user});
    RunResult r = user_sh("cat '" + mnt + "/d/new.txt' '" + mnt + "/file.txt'");
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.out, "by user\nlower file\nchanged\n");
    EXPECT_EQ(m.unmount(), "");
  }
  EXPECT_EQ(diff(lower_before, Manifest::take(lower), kEverything), "") << "the lower was changed";
}

// The daemon of an ordinary user applies the caller's umask once, as a
// plain directory of the user does (its own umask used to be applied too).
TEST(UnprivilegedTest, NewObjectsGetTheModesOfAPlainDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create the test user and chown its dirs";
  ASSERT_FALSE(find_in_path("fusermount3").empty()) << "fusermount3 is not installed";
  const TestUser user = ensure_test_user();
  DevFuseOpen dev_fuse;
  ::umask(022);
  TempDir tmp("cowfs-unpriv");
  const std::string lower = tmp.mkdir("lower");
  const std::string home = tmp.mkdir("user");
  const std::string mnt = tmp.mkdir("user/mnt");
  const std::string plain = tmp.mkdir("user/plain");
  for (const auto& p : {lower, home, mnt, plain}) {
    ASSERT_EQ(err(::chown(p.c_str(), user.uid, user.gid)), 0) << p;
  }
  // Runs under the given umask; prints the modes it got.
  auto script = [](const std::string& dir, const char* umask) {
    const std::string u = std::string("u") + umask;
    return "set -e; cd '" + dir + "'; umask " + umask + "; mkdir " + u + "d; touch " + u +
           "f; mkfifo " + u + "p; mkdir -m 1777 " + u + "t; stat -c '%n %a %u' " + u + "d " + u +
           "f " + u + "p " + u + "t";
  };
  CowfsMount m(MountSpec{home + "/store", {lower}, mnt, {}, user.run_as});
  for (const char* umask : {"000", "002", "022", "077"}) {
    RunResult want = user.sh(script(plain, umask));
    ASSERT_EQ(want.exit_code, 0) << want.describe();
    RunResult got = user.sh(script(mnt, umask));
    EXPECT_EQ(got.exit_code, 0) << got.describe();
    EXPECT_EQ(got.out, want.out) << "umask " << umask;
  }
  EXPECT_EQ(m.unmount(), "");
}

// A lower that the daemon cannot search may hold any name: a create there
// must fail with the lower's error, never make a new object that hides the
// production one. The daemon runs as an ordinary user; the directory it
// cannot search (0700, root's) sits under one of the user's own in a higher
// lower, so the kernel lets the user create in the merged directory. The
// kernel looks the name up before it sends a create, and that LOOKUP meets
// the error first: this guards the whole path, lookup included, while
// OverlayTest.CreatesFailWhereALowerCannotBeSearched reaches the creates.
TEST(UnprivilegedTest, CreatesFailWhereALowerCannotBeSearched) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create the test user and chown its dirs";
  ASSERT_FALSE(find_in_path("fusermount3").empty()) << "fusermount3 is not installed";
  const TestUser user = ensure_test_user();
  DevFuseOpen dev_fuse;
  ::umask(022);
  TempDir tmp("cowfs-unpriv");
  const std::string upper = tmp.mkdir("upper");  // the user's lower, on top
  const std::string lower = tmp.mkdir("lower");  // root's, below
  const std::string home = tmp.mkdir("user");
  const std::string mnt = tmp.mkdir("user/mnt");
  tmp.mkdir("upper/shared");
  tmp.mkdir("lower/shared", 0700);
  write_file(lower + "/shared/name", "production\n");
  for (const auto& p : {upper, upper + "/shared", home, mnt}) {
    ASSERT_EQ(err(::chown(p.c_str(), user.uid, user.gid)), 0) << p;
  }
  ASSERT_EQ(err(::chmod((lower + "/shared").c_str(), 0700)), 0);
  CowfsMount m(MountSpec{home + "/store", {upper, lower}, mnt, {}, user.run_as});
  const std::string d = mnt + "/shared";
  // Each runs as the user and prints the errno name of the create (or OK).
  const std::vector<std::pair<std::string, std::string>> creates = {
      {"create", "import os; os.close(os.open('" + d +
                     "/name', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))"},
      {"mkdir", "import os; os.mkdir('" + d + "/name')"},
      {"mknod", "import os; os.mkfifo('" + d + "/name')"},
      {"symlink", "import os; os.symlink('x', '" + d + "/name')"},
      {"link", "import os; open('" + mnt + "/mine', 'w').close(); os.link('" + mnt + "/mine', '" +
                   d + "/name')"},
  };
  for (const auto& [what, code] : creates) {
    RunResult r = user.sh(
        "python3 -c \"import errno, sys\ntry:\n " + code +
        "\nexcept OSError as e:\n print(errno.errorcode[e.errno]); sys.exit(0)\nprint('OK')\"");
    EXPECT_EQ(r.out, "EACCES\n") << what << " over a name the daemon cannot see: " << r.describe();
  }
  // Nothing was made in the store that would hide the production name.
  RunResult ls = user.sh("ls -a '" + home + "/store/layers/'*/tree/shared 2>/dev/null");
  EXPECT_EQ(ls.out.find("name"), std::string::npos) << ls.out;
  EXPECT_EQ(m.unmount(), "");
  EXPECT_EQ(read_file(lower + "/shared/name"), "production\n");
}

// A root mount (allow_other, so other users can reach it) must enforce file
// permissions for them exactly as a plain directory does.
class OtherUserTest : public CowfsTest {};

TEST_F(OtherUserTest, PermissionsAreEnforcedForOtherUsers) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const TestUser user = ensure_test_user();
  const std::string m = mnt();
  ASSERT_EQ(err(::mkdir(mnt("userdir").c_str(), 0755)), 0);
  ASSERT_EQ(err(::chown(mnt("userdir").c_str(), user.uid, user.gid)), 0);
  struct Case {
    std::string script;
    bool allowed;
  };
  const std::vector<Case> cases = {
      {"cat '" + m + "/small.txt'", true},                       // 0644 root
      {"cat '" + m + "/owned.txt'", false},                      // 0640 4242:4343
      {"printf x >> '" + m + "/small.txt'", false},              // not the owner
      {"touch '" + m + "/dir/new-by-user'", false},              // 0755 root directory
      {"ls '" + m + "/dir/sub/deep'", false},                    // 0700 root directory
      {"rm -f '" + m + "/small.txt'", false},                    // 0755 root parent
      {"mv '" + m + "/dir/a.txt' '" + m + "/userdir/'", false},  // cannot unlink from dir
      {"printf mine > '" + m + "/userdir/f' && cat '" + m + "/userdir/f'", true},
      {"chmod 0600 '" + m + "/userdir/f'", true},
      {"chown 0 '" + m + "/userdir/f'", false},
      {"chmod 0777 '" + m + "/small.txt'", false},
      {"'" + m + "/exec.sh'", true},
  };
  for (const auto& c : cases) {
    RunResult r = user.sh(c.script);
    if (c.allowed) {
      EXPECT_EQ(r.exit_code, 0) << "should be allowed for " << user.name << ": " << c.script << "\n"
                                << r.describe();
    } else {
      EXPECT_NE(r.exit_code, 0) << "should be refused for " << user.name << ": " << c.script;
    }
  }
  struct stat st = stat_or_throw(mnt("userdir/f"));
  EXPECT_EQ(st.st_uid, user.uid);
  EXPECT_EQ(st.st_gid, user.gid);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\n");
}

// cowfs clears set-ID bits itself (the kernel leaves it to the filesystem,
// see cowfs/fuse/kernel_io.h): a write, truncate, fallocate or
// copy_file_range by another user drops them, as on a plain directory
// (set-group-ID only where the group may execute, or where the caller is
// not in the file's group); root's own writes keep them. The same calls
// run on a plain directory of the same host, and every mode must match the
// kernel's there as well as the expected value.
TEST_F(OtherUserTest, WritesByOtherUsersClearSetIdBits) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  const TestUser user = ensure_test_user();
  const std::vector<std::pair<std::string, mode_t>> expected = {
      {"append", 0777},           {"truncate", 0777},         {"otrunc", 0777},
      {"by-root", 06777},         {"untouched", 06777},       {"fallocate", 0777},
      {"fallocate-keep", 0777},   {"copy-range", 0777},       {"sgid-other-group", 0767},
      {"sgid-own-group", 02767},  {"sgid-fallocate", 0767},   {"sgid-copy-range", 0767},
      {"sgid-x-fallocate", 0777}, {"sgid-x-copy-range", 0777}};
  // Makes the files under d, has the user (and root) write them; returns
  // the modes after.
  auto exercise = [&](const std::string& d) {
    std::map<std::string, mode_t> modes;
    EXPECT_EQ(err(::mkdir(d.c_str(), 0777)), 0) << d;
    EXPECT_EQ(err(::chmod(d.c_str(), 0777)), 0) << d;
    for (const auto& [name, want] : expected) {
      write_file(d + "/" + name, "data\n");
      EXPECT_EQ(err(::chmod((d + "/" + name).c_str(), 06777)), 0) << name;
    }
    // Set-group-ID without group execute goes only for a caller outside
    // the file's group; with group execute, always.
    for (const char* name : {"sgid-other-group", "sgid-fallocate", "sgid-copy-range"}) {
      EXPECT_EQ(err(::chmod((d + "/" + name).c_str(), 02767)), 0) << name;
    }
    for (const char* name : {"sgid-x-fallocate", "sgid-x-copy-range"}) {
      EXPECT_EQ(err(::chmod((d + "/" + name).c_str(), 02777)), 0) << name;
    }
    EXPECT_EQ(err(::chown((d + "/sgid-own-group").c_str(), 0, user.gid)), 0);
    EXPECT_EQ(err(::chmod((d + "/sgid-own-group").c_str(), 02767)), 0);
    write_file(d + "/source", "XYZ");
    auto copy_range = [&](const std::string& name) {
      return "/usr/bin/python3 -c \"import os; i = os.open('" + d + "/source', os.O_RDONLY); " +
             "o = os.open('" + d + "/" + name + "', os.O_WRONLY); " +
             "assert os.copy_file_range(i, o, 3, 0, 0) == 3\"";
    };
    for (const std::string& script :
         {"printf x >> '" + d + "/append'", "truncate -s 1 '" + d + "/truncate'",
          ": > '" + d + "/otrunc'", "fallocate -l 65536 '" + d + "/fallocate'",
          "fallocate -n -l 65536 '" + d + "/fallocate-keep'", copy_range("copy-range"),
          "printf x >> '" + d + "/sgid-other-group'", "printf x >> '" + d + "/sgid-own-group'",
          "fallocate -l 65536 '" + d + "/sgid-fallocate'", copy_range("sgid-copy-range"),
          "fallocate -l 65536 '" + d + "/sgid-x-fallocate'", copy_range("sgid-x-copy-range")}) {
      RunResult r = user.sh(script);
      EXPECT_EQ(r.exit_code, 0) << script << "\n" << r.describe();
    }
    write_file(d + "/by-root", "root writes\n");
    for (const auto& [name, want] : expected) {
      modes[name] = stat_or_throw(d + "/" + name).st_mode & 07777;
    }
    EXPECT_EQ(read_file(d + "/append"), "data\nx");
    EXPECT_EQ(read_file(d + "/copy-range"), "XYZa\n");
    return modes;
  };
  TempDir plain("cowfs-setid-plain");
  const std::map<std::string, mode_t> kernel = exercise(plain.sub("setid"));
  const std::map<std::string, mode_t> cowfs = exercise(mnt("setid"));
  for (const auto& [name, want] : expected) {
    EXPECT_EQ(cowfs.at(name), kernel.at(name))
        << name << ": cowfs gives 0" << std::oct << cowfs.at(name) << ", a plain directory 0"
        << kernel.at(name);
    EXPECT_EQ(cowfs.at(name), want) << name << ": 0" << std::oct << cowfs.at(name);
  }
}

}  // namespace
}  // namespace cowfs_it
