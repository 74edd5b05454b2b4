// Regular files through a cowfs mount: read, copy-up on write, create,
// unlink, truncate, fsync, fallocate, SEEK_DATA/SEEK_HOLE, copy_file_range,
// attributes, statfs and inode stability.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <random>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

constexpr off_t kMiB = 1024 * 1024;

using FilesTest = CowfsTest;

std::string with_patch(std::string s, off_t off, std::string_view patch) {
  if (s.size() < static_cast<size_t>(off) + patch.size()) s.resize(off + patch.size(), '\0');
  s.replace(static_cast<size_t>(off), patch.size(), patch);
  return s;
}

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ns_of(ts);
}

TEST_F(FilesTest, ReadLowerFilesCopiesNothing) {
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  EXPECT_EQ(first_difference(big_content(), read_file(mnt("big.bin"))), "");
  EXPECT_EQ(read_file(mnt("dir/sub/deep/c.txt")), "c\n");
  EXPECT_EQ(read_file(mnt("sym")), kSmall);
  EXPECT_EQ(read_file(mnt("dsym/a.txt")), "a\n");
  EXPECT_EQ(read_file(mnt("hard1")), kLinked);

  struct stat l = lstat_or_throw(lower("small.txt"));
  struct stat m = lstat_or_throw(mnt("small.txt"));
  EXPECT_EQ(m.st_mode, l.st_mode);
  EXPECT_EQ(m.st_size, l.st_size);
  EXPECT_EQ(ns_of(m.st_mtim), kSmallMtimeNs) << "lower mtimes must show with ns precision";
  struct stat o = lstat_or_throw(mnt("owned.txt"));
  EXPECT_EQ(o.st_uid, 4242u);
  EXPECT_EQ(o.st_gid, 4343u);
  EXPECT_EQ(o.st_mode & 07777, 0640u);
  EXPECT_EQ(lstat_or_throw(mnt("exec.sh")).st_mode & 07777, 0755u);
  EXPECT_TRUE(S_ISFIFO(lstat_or_throw(mnt("fifo")).st_mode));

  // Everything a user can observe matches the lower (the mount root's own
  // mtime aside: the root is the store's).
  Manifest want = Manifest::take(lower());
  Manifest got = Manifest::take(mnt());
  got.entries["."].mtime_ns = want.entries["."].mtime_ns;
  EXPECT_EQ(diff(want, got, kSemantic), "");

  expect_top_empty("after only reading");
}

TEST_F(FilesTest, ExecutableLowerFileRuns) {
  RunResult r = run({mnt("exec.sh")});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, "hi\n");
}

TEST_F(FilesTest, WriteToSmallLowerFileCopiesItUp) {
  struct stat before = stat_or_throw(mnt("small.txt"));
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_WRONLY);
    pwrite_all(fd.get(), "HELLO", 0);
  }
  std::string want = with_patch(std::string(kSmall), 0, "HELLO");
  EXPECT_EQ(read_file(mnt("small.txt")), want);
  struct stat after = stat_or_throw(mnt("small.txt"));
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_GT(ns_of(after.st_mtim), kSmallMtimeNs) << "a write updates mtime";
  expect_copied_up("small.txt");
  if (!reference_mode()) {
    EXPECT_EQ(read_file(top_tree() + "/small.txt"), want);
  }
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), want);
  EXPECT_EQ(read_file(lower("small.txt")), kSmall);
}

// Copied up by chunk (here by growing it), then emptied by an open with
// O_TRUNC: the holes a later write leaves read as zeros, not as the lower's
// old bytes (fsdiff soak seed 9100012).
TEST_F(FilesTest, ABigFileEmptiedByOpenWithOTruncHasOnlyZerosInItsHoles) {
  ASSERT_EQ(::truncate(mnt("big.bin").c_str(), kBigSize + 100), 0);
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY | O_TRUNC);
    pwrite_all(fd.get(), "head", 0);
  }
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "tail", kMiB + 5);
  }
  std::string want = "head" + std::string(kMiB + 1, '\0') + "tail";
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
}

TEST_F(FilesTest, WriteToBigLowerFileCopiesOnlyTouchedChunks) {
  int64_t before = disk_usage(store());
  const off_t off = kMiB + kMiB / 2 + 3;
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "0123456789", off);
  }
  std::string want = with_patch(big_content(), off, "0123456789");
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  int64_t grown = disk_usage(store()) - before;
  EXPECT_LT(grown, 512 * 1024) << "a 10-byte write into a 3 MiB lower file grew the store by "
                               << grown << " bytes; only the touched chunk should be copied";
  expect_copied_up("big.bin");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  EXPECT_EQ(stat_or_throw(mnt("big.bin")).st_nlink, 1u) << "after remount";
  // A second write into another chunk, after remount.
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    pwrite_all(fd.get(), "abc", 100);
    pwrite_all(fd.get(), "xyz", 3 * kMiB - 2);  // crosses EOF: extends by one byte
  }
  want = with_patch(with_patch(want, 100, "abc"), 3 * kMiB - 2, "xyz");
  ASSERT_EQ(want.size(), static_cast<size_t>(3 * kMiB + 1));
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
}

TEST_F(FilesTest, ReadOnlyDescriptorSeesWritesMadeThroughAnother) {
  // Opened before the copy-up: they must follow the file, not stay on the lower.
  Fd small_ro = open_or_throw(mnt("small.txt"), O_RDONLY);
  Fd big_ro = open_or_throw(mnt("big.bin"), O_RDONLY);
  EXPECT_EQ(pread_exact(small_ro.get(), 0, 5), "hello");
  EXPECT_EQ(pread_exact(big_ro.get(), kMiB, 4), big_content().substr(kMiB, 4));
  {
    Fd w = open_or_throw(mnt("small.txt"), O_WRONLY);
    pwrite_all(w.get(), "HELLO", 0);
    Fd bw = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(bw.get(), "BIG!", kMiB);
  }
  EXPECT_EQ(pread_exact(small_ro.get(), 0, 5), "HELLO");
  EXPECT_EQ(pread_exact(big_ro.get(), kMiB, 4), "BIG!");
  EXPECT_EQ(fstat_or_throw(small_ro.get()).st_size, static_cast<off_t>(kSmall.size()));
  // Truncation through a path shows through the old descriptor too.
  ASSERT_EQ(err(::truncate(mnt("small.txt").c_str(), 2)), 0);
  EXPECT_EQ(pread_all(small_ro.get()), "HE");
  EXPECT_EQ(fstat_or_throw(small_ro.get()).st_size, 2);
}

TEST_F(FilesTest, WriteFarBeyondEndOfBigLowerFile) {
  const off_t far = 6LL * 1024 * kMiB + 123;  // past 4 GiB: 64-bit chunk arithmetic
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    pwrite_all(fd.get(), "far away", far);
  }
  auto check = [&] {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDONLY);
    EXPECT_EQ(fstat_or_throw(fd.get()).st_size, far + 8);
    EXPECT_EQ(pread_exact(fd.get(), far, 100), "far away");
    EXPECT_EQ(pread_exact(fd.get(), far - 4096, 4096), std::string(4096, '\0'));
    EXPECT_EQ(pread_exact(fd.get(), 4LL * 1024 * kMiB, 4096), std::string(4096, '\0'));
    EXPECT_EQ(pread_exact(fd.get(), kBigSize - 10, 20),
              big_content().substr(kBigSize - 10) + std::string(10, '\0'));
    EXPECT_EQ(first_difference(big_content(), pread_exact(fd.get(), 0, kBigSize)), "");
  };
  check();
  EXPECT_LT(disk_usage(store()), 16 * kMiB) << "the hole must not be stored";
  remount();
  check();
}

TEST_F(FilesTest, RandomWritesOnBigFileMatchAPlainFile) {
  // The same random mix of writes, truncates, appends, hole punches and mmap
  // writes on the big lower file through the mount and on a plain copy.
  const std::string plain = tmp().sub("plain-big.bin");
  write_file(plain, big_content());
  std::mt19937_64 rng(20240611);
  auto pick = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  auto compare = [&](const std::string& when) {
    std::string want = read_file(plain);
    EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "") << when;
  };
  {
    Fd m = open_or_throw(mnt("big.bin"), O_RDWR);
    Fd p = open_or_throw(plain, O_RDWR);
    for (int op = 0; op < 120; ++op) {
      off_t size = fstat_or_throw(p.get()).st_size;
      int kind = static_cast<int>(pick(0, 9));
      SCOPED_TRACE("op " + std::to_string(op) + " kind " + std::to_string(kind));
      if (kind <= 3) {  // pwrite, often across chunk boundaries
        off_t off = static_cast<off_t>(pick(0, static_cast<uint64_t>(size) + 256 * 1024));
        std::string data = pattern(pick(1, 200 * 1024), op + 100);
        pwrite_all(m.get(), data, off);
        pwrite_all(p.get(), data, off);
      } else if (kind == 4) {  // truncate, shrink or grow
        off_t to = static_cast<off_t>(pick(0, static_cast<uint64_t>(size) * 13 / 10 + 1));
        to = std::min<off_t>(to, 6 * kMiB);
        ASSERT_EQ(err(::ftruncate(m.get(), to)), 0);
        ASSERT_EQ(err(::ftruncate(p.get(), to)), 0);
      } else if (kind <= 6) {  // append through O_APPEND descriptors
        std::string data = pattern(pick(1, 100 * 1024), op + 200);
        append_file(mnt("big.bin"), data);
        append_file(plain, data);
      } else if (kind == 7 && size > 0) {  // punch a hole
        off_t off = static_cast<off_t>(pick(0, static_cast<uint64_t>(size) - 1));
        off_t len = static_cast<off_t>(pick(1, 300 * 1024));
        int mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        ASSERT_EQ(err(::fallocate(m.get(), mode, off, len)), 0);
        ASSERT_EQ(err(::fallocate(p.get(), mode, off, len)), 0);
      } else if (kind >= 8 && size > 8192) {  // shared writable mmap
        off_t page = static_cast<off_t>(pick(0, static_cast<uint64_t>(size - 1) / 4096)) * 4096;
        size_t len = static_cast<size_t>(std::min<off_t>(size - page, 64 * 1024));
        std::string data = pattern(len, op + 300);
        for (int fd : {m.get(), p.get()}) {
          void* a = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, page);
          ASSERT_NE(a, MAP_FAILED) << errno_name(errno);
          std::memcpy(a, data.data(), len);
          ASSERT_EQ(err(::msync(a, len, MS_SYNC)), 0);
          ::munmap(a, len);
        }
      }
      if (op % 30 == 29) compare("after op " + std::to_string(op));
    }
  }
  compare("at the end");
  remount();
  compare("after remount");
  EXPECT_EQ(stat_or_throw(mnt("big.bin")).st_nlink, 1u) << "after remount";
}

TEST_F(FilesTest, MetadataChangesOnBigLowerFileCopyNoData) {
  int64_t before = disk_usage(store());
  ASSERT_EQ(err(::chmod(mnt("big.bin").c_str(), 0600)), 0);
  ASSERT_EQ(err(::chown(mnt("big.bin").c_str(), 1000, 1001)), 0);
  struct timespec ts[2] = {{1'000'000'000, 1}, {1'100'000'000, 999'999'999}};
  ASSERT_EQ(err(::utimensat(AT_FDCWD, mnt("big.bin").c_str(), ts, 0)), 0);
  ASSERT_EQ(err(::setxattr(mnt("big.bin").c_str(), "user.meta", "x", 1, 0)), 0);
  int64_t grown = disk_usage(store()) - before;
  EXPECT_LT(grown, 256 * 1024) << "chmod/chown/utimes/setxattr on a 3 MiB lower file grew the "
                                  "store by "
                               << grown << " bytes; they must copy no data";
  struct stat st = stat_or_throw(mnt("big.bin"));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(ns_of(st.st_mtim), 1'100'000'000'999'999'999LL);
  EXPECT_EQ(ns_of(st.st_atim), 1'000'000'000'000'000'001LL);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kBigSize));
  EXPECT_EQ(first_difference(big_content(), read_file(mnt("big.bin"))), "");
  remount();
  st = stat_or_throw(mnt("big.bin"));
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(ns_of(st.st_mtim), 1'100'000'000'999'999'999LL);
  EXPECT_EQ(first_difference(big_content(), read_file(mnt("big.bin"))), "");
}

TEST_F(FilesTest, AppendToLowerFiles) {
  append_file(mnt("small.txt"), "more\n");
  std::string tail = pattern(100'000, 7);
  append_file(mnt("big.bin"), tail);
  EXPECT_EQ(read_file(mnt("small.txt")), std::string(kSmall) + "more\n");
  std::string want_big = big_content() + tail;
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), std::string(kSmall) + "more\n");
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
}

// The kernel's writeback cache reads the rest of a page around a partial
// write, through whichever handle is writing, a write-only one too.
TEST_F(FilesTest, PartialWritesThroughWriteOnlyHandlesKeepTheRest) {
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_WRONLY);
    pwrite_all(fd.get(), "J", 6);
  }
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "xyz", kMiB + 100);
  }
  std::string want_small(kSmall);
  want_small[6] = 'J';
  const std::string want_big = with_patch(big_content(), kMiB + 100, "xyz");
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
}

// What stat showed after a write is what is stored: the data reaches the
// daemon after the kernel stamped the time, and must not stamp it again.
TEST_F(FilesTest, MtimeAfterAWriteSurvivesARemount) {
  write_file(mnt("fresh.txt"), "new");
  append_file(mnt("small.txt"), "more\n");
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    pwrite_all(fd.get(), "chunk", 3 * kMiB);
    ASSERT_EQ(err(::fsync(fd.get())), 0);
  }
  std::map<std::string, int64_t> shown;
  for (const char* f : {"fresh.txt", "small.txt", "big.bin"}) {
    const struct stat st = stat_or_throw(mnt(f));
    shown[f] = st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
  }
  remount();
  for (const auto& [f, ns] : shown) {
    const struct stat st = stat_or_throw(mnt(f));
    EXPECT_EQ(st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec, ns) << f;
  }
}

TEST_F(FilesTest, OpenWithTruncOfLowerFileLeavesNoOldBytes) {
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_WRONLY | O_TRUNC);
    EXPECT_EQ(fstat_or_throw(fd.get()).st_size, 0);
    write_fd_all(fd.get(), "x");
  }
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR | O_TRUNC);
    EXPECT_EQ(fstat_or_throw(fd.get()).st_size, 0);
    pwrite_all(fd.get(), "0123456789", 2 * kMiB);
  }
  std::string want_big = with_patch(std::string(), 2 * kMiB, "0123456789");
  EXPECT_EQ(read_file(mnt("small.txt")), "x");
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), "x");
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
}

TEST_F(FilesTest, TruncateShrinkThenGrow) {
  ASSERT_EQ(err(::truncate(mnt("small.txt").c_str(), 5)), 0);
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall.substr(0, 5));
  ASSERT_EQ(err(::truncate(mnt("small.txt").c_str(), 100)), 0);
  std::string want_small = std::string(kSmall.substr(0, 5)) + std::string(95, '\0');
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);

  // The big file: cut in the middle of a chunk, then grow past the old end.
  // The old bytes beyond the cut must not come back.
  const off_t cut = kMiB + 100;
  ASSERT_EQ(err(::truncate(mnt("big.bin").c_str(), cut)), 0);
  EXPECT_EQ(stat_or_throw(mnt("big.bin")).st_size, cut);
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    ASSERT_EQ(err(::ftruncate(fd.get(), 4 * kMiB)), 0);
  }
  std::string want_big = big_content().substr(0, cut);
  want_big.resize(4 * kMiB, '\0');
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");

  // A new file, through an open descriptor.
  {
    Fd fd = open_or_throw(mnt("new.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
    write_fd_all(fd.get(), "abcdef");
    ASSERT_EQ(err(::ftruncate(fd.get(), 2)), 0);
    ASSERT_EQ(err(::ftruncate(fd.get(), 4)), 0);
    EXPECT_EQ(pread_all(fd.get()), std::string("ab\0\0", 4));
  }
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
  EXPECT_EQ(read_file(mnt("new.bin")), std::string("ab\0\0", 4));
}

TEST_F(FilesTest, SparseWriteBeyondEndOfBigLowerFile) {
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "tail", 5 * kMiB);
  }
  std::string want = with_patch(big_content(), 5 * kMiB, "tail");
  EXPECT_EQ(stat_or_throw(mnt("big.bin")).st_size, 5 * kMiB + 4);
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("big.bin"))), "");
}

TEST_F(FilesTest, CreateNewFiles) {
  {
    Fd fd = open_or_throw(mnt("new.txt"), O_RDWR | O_CREAT | O_EXCL, 0666);
    write_fd_all(fd.get(), "new content\n");
    EXPECT_EQ(pread_all(fd.get()), "new content\n");
  }
  struct stat st = stat_or_throw(mnt("new.txt"));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "mode 0666 with umask 022";
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, ::getegid());
  EXPECT_EQ(st.st_nlink, 1u);
  // In a lower directory three levels down (its parents get copied up).
  write_file(mnt("dir/sub/deep/new2.txt"), "deep new\n", 0600);
  EXPECT_EQ(stat_or_throw(mnt("dir/sub/deep/new2.txt")).st_mode & 07777, 0600u);
  EXPECT_EQ(stat_or_throw(mnt("dir/sub/deep")).st_mode & 07777, 0700u)
      << "copied-up parent keeps its mode";

  EXPECT_EQ(err(::open(mnt("small.txt").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644)), EEXIST);
  EXPECT_EQ(err(::open(mnt("new.txt").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644)), EEXIST);
  EXPECT_EQ(err(::open(mnt("sym").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644)), EEXIST);
  EXPECT_EQ(err(::open(mnt("nodir/x").c_str(), O_RDWR | O_CREAT, 0644)), ENOENT);
  EXPECT_EQ(err(::open(mnt("small.txt/x").c_str(), O_RDWR | O_CREAT, 0644)), ENOTDIR);
  // O_CREAT through a dangling symlink creates its target (here: fails, the
  // target's parent does not exist).
  EXPECT_EQ(err(::open(mnt("dangling").c_str(), O_RDWR | O_CREAT, 0644)), ENOENT);

  auto names = sorted(list_dir(mnt()));
  EXPECT_TRUE(std::count(names.begin(), names.end(), "new.txt") == 1);
  expect_copied_up("new.txt");
  expect_copied_up("dir/sub/deep/new2.txt");
  remount();
  EXPECT_EQ(read_file(mnt("new.txt")), "new content\n");
  EXPECT_EQ(read_file(mnt("dir/sub/deep/new2.txt")), "deep new\n");
  EXPECT_EQ(read_file(mnt("dir/sub/deep/c.txt")), "c\n");
}

TEST_F(FilesTest, UnlinkLowerFiles) {
  for (const char* name : {"small.txt", "big.bin", "dir/sub/b.txt", "sym", "fifo", "dangling"}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(err(::unlink(mnt(name).c_str())), 0);
    struct stat st {};
    EXPECT_EQ(err(::lstat(mnt(name).c_str(), &st)), ENOENT);
    EXPECT_EQ(err(::open(mnt(name).c_str(), O_RDONLY | O_NONBLOCK)), ENOENT);
    EXPECT_EQ(err(::unlink(mnt(name).c_str())), ENOENT);
  }
  EXPECT_EQ(err(::unlink(mnt("dir").c_str())), EISDIR);
  EXPECT_EQ(err(::unlink(mnt("nonexistent").c_str())), ENOENT);
  auto check = [&] {
    auto root = list_dir(mnt());
    for (const char* gone : {"small.txt", "big.bin", "sym", "fifo", "dangling"}) {
      EXPECT_EQ(std::count(root.begin(), root.end(), gone), 0) << gone << " still listed";
    }
    EXPECT_EQ(sorted(list_dir(mnt("dir/sub"))), (std::vector<std::string>{"deep"}));
    EXPECT_EQ(read_file(mnt("dsym/sub/deep/c.txt")), "c\n");
  };
  check();
  remount();
  check();
  struct stat st {};
  EXPECT_EQ(err(::lstat(mnt("small.txt").c_str(), &st)), ENOENT);
}

TEST_F(FilesTest, DeleteThenRecreateShowsOnlyNewContent) {
  ASSERT_EQ(err(::unlink(mnt("small.txt").c_str())), 0);
  write_file(mnt("small.txt"), "new\n");
  ASSERT_EQ(err(::unlink(mnt("big.bin").c_str())), 0);
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR | O_CREAT | O_EXCL, 0600);
    write_fd_all(fd.get(), "0123456789");
    EXPECT_EQ(pread_exact(fd.get(), kMiB, 100), "");
  }
  // A lower file replaced by a directory.
  ASSERT_EQ(err(::unlink(mnt("xattr.txt").c_str())), 0);
  ASSERT_EQ(err(::mkdir(mnt("xattr.txt").c_str(), 0755)), 0);

  auto check = [&] {
    EXPECT_EQ(read_file(mnt("small.txt")), "new\n");
    EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_size, 4);
    EXPECT_EQ(read_file(mnt("big.bin")), "0123456789");
    EXPECT_EQ(stat_or_throw(mnt("big.bin")).st_mode & 07777, 0600u);
    EXPECT_TRUE(S_ISDIR(stat_or_throw(mnt("xattr.txt")).st_mode));
    EXPECT_EQ(list_dir(mnt("xattr.txt")), std::vector<std::string>{});
    char buf[16];
    EXPECT_EQ(err(::getxattr(mnt("xattr.txt").c_str(), "user.test", buf, sizeof buf)), ENODATA)
        << "the new directory must not inherit the deleted file's xattrs";
  };
  check();
  remount();
  check();
}

TEST_F(FilesTest, OpenFileKeepsWorkingAfterUnlink) {
  Fd lower_rw = open_or_throw(mnt("small.txt"), O_RDWR);
  Fd lower_ro = open_or_throw(mnt("big.bin"), O_RDONLY);
  Fd fresh = open_or_throw(mnt("fresh.txt"), O_RDWR | O_CREAT | O_EXCL, 0644);
  write_fd_all(fresh.get(), "fresh");

  ASSERT_EQ(err(::unlink(mnt("small.txt").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("big.bin").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("fresh.txt").c_str())), 0);

  EXPECT_EQ(pread_all(lower_rw.get()), kSmall);
  pwrite_all(lower_rw.get(), "X", 0);
  EXPECT_EQ(pread_all(lower_rw.get()), "X" + std::string(kSmall.substr(1)));
  ASSERT_EQ(err(::ftruncate(lower_rw.get(), 3)), 0);
  EXPECT_EQ(pread_all(lower_rw.get()), "Xel");
  EXPECT_EQ(fstat_or_throw(lower_rw.get()).st_nlink, 0u);
  EXPECT_EQ(fstat_or_throw(lower_rw.get()).st_size, 3);

  EXPECT_EQ(first_difference(big_content().substr(2 * kMiB, 8192),
                             pread_exact(lower_ro.get(), 2 * kMiB, 8192)),
            "");
  EXPECT_EQ(fstat_or_throw(lower_ro.get()).st_nlink, 0u);

  EXPECT_EQ(pread_all(fresh.get()), "fresh");
  pwrite_all(fresh.get(), "!!", 5);
  EXPECT_EQ(pread_all(fresh.get()), "fresh!!");
  EXPECT_EQ(fstat_or_throw(fresh.get()).st_nlink, 0u);

  struct stat st {};
  for (const char* name : {"small.txt", "big.bin", "fresh.txt"}) {
    EXPECT_EQ(err(::stat(mnt(name).c_str(), &st)), ENOENT) << name;
  }
  // A new file under an unlinked-but-open name is a different file.
  write_file(mnt("small.txt"), "other");
  EXPECT_EQ(pread_all(lower_rw.get()), "Xel");
  EXPECT_EQ(read_file(mnt("small.txt")), "other");

  lower_rw.reset();
  lower_ro.reset();
  fresh.reset();
  remount();
  EXPECT_EQ(err(::stat(mnt("big.bin").c_str(), &st)), ENOENT);
  EXPECT_EQ(err(::stat(mnt("fresh.txt").c_str(), &st)), ENOENT);
  EXPECT_EQ(read_file(mnt("small.txt")), "other");
}

TEST_F(FilesTest, FsyncAndFdatasync) {
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
    pwrite_all(fd.get(), "synced", 0);
    EXPECT_EQ(err(::fsync(fd.get())), 0);
    EXPECT_EQ(err(::fdatasync(fd.get())), 0);
  }
  {
    Fd fd = open_or_throw(mnt("new.txt"), O_RDWR | O_CREAT, 0644);
    write_fd_all(fd.get(), "new");
    EXPECT_EQ(err(::fdatasync(fd.get())), 0);
    EXPECT_EQ(err(::fsync(fd.get())), 0);
  }
  {
    // fsync of a lower file open read-only must not copy it up.
    Fd fd = open_or_throw(mnt("big.bin"), O_RDONLY);
    EXPECT_EQ(err(::fsync(fd.get())), 0);
    EXPECT_EQ(err(::fdatasync(fd.get())), 0);
  }
  for (const char* d : {"", "dir", "dir/sub", "empty"}) {
    Fd fd = open_or_throw(mnt(d), O_RDONLY | O_DIRECTORY);
    EXPECT_EQ(err(::fsync(fd.get())), 0) << "fsync of directory '" << d << "'";
  }
  {
    Fd fd = open_or_throw(mnt(), O_RDONLY | O_DIRECTORY);
    EXPECT_EQ(err(::syncfs(fd.get())), 0);
  }
  if (!reference_mode()) {
    EXPECT_FALSE(top_has("big.bin")) << "fsync of a read-only descriptor copied the file up";
  }
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), "synced" + std::string(kSmall.substr(6)));
  EXPECT_EQ(read_file(mnt("new.txt")), "new");
}

TEST_F(FilesTest, Fallocate) {
  {
    Fd fd = open_or_throw(mnt("alloc.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_EQ(err(::fallocate(fd.get(), 0, 0, kMiB)), 0);
    struct stat st = fstat_or_throw(fd.get());
    EXPECT_EQ(st.st_size, kMiB);
    EXPECT_GE(st.st_blocks * 512, kMiB);
    EXPECT_EQ(pread_all(fd.get()), std::string(kMiB, '\0'));
  }
  {
    Fd fd = open_or_throw(mnt("keep.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
    write_fd_all(fd.get(), "0123456789");
    ASSERT_EQ(err(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, kMiB)), 0);
    struct stat st = fstat_or_throw(fd.get());
    EXPECT_EQ(st.st_size, 10);
    EXPECT_GE(st.st_blocks * 512, kMiB) << "KEEP_SIZE still allocates";
    EXPECT_EQ(pread_all(fd.get()), "0123456789");
  }
  {
    // Extending a small lower file.
    Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
    ASSERT_EQ(err(::fallocate(fd.get(), 0, 0, 8192)), 0);
    EXPECT_EQ(fstat_or_throw(fd.get()).st_size, 8192);
  }
  {
    // Punching a hole into the big lower file.
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    ASSERT_EQ(
        err(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kMiB, 128 * 1024)),
        0);
    EXPECT_EQ(fstat_or_throw(fd.get()).st_size, static_cast<off_t>(kBigSize));
  }
  std::string want_small = std::string(kSmall) + std::string(8192 - kSmall.size(), '\0');
  std::string want_big = big_content();
  std::fill(want_big.begin() + kMiB, want_big.begin() + kMiB + 128 * 1024, '\0');
  auto check = [&] {
    EXPECT_EQ(read_file(mnt("small.txt")), want_small);
    EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
    EXPECT_EQ(stat_or_throw(mnt("keep.bin")).st_size, 10);
    EXPECT_EQ(stat_or_throw(mnt("alloc.bin")).st_size, kMiB);
  };
  check();
  remount();
  check();
}

struct SeekMap {
  off_t data0, hole0, data_after_hole;
  int enxio_data, enxio_hole;
};

SeekMap seek_map(int fd, off_t size) {
  SeekMap m{};
  m.data0 = ::lseek(fd, 0, SEEK_DATA);
  m.hole0 = ::lseek(fd, 0, SEEK_HOLE);
  m.data_after_hole = m.hole0 >= 0 ? ::lseek(fd, m.hole0, SEEK_DATA) : -1;
  m.enxio_data = err(::lseek(fd, size, SEEK_DATA));
  m.enxio_hole = err(::lseek(fd, size + 1, SEEK_HOLE));
  return m;
}

TEST_F(FilesTest, SeekDataAndHole) {
  const off_t size = 4 * kMiB + 4096;
  // The lower sparse file, not copied up: exactly what the lower reports.
  SeekMap want;
  {
    Fd fd = open_or_throw(lower("sparse.bin"), O_RDONLY);
    want = seek_map(fd.get(), size);
  }
  ASSERT_EQ(want.data0, 0);
  ASSERT_LT(want.hole0, 4 * kMiB) << "the test filesystem does not keep holes";
  {
    Fd fd = open_or_throw(mnt("sparse.bin"), O_RDONLY);
    SeekMap got = seek_map(fd.get(), size);
    EXPECT_EQ(got.data0, want.data0);
    EXPECT_EQ(got.hole0, want.hole0);
    EXPECT_EQ(got.data_after_hole, want.data_after_hole);
    EXPECT_EQ(got.enxio_data, ENXIO);
    EXPECT_EQ(got.enxio_hole, ENXIO);
  }
  // A sparse file made through the mount, against the same on a plain file.
  auto make = [](const std::string& path) {
    Fd fd = open_or_throw(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    pwrite_all(fd.get(), std::string(4096, 'a'), 0);
    pwrite_all(fd.get(), std::string(4096, 'b'), 8 * kMiB);
    EXPECT_EQ(err(::fsync(fd.get())), 0);
  };
  make(tmp().sub("plain-sparse.bin"));
  make(mnt("sparse-new.bin"));
  {
    Fd p = open_or_throw(tmp().sub("plain-sparse.bin"), O_RDONLY);
    Fd m = open_or_throw(mnt("sparse-new.bin"), O_RDONLY);
    SeekMap pw = seek_map(p.get(), 8 * kMiB + 4096);
    SeekMap mg = seek_map(m.get(), 8 * kMiB + 4096);
    EXPECT_EQ(mg.data0, pw.data0);
    EXPECT_EQ(mg.hole0, pw.hole0);
    EXPECT_EQ(mg.data_after_hole, pw.data_after_hole);
    EXPECT_EQ(mg.enxio_data, ENXIO);
    EXPECT_EQ(mg.enxio_hole, ENXIO);
  }
  // After a copy-up of the lower sparse file the answers must stay valid
  // (no data skipped) and the 4 MiB hole must still be reported.
  {
    Fd fd = open_or_throw(mnt("sparse.bin"), O_RDWR);
    pwrite_all(fd.get(), "W", 0);
    off_t hole = ::lseek(fd.get(), 0, SEEK_HOLE);
    EXPECT_GE(hole, 1);
    EXPECT_LT(hole, 4 * kMiB) << "after a 1-byte write at offset 0, SEEK_HOLE(0) reports no hole "
                                 "before the data at 4 MiB (a plain directory reports one at "
                              << want.hole0 << ")";
    if (hole < size) {
      off_t data = ::lseek(fd.get(), hole, SEEK_DATA);
      EXPECT_GT(data, hole);
      EXPECT_LE(data, 4 * kMiB) << "SEEK_DATA skipped the data at 4 MiB";
      if (data > hole) {
        EXPECT_EQ(pread_exact(fd.get(), hole, static_cast<size_t>(data - hole)),
                  std::string(static_cast<size_t>(data - hole), '\0'));
      }
    }
    EXPECT_EQ(err(::lseek(fd.get(), size, SEEK_DATA)), ENXIO);
  }
}

TEST_F(FilesTest, CopyFileRange) {
  Fd in = open_or_throw(mnt("big.bin"), O_RDONLY);
  Fd out = open_or_throw(mnt("copy.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
  size_t left = kBigSize;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, left, 0);
    ASSERT_GT(n, 0) << errno_name(errno);
    left -= static_cast<size_t>(n);
  }
  EXPECT_EQ(first_difference(big_content(), pread_all(out.get())), "");
  // With explicit offsets, into a lower file.
  Fd small = open_or_throw(mnt("small.txt"), O_RDWR);
  off_t in_off = 10, out_off = 2;
  ASSERT_EQ(::copy_file_range(in.get(), &in_off, small.get(), &out_off, 5, 0), 5)
      << errno_name(errno);
  EXPECT_EQ(pread_all(small.get()),
            with_patch(std::string(kSmall), 2, big_content().substr(10, 5)));
  in.reset();
  out.reset();
  small.reset();
  remount();
  EXPECT_EQ(first_difference(big_content(), read_file(mnt("copy.bin"))), "");
  EXPECT_EQ(read_file(mnt("small.txt")),
            with_patch(std::string(kSmall), 2, big_content().substr(10, 5)));
}

TEST_F(FilesTest, ChmodChownUtimensOnLowerEntries) {
  const struct timespec times[2] = {{1'111'111'111, 222'333'444}, {1'234'567'890, 123'456'789}};
  for (const char* name : {"small.txt", "dir", "fifo", "empty"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(err(::chmod(mnt(name).c_str(), 0610)), 0);
    EXPECT_EQ(err(::chown(mnt(name).c_str(), 1234, 5678)), 0);
    EXPECT_EQ(err(::utimensat(AT_FDCWD, mnt(name).c_str(), times, 0)), 0);
  }
  // The symlink itself, not its target.
  ASSERT_EQ(err(::lchown(mnt("sym").c_str(), 4321, 8765)), 0);
  ASSERT_EQ(err(::utimensat(AT_FDCWD, mnt("sym").c_str(), times, AT_SYMLINK_NOFOLLOW)), 0);
  // UTIME_NOW / UTIME_OMIT.
  int64_t xattr_atime = ns_of(stat_or_throw(mnt("xattr.txt")).st_atim);
  int64_t t0 = now_ns();
  const struct timespec now_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(err(::utimensat(AT_FDCWD, mnt("xattr.txt").c_str(), now_omit, 0)), 0);
  int64_t t1 = now_ns();

  // Reading a file or listing a directory may update its atime (relatime),
  // so atimes are only checked before anything is read.
  auto check = [&](bool atimes) {
    for (const char* name : {"small.txt", "dir", "fifo", "empty"}) {
      SCOPED_TRACE(name);
      struct stat st = lstat_or_throw(mnt(name));
      EXPECT_EQ(st.st_mode & 07777, 0610u);
      EXPECT_EQ(st.st_uid, 1234u);
      EXPECT_EQ(st.st_gid, 5678u);
      if (atimes) {
        EXPECT_EQ(ns_of(st.st_atim), 1'111'111'111'222'333'444LL);
      }
      EXPECT_EQ(ns_of(st.st_mtim), 1'234'567'890'123'456'789LL);
    }
    struct stat sym = lstat_or_throw(mnt("sym"));
    EXPECT_EQ(sym.st_uid, 4321u);
    EXPECT_EQ(sym.st_gid, 8765u);
    EXPECT_EQ(ns_of(sym.st_mtim), 1'234'567'890'123'456'789LL);
    EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
    EXPECT_EQ(sorted(list_dir(mnt("dir"))), (std::vector<std::string>{"a.txt", "hard2", "sub"}));
    struct stat x = stat_or_throw(mnt("xattr.txt"));
    EXPECT_GE(ns_of(x.st_mtim), t0 - 10'000'000);  // coarse clock granularity
    EXPECT_LE(ns_of(x.st_mtim), t1 + 10'000'000);
    EXPECT_EQ(ns_of(x.st_atim), xattr_atime) << "UTIME_OMIT changed atime";
  };
  check(true);
  remount();
  check(false);
}

TEST_F(FilesTest, ChangesUpdateCtime) {
  int64_t before = ns_of(stat_or_throw(mnt("small.txt")).st_ctim);
  ASSERT_EQ(err(::chmod(mnt("small.txt").c_str(), 0600)), 0);
  int64_t after = ns_of(stat_or_throw(mnt("small.txt")).st_ctim);
  EXPECT_GT(after, before) << "chmod must update ctime";
}

TEST_F(FilesTest, Statfs) {
  struct statvfs sv {};
  ASSERT_EQ(err(::statvfs(mnt().c_str(), &sv)), 0);
  EXPECT_GT(sv.f_bsize, 0u);
  EXPECT_GT(sv.f_blocks, 0u);
  EXPECT_LE(sv.f_bfree, sv.f_blocks);
  EXPECT_LE(sv.f_bavail, sv.f_bfree);
  EXPECT_EQ(sv.f_namemax, 255u);
  struct statvfs sub {};
  ASSERT_EQ(err(::statvfs(mnt("dir/sub").c_str(), &sub)), 0);
  EXPECT_EQ(sub.f_blocks, sv.f_blocks);
  Fd fd = open_or_throw(mnt("small.txt"), O_RDONLY);
  struct statfs sf {};
  EXPECT_EQ(err(::fstatfs(fd.get(), &sf)), 0);
  // Free space is the store's (where writes land).
  struct statvfs tmpfs {};
  ASSERT_EQ(err(::statvfs(tmp().path().c_str(), &tmpfs)), 0);
  EXPECT_EQ(static_cast<unsigned long long>(sv.f_blocks) * sv.f_frsize,
            static_cast<unsigned long long>(tmpfs.f_blocks) * tmpfs.f_frsize)
      << "statfs should describe the store's filesystem";
}

TEST_F(FilesTest, RemountChangesNothingObservable) {
  // A mix of every kind of change, then: the mount looks the same before and
  // after a remount (all attributes, inode numbers and ctimes included), and
  // the same as a plain directory given the same changes.
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    auto p = [&](const std::string& rel) { return root + "/" + rel; };
    append_file(p("small.txt"), "appended\n");
    {
      Fd fd = open_or_throw(p("big.bin"), O_RDWR);
      pwrite_all(fd.get(), "chunk", 2 * kMiB + 7);
    }
    ASSERT_EQ(err(::chmod(p("exec.sh").c_str(), 0700)), 0);
    ASSERT_EQ(err(::chown(p("owned.txt").c_str(), 77, 88)), 0);
    const struct timespec t[2] = {{1'300'000'000, 1}, {1'300'000'000, 2}};
    ASSERT_EQ(err(::utimensat(AT_FDCWD, p("xattr.txt").c_str(), t, 0)), 0);
    ASSERT_EQ(err(::setxattr(p("dir/a.txt").c_str(), "user.k", "v", 1, 0)), 0);
    ASSERT_EQ(err(::rename(p("dir/sub").c_str(), p("moved-sub").c_str())), 0);
    ASSERT_EQ(err(::rename(p("whnames/foo").c_str(), p("foo-moved").c_str())), 0);
    ASSERT_EQ(err(::unlink(p("dangling").c_str())), 0);
    ASSERT_EQ(err(::mkdir(p("newdir").c_str(), 0751)), 0);
    write_file(p("newdir/new.txt"), "new");
    ASSERT_EQ(err(::symlink("newdir/new.txt", p("newsym").c_str())), 0);
    ASSERT_EQ(err(::link(p("small.txt").c_str(), p("newdir/small-link").c_str())), 0);
    append_file(p("dir/hard2"), "via hard2");
    ASSERT_EQ(err(::mkfifo(p("newdir/fifo").c_str(), 0600)), 0);
    ASSERT_EQ(err(::truncate(p("sparse.bin").c_str(), 2 * kMiB)), 0);
  }
  expect_same_as_ref(kShape, "after the changes");
  Manifest before = Manifest::take(mnt());
  remount();
  Manifest after = Manifest::take(mnt());
  // The kernel keeps its own ctime for regular files under the writeback
  // cache, and ctime cannot be set on the store: it may only move forward.
  EXPECT_EQ(diff(before, after, kEverything & ~kCtime), "")
      << "before (expected) vs after a remount";
  for (const auto& [path, info] : before.entries) {
    auto it = after.entries.find(path);
    if (it == after.entries.end()) continue;  // reported by the diff above
    if (info.type != S_IFREG) {
      EXPECT_EQ(it->second.ctime_ns, info.ctime_ns) << path;
    } else {
      EXPECT_GE(it->second.ctime_ns, info.ctime_ns) << path << ": ctime went back";
    }
  }
  expect_same_as_ref(kShape, "after remount");
}

TEST_F(FilesTest, InodeNumbersAreStable) {
  const std::vector<std::string> names = {"small.txt", "big.bin", "dir",  "dir/sub",
                                          "hard1",     "sym",     "fifo", "empty"};
  write_file(mnt("new.txt"), "new");
  std::map<std::string, ino_t> inos;
  for (const auto& n : names) inos[n] = lstat_or_throw(mnt(n)).st_ino;
  inos["new.txt"] = lstat_or_throw(mnt("new.txt")).st_ino;
  EXPECT_EQ(lstat_or_throw(mnt("dir/hard2")).st_ino, inos["hard1"]);

  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    for (const auto& [n, ino] : inos) {
      EXPECT_EQ(lstat_or_throw(mnt(n)).st_ino, ino) << n;
    }
    // readdir's d_ino agrees with st_ino.
    for (const std::string& d : {std::string(), std::string("dir")}) {
      for (const auto& [name, ino] : list_dir_inos(mnt(d))) {
        std::string rel = d.empty() ? name : d + "/" + name;
        EXPECT_EQ(ino, lstat_or_throw(mnt(rel)).st_ino) << "d_ino of " << rel;
      }
    }
    // Distinct files have distinct numbers.
    Manifest m = Manifest::take(mnt());
    std::map<ino_t, std::vector<std::string>> by_ino;
    for (const auto& [path, fi] : m.entries) by_ino[fi.ino].push_back(path);
    for (const auto& [ino, paths] : by_ino) {
      if (paths == std::vector<std::string>{"dir/hard2", "hard1"}) continue;
      EXPECT_EQ(paths.size(), 1u) << "inode " << ino << " shared by " << paths[0] << " and "
                                  << paths.back();
    }
  };
  check("before changes");
  // Copy-ups of all kinds.
  append_file(mnt("small.txt"), "x");
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "x", 2 * kMiB);
  }
  write_file(mnt("dir/sub/new"), "n");
  ASSERT_EQ(err(::chmod(mnt("dir").c_str(), 0700)), 0);
  ASSERT_EQ(err(::lchown(mnt("sym").c_str(), 7, 7)), 0);
  EXPECT_EQ(err(::chmod(mnt("fifo").c_str(), 0600)), 0);
  append_file(mnt("hard1"), "x");
  ASSERT_EQ(err(::chmod(mnt("empty").c_str(), 0700)), 0);
  inos["dir/sub/new"] = lstat_or_throw(mnt("dir/sub/new")).st_ino;
  check("after copy-up");
  remount();
  check("after remount");
}

}  // namespace
}  // namespace cowfs_it
