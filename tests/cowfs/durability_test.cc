// Durability errors propagate: every call that makes the store's data
// durable is failed on purpose (FaultEnv, cowfs/sys/fault_env.h) and the
// operation that needed it must fail and change nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cowfs/core/layer_service.h"
#include "cowfs/sys/fault_env.h"
#include "cowfs/sys/syscalls.h"
#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

using sys::Call;
using sys::Fault;
using sys::FaultEnv;
using sys::Op;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FaultEnvTest, FailsTheChosenCallsOnly) {
  FaultEnv env;
  sys::ScopedEnv use(&env);
  char tmpl[] = "/tmp/cowfs-fault-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto d = sys::open_at(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(d);
  const size_t f = env.add(Fault{Op::kFsync, ENOSPC, sys::path_contains("/b"), 1, 2});
  auto a = sys::open_at(d->get(), "a", O_WRONLY | O_CREAT, 0600);
  auto b = sys::open_at(d->get(), "b", O_WRONLY | O_CREAT, 0600);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(sys::fsync_fd(a->get()).ok()) << "no fault matches a";
  EXPECT_TRUE(sys::fsync_fd(b->get()).ok()) << "the first matching call is skipped";
  EXPECT_EQ(sys::fsync_fd(b->get()).error(), ENOSPC);
  EXPECT_EQ(sys::fsync_fd(b->get()).error(), ENOSPC);
  EXPECT_TRUE(sys::fsync_fd(b->get()).ok()) << "times=2 is spent";
  EXPECT_TRUE(sys::fsync_fd(b->get(), true).ok()) << "fdatasync is another call";
  EXPECT_EQ(env.injected(f), 2u);
  EXPECT_EQ(env.calls(Op::kFsync), 5u);
  env.add(Fault{Op::kWrite, EIO, {}, 0, 1});
  EXPECT_EQ(sys::write_all(a->get(), "x").error(), EIO);
  EXPECT_TRUE(sys::write_all(a->get(), "x").ok());
  env.add(Fault{Op::kRename, EROFS, [](const Call& c) { return c.path == "c"; }, 0, UINT64_MAX});
  EXPECT_EQ(sys::rename_at(d->get(), "a", d->get(), "c").error(), EROFS);
  EXPECT_TRUE(sys::rename_at(d->get(), "a", d->get(), "e").ok());
  std::filesystem::remove_all(dir);
}

TEST(FaultEnvTest, ParsesTheTestOnlyEnvironmentSpec) {
  std::string error;
  auto faults = sys::parse_faults("rename:.map=EIO,syncfs@2*1=ENOSPC,fdatasync=28", &error);
  ASSERT_TRUE(faults) << error;
  ASSERT_EQ(faults->size(), 3u);
  EXPECT_EQ((*faults)[0].op, Op::kRename);
  EXPECT_TRUE((*faults)[0].match(Call{Op::kRename, -1, "0001.map"}));
  EXPECT_FALSE((*faults)[0].match(Call{Op::kRename, -1, "stack"}));
  EXPECT_EQ((*faults)[1].op, Op::kSyncfs);
  EXPECT_EQ((*faults)[1].skip, 2u);
  EXPECT_EQ((*faults)[1].times, 1u);
  EXPECT_EQ((*faults)[1].error, ENOSPC);
  EXPECT_EQ((*faults)[2].error, 28);
  // A crash point: the process dies in place of the call.
  auto crash = sys::parse_faults("link:moved=KILL", &error);
  ASSERT_TRUE(crash) << error;
  ASSERT_EQ(crash->size(), 1u);
  EXPECT_EQ((*crash)[0].op, Op::kLink);
  EXPECT_EQ((*crash)[0].error, sys::kCrash);
  EXPECT_FALSE(sys::parse_faults("chmod=EIO", &error));
  EXPECT_NE(error.find("chmod"), std::string::npos);
  EXPECT_FALSE(sys::parse_faults("fsync=EWHAT", &error));
  EXPECT_FALSE(sys::parse_faults("fsync", &error));
}

class DurabilityTest : public OverlayTest {
 protected:
  void SetUp() override {
    OverlayTest::SetUp();
    use_ = std::make_unique<sys::ScopedEnv>(&env_);
  }
  void TearDown() override {
    use_.reset();
    OverlayTest::TearDown();
  }
  std::string store_path() { return std::filesystem::canonical(root_ + "/store").string(); }
  // What the store shows of its stack: records, stack file, layer dirs.
  std::string store_state() {
    std::string out;
    for (const auto& r : store_->records()) out += r.id + " " + r.label + "\n";
    out += "--\n" + slurp(store_path() + "/stack") + "--\n";
    for (const auto& e : entries(store_path() + "/layers")) out += e + "\n";
    return out;
  }
  void live() {
    mount(options());
    service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), nullptr);
  }
  static Overlay::Options options() {
    Overlay::Options o{::geteuid() == 0};
    o.chunk_threshold = 1 << 20;
    o.chunk_size = 64 << 10;
    return o;
  }
  static std::function<bool(const Call&)> map_file() {
    return [](const Call& c) { return c.path.ends_with(".map"); };
  }

  FaultEnv env_;
  std::unique_ptr<sys::ScopedEnv> use_;
  std::unique_ptr<LayerService> service_;
};

TEST_F(DurabilityTest, CheckpointFailsAndChangesNothingWhenSyncfsFails) {
  live();
  const std::string before = store_state();
  env_.add(Fault{Op::kSyncfs, EIO, {}, 0, UINT64_MAX});
  try {
    service_->checkpoint("A");
    FAIL() << "the checkpoint succeeded although its data could not be made durable";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("nothing was changed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Input/output error"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store_state(), before);
  env_.clear();
  EXPECT_NO_THROW(service_->checkpoint("A"));
  EXPECT_NE(store_state(), before);
}

TEST_F(DurabilityTest, CheckpointFailsAndChangesNothingWhenTheStackCannotBeMadeDurable) {
  live();
  const std::string before = store_state();
  // The store directory's fsync after the stack file was renamed into place.
  const std::string store = store_path();
  env_.add(Fault{Op::kFsync, EIO, [store](const Call& c) { return c.path == store; }, 0, 1});
  EXPECT_THROW(service_->checkpoint("A"), StoreError);
  EXPECT_EQ(store_state(), before) << "the stack file must be put back";
  // A fresh open of the store agrees.
  auto again = Store::open(store, false);
  EXPECT_EQ(again.records().size(), store_->records().size());
}

TEST_F(DurabilityTest, CheckpointFailsWhenTheNewLayerCannotBeMadeDurable) {
  live();
  const std::string before = store_state();
  const std::string layers = store_path() + "/layers";
  env_.add(Fault{Op::kFsync, EIO, [layers](const Call& c) { return c.path == layers; }, 0, 1});
  EXPECT_THROW(service_->checkpoint("A"), StoreError);
  EXPECT_EQ(store_state(), before);
}

TEST_F(DurabilityTest, CheckpointFailsWhenAChunkMapCannotBeSaved) {
  write_lower("big", std::string(4 << 20, 'b'));
  live();
  auto ino = walk("big");
  ASSERT_TRUE(ino);
  auto fh = overlay_->open(*ino, O_RDWR);
  ASSERT_TRUE(fh);
  {
    auto lease = overlay_->write_lease(**fh, 1 << 20, 5);
    ASSERT_TRUE(lease);
    ASSERT_EQ(::pwrite(lease->fd, "hello", 5, 1 << 20), 5);
  }
  const std::string before = store_state();
  env_.add(Fault{Op::kRename, ENOSPC, map_file(), 0, UINT64_MAX});
  try {
    service_->checkpoint("A");
    FAIL() << "the checkpoint froze a layer without its chunk map";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  EXPECT_EQ(store_state(), before);
  EXPECT_EQ(overlay_->flush(**fh).error(), ENOSPC) << "close(2) must report it";
  EXPECT_EQ(overlay_->release(fh->get()).error(), ENOSPC);
  env_.clear();
  // The map is still dirty: the next checkpoint saves it.
  EXPECT_NO_THROW(service_->checkpoint("A"));
  mount(options());
  EXPECT_EQ(read("big")->substr(1 << 20, 5), "hello");
}

TEST_F(DurabilityTest, FsyncReportsAChunkDirectoryThatCannotBeSynced) {
  write_lower("big", std::string(2 << 20, 'b'));
  mount(options());
  auto ino = walk("big");
  ASSERT_TRUE(ino);
  auto fh = overlay_->open(*ino, O_RDWR);
  ASSERT_TRUE(fh);
  {
    auto lease = overlay_->write_lease(**fh, 0, 3);
    ASSERT_TRUE(lease);
    ASSERT_EQ(::pwrite(lease->fd, "abc", 3, 0), 3);
  }
  // The chunks/ directory, after the map was renamed into it.
  env_.add(Fault{Op::kFsync, EIO, [](const Call& c) { return c.path.ends_with("/chunks"); }, 0,
                 UINT64_MAX});
  EXPECT_EQ(overlay_->fsync(**fh, false).error(), EIO);
  EXPECT_EQ(overlay_->flush_all(true).error(), EIO) << "what unmount saves";
  env_.clear();
  EXPECT_TRUE(overlay_->fsync(**fh, false).ok());
  EXPECT_TRUE(overlay_->release(fh->get()).ok());
}

TEST_F(DurabilityTest, SyncReportsEachDurabilityPoint) {
  write_lower("big", std::string(2 << 20, 'b'));
  live();
  write("big", "xyz", 100);  // release saves the map (not durably)
  auto ino = walk("big");
  auto fh = overlay_->open(*ino, O_RDWR);
  ASSERT_TRUE(fh);
  {
    // Another chunk: its map is dirty again.
    auto lease = overlay_->write_lease(**fh, 1 << 20, 3);
    ASSERT_TRUE(lease);
    ASSERT_EQ(::pwrite(lease->fd, "abc", 3, 1 << 20), 3);
  }
  env_.add(Fault{Op::kFdatasync, EIO, {}, 0, 1});
  EXPECT_THROW(service_->sync(), StoreError);
  env_.add(Fault{Op::kSyncfs, EIO, {}, 0, 1});
  EXPECT_THROW(service_->sync(), StoreError);
  EXPECT_EQ(service_->sync(), "synced\n");
  EXPECT_TRUE(overlay_->release(fh->get()).ok());
}

TEST_F(DurabilityTest, AWhiteoutSentinelThatCannotBeSyncedIsAnError) {
  mount();
  const std::string wh = store_path() + "/whiteouts";
  auto fd = sys::open_at(AT_FDCWD, wh.c_str(), O_PATH | O_DIRECTORY);
  ASSERT_TRUE(fd);
  for (const auto& e : entries(wh)) std::filesystem::remove(wh + "/" + e);
  env_.add(Fault{Op::kFsync, EIO, sys::path_contains("/whiteouts/w"), 0, UINT64_MAX});
  Whiteouts fresh;
  EXPECT_EQ(fresh.init(fd->get(), store_->dev()).error(), EIO);
}

}  // namespace
}  // namespace cowfs::testing
