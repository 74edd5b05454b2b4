// The store's space follows the files that can still be reached: a chunked
// copy that lost its last name, and is not open, is freed, so that `du` of
// the store and `cowfs layers` agree; an open descriptor, another hard link
// and a checkpoint's frozen layer each keep it.
#include <fcntl.h>
#include <unistd.h>

#include <regex>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

constexpr size_t kHuge = 32 << 20;  // a lower file far above the chunk threshold
constexpr size_t kChunk = 64 << 10;
// What the store holds beside the files' data: directories, chunk maps,
// whiteouts. A leaked copy is kHuge.
constexpr int64_t kSlack = 1 << 20;

class StoreSpaceTest : public CowfsTest {
 protected:
  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    if (index == 0) write_file(root + "/huge.bin", pattern(kHuge, 7));
  }

  // Writes into every chunk of huge.bin through fd: a chunked copy holding
  // all of it.
  static void touch_every_chunk(int fd) {
    for (size_t off = 0; off < kHuge; off += kChunk) {
      pwrite_all(fd, "written!", static_cast<off_t>(off));
    }
  }
  void touch_every_chunk() {
    Fd fd = open_or_throw(mnt("huge.bin"), O_RDWR | O_CLOEXEC);
    touch_every_chunk(fd.get());
    ASSERT_EQ(err(::close(fd.release())), 0);
  }
  static std::string expected_huge() {
    std::string s = pattern(kHuge, 7);
    for (size_t off = 0; off < kHuge; off += kChunk) s.replace(off, 8, "written!");
    return s;
  }

  // Bytes of the files `cowfs layers` reports, summed over the layers.
  int64_t layers_bytes() {
    RunResult r = run({cowfs_bin(), "layers", "--json", "--store", store()});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    int64_t sum = 0;
    static const std::regex kBytes("\"bytes\":([0-9]+)");
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), kBytes), end; it != end; ++it) {
      sum += std::stoll((*it)[1]);
    }
    return sum;
  }
  // What du(1) says the store's layers take (a file with several links
  // counts once, as its chunks/ link and its name are one file).
  int64_t du_layers() {
    RunResult r = run({"du", "-s", "-B1", store() + "/layers"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return std::stoll(r.out);
  }
  // What du takes beyond what `layers` reports.
  int64_t unreported() { return du_layers() - layers_bytes(); }
};

TEST_F(StoreSpaceTest, RenameOverAChunkedCopyFreesItsSpace) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no store";
  touch_every_chunk();
  ASSERT_GT(du_layers(), static_cast<int64_t>(kHuge) - kSlack)
      << "the chunked copy should hold every chunk";
  write_file(mnt("four"), "four");
  ASSERT_EQ(err(::rename(mnt("four").c_str(), mnt("huge.bin").c_str())), 0);
  EXPECT_EQ(read_file(mnt("huge.bin")), "four");
  EXPECT_LT(unreported(), kSlack) << "the store keeps the space of a copy nothing reaches";
  remount();
  EXPECT_LT(unreported(), kSlack) << "after a remount";
  EXPECT_EQ(read_file(mnt("huge.bin")), "four");
}

TEST_F(StoreSpaceTest, UnlinkOfAChunkedCopyFreesItsSpace) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no store";
  touch_every_chunk();
  ASSERT_EQ(err(::unlink(mnt("huge.bin").c_str())), 0);
  EXPECT_LT(unreported(), kSlack);
  EXPECT_EQ(err(::access(mnt("huge.bin").c_str(), F_OK)), ENOENT);
}

TEST_F(StoreSpaceTest, AnOpenDescriptorKeepsTheDataUntilItIsClosed) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no store";
  Fd fd = open_or_throw(mnt("huge.bin"), O_RDWR | O_CLOEXEC);
  touch_every_chunk(fd.get());
  ASSERT_EQ(err(::fsync(fd.get())), 0);
  write_file(mnt("four"), "four");
  ASSERT_EQ(err(::rename(mnt("four").c_str(), mnt("huge.bin").c_str())), 0);
  EXPECT_GT(unreported(), static_cast<int64_t>(kHuge) - kSlack) << "freed while still open";
  EXPECT_EQ(first_difference(expected_huge(), pread_all(fd.get())), "");
  pwrite_all(fd.get(), "later", 100);  // still writable
  EXPECT_EQ(pread_exact(fd.get(), 100, 5), "later");
  ASSERT_EQ(err(::close(fd.release())), 0);
  // The kernel sends the release after close returns.
  EXPECT_TRUE(wait_until([&] { return unreported() < kSlack; }, 10s))
      << "the space of a closed, nameless copy stays taken: " << unreported();
}

TEST_F(StoreSpaceTest, AnotherHardLinkKeepsTheData) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no store";
  touch_every_chunk();
  ASSERT_EQ(err(::link(mnt("huge.bin").c_str(), mnt("again.bin").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("huge.bin").c_str())), 0);
  EXPECT_EQ(first_difference(expected_huge(), read_file(mnt("again.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(expected_huge(), read_file(mnt("again.bin"))), "");
  ASSERT_EQ(err(::unlink(mnt("again.bin").c_str())), 0);
  EXPECT_LT(unreported(), kSlack);
}

TEST_F(StoreSpaceTest, ACheckpointKeepsItsCopy) {
  if (reference_mode()) GTEST_SKIP() << "a plain directory has no store";
  touch_every_chunk();
  RunResult cp = run({cowfs_bin(), "checkpoint", "--store", store(), "A"});
  ASSERT_EQ(cp.exit_code, 0) << cp.describe();
  write_file(mnt("four"), "four");
  ASSERT_EQ(err(::rename(mnt("four").c_str(), mnt("huge.bin").c_str())), 0);
  RunResult compact = run({cowfs_bin(), "compact", "--store", store(), "--keep", "A"});
  ASSERT_EQ(compact.exit_code, 0) << compact.describe();
  RunResult rw = run({cowfs_bin(), "rewind", "--store", store(), "A"});
  ASSERT_EQ(rw.exit_code, 0) << rw.describe();
  EXPECT_EQ(first_difference(expected_huge(), read_file(mnt("huge.bin"))), "")
      << "the checkpoint lost its copy";
  EXPECT_LT(unreported(), kSlack) << run({cowfs_bin(), "layers", "--json", "--store", store()}).out;
}

}  // namespace
}  // namespace cowfs_it
