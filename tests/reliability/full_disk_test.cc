// Full disk: the store on a small loop-mounted ext4 image (-m 0, so root
// has no reserve either), filled during a whole-file copy-up, a chunked
// write and a checkpoint. Writes must fail with ENOSPC, the mount must stay
// usable, everything must work again once space is freed, and nothing
// already written may be lost (also after a remount).
//
// ext4 rather than a size-limited tmpfs: the store keeps its markers in
// user.* xattrs, which tmpfs on this kernel does not support.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tests/reliability/crash_env.h"
#include "tests/reliability/rel_util.h"

namespace cowfs_rel {
namespace {

using namespace cowfs_it;
using namespace std::chrono_literals;

constexpr size_t kMiB = 1024 * 1024;

// A small ext4 filesystem mounted at dir (unmounted by the TempDir holding it).
std::string make_small_fs(TempDir& tmp, const std::string& name, size_t mib) {
  std::string img = tmp.sub(name + ".img");
  std::string dir = tmp.mkdir(name);
  Fd fd = open_or_throw(img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (::ftruncate(fd.get(), static_cast<off_t>(mib * kMiB)) != 0)
    throw std::runtime_error("truncate");
  fd.reset();
  RunResult mk = run({"mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", img});
  if (mk.exit_code != 0) throw std::runtime_error("mkfs.ext4: " + mk.describe());
  RunResult mt = run({"mount", "-o", "loop", img, dir});
  if (mt.exit_code != 0) throw std::runtime_error("mount -o loop: " + mt.describe());
  return dir;
}

int64_t free_bytes(const std::string& path) {
  struct statvfs sv {};
  if (::statvfs(path.c_str(), &sv) != 0) return -1;
  return static_cast<int64_t>(sv.f_bavail) * static_cast<int64_t>(sv.f_frsize);
}

// open + pwrite + fsync + close; the errno of the first failing call, or 0.
int write_sync(const std::string& path, const std::string& data, off_t off, int flags = 0) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644));
  if (!fd) return errno;
  for (size_t done = 0; done < data.size();) {
    ssize_t n =
        ::pwrite(fd.get(), data.data() + done, data.size() - done, off + static_cast<off_t>(done));
    if (n < 0) return errno;
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return errno;
  if (::close(fd.release()) != 0) return errno;
  return 0;
}

// Fills the filesystem under the mount through `path` (1 MiB, then 4 KiB
// pieces, each fsynced) until a write fails; returns that errno.
int fill(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) return errno;
  for (size_t piece : {kMiB, size_t{4096}}) {
    std::string block(piece, 'F');
    for (int i = 0; i < 100000; ++i) {
      ssize_t n = ::write(fd.get(), block.data(), block.size());
      int e = n < 0 ? errno : (::fsync(fd.get()) != 0 ? errno : 0);
      if (e == 0 && n == static_cast<ssize_t>(block.size())) continue;
      if (e == 0) e = ENOSPC;  // short write
      if (piece == 4096) return e;
      if (e != ENOSPC) return e;
      break;
    }
  }
  return 0;
}

void populate_big(const std::string& root) {
  write_file(root + "/keep-lower.txt", "lower file\n");
  write_file(root + "/big.bin", pattern(8 * kMiB, 7));
  write_file(root + "/huge.bin", pattern(48 * kMiB, 8));
}

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for the loop mount and the read-only bind";
  }
  void start(std::vector<std::string> extra_args = {}) {
    env_ = std::make_unique<CrashEnv>("cowfs-full", populate_big, std::move(extra_args));
    small_ = make_small_fs(env_->tmp(), "small", 32);
    env_->set_store(small_ + "/store");
    env_->mount_now();
  }
  void TearDown() override {
    if (!env_) return;
    EXPECT_EQ(env_->unmount(), "");
    EXPECT_EQ(env_->lower_changes(), "") << "the lower changed";
    env_.reset();
  }
  // The mount answers and the daemon is alive.
  void expect_usable(const std::string& when) {
    SCOPED_TRACE(when);
    EXPECT_TRUE(process_alive(env_->mount()->daemon_pid())) << "the daemon died";
    EXPECT_NO_THROW(list_dir(env_->mnt()));
    EXPECT_EQ(read_file(env_->m("keep-lower.txt")), "lower file\n");
    EXPECT_EQ(read_file(env_->m("keep.txt")), "written before the disk filled\n")
        << "data written before the disk filled was lost";
  }

  std::unique_ptr<CrashEnv> env_;
  std::string small_;
};

TEST_F(FullDiskTest, WholeFileCopyUpLargerThanTheFreeSpace) {
  start({"--chunk-threshold", std::to_string(1024 * kMiB)});  // no chunking: whole copy-up
  ASSERT_EQ(write_sync(env_->m("keep.txt"), "written before the disk filled\n", 0, O_CREAT), 0);
  const int64_t before = free_bytes(small_);
  ASSERT_LT(before, static_cast<int64_t>(48 * kMiB))
      << "the test needs a disk smaller than huge.bin";

  int e = write_sync(env_->m("huge.bin"), "X", 0);
  EXPECT_EQ(e, ENOSPC) << "writing into a lower file bigger than the free space: got "
                       << errno_name(e);
  EXPECT_EQ(first_difference(pattern(48 * kMiB, 8), read_file(env_->m("huge.bin"))), "")
      << "a failed copy-up must leave the lower's content visible";
  // No partial copy left behind: the space comes back.
  EXPECT_TRUE(wait_until([&] { return free_bytes(small_) >= before - int64_t(256 * 1024); }, 20s))
      << "free space before " << before << ", now " << free_bytes(small_)
      << ": the half-done copy-up was not removed";
  expect_usable("after the failed copy-up");
  EXPECT_EQ(write_sync(env_->m("after.txt"), "after\n", 0, O_CREAT), 0);

  ASSERT_NO_THROW(env_->unmount());
  ASSERT_NO_THROW(env_->mount_now());
  expect_usable("after a remount");
  EXPECT_EQ(first_difference(pattern(48 * kMiB, 8), read_file(env_->m("huge.bin"))), "");
  EXPECT_EQ(read_file(env_->m("after.txt")), "after\n");
}

TEST_F(FullDiskTest, ChunkedWriteOnAFullDisk) {
  start();
  std::string model = pattern(8 * kMiB, 7);
  ASSERT_EQ(write_sync(env_->m("keep.txt"), "written before the disk filled\n", 0, O_CREAT), 0);
  std::string first = pattern(64 * 1024, 70);
  ASSERT_EQ(write_sync(env_->m("big.bin"), first, 0), 0);
  model.replace(0, first.size(), first);

  EXPECT_EQ(fill(env_->m("filler")), ENOSPC) << "filling the disk through the mount";
  const std::string second = pattern(256 * 1024, 71);
  const off_t at = 4 * kMiB;
  int e = write_sync(env_->m("big.bin"), second, at);
  EXPECT_EQ(e, ENOSPC) << "a chunked write on a full disk: got " << errno_name(e);
  {
    std::string got = read_file(env_->m("big.bin"));
    ASSERT_EQ(got.size(), model.size());
    for (size_t i = 0; i < got.size(); ++i) {
      bool in_range = i >= static_cast<size_t>(at) && i < at + second.size();
      if (got[i] == model[i] || (in_range && got[i] == second[i - at])) continue;
      ADD_FAILURE() << "big.bin byte " << i << " is neither the old nor the new data after a "
                    << "failed chunked write: got 0x" << std::hex
                    << (static_cast<unsigned>(got[i]) & 0xff) << ", old 0x"
                    << (static_cast<unsigned>(model[i]) & 0xff) << std::dec;
      break;
    }
  }
  expect_usable("with the disk full");

  ASSERT_EQ(err(::unlink(env_->m("filler").c_str())), 0);
  EXPECT_TRUE(wait_until([&] { return free_bytes(small_) > int64_t(8 * kMiB); }, 20s))
      << "deleting the filler did not free its space (free: " << free_bytes(small_) << ")";
  EXPECT_EQ(write_sync(env_->m("big.bin"), second, at), 0) << "after freeing space";
  model.replace(static_cast<size_t>(at), second.size(), second);
  EXPECT_EQ(first_difference(model, read_file(env_->m("big.bin"))), "");
  EXPECT_EQ(write_sync(env_->m("after.txt"), "after\n", 0, O_CREAT), 0);
  expect_usable("after freeing space");

  ASSERT_NO_THROW(env_->unmount());
  ASSERT_NO_THROW(env_->mount_now());
  expect_usable("after a remount");
  EXPECT_EQ(first_difference(model, read_file(env_->m("big.bin"))), "") << "after a remount";
}

TEST_F(FullDiskTest, CheckpointOnAFullDisk) {
  start();
  ASSERT_EQ(write_sync(env_->m("keep.txt"), "written before the disk filled\n", 0, O_CREAT), 0);
  EXPECT_EQ(fill(env_->m("filler")), ENOSPC);
  const std::string stack_before = slurp(env_->store() + "/stack");
  const auto layers_before = sorted(list_dir(env_->store() + "/layers"));

  RunResult cp = cowfs({"checkpoint", "--store", env_->store(), "full"});
  if (cp.exit_code != 0) {
    EXPECT_EQ(check_one_line_error(cp, {}), "") << "checkpoint on a full disk";
    EXPECT_EQ(slurp(env_->store() + "/stack"), stack_before)
        << "a failed checkpoint changed the stack";
    EXPECT_EQ(sorted(list_dir(env_->store() + "/layers")), layers_before)
        << "a failed checkpoint left a layer directory behind";
    expect_usable("after the failed checkpoint");
    ASSERT_EQ(err(::unlink(env_->m("filler").c_str())), 0);
    EXPECT_TRUE(wait_until([&] { return free_bytes(small_) > int64_t(8 * kMiB); }, 20s));
    cp = cowfs({"checkpoint", "--store", env_->store(), "full"});
    EXPECT_EQ(cp.exit_code, 0) << "checkpoint after freeing space: " << cp.describe();
  } else {
    // It fit: then it must be a real checkpoint.
    std::cerr << "note: the checkpoint fit on the full disk\n";
  }
  RunResult layers = cowfs({"layers", "--store", env_->store()});
  EXPECT_NE(layers.out.find("full"), std::string::npos) << layers.describe();
  EXPECT_EQ(write_sync(env_->m("after.txt"), "after\n", 0, O_CREAT), 0) << "writing after it";
  RunResult rw = cowfs({"rewind", "--store", env_->store(), "full"});
  EXPECT_EQ(rw.exit_code, 0) << rw.describe();
  struct stat st {};
  EXPECT_EQ(err(::stat(env_->m("after.txt").c_str(), &st)), ENOENT) << "rewind to 'full'";
  expect_usable("after checkpoint and rewind");
  ASSERT_NO_THROW(env_->unmount());
  ASSERT_NO_THROW(env_->mount_now());
  expect_usable("after a remount");
}

}  // namespace
}  // namespace cowfs_rel
