// O_DIRECT through a cowfs mount: aligned direct reads and writes on a lower
// file, a whole-file copy, a chunked copy and a new file, with and without
// the kernel's writeback cache (databases such as InnoDB write this way).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

constexpr size_t kBlock = 4096;
constexpr size_t kMidSize = 256 * 1024;  // below the chunk threshold: copied whole
constexpr off_t kMiB = 1024 * 1024;

std::string mid_content() { return pattern(kMidSize, 7); }

// A buffer aligned for O_DIRECT.
struct Aligned {
  explicit Aligned(size_t n) : size(n) {
    void* p = nullptr;
    if (::posix_memalign(&p, kBlock, n) != 0) throw std::bad_alloc();
    mem.reset(static_cast<char*>(p));
  }
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> mem;
  size_t size;
};

// One pwrite of data at off from an aligned buffer: "" or what went wrong.
std::string direct_write(int fd, std::string_view data, off_t off) {
  Aligned buf(data.size());
  std::memcpy(buf.mem.get(), data.data(), data.size());
  ssize_t n = ::pwrite(fd, buf.mem.get(), data.size(), off);
  if (n < 0) return errno_name(errno);
  if (static_cast<size_t>(n) != data.size()) return "short write: " + std::to_string(n);
  return "";
}

// One pread of n bytes at off into an aligned buffer.
std::string direct_read(int fd, size_t n, off_t off) {
  Aligned buf(n);
  ssize_t r = ::pread(fd, buf.mem.get(), n, off);
  if (r < 0) throw std::system_error(errno, std::generic_category(), "O_DIRECT pread");
  return std::string(buf.mem.get(), static_cast<size_t>(r));
}

std::string patched(std::string s, off_t off, std::string_view patch) {
  if (s.size() < off + patch.size()) s.resize(off + patch.size(), '\0');
  s.replace(static_cast<size_t>(off), patch.size(), patch);
  return s;
}

// Param: whether the mount keeps the kernel's writeback cache (the default).
class DirectIoTest : public CowfsTest, public ::testing::WithParamInterface<bool> {
 protected:
  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    if (index == 0) write_file(root + "/mid.bin", mid_content());
  }
  std::vector<std::string> mount_args() const override {
    if (GetParam()) return {};
    return {"-o", "no_writeback_cache"};
  }
};

TEST_P(DirectIoTest, ReadsOfLowerFilesCopyNothing) {
  for (const auto& [name, content] : std::vector<std::pair<std::string, std::string>>{
           {"mid.bin", mid_content()}, {"big.bin", big_content()}}) {
    Fd fd = open_or_throw(mnt(name), O_RDONLY | O_DIRECT);
    EXPECT_EQ(direct_read(fd.get(), kBlock, 2 * kBlock), content.substr(2 * kBlock, kBlock))
        << name;
    EXPECT_EQ(direct_read(fd.get(), 4 * kBlock, 60 * 1024), content.substr(60 * 1024, 4 * kBlock))
        << name;
    const off_t tail = static_cast<off_t>(content.size() - kBlock);
    EXPECT_EQ(direct_read(fd.get(), 4 * kBlock, tail), content.substr(tail)) << name << " at EOF";
  }
  expect_top_empty("after direct reads");
}

TEST_P(DirectIoTest, WritesIntoAWholeFileCopy) {
  std::string want = mid_content();
  // Cached pages of the file: the direct writes below must not leave them stale.
  ASSERT_EQ(first_difference(want, read_file(mnt("mid.bin"))), "");
  {
    Fd fd = open_or_throw(mnt("mid.bin"), O_RDWR | O_DIRECT);
    const std::string a = pattern(kBlock, 11), b = pattern(4 * kBlock, 12);
    ASSERT_EQ(direct_write(fd.get(), a, kBlock), "");
    ASSERT_EQ(direct_write(fd.get(), b, 32 * 1024), "");
    // Past the end: the file grows by whole blocks.
    const std::string c = pattern(4 * kBlock, 13);
    ASSERT_EQ(direct_write(fd.get(), c, kMidSize), "");
    want = patched(patched(patched(want, kBlock, a), 32 * 1024, b), kMidSize, c);
    EXPECT_EQ(direct_read(fd.get(), 4 * kBlock, 32 * 1024), b);
    EXPECT_EQ(direct_read(fd.get(), kBlock, kBlock), a);
  }
  expect_copied_up("mid.bin");
  EXPECT_EQ(first_difference(want, read_file(mnt("mid.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("mid.bin"))), "") << "after remount";
}

TEST_P(DirectIoTest, WritesIntoAChunkedCopy) {
  std::string want = big_content();
  ASSERT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR | O_DIRECT);
    // 16 KiB across the boundary of the first two 64 KiB chunks, one block
    // in a chunk of its own, and 16 KiB that extend the file.
    const std::string a = pattern(4 * kBlock, 21), b = pattern(kBlock, 22),
                      c = pattern(4 * kBlock, 23);
    ASSERT_EQ(direct_write(fd.get(), a, 64 * 1024 - 2 * kBlock), "");
    ASSERT_EQ(direct_write(fd.get(), b, 2 * kMiB + 8 * kBlock), "");
    ASSERT_EQ(direct_write(fd.get(), c, static_cast<off_t>(kBigSize)), "");
    want = patched(want, 64 * 1024 - 2 * kBlock, a);
    want = patched(want, 2 * kMiB + 8 * kBlock, b);
    want = patched(want, static_cast<off_t>(kBigSize), c);
    EXPECT_EQ(direct_read(fd.get(), 4 * kBlock, 64 * 1024 - 2 * kBlock), a);
    EXPECT_EQ(direct_read(fd.get(), 16 * kBlock, 2 * kMiB), want.substr(2 * kMiB, 16 * kBlock));
    EXPECT_EQ(direct_read(fd.get(), 8 * kBlock, static_cast<off_t>(kBigSize)), c) << "short at EOF";
  }
  expect_copied_up("big.bin");
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "") << "after remount";
}

TEST_P(DirectIoTest, NewFilesAreWrittenAndReadDirect) {
  std::string want;
  {
    Fd fd = open_or_throw(mnt("new.bin"), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT, 0644);
    for (int i = 0; i < 4; ++i) {
      const std::string block = pattern(4 * kBlock, 30 + i);
      ASSERT_EQ(direct_write(fd.get(), block, static_cast<off_t>(want.size())), "")
          << "block " << i;
      want += block;
    }
  }
  {
    Fd fd = open_or_throw(mnt("new.bin"), O_RDONLY | O_DIRECT);
    EXPECT_EQ(first_difference(want, direct_read(fd.get(), 16 * kBlock, 0)), "");
  }
  // Reopened for writing (a plain open now, the file is the top's).
  {
    Fd fd = open_or_throw(mnt("new.bin"), O_RDWR | O_DIRECT);
    const std::string block = pattern(kBlock, 40);
    ASSERT_EQ(direct_write(fd.get(), block, 3 * kBlock), "");
    want = patched(want, 3 * kBlock, block);
  }
  EXPECT_EQ(first_difference(want, read_file(mnt("new.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("new.bin"))), "") << "after remount";
}

// The report, as a user types it.
TEST_P(DirectIoTest, DdWithDirectFlags) {
  auto r = run({"dd", "if=/dev/zero", "of=" + mnt("dtest"), "bs=16k", "count=4", "oflag=direct"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(first_difference(std::string(64 * 1024, '\0'), read_file(mnt("dtest"))), "");
  // Over an existing (chunked) lower file, and read back direct.
  r = run({"dd", "if=/dev/zero", "of=" + mnt("big.bin"), "bs=16k", "count=4", "seek=8",
           "oflag=direct", "conv=notrunc"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  std::string want = patched(big_content(), 8 * 16 * 1024, std::string(64 * 1024, '\0'));
  r = run({"dd", "if=" + mnt("big.bin"), "of=" + tmp().sub("out.bin"), "bs=64k", "iflag=direct"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(first_difference(want, read_file(tmp().sub("out.bin"))), "");
}

INSTANTIATE_TEST_SUITE_P(Cache, DirectIoTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? std::string("Writeback") : std::string("NoWriteback");
                         });

}  // namespace
}  // namespace cowfs_it
