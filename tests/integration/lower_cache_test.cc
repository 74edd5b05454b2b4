// cowfs mount --lower-cache: reads of a lower marked remote go through a
// local chunk cache that outlives the mount. The lower here is a local
// directory behind a read-only bind mount, marked with --remote-lower (the
// sshfs case, detected by itself, is in tests/workflow/network_test.cc).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <thread>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

constexpr size_t kChunk = 64 << 10;

// A number of the lower cache in `cowfs layers --json` of a mounted store.
uint64_t cache_stat(const std::string& store, const std::string& key) {
  RunResult r = run({cowfs_bin(), "layers", "--store", store, "--json"});
  if (r.exit_code != 0) throw std::runtime_error("cowfs layers: " + r.describe());
  std::smatch m;
  const std::regex re("\"lower_cache\":\\{[^}]*\"" + key + "\":([0-9]+)");
  if (!std::regex_search(r.out, m, re)) throw std::runtime_error("no " + key + " in " + r.out);
  return std::stoull(m[1]);
}

// Files in the cache's data/ directory (its entries).
size_t cache_entries(const std::string& cache) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(cache + "/data", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

class LowerCacheIT : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>("cowfs-lcache");
    prod_ = tmp_->mkdir("prod");
    write_file(prod_ + "/small", "hello from production\n");
    tmp_->mkdir("prod/blobs");
    write_file(prod_ + "/blobs/big", big());
    for (int i = 0; i < 12; ++i) {
      write_file(prod_ + "/blobs/b" + std::to_string(i), pattern(1000 + i * 23000, 100 + i));
    }
    lower_ = tmp_->mkdir("lower");
    bind_ = std::make_unique<ReadOnlyBind>(prod_, lower_);
    cache_ = tmp_->sub("cache");
    before_ = Manifest::take(prod_);
  }
  void TearDown() override {
    EXPECT_EQ(diff(before_, Manifest::take(prod_), kEverything), "") << "production changed";
    bind_.reset();
    tmp_.reset();
  }

  static std::string big() { return pattern((5u << 20) + 12345, 7); }
  MountSpec spec(const std::string& store = "store") {
    return {tmp_->sub(store),
            {lower_},
            tmp_->mkdir("mnt"),
            {"--lower-cache", cache_, "--remote-lower", lower_},
            {}};
  }
  // Every file of production read through the mount equals production's.
  void expect_reads_equal_production(const std::string& mnt) {
    for (const auto& [rel, info] : before_.entries) {
      if (!S_ISREG(info.type)) continue;
      EXPECT_EQ(first_difference(read_file(prod_ + "/" + rel), read_file(mnt + "/" + rel)), "")
          << rel;
    }
  }
  uint64_t production_bytes() const {
    uint64_t n = 0;
    for (const auto& [rel, info] : before_.entries) {
      if (S_ISREG(info.type)) n += static_cast<uint64_t>(info.size);
    }
    return n;
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<ReadOnlyBind> bind_;
  std::string prod_, lower_, cache_;
  Manifest before_;
};

TEST_F(LowerCacheIT, ReadsEqualTheLowerColdAndWarmAcrossMountsAndStores) {
  {
    CowfsMount m(spec());
    expect_reads_equal_production(m.spec().mountpoint);
    EXPECT_EQ(cache_stat(m.spec().store, "fetched_bytes"), production_bytes());
    EXPECT_GT(cache_stat(m.spec().store, "misses"), 0u);
    EXPECT_EQ(m.unmount(), "");
  }
  EXPECT_GT(cache_entries(cache_), 80u);
  {
    // Warm: the same store remounted, then a new store (what a reset
    // leaves): nothing is read from the lower again.
    CowfsMount m(spec());
    expect_reads_equal_production(m.spec().mountpoint);
    EXPECT_EQ(cache_stat(m.spec().store, "fetched_bytes"), 0u);
    EXPECT_GE(cache_stat(m.spec().store, "hits"), 80u + 12u);
    EXPECT_EQ(m.unmount(), "");
  }
  {
    CowfsMount m(spec("store2"));
    expect_reads_equal_production(m.spec().mountpoint);
    EXPECT_EQ(cache_stat(m.spec().store, "fetched_bytes"), 0u);
    // Writes are the rehearsal's: a written file is read from the store.
    write_file(m.spec().mountpoint + "/small", "rehearsed\n");
    EXPECT_EQ(read_file(m.spec().mountpoint + "/small"), "rehearsed\n");
    EXPECT_EQ(m.unmount(), "");
  }
}

TEST_F(LowerCacheIT, AProductionFileChangedBetweenMountsIsReadAfresh) {
  {
    CowfsMount m(spec());
    expect_reads_equal_production(m.spec().mountpoint);
    EXPECT_EQ(m.unmount(), "");
  }
  // Production changes under the unmounted rehearsal: same size, new bytes.
  bind_.reset();
  const std::string fresh = pattern(1000 + 3 * 23000, 999);
  write_file(prod_ + "/blobs/b3", fresh);
  bind_ = std::make_unique<ReadOnlyBind>(prod_, lower_);
  before_ = Manifest::take(prod_);
  {
    CowfsMount m(spec());
    EXPECT_EQ(first_difference(fresh, read_file(m.spec().mountpoint + "/blobs/b3")), "");
    expect_reads_equal_production(m.spec().mountpoint);
    EXPECT_EQ(cache_stat(m.spec().store, "fetched_bytes"), fresh.size());
    EXPECT_EQ(cache_stat(m.spec().store, "rejected"), 2u);  // b3's two chunks
    EXPECT_EQ(m.unmount(), "");
  }
}

TEST_F(LowerCacheIT, AKillMidReadLeavesACacheTheNextMountUses) {
  const std::string content = pattern(32u << 20, 11);
  bind_.reset();
  write_file(prod_ + "/blobs/huge", content);
  bind_ = std::make_unique<ReadOnlyBind>(prod_, lower_);
  before_ = Manifest::take(prod_);
  {
    CowfsMount m(spec());
    // A cold sequential read, killed (SIGKILL) once a few chunks are in.
    std::atomic<bool> stop{false};
    std::thread reader([&] {
      int fd = ::open((m.spec().mountpoint + "/blobs/huge").c_str(), O_RDONLY);
      if (fd < 0) return;
      std::string buf(kChunk, '\0');
      off_t off = 0;
      while (!stop.load() && ::pread(fd, buf.data(), buf.size(), off) > 0) {
        off += static_cast<off_t>(buf.size());
      }
      ::close(fd);
    });
    const bool some = wait_until([&] { return cache_entries(cache_) >= 3; }, 30s);
    m.kill_daemon();
    stop = true;
    reader.join();
    ASSERT_TRUE(some);
    ASSERT_TRUE(force_unmount(m.spec().mountpoint));
  }
  const size_t before_remount = cache_entries(cache_);
  EXPECT_LT(before_remount * kChunk, content.size()) << "the read was not cut short";
  {
    CowfsMount m(spec());
    EXPECT_TRUE(std::filesystem::is_empty(cache_ + "/tmp"));
    EXPECT_EQ(first_difference(content, read_file(m.spec().mountpoint + "/blobs/huge")), "");
    // What was cached before the kill was used, and nothing was damaged.
    EXPECT_EQ(cache_stat(m.spec().store, "rejected"), 0u);
    EXPECT_LE(cache_stat(m.spec().store, "fetched_bytes"),
              content.size() - (before_remount - 0) * kChunk + kChunk);
    EXPECT_GE(cache_stat(m.spec().store, "hits"), before_remount);
    EXPECT_EQ(m.unmount(), "");
  }
}

TEST_F(LowerCacheIT, BadCacheRequestsAreRefusedInOneLine) {
  const std::string mnt = tmp_->mkdir("mnt");
  auto mount_with = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {cowfs_bin(),    "mount",   "--store",
                                     tmp_->sub("s"), "--lower", lower_};
    for (auto& e : extra) argv.push_back(e);
    argv.push_back(mnt);
    return run(argv);
  };
  RunResult inside = mount_with({"--lower-cache", lower_ + "/c", "--remote-lower", lower_});
  EXPECT_EQ(inside.exit_code, 2);
  EXPECT_NE(inside.err.find("overlaps the lower"), std::string::npos) << inside.err;
  RunResult no_cache = mount_with({"--remote-lower", lower_});
  EXPECT_EQ(no_cache.exit_code, 2);
  EXPECT_NE(no_cache.err.find("--remote-lower needs --lower-cache"), std::string::npos);
  RunResult bad_size = mount_with({"--lower-cache", cache_, "--lower-cache-size", "lots"});
  EXPECT_EQ(bad_size.exit_code, 2);
  EXPECT_NE(bad_size.err.find("--lower-cache-size lots"), std::string::npos) << bad_size.err;
  RunResult not_lower = mount_with({"--lower-cache", cache_, "--remote-lower", prod_});
  EXPECT_EQ(not_lower.exit_code, 2);
  EXPECT_NE(not_lower.err.find("is not one of the --lower"), std::string::npos);
  EXPECT_FALSE(is_mounted(mnt));
  // One mount per cache.
  CowfsMount first(spec());
  RunResult second = run({cowfs_bin(), "mount", "--store", tmp_->sub("s2"), "--lower", lower_,
                          "--lower-cache", cache_, tmp_->mkdir("mnt2")});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("in use by another cowfs mount"), std::string::npos) << second.err;
  EXPECT_EQ(first.unmount(), "");
}

}  // namespace
}  // namespace cowfs_it
