// The cowfs command line: every kind of bad input is refused with exactly one
// line on stderr, a non-zero exit, nothing mounted and nothing created; and
// the good paths (help, version, background and foreground mounts, umount,
// remount after a crash) do what they promise.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::umask(022);
    tmp_ = std::make_unique<TempDir>("cowfs-cli");
    lower_ = tmp_->mkdir("lower");
    write_file(lower_ + "/file.txt", "lower file\n");
    tmp_->mkdir("lower/sub");
    mnt_ = tmp_->mkdir("mnt");
    store_ = tmp_->sub("store");
  }
  void TearDown() override { tmp_.reset(); }

  static std::vector<std::string> mount_cmd(const std::string& store,
                                            const std::vector<std::string>& lowers,
                                            const std::string& mnt,
                                            const std::vector<std::string>& extra = {}) {
    return mount_argv(MountSpec{store, lowers, mnt, extra, {}});
  }

  // Runs a command that must be refused, and checks the refusal is clean.
  void expect_rejected(const std::vector<std::string>& argv, const std::string& what,
                       const RunOptions& opts = {}) {
    SCOPED_TRACE(what);
    auto skip_log = [](const std::string& rel) {
      return rel == "store/cowfs.log" || rel.ends_with("/cowfs.log");
    };
    Manifest before = Manifest::take(tmp_->path(), skip_log);
    auto mounts_before = mounts_under(tmp_->path());
    RunResult r = run(argv, opts);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_FALSE(r.timed_out);
    auto lines = r.err_lines();
    EXPECT_EQ(lines.size(), 1u) << "stderr must be exactly one line; got: " << r.err;
    if (lines.size() == 1) {
      EXPECT_GT(lines[0].size(), 10u) << "the message should say what is wrong: " << r.err;
    }
    auto mounts_after = mounts_under(tmp_->path());
    EXPECT_EQ(mounts_after, mounts_before) << "a refused mount left something mounted";
    Manifest after = Manifest::take(tmp_->path(), skip_log);
    EXPECT_EQ(diff(before, after, kShape | kIno), "") << "a refused command changed files";
  }

  // A real store, made by mounting and unmounting once.
  void make_store(const std::string& store) {
    CowfsMount m(MountSpec{store, {lower_}, mnt_, {}, {}});
    write_file(mnt_ + "/made-in-store.txt", "x");
    ASSERT_EQ(m.unmount(), "");
  }

  std::unique_ptr<TempDir> tmp_;
  std::string lower_, mnt_, store_;
};

TEST_F(CliTest, Version) {
  RunResult r = run({cowfs_bin(), "--version"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"([0-9]+\.[0-9]+\.[0-9]+)"))) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, Help) {
  RunResult r = run({cowfs_bin(), "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("mount"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("umount"), std::string::npos) << r.out;
  RunResult m = run({cowfs_bin(), "mount", "--help"});
  EXPECT_EQ(m.exit_code, 0) << m.describe();
  for (const char* opt :
       {"--store", "--lower", "--foreground", "--log-level", "-o", "MOUNTPOINT"}) {
    EXPECT_NE(m.out.find(opt), std::string::npos) << "mount --help does not mention " << opt;
  }
  RunResult u = run({cowfs_bin(), "umount", "--help"});
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_NE(u.out.find("MOUNTPOINT"), std::string::npos) << u.out;
}

TEST_F(CliTest, NoArgumentsIsAnError) {
  RunResult r = run({cowfs_bin()});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_FALSE(r.err.empty());
}

TEST_F(CliTest, RejectsMissingLower) {
  expect_rejected(mount_cmd(store_, {tmp_->sub("no-such-dir")}, mnt_), "missing lower");
}

TEST_F(CliTest, RejectsMissingLowerAmongSeveral) {
  expect_rejected(mount_cmd(store_, {lower_, tmp_->sub("no-such-dir")}, mnt_),
                  "second lower missing");
}

TEST_F(CliTest, RejectsLowerThatIsAFile) {
  expect_rejected(mount_cmd(store_, {lower_ + "/file.txt"}, mnt_), "lower is a file");
}

TEST_F(CliTest, RejectsNoLowerAtAll) {
  expect_rejected({cowfs_bin(), "mount", "--store", store_, mnt_}, "no --lower");
}

TEST_F(CliTest, RejectsMissingStoreOption) {
  expect_rejected({cowfs_bin(), "mount", "--lower", lower_, mnt_}, "no --store");
}

TEST_F(CliTest, RejectsMissingMountpointArgument) {
  expect_rejected({cowfs_bin(), "mount", "--store", store_, "--lower", lower_}, "no mountpoint");
}

TEST_F(CliTest, RejectsStoreInsideLower) {
  expect_rejected(mount_cmd(lower_ + "/sub/store", {lower_}, mnt_), "store inside the lower");
}

TEST_F(CliTest, RejectsStoreThatIsTheLower) {
  expect_rejected(mount_cmd(lower_, {lower_}, mnt_), "store is the lower");
}

TEST_F(CliTest, RejectsStoreInsideLowerViaSymlink) {
  ASSERT_EQ(err(::symlink(lower_.c_str(), tmp_->sub("link-to-lower").c_str())), 0);
  expect_rejected(mount_cmd(tmp_->sub("link-to-lower/store"), {lower_}, mnt_),
                  "store inside the lower, named through a symlink");
}

TEST_F(CliTest, RejectsStoreInsideLowerViaRelativePaths) {
  expect_rejected({cowfs_bin(), "mount", "--store", "./store", "--lower", ".", "../mnt"},
                  "store inside the lower, relative paths", {.cwd = lower_, .timeout = 60s});
}

TEST_F(CliTest, RejectsStoreInsideSecondLower) {
  std::string l2 = tmp_->mkdir("lower2");
  expect_rejected(mount_cmd(l2 + "/store", {lower_, l2}, mnt_), "store inside the second lower");
}

TEST_F(CliTest, RejectsLowerInsideStore) {
  tmp_->mkdir("store/data");
  write_file(store_ + "/data/f", "f");
  expect_rejected(mount_cmd(store_, {store_ + "/data"}, mnt_), "lower inside the store");
}

TEST_F(CliTest, RejectsLowerInsideAnExistingStore) {
  make_store(store_);
  tmp_->mkdir("store/data");
  expect_rejected(mount_cmd(store_, {lower_, store_ + "/data"}, mnt_), "lower inside a real store");
}

TEST_F(CliTest, RejectsMountpointInsideStore) {
  make_store(store_);
  std::string inner = tmp_->mkdir("store/mnt");
  expect_rejected(mount_cmd(store_, {lower_}, inner), "mountpoint inside the store");
}

TEST_F(CliTest, RejectsMountpointInsideStoreViaDotDot) {
  make_store(store_);
  tmp_->mkdir("store/mnt");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_ + "/../store/mnt"),
                  "mountpoint inside the store, through ..");
}

TEST_F(CliTest, RejectsMountpointThatIsTheStore) {
  make_store(store_);
  expect_rejected(mount_cmd(store_, {lower_}, store_, {"-o", "nonempty"}),
                  "mountpoint is the store");
}

TEST_F(CliTest, RejectsMountpointInsideLower) {
  expect_rejected(mount_cmd(store_, {lower_}, lower_ + "/sub"), "mountpoint inside the lower");
}

TEST_F(CliTest, RejectsMountpointThatIsTheLower) {
  expect_rejected(mount_cmd(store_, {lower_}, lower_, {"-o", "nonempty"}),
                  "mountpoint is the lower");
}

TEST_F(CliTest, RejectsMissingMountpoint) {
  expect_rejected(mount_cmd(store_, {lower_}, tmp_->sub("no-such-mnt")), "missing mountpoint");
}

TEST_F(CliTest, RejectsMountpointThatIsAFile) {
  write_file(tmp_->sub("mnt-file"), "x");
  expect_rejected(mount_cmd(store_, {lower_}, tmp_->sub("mnt-file")), "mountpoint is a file");
}

TEST_F(CliTest, RejectsNonEmptyMountpointUnlessNonempty) {
  write_file(mnt_ + "/existing", "x");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "non-empty mountpoint");
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {"-o", "nonempty"}, {}});
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\n");
  EXPECT_EQ(m.unmount(), "");
  EXPECT_EQ(read_file(mnt_ + "/existing"), "x");
}

TEST_F(CliTest, RejectsUnknownFlag) {
  auto argv = mount_cmd(store_, {lower_}, mnt_);
  argv.insert(argv.begin() + 2, "--frobnicate");
  expect_rejected(argv, "unknown flag");
}

TEST_F(CliTest, RejectsUnknownMountOption) {
  expect_rejected(mount_cmd(store_, {lower_}, mnt_, {"-o", "frobnicate"}), "unknown -o option");
}

TEST_F(CliTest, RejectsUnknownOptionAmongKnown) {
  expect_rejected(mount_cmd(store_, {lower_}, mnt_, {"-o", "nonempty,frobnicate"}),
                  "unknown -o option after a known one");
}

TEST_F(CliTest, RejectsBadLogLevel) {
  expect_rejected(mount_cmd(store_, {lower_}, mnt_, {"--log-level", "loud"}), "bad log level");
}

TEST_F(CliTest, RejectsUnknownSubcommand) {
  expect_rejected({cowfs_bin(), "frobnicate", mnt_}, "unknown subcommand");
}

TEST_F(CliTest, RejectsIncompatibleStoreFormat) {
  tmp_->mkdir("store");
  write_file(store_ + "/format", "cowfs-store 999\n");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "store format 999");
}

TEST_F(CliTest, RejectsIncompatibleFormatOfARealStore) {
  make_store(store_);
  write_file(store_ + "/format", "cowfs-store 999\n");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "real store, format 999");
}

TEST_F(CliTest, RejectsGarbageFormatFile) {
  tmp_->mkdir("store");
  write_file(store_ + "/format", "hello\n");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "garbage format file");
}

TEST_F(CliTest, RejectsNonEmptyDirectoryThatIsNotAStore) {
  tmp_->mkdir("store/photos");
  write_file(store_ + "/important.txt", "do not touch\n");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "non-empty non-store");
}

TEST_F(CliTest, RejectsStoreThatIsAFile) {
  write_file(store_, "x");
  expect_rejected(mount_cmd(store_, {lower_}, mnt_), "store is a file");
}

TEST_F(CliTest, RejectsStoreThatIsInUse) {
  CowfsMount first(MountSpec{store_, {lower_}, mnt_, {}, {}});
  std::string mnt2 = tmp_->mkdir("mnt2");
  RunResult r = run(mount_cmd(store_, {lower_}, mnt2));
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_FALSE(is_mounted(mnt2));
  EXPECT_TRUE(is_mounted(mnt_));
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\n") << "the first mount must be unharmed";
  EXPECT_EQ(first.unmount(), "");
}

TEST_F(CliTest, UmountOfSomethingNotMounted) {
  RunResult r = run({cowfs_bin(), "umount", mnt_});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.err_lines().size(), 1u) << r.err;
  RunResult m = run({cowfs_bin(), "umount", tmp_->sub("no-such-dir")});
  EXPECT_NE(m.exit_code, 0) << m.describe();
  EXPECT_EQ(m.err_lines().size(), 1u) << m.err;
}

TEST_F(CliTest, MountCreatesTheStoreAndReturnsWhenLive) {
  RunResult r = run(mount_cmd(store_, {lower_}, mnt_));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  // Live the moment mount returns: no waiting here.
  EXPECT_TRUE(is_mounted(mnt_));
  EXPECT_FALSE(r.stdio_held) << "the daemon keeps the caller's stdout/stderr open, so "
                                "out=$(cowfs mount ...) would hang";
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\n");
  std::string format = read_file(store_ + "/format");
  EXPECT_EQ(format.rfind("cowfs-store ", 0), 0u) << format;
  struct stat st {};
  EXPECT_EQ(err(::stat((store_ + "/stack").c_str(), &st)), 0);
  EXPECT_EQ(err(::stat((store_ + "/cowfs.log").c_str(), &st)), 0) << "logs go to STORE/cowfs.log";
  auto daemons = cowfs_daemons(mnt_);
  EXPECT_EQ(daemons.size(), 1u);
  RunResult u = run({cowfs_bin(), "umount", mnt_});
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_FALSE(is_mounted(mnt_));
  for (pid_t pid : daemons) {
    EXPECT_TRUE(wait_until([&] { return !process_alive(pid); }, 10s)) << "daemon " << pid;
  }
}

TEST_F(CliTest, MountIntoAnEmptyExistingStoreDirectory) {
  tmp_->mkdir("store");
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {}});
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\n");
  EXPECT_EQ(m.unmount(), "");
}

TEST_F(CliTest, UmountThenMountAgainAtOnce) {
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    RunResult r = run(mount_cmd(store_, {lower_}, mnt_));
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    if (i > 0) {
      EXPECT_EQ(read_file(mnt_ + "/round"), std::to_string(i - 1));
    }
    write_file(mnt_ + "/round", std::to_string(i));
    RunResult u = run({cowfs_bin(), "umount", mnt_});
    ASSERT_EQ(u.exit_code, 0) << u.describe();
    ASSERT_FALSE(is_mounted(mnt_));
  }
}

TEST_F(CliTest, UmountWithFusermount) {
  {
    CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {}});
    write_file(mnt_ + "/kept", "kept");
    pid_t daemon = m.daemon_pid();
    RunResult r = run({"fusermount3", "-u", mnt_});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_FALSE(is_mounted(mnt_));
    EXPECT_TRUE(wait_until([&] { return daemon <= 0 || !process_alive(daemon); }, 10s))
        << "the daemon should exit when unmounted by fusermount3";
    EXPECT_EQ(m.unmount(), "") << "nothing left to do";
  }
  CowfsMount again(MountSpec{store_, {lower_}, mnt_, {}, {}});
  EXPECT_EQ(read_file(mnt_ + "/kept"), "kept");
  EXPECT_EQ(again.unmount(), "");
}

TEST_F(CliTest, ForegroundMount) {
  Process p(mount_cmd(store_, {lower_}, mnt_, {"--foreground", "--log-level", "debug"}));
  ASSERT_TRUE(wait_until([&] { return is_mounted(mnt_) || p.exited(); }, 30s));
  ASSERT_TRUE(is_mounted(mnt_)) << "foreground mount exited: " << p.wait(1s).describe();
  EXPECT_FALSE(p.exited()) << "--foreground must stay in the foreground";
  write_file(mnt_ + "/fg", "foreground");
  EXPECT_EQ(read_file(mnt_ + "/fg"), "foreground");
  RunResult u = run({cowfs_bin(), "umount", mnt_});
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  RunResult r = p.wait(20s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(is_mounted(mnt_));
}

TEST_F(CliTest, RelativePaths) {
  RunOptions in_tmp{.cwd = tmp_->path(), .timeout = 60s};
  RunResult r = run({cowfs_bin(), "mount", "--store", "store", "--lower", "lower", "mnt"}, in_tmp);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(is_mounted(mnt_));
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\n");
  write_file(mnt_ + "/rel", "rel");
  RunResult u = run({cowfs_bin(), "umount", "mnt"}, in_tmp);
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_FALSE(is_mounted(mnt_));
  struct stat st {};
  EXPECT_EQ(err(::stat((store_ + "/format").c_str(), &st)), 0) << "store made at " << store_;
}

TEST_F(CliTest, RemountAfterKill9KeepsWhatWasFsynced) {
  {
    CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {}});
    {
      Fd fd = open_or_throw(mnt_ + "/durable", O_WRONLY | O_CREAT | O_EXCL, 0644);
      write_fd_all(fd.get(), "fsynced data");
      ASSERT_EQ(err(::fsync(fd.get())), 0);
    }
    {
      Fd fd = open_or_throw(mnt_ + "/file.txt", O_WRONLY | O_APPEND);
      write_fd_all(fd.get(), "appended\n");
      ASSERT_EQ(err(::fsync(fd.get())), 0);
    }
    pid_t daemon = m.daemon_pid();
    ASSERT_GT(daemon, 0);
    ASSERT_EQ(::kill(daemon, SIGKILL), 0);
    ASSERT_TRUE(wait_until([&] { return !process_alive(daemon); }, 10s));
    // `cowfs umount` cleans up the dead mount.
    RunResult u = run({cowfs_bin(), "umount", mnt_});
    EXPECT_EQ(u.exit_code, 0) << "cowfs umount of a mount whose daemon died: " << u.describe();
    EXPECT_FALSE(is_mounted(mnt_));
    (void)m.unmount();  // forced cleanup if the above failed
  }
  CowfsMount again(MountSpec{store_, {lower_}, mnt_, {}, {}});
  EXPECT_EQ(read_file(mnt_ + "/durable"), "fsynced data");
  EXPECT_EQ(read_file(mnt_ + "/file.txt"), "lower file\nappended\n");
  EXPECT_EQ(read_file(lower_ + "/file.txt"), "lower file\n");
  EXPECT_EQ(again.unmount(), "");
}

}  // namespace
}  // namespace cowfs_it
