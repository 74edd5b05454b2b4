// LowerCache without a mount: a plain directory plays the remote lower.
#include "cowfs/core/lower_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

namespace fs = std::filesystem;
constexpr uint32_t kChunk = 64 << 10;
constexpr uint64_t kTrailer = 80;

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Equal byte strings, or where they first differ (never megabytes of both).
::testing::AssertionResult same(const std::optional<std::string>& a, const std::string& b) {
  if (!a) return ::testing::AssertionFailure() << "no content";
  if (*a == b) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < a->size() && i < b.size() && (*a)[i] == b[i]) ++i;
  return ::testing::AssertionFailure()
         << "sizes " << a->size() << " and " << b.size() << ", first difference at byte " << i;
}

class LowerCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cowfs-lcache-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    lower_ = root_ + "/lower";
    cache_dir_ = root_ + "/cache";
    fs::create_directories(lower_);
  }
  void TearDown() override {
    cache_.reset();
    for (int fd : fds_) ::close(fd);
    fs::remove_all(root_);
  }

  void open_cache(uint64_t max_bytes = 1ull << 30) {
    cache_.reset();
    auto c = LowerCache::open({cache_dir_, max_bytes, kChunk});
    ASSERT_TRUE(c) << std::strerror(c.error());
    cache_ = c.take();
  }
  void write_lower(const std::string& rel, const std::string& content, time_t mtime = 1000000) {
    const std::string p = lower_ + "/" + rel;
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    const struct timespec t[2] = {{mtime, 0}, {mtime, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, 0), 0);
  }
  // The lower is opened as cowfs opens it: O_RDONLY.
  LowerCache::Source source(const std::string& rel) {
    int fd = ::open((lower_ + "/" + rel).c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    fds_.push_back(fd);
    auto s = LowerCache::source(lower_, rel, fd);
    EXPECT_TRUE(s);
    return *s;
  }
  // [offset, offset+length) read through the cache.
  std::string read(const LowerCache::Source& src, off_t offset, size_t length) {
    std::vector<UniqueFd> hold;
    auto pieces = cache_->plan_read(src, offset, length, hold);
    EXPECT_TRUE(pieces) << std::strerror(pieces.error());
    if (!pieces) return {};
    std::string out;
    for (const auto& p : *pieces) {
      std::string buf(p.length, '\0');
      EXPECT_EQ(::pread(p.fd, buf.data(), p.length, p.offset), static_cast<ssize_t>(p.length));
      out += buf;
    }
    return out;
  }
  // Sum of the sizes of the entry files on disk.
  uint64_t disk_bytes() {
    uint64_t total = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache_dir_ + "/data")) {
      if (e.is_regular_file()) total += e.file_size();
    }
    return total;
  }
  std::vector<fs::path> entries() {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(cache_dir_ + "/data")) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
    return out;
  }

  std::string root_, lower_, cache_dir_;
  std::unique_ptr<LowerCache> cache_;
  std::vector<int> fds_;
};

TEST(Xxh64, KnownValues) {
  // Reference values of xxHash's XXH64.
  EXPECT_EQ(xxh64("", 0, 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
}

TEST_F(LowerCacheTest, ServesTheLowersBytesColdAndWarm) {
  const std::string content = random_bytes(5 * kChunk + 12345, 1);
  write_lower("dir/blob", content);
  open_cache();
  auto src = source("dir/blob");
  // Cold: everything fetched once, at odd offsets and lengths.
  const std::vector<std::pair<off_t, size_t>> reads = {
      {0, 4096}, {100, 200000}, {kChunk - 1, 2}, {5 * kChunk, 20000}, {0, content.size() + 100}};
  for (auto [off, len] : reads) {
    EXPECT_TRUE(same(read(src, off, len), content.substr(off, len))) << off << "+" << len;
  }
  auto cold = cache_->stats();
  EXPECT_EQ(cold.misses, 6u);
  EXPECT_EQ(cold.fetched_bytes, content.size());
  EXPECT_EQ(cold.entries, 6u);
  EXPECT_EQ(cold.bytes, content.size() + 6 * kTrailer);
  EXPECT_TRUE(same(read(src, static_cast<off_t>(content.size()), 10), ""));

  // Warm, in another process's cache (a remount): no byte from the lower.
  open_cache();
  src = source("dir/blob");
  for (auto [off, len] : reads) EXPECT_TRUE(same(read(src, off, len), content.substr(off, len)));
  auto warm = cache_->stats();
  EXPECT_EQ(warm.fetched_bytes, 0u);
  EXPECT_EQ(warm.misses, 0u);
  EXPECT_GT(warm.hits, 0u);
  EXPECT_EQ(warm.entries, 6u);
}

TEST_F(LowerCacheTest, AChangedProductionFileIsReadAfresh) {
  write_lower("f", random_bytes(2 * kChunk, 1), 1000000);
  open_cache();
  EXPECT_TRUE(same(read(source("f"), 0, 2 * kChunk), random_bytes(2 * kChunk, 1)));
  // Same size, new mtime (a blob rewritten in place).
  write_lower("f", random_bytes(2 * kChunk, 2), 1000001);
  open_cache();
  EXPECT_TRUE(same(read(source("f"), 0, 2 * kChunk), random_bytes(2 * kChunk, 2)));
  EXPECT_EQ(cache_->stats().rejected, 2u);
  EXPECT_EQ(cache_->stats().fetched_bytes, 2u * kChunk);
  // Same mtime, new size.
  write_lower("f", random_bytes(kChunk + 7, 3), 1000001);
  open_cache();
  EXPECT_TRUE(same(read(source("f"), 0, 2 * kChunk), random_bytes(kChunk + 7, 3)));
  EXPECT_EQ(cache_->stats().rejected, 2u);
  // The replaced entries are gone, not kept beside the new ones.
  EXPECT_EQ(cache_->stats().entries, 2u);
  // A file of the same name in another lower is another file.
  auto other = LowerCache::source("/elsewhere", "f", source("f").fd);
  ASSERT_TRUE(other);
  EXPECT_NE(other->key[0], source("f").key[0]);
}

TEST_F(LowerCacheTest, EvictionKeepsTheBoundLeastRecentlyUsedFirst) {
  const uint64_t bound = 4 * (kChunk + kTrailer);
  const std::string content = random_bytes(10 * kChunk, 4);
  write_lower("big", content);
  open_cache(bound);
  auto src = source("big");
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(same(read(src, i * kChunk, 1), content.substr(i * kChunk, 1)));
  // Chunk 0 used again: chunk 1 is now the oldest.
  EXPECT_TRUE(same(read(src, 0, 1), content.substr(0, 1)));
  for (int i = 3; i < 10; ++i) {
    EXPECT_TRUE(same(read(src, i * kChunk, kChunk), content.substr(i * kChunk, kChunk)));
    EXPECT_LE(cache_->stats().bytes, bound);
    EXPECT_LE(disk_bytes(), bound);
  }
  EXPECT_EQ(cache_->stats().entries, 4u);
  EXPECT_EQ(cache_->stats().evictions, 6u);
  // The four newest are held: 6..9.
  const uint64_t before = cache_->stats().fetched_bytes;
  EXPECT_TRUE(same(read(src, 6 * kChunk, 4 * kChunk), content.substr(6 * kChunk, 4 * kChunk)));
  EXPECT_EQ(cache_->stats().fetched_bytes, before);

  // A smaller bound at the next open evicts the oldest.
  open_cache(2 * (kChunk + kTrailer));
  EXPECT_EQ(cache_->stats().entries, 2u);
  EXPECT_LE(disk_bytes(), 2 * (kChunk + kTrailer));
}

TEST_F(LowerCacheTest, TheLruOrderSurvivesAReopen) {
  const std::string content = random_bytes(4 * kChunk, 5);
  write_lower("f", content);
  open_cache(3 * (kChunk + kTrailer));
  auto src = source("f");
  // Entries' mtimes come from the kernel's coarse clock (a tick): fetches
  // and the hit a few ticks apart, so their order is in the mtimes.
  for (int i = 0; i < 3; ++i) {
    (void)read(src, i * kChunk, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  open_cache(3 * (kChunk + kTrailer));
  src = source("f");
  (void)read(src, 0, 1);  // a hit: chunk 0 is the newest now
  open_cache(3 * (kChunk + kTrailer));
  src = source("f");
  (void)read(src, 3 * kChunk, 1);  // evicts the least recent: chunk 1
  const uint64_t before = cache_->stats().fetched_bytes;
  EXPECT_TRUE(same(read(src, 0, 1), content.substr(0, 1)));
  EXPECT_TRUE(same(read(src, 2 * kChunk, 1), content.substr(2 * kChunk, 1)));
  EXPECT_EQ(cache_->stats().fetched_bytes, before);
}

TEST_F(LowerCacheTest, ACorruptOrTruncatedEntryIsRefetched) {
  const std::string content = random_bytes(3 * kChunk, 6);
  write_lower("f", content);
  open_cache();
  auto src = source("f");
  EXPECT_TRUE(same(read(src, 0, content.size()), content));
  auto files = entries();
  ASSERT_EQ(files.size(), 3u);
  std::sort(files.begin(), files.end());
  // One byte flipped in the data of one entry, another cut short, a third
  // emptied (as a power cut after the rename may leave it).
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(1000);
    f.write(&c, 1);
  }
  fs::resize_file(files[1], kChunk);
  fs::resize_file(files[2], 0);
  open_cache();
  src = source("f");
  EXPECT_TRUE(same(read(src, 0, content.size()), content));
  auto st = cache_->stats();
  EXPECT_EQ(st.rejected, 3u);
  EXPECT_EQ(st.fetched_bytes, content.size());
  // And they are whole again.
  open_cache();
  src = source("f");
  EXPECT_TRUE(same(read(src, 0, content.size()), content));
  EXPECT_EQ(cache_->stats().rejected, 0u);
  EXPECT_EQ(cache_->stats().fetched_bytes, 0u);
}

TEST_F(LowerCacheTest, PartialTempFilesOfAKilledFetchAreIgnored) {
  const std::string content = random_bytes(kChunk, 7);
  write_lower("f", content);
  open_cache();
  cache_.reset();
  // What a process killed mid-fetch leaves: a half-written temp file.
  { std::ofstream(cache_dir_ + "/tmp/4242.1", std::ios::binary) << content.substr(0, 1000); }
  open_cache();
  EXPECT_TRUE(fs::is_empty(cache_dir_ + "/tmp"));
  EXPECT_EQ(cache_->stats().entries, 0u);
  EXPECT_TRUE(same(read(source("f"), 0, kChunk), content));
  EXPECT_EQ(cache_->stats().fetched_bytes, kChunk);
}

TEST_F(LowerCacheTest, ConcurrentReadersFetchEachChunkOnce) {
  const std::string content = random_bytes(8 * kChunk, 8);
  write_lower("f", content);
  open_cache();
  auto src = source("f");
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        const off_t off = ((i + t) % 8) * kChunk + 17;
        std::vector<UniqueFd> hold;
        auto pieces = cache_->plan_read(src, off, 1000, hold);
        if (!pieces || pieces->size() != 1) {
          ++wrong;
          continue;
        }
        std::string buf(1000, '\0');
        if (::pread((*pieces)[0].fd, buf.data(), 1000, (*pieces)[0].offset) != 1000 ||
            buf != content.substr(off, 1000)) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(cache_->stats().fetched_bytes, content.size());
  EXPECT_EQ(cache_->stats().misses, 8u);
}

TEST_F(LowerCacheTest, OneProcessAtATimeAndTheLowerIsOnlyRead) {
  write_lower("f", "hello");
  open_cache();
  EXPECT_EQ(LowerCache::open({cache_dir_, 1 << 20, kChunk}).error(), EBUSY);
  // The fd handed in is O_RDONLY: a write through it would fail, and the
  // file is untouched after a read.
  auto src = source("f");
  struct stat before {};
  ASSERT_EQ(::stat((lower_ + "/f").c_str(), &before), 0);
  EXPECT_TRUE(same(read(src, 0, 100), "hello"));
  struct stat after {};
  ASSERT_EQ(::stat((lower_ + "/f").c_str(), &after), 0);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  EXPECT_EQ(before.st_ctim.tv_nsec, after.st_ctim.tv_nsec);
}

TEST_F(LowerCacheTest, RelativePathIsThePathBelowTheLowerRoot) {
  write_lower("a/b c/d", "x");
  int root = ::open(lower_.c_str(), O_PATH | O_DIRECTORY);
  int fd = ::open((lower_ + "/a/b c/d").c_str(), O_PATH);
  ASSERT_GE(root, 0);
  ASSERT_GE(fd, 0);
  auto rel = LowerCache::relative_path(root, fd);
  ::close(root);
  ::close(fd);
  ASSERT_TRUE(rel);
  EXPECT_EQ(*rel, "a/b c/d");
}

TEST(ByteSize, ParsesUnitsAndRefusesTheRest) {
  EXPECT_EQ(parse_byte_size("4096"), 4096u);
  EXPECT_EQ(parse_byte_size("50G"), 50ull << 30);
  EXPECT_EQ(parse_byte_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("1.5T"), 3ull << 39);
  EXPECT_EQ(parse_byte_size("8KiB"), 8192u);
  EXPECT_EQ(parse_byte_size("2GB"), 2ull << 30);
  for (const char* bad : {"", "G", "-1", "1.5", "10X", "5 G", "1.G", "99999999999999999999"}) {
    EXPECT_FALSE(parse_byte_size(bad)) << bad;
  }
}

TEST(NetworkFs, KnowsTheNetworkFilesystemsAndNotTheLocalOnes) {
  EXPECT_TRUE(is_network_fs_type(0x65735546));   // FUSE
  EXPECT_TRUE(is_network_fs_type(0x6969));       // NFS
  EXPECT_TRUE(is_network_fs_type(0xFF534D42));   // CIFS
  EXPECT_TRUE(is_network_fs_type(0x01021997));   // 9p
  EXPECT_FALSE(is_network_fs_type(0xEF53));      // ext2/3/4
  EXPECT_FALSE(is_network_fs_type(0x01021994));  // tmpfs
  EXPECT_FALSE(is_network_fs_type(0x58465342));  // xfs
  EXPECT_FALSE(is_network_fs_type(0x794C7630));  // overlayfs
}

// The overlay reads files of lowers marked remote through the cache, and
// only those: never the rehearsal's own copies.
class OverlayLowerCacheTest : public OverlayTest {
 protected:
  std::unique_ptr<LowerCache> open_cache() {
    auto c = LowerCache::open({root_ + "/cache", 1ull << 30, kChunk});
    EXPECT_TRUE(c);
    return c ? c.take() : nullptr;
  }
  Overlay::Options with(LowerCache* cache, bool remote) {
    Overlay::Options o{::geteuid() == 0};
    o.chunk_size = kChunk;
    o.lower_cache = cache;
    o.remote_lowers = {remote};
    return o;
  }
};

TEST_F(OverlayLowerCacheTest, RemoteLowerReadsGoThroughTheCache) {
  const std::string content = random_bytes(3 * kChunk + 5, 9);
  write_lower("d/blob", content);
  write_lower("small", "abc");
  auto cache = open_cache();
  ASSERT_TRUE(cache);
  mount(with(cache.get(), true));
  EXPECT_TRUE(same(read("d/blob"), content));
  EXPECT_EQ(cache->stats().misses, 4u);
  EXPECT_EQ(cache->stats().fetched_bytes, content.size());
  EXPECT_TRUE(same(read("d/blob"), content));
  EXPECT_EQ(cache->stats().hits, 4u);
  EXPECT_EQ(cache->stats().fetched_bytes, content.size());
  // A remount: served from the cache, nothing fetched.
  mount(with(cache.get(), true));
  EXPECT_TRUE(same(read("d/blob"), content));
  EXPECT_EQ(cache->stats().hits, 8u);
  EXPECT_EQ(cache->stats().fetched_bytes, content.size());
  // A file written through the view is the rehearsal's: read from the top.
  write("small", "xyz");
  EXPECT_TRUE(same(read("small"), "xyz"));
  EXPECT_EQ(cache->stats().misses, 4u);
  overlay_.reset();
}

TEST_F(OverlayLowerCacheTest, LocalLowersAreNotCached) {
  write_lower("f", random_bytes(kChunk, 10));
  auto cache = open_cache();
  ASSERT_TRUE(cache);
  mount(with(cache.get(), false));
  EXPECT_TRUE(same(read("f"), random_bytes(kChunk, 10)));
  EXPECT_EQ(cache->stats().misses + cache->stats().hits, 0u);
  overlay_.reset();
}

}  // namespace
}  // namespace cowfs::testing
