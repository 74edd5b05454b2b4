#include "cowfs/core/layer_service.h"

#include <sys/resource.h>

#include <algorithm>

#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

struct RecordingKernel : KernelCache {
  std::vector<std::string> entries;
  std::vector<uint64_t> inodes;
  void invalidate_entry(uint64_t parent, const std::string& name) override {
    entries.push_back(std::to_string(parent) + "/" + name);
  }
  void invalidate_inode(uint64_t ino) override { inodes.push_back(ino); }
};

class LayerServiceTest : public OverlayTest {
 protected:
  void live() {
    mount();
    service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), &kernel_);
  }
  // The view as "path=content" lines (directories as "path/").
  std::string view(const std::string& dir = "") {
    std::string out;
    for (const auto& name : list(dir)) {
      std::string rel = dir.empty() ? name : dir + "/" + name;
      auto st = overlay_->getattr(*walk(rel));
      if (S_ISDIR(st->st_mode)) {
        out += rel + "/\n" + view(rel);
      } else {
        out += rel + "=" + read(rel).value_or("?") + "\n";
      }
    }
    return out;
  }
  void create(const std::string& dir, const std::string& name, const std::string& data) {
    auto c = overlay_->create(this->dir(dir), name, 0644, O_RDWR, me_);
    ASSERT_TRUE(c) << name;
    ASSERT_EQ(::pwrite(c->second->fd(), data.data(), data.size(), 0),
              static_cast<ssize_t>(data.size()));
    EXPECT_TRUE(overlay_->release(c->second.get()).ok());
  }

  RecordingKernel kernel_;
  std::unique_ptr<LayerService> service_;
};

TEST_F(LayerServiceTest, RewindRestoresExactlyTheCheckpointedView) {
  write_lower("d/x", "x0");
  write_lower("f", "f0");
  live();
  write("f", "f1");
  create("d", "new", "n");
  service_->checkpoint("A");
  const std::string at_a = view();
  write("f", "F2");
  ASSERT_TRUE(overlay_->unlink(dir("d"), "new").ok());
  ASSERT_TRUE(overlay_->rename(kRootIno, "d", kRootIno, "e", 0).ok());
  create("", "later", "l");
  EXPECT_NE(view(), at_a);
  service_->rewind("A");
  EXPECT_EQ(view(), at_a);
  EXPECT_FALSE(kernel_.entries.empty());
  mount();  // and after a remount
  EXPECT_EQ(view(), at_a);
  EXPECT_EQ(lower_content("f"), "f0");
}

TEST_F(LayerServiceTest, ResetShowsTheLowersAlone) {
  write_lower("f", "f0");
  live();
  const std::string base = view();
  write("f", "changed");
  create("", "n", "1");
  service_->checkpoint("A");
  ASSERT_TRUE(overlay_->unlink(kRootIno, "f").ok());
  service_->reset();
  EXPECT_EQ(view(), base);
}

TEST_F(LayerServiceTest, WriterOpenedBeforeCheckpointWritesToTheNewTop) {
  write_lower("f", "0000");
  live();
  auto fh = overlay_->open(*walk("f"), O_RDWR);
  ASSERT_TRUE(fh);
  {
    auto lease = overlay_->write_lease(**fh, 0, 1);
    ASSERT_EQ(::pwrite(lease->fd, "1", 1, 0), 1);
  }
  service_->checkpoint("A");
  {
    auto lease = overlay_->write_lease(**fh, 1, 1);
    ASSERT_TRUE(lease);
    ASSERT_EQ(::pwrite(lease->fd, "2", 1, 1), 1);
  }
  EXPECT_EQ(read("f"), "1200");
  EXPECT_TRUE(overlay_->release(fh->get()).ok());
  service_->rewind("A");
  EXPECT_EQ(read("f"), "1000");  // the frozen layer kept what it had
}

TEST_F(LayerServiceTest, RewindRefusedWhileAFileOfADroppedLayerIsOpenForWriting) {
  write_lower("f", "0");
  live();
  service_->checkpoint("A");
  auto fh = overlay_->open(*walk("f"), O_WRONLY);
  ASSERT_TRUE(fh);
  (*fh)->pid = 4242;
  try {
    service_->rewind("A");
    FAIL() << "rewind should refuse";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("/f (pid 4242)"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(overlay_->release(fh->get()).ok());
  service_->rewind("A");
}

TEST_F(LayerServiceTest, LabelsAreValidated) {
  live();
  service_->checkpoint("1.0");
  EXPECT_THROW(service_->checkpoint("1.0"), StoreError);
  EXPECT_THROW(service_->checkpoint("a b"), StoreError);
  EXPECT_THROW(service_->checkpoint(""), StoreError);
  EXPECT_THROW(service_->checkpoint(std::string(65, 'x')), StoreError);
  EXPECT_THROW(service_->rewind("2.0"), StoreError);
}

TEST_F(LayerServiceTest, CompactKeepsTheViewAndTheKeptCheckpoints) {
  write_lower("d/x", "x0");
  write_lower("d/sub/y", "y0");
  write_lower("f", "f0");
  live();
  write("f", "f1");
  service_->checkpoint("A");
  const std::string at_a = view();
  ASSERT_TRUE(overlay_->rename(kRootIno, "d", kRootIno, "e", 0).ok());
  create("e", "n1", "1");
  service_->checkpoint("B");
  ASSERT_TRUE(overlay_->unlink(dir("e/sub"), "y").ok());
  write("f", "f3");
  service_->checkpoint("C");
  create("", "top", "t");
  const std::string now = view();
  const auto ino_e = *walk("e");
  service_->compact({"A"});
  EXPECT_EQ(view(), now);
  EXPECT_EQ(*walk("e"), ino_e);
  EXPECT_EQ(store_->records().size(), 2u);  // A and the top
  mount();
  EXPECT_EQ(view(), now);
  service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), &kernel_);
  service_->rewind("A");
  EXPECT_EQ(view(), at_a);
}

TEST_F(LayerServiceTest, CompactKeepsMovedFilesReadingFromBelow) {
  write_lower("flat/a", "a0");
  write_lower("flat/b", "b0");
  live();
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "moved", 0755, me_));
  ASSERT_TRUE(overlay_->rename(dir("flat"), "a", dir("moved"), "a", 0).ok());
  service_->checkpoint("A");
  ASSERT_TRUE(overlay_->rename(dir("flat"), "b", dir("moved"), "b", 0).ok());
  service_->checkpoint("B");
  create("", "top", "t");
  const std::string now = view();
  service_->compact({});
  EXPECT_EQ(view(), now);
  EXPECT_EQ(read("moved/a"), "a0");
  EXPECT_EQ(read("moved/b"), "b0");
  mount();
  EXPECT_EQ(view(), now);
  write("moved/b", "b1");
  EXPECT_EQ(read("moved/b"), "b1");
}

TEST_F(LayerServiceTest, OfflineCommandsMatchLiveOnes) {
  write_lower("f", "f0");
  live();
  write("f", "f1");
  service_.reset();
  overlay_.reset();
  LayerService(*store_, *whiteouts_, nullptr, nullptr).checkpoint("A");
  mount();
  write("f", "f2");
  overlay_.reset();
  LayerService(*store_, *whiteouts_, nullptr, nullptr).rewind("A");
  mount();
  EXPECT_EQ(read("f"), "f1");
}

TEST_F(LayerServiceTest, DiffNamesAddedChangedAndDeletedFiles) {
  write_lower("f", "f0");
  write_lower("g", "g0");
  live();
  write("f", "f1");
  service_->checkpoint("A");
  create("", "n", "new");
  ASSERT_TRUE(overlay_->unlink(kRootIno, "g").ok());
  std::string all = service_->diff("", "", true);
  EXPECT_NE(all.find("\"changed\":[{\"path\":\"f\""), std::string::npos) << all;
  EXPECT_NE(all.find("\"added\":[{\"path\":\"n\""), std::string::npos) << all;
  EXPECT_NE(all.find("\"deleted\":[{\"path\":\"g\"}"), std::string::npos) << all;
  std::string since_a = service_->diff("A", "", true);
  EXPECT_EQ(since_a.find("\"path\":\"f\""), std::string::npos) << since_a;
}

TEST_F(LayerServiceTest, DiffNamesMovedFilesRenamedAndCountsWhatTheyHold) {
  write_lower("flat/a", std::string(100000, 'a'));
  write_lower("flat/b", "b0");
  live();
  service_->checkpoint("A");
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "moved", 0755, me_));
  ASSERT_TRUE(overlay_->rename(dir("flat"), "a", dir("moved"), "a", 0).ok());
  ASSERT_TRUE(overlay_->unlink(dir("flat"), "b").ok());
  std::string d = service_->diff("A", "", true);
  EXPECT_NE(d.find("\"renamed\":[{\"from\":\"flat/a\",\"to\":\"moved/a\"}]"), std::string::npos)
      << d;
  EXPECT_NE(d.find("\"added\":[]"), std::string::npos) << d;
  EXPECT_NE(d.find("\"deleted\":[{\"path\":\"flat/b\"}]"), std::string::npos) << d;
  // A reference holds none of the file's 100,000 bytes (at most a block
  // for its xattrs).
  const size_t at = d.find("\"bytes\":");
  ASSERT_NE(at, std::string::npos) << d;
  EXPECT_LE(std::stoll(d.substr(at + 8)), 4096) << d;
  std::string text = service_->diff("A", "", false);
  EXPECT_NE(text.find("R flat/a -> moved/a\n"), std::string::npos) << text;
  EXPECT_NE(text.find("0 added, 0 changed, 1 deleted, 1 renamed, "), std::string::npos) << text;
}

// Directory fds closed for the fd budget are reopened through the parent's
// part of the same layer, also when parent and child were resolved on
// either side of a checkpoint (and so hold different objects for it).
TEST_F(LayerServiceTest, ClosedDirectoryFdsReopenAcrossACheckpoint) {
  LowFdLimit limit(600);
  write_lower("keep", "k");
  live();
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "hi", 0755, me_));
  constexpr int kDirs = 400;
  for (int i = 0; i < kDirs; ++i) {
    auto d = overlay_->mkdir(dir("hi"), "d" + std::to_string(i), 0755, me_);
    ASSERT_TRUE(d) << i;
    auto sub = overlay_->mkdir(d->node->ino, "sub", 0755, me_);
    ASSERT_TRUE(sub) << i;
    create("hi/d" + std::to_string(i) + "/sub", "f", std::to_string(i));
    // The kernel forgets the subdirectory: it is resolved again later.
    overlay_->forget(sub->node->ino, 2);
  }
  service_->checkpoint("c1");
  for (int i = 0; i < kDirs; ++i) {
    ASSERT_EQ(read("hi/d" + std::to_string(i) + "/sub/f"), std::to_string(i)) << i;
  }
  EXPECT_LT(Node::open_fds.load(), 600);
}

// fsdiff seed 3300081: a directory's redirect is its path in the view of
// the layers below the top, which a layer in between may differ from the
// layer its content lies in (here L2 moved b, where L1 had put deep).
TEST_F(LayerServiceTest, ARedirectFollowsRenamesOfTheLayersBetween) {
  write_lower("a/sub/deep/w.txt", "w");
  write_lower("b/keep", "k");
  live();
  ASSERT_TRUE(overlay_->mkdir(dir("b"), "sp ace", 01755, me_));
  ASSERT_TRUE(overlay_->rename(dir("a/sub"), "deep", dir("b/sp ace"), "a", 0).ok());
  service_->checkpoint("c0");
  ASSERT_TRUE(overlay_->rename(kRootIno, "b", dir("a/sub"), "a", 0).ok());
  service_->checkpoint("c5");
  ASSERT_TRUE(overlay_->rename(dir("a/sub/a/sp ace"), "a", kRootIno, "n1", 0).ok());
  EXPECT_EQ(read("n1/w.txt"), "w");
  mount();  // found again by its redirect alone
  EXPECT_EQ(list("n1"), std::vector<std::string>{"w.txt"});
  EXPECT_EQ(read("n1/w.txt"), "w");
}

}  // namespace
}  // namespace cowfs::testing
