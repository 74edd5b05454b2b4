// Durability errors of the mounted daemon reach the user: close(2), `cowfs
// checkpoint` and `cowfs umount` fail, with the errno, when the store cannot
// save or sync what they must. The daemon's calls are failed with the
// test-only COWFS_TEST_FAULTS variable (cowfs/sys/fault_env.h).
#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class DurabilityIT : public CowfsTest {
 protected:
  // Replaces the fixture's mount by one whose daemon fails the calls that
  // faults describes.
  // big.bin is copied up (by chunk) first, on the healthy mount: with the
  // faults armed, only the saves of later writes fail.
  void remount_with_faults(const std::string& faults) {
    {
      Fd fd(::open(mnt("big.bin").c_str(), O_RDWR | O_CLOEXEC));
      ASSERT_TRUE(fd) << errno_name(errno);
      ASSERT_EQ(::pwrite(fd.get(), "x", 1, 0), 1);
      ASSERT_EQ(err(::close(fd.release())), 0);
    }
    ASSERT_EQ(mount().unmount(), "");
    MountSpec spec = mount().spec();
    spec.run_as = {"env", "COWFS_TEST_FAULTS=" + faults};
    faulty_ = std::make_unique<CowfsMount>(spec);
  }
  void TearDown() override {
    if (faulty_) {
      // The daemon fails its own last flush too: leave by fusermount3.
      run({"fusermount3", "-u", mnt()}, {.cwd = "", .timeout = 30s});
      faulty_.reset();
    }
    CowfsTest::TearDown();
  }
  RunResult cowfs(const std::vector<std::string>& args) {
    std::vector<std::string> argv{cowfs_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  // Dirties a chunk of the (chunked) big lower file through the mount;
  // returns close's errno.
  int write_big_and_close() {
    Fd fd(::open(mnt("big.bin").c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
      ADD_FAILURE() << "open: " << errno_name(errno);
      return -1;
    }
    if (::pwrite(fd.get(), "hello", 5, 1 << 20) != 5) return -2;
    return err(::close(fd.release()));
  }

  std::unique_ptr<CowfsMount> faulty_;
};

TEST_F(DurabilityIT, CloseReportsAChunkMapThatCannotBeSaved) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no chunk maps";
  remount_with_faults("rename:.map=EIO");
  EXPECT_EQ(write_big_and_close(), EIO) << "close(2) must report the map it could not save";
}

TEST_F(DurabilityIT, UmountReportsAndKeepsTheMountWhenDataCannotBeSaved) {
  if (reference_mode()) GTEST_SKIP() << "no daemon";
  remount_with_faults("rename:.map=EIO");
  EXPECT_EQ(write_big_and_close(), EIO);
  RunResult r = cowfs({"umount", mnt()});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  ASSERT_EQ(r.err_lines().size(), 1u) << r.describe();
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("still mounted"), std::string::npos) << r.err;
  EXPECT_TRUE(is_mounted(mnt())) << "the mount was given up with unsaved data";
  EXPECT_EQ(read_file(mnt("big.bin")).substr(1 << 20, 5), "hello");
  // Given up by force, the daemon records why its last flush failed, and
  // exits.
  const pid_t daemon = faulty_->daemon_pid();
  ASSERT_EQ(run({"fusermount3", "-u", mnt()}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return !process_alive(daemon); }, 15s));
  std::ifstream in(store() + "/unmount-error");
  std::string why;
  EXPECT_TRUE(std::getline(in, why));
  EXPECT_NE(why.find("cannot save the chunk maps at unmount"), std::string::npos) << why;
  faulty_.reset();
}

TEST_F(DurabilityIT, UmountReportsWhatTheDaemonCouldNotSaveAtTheEnd) {
  if (reference_mode()) GTEST_SKIP() << "no daemon";
  // As the daemon leaves it when its final flush fails (see above); a
  // mount clears a stale one.
  ASSERT_EQ(mount().unmount(), "");
  { std::ofstream(store() + "/unmount-error") << "stale\n"; }
  faulty_ = std::make_unique<CowfsMount>(mount().spec());
  EXPECT_FALSE(std::ifstream(store() + "/unmount-error").good()) << "a stale report survived";
  { std::ofstream(store() + "/unmount-error") << "cannot save the chunk maps: test\n"; }
  RunResult r = cowfs({"umount", mnt()});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("unmounted " + mnt() + ", but cannot save the chunk maps: test"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(is_mounted(mnt()));
  faulty_.reset();
}

TEST_F(DurabilityIT, CheckpointFailsAndChangesNothingWhenTheStoreCannotSync) {
  if (reference_mode()) GTEST_SKIP() << "no layers";
  remount_with_faults("syncfs=EIO");
  write_file(mnt("new.txt"), "new\n");
  RunResult before = cowfs({"layers", "--store", store()});
  ASSERT_EQ(before.exit_code, 0) << before.describe();
  RunResult r = cowfs({"checkpoint", "--store", store(), "A"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  ASSERT_EQ(r.err_lines().size(), 1u) << r.describe();
  EXPECT_NE(r.err.find("nothing was changed"), std::string::npos) << r.err;
  RunResult after = cowfs({"layers", "--store", store()});
  EXPECT_EQ(after.out, before.out) << "the failed checkpoint changed the stack";
  EXPECT_EQ(read_file(mnt("new.txt")), "new\n");
}

TEST_F(DurabilityIT, CheckpointFailsWhenAChunkMapCannotBeMadeDurable) {
  if (reference_mode()) GTEST_SKIP() << "no layers";
  remount_with_faults("rename:.map=ENOSPC");
  EXPECT_EQ(write_big_and_close(), ENOSPC);
  RunResult r = cowfs({"checkpoint", "--store", store(), "A"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  RunResult layers = cowfs({"layers", "--store", store()});
  EXPECT_EQ(layers.out.find("\nA "), std::string::npos) << layers.out;
}

}  // namespace
}  // namespace cowfs_it
