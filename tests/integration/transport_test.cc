// How a mount talks to the kernel: FUSE over io_uring (--io uring, or auto
// where the fuse module allows it) or /dev/fuse (--io dev, or auto where it
// does not). Each test sets the module parameter it needs and puts the old
// value back. The rest of the suite runs on whichever transport auto picks
// (scripts/test.sh turns the parameter on); these tests pin each one down.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <regex>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

uint64_t requests_of(const std::string& transport) {
  static const std::regex n(", ([0-9]+) requests$");
  std::smatch m;
  if (!std::regex_search(transport, m, n)) throw std::runtime_error("no count in " + transport);
  return std::stoull(m[1]);
}

// A mix of what the kernel sends: creates, writes big and small, reads,
// renames, unlinks, xattrs, direct I/O. Checks what it reads back.
void exercise(const std::string& mnt) {
  for (int i = 0; i < 100; ++i) {
    write_file(mnt + "/f" + std::to_string(i), "file " + std::to_string(i) + "\n");
  }
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(read_file(mnt + "/f" + std::to_string(i)), "file " + std::to_string(i) + "\n");
  }
  for (int i = 0; i < 50; ++i) {
    const std::string f = mnt + "/f" + std::to_string(i);
    ASSERT_EQ(err(::rename(f.c_str(), (f + ".moved").c_str())), 0);
    ASSERT_EQ(err(::unlink((f + ".moved").c_str())), 0);
  }
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  write_file(mnt + "/big", big);
  EXPECT_TRUE(read_file(mnt + "/big") == big) << "3 MiB read back differ";
  ASSERT_EQ(err(::setxattr((mnt + "/big").c_str(), "user.k", "v", 1, 0)), 0);
  char v[8] = {};
  EXPECT_EQ(::getxattr((mnt + "/big").c_str(), "user.k", v, sizeof v), 1);

  // Direct I/O: the data comes page-aligned out of the ring entry.
  Fd fd(::open((mnt + "/direct").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644));
  ASSERT_GE(fd.get(), 0) << errno_name(errno);
  void* mem = nullptr;
  ASSERT_EQ(::posix_memalign(&mem, 4096, 65536), 0);
  std::unique_ptr<void, decltype(&std::free)> buf(mem, &std::free);
  std::memset(mem, 'd', 65536);
  ASSERT_EQ(::pwrite(fd.get(), mem, 65536, 0), 65536) << errno_name(errno);
  std::memset(mem, 0, 65536);
  ASSERT_EQ(::pread(fd.get(), mem, 65536, 0), 65536) << errno_name(errno);
  EXPECT_EQ(static_cast<char*>(mem)[65535], 'd');
}

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "setting the fuse module's parameter needs root";
    ::umask(022);
    tmp_ = std::make_unique<TempDir>("cowfs-transport");
    lower_ = tmp_->mkdir("lower");
    write_file(lower_ + "/lower.txt", "from production\n");
    mnt_ = tmp_->mkdir("mnt");
    store_ = tmp_->sub("store");
  }
  void TearDown() override { tmp_.reset(); }

  std::unique_ptr<TempDir> tmp_;
  std::string lower_, mnt_, store_;
};

TEST_F(TransportTest, IoUringServesTheRequests) {
  UringParameter on(true);
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {"--io", "uring"}, {}});
  const std::string before = mount_transport(store_);
  ASSERT_EQ(before.rfind("io_uring: ", 0), 0u) << before;
  exercise(mnt_);
  EXPECT_EQ(read_file(mnt_ + "/lower.txt"), "from production\n");
  const std::string after = mount_transport(store_);
  // At least a create, a write and a release per small file went through
  // the rings, not /dev/fuse.
  EXPECT_GE(requests_of(after) - requests_of(before), 300u) << before << " -> " << after;
  EXPECT_EQ(m.unmount(), "");
}

TEST_F(TransportTest, AutoTakesIoUringWhereTheModuleAllowsIt) {
  UringParameter on(true);
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {"env", "-u", "COWFS_IO"}});
  EXPECT_EQ(mount_transport(store_).rfind("io_uring: ", 0), 0u);
  EXPECT_EQ(m.unmount(), "");
}

TEST_F(TransportTest, DevFuseWhenAskedOnTheCommandLineOrInTheEnvironment) {
  UringParameter on(true);
  {
    CowfsMount m(MountSpec{store_, {lower_}, mnt_, {"--io", "dev"}, {}});
    EXPECT_EQ(mount_transport(store_), "/dev/fuse (--io dev)");
    exercise(mnt_);
    EXPECT_EQ(m.unmount(), "");
  }
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {"env", "COWFS_IO=dev"}});
  EXPECT_EQ(mount_transport(store_), "/dev/fuse (--io dev)");
  EXPECT_EQ(read_file(mnt_ + "/big").size(), 3u << 20) << "the first mount's data is gone";
  EXPECT_EQ(m.unmount(), "");
}

TEST_F(TransportTest, AutoFallsBackToDevFuseAndSaysWhy) {
  UringParameter off(false);
  CowfsMount m(MountSpec{store_, {lower_}, mnt_, {}, {"env", "-u", "COWFS_IO"}});
  const std::string t = mount_transport(store_);
  EXPECT_EQ(t.rfind("/dev/fuse (", 0), 0u) << t;
  EXPECT_NE(t.find("enable_uring parameter is off"), std::string::npos) << t;
  exercise(mnt_);
  EXPECT_EQ(m.unmount(), "");
}

TEST_F(TransportTest, IoUringWhereItIsOffIsRefusedWithTheCause) {
  UringParameter off(false);
  auto mounts_before = mounts_under(tmp_->path());
  RunResult r = run(mount_argv(MountSpec{store_, {lower_}, mnt_, {"--io", "uring"}, {}}));
  EXPECT_NE(r.exit_code, 0) << r.describe();
  auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find("enable_uring"), std::string::npos) << lines[0];
  EXPECT_EQ(mounts_under(tmp_->path()), mounts_before) << "a refused mount left a mount";
  EXPECT_FALSE(is_mounted(mnt_));
  struct stat st {};
  EXPECT_NE(::stat(store_.c_str(), &st), 0) << "a refused mount created the store";
}

TEST_F(TransportTest, AnUnknownTransportInTheEnvironmentIsRefused) {
  RunResult r = run([&] {
    std::vector<std::string> argv = {"env", "COWFS_IO=fast"};
    auto m = mount_argv(MountSpec{store_, {lower_}, mnt_, {}, {}});
    argv.insert(argv.end(), m.begin(), m.end());
    return argv;
  }());
  EXPECT_NE(r.exit_code, 0);
  auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find("COWFS_IO"), std::string::npos) << lines[0];
  EXPECT_FALSE(is_mounted(mnt_));
}

}  // namespace
}  // namespace cowfs_it
