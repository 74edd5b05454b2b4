// Link counts (link_count.h): st_nlink of a file is what its names make it,
// never what the store's own links make it, at every moment, in particular
// right after a layer change, before trash/ is purged.
#include "cowfs/core/link_count.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <stdexcept>

#include "cowfs/core/chunked_file.h"
#include "cowfs/core/layer_service.h"
#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

namespace fs = std::filesystem;

class LinkCountTest : public OverlayTest {
 protected:
  static Overlay::Options small_chunks() {
    Overlay::Options o{::geteuid() == 0};
    o.chunk_threshold = 4096;
    o.chunk_size = 4096;
    return o;
  }
  void live() {
    mount(small_chunks());
    service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), nullptr);
  }
  void offline() {
    service_.reset();
    overlay_.reset();
  }
  nlink_t nlink(const std::string& rel) {
    auto ino = walk(rel);
    EXPECT_TRUE(ino) << rel;
    if (!ino) return 0;
    auto st = overlay_->getattr(*ino);
    EXPECT_TRUE(st) << rel;
    return st ? st->st_nlink : 0;
  }
  void chmod(const std::string& rel, mode_t mode) {
    auto ino = walk(rel);
    ASSERT_TRUE(ino) << rel;
    SetAttr a;
    a.mode = true;
    a.values.st_mode = mode;
    a.caller = me_;
    ASSERT_TRUE(overlay_->setattr(*ino, a, nullptr)) << rel;
  }
  // Names of the `.base` links in the chunks/ directories of the store.
  // Everything below dir (nothing if dir is missing). The store empties its
  // trash on a thread of its own, so an entry can vanish under the walk:
  // then it starts again, until a walk sees a tree that held still.
  static std::vector<fs::directory_entry> entries_below(const std::string& dir) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::vector<fs::directory_entry> found;
      std::error_code ec;
      fs::recursive_directory_iterator it(dir, ec);
      if (ec) return found;
      for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        found.push_back(*it);
      if (!ec) return found;
    }
    throw std::runtime_error("the tree under " + dir + " kept changing during 100 walks");
  }
  std::vector<std::string> bases(const std::string& under) {
    std::vector<std::string> out;
    for (const auto& e : entries_below(root_ + "/store/" + under)) {
      if (e.path().extension() == ".base") out.push_back(e.path().string());
    }
    return out;
  }
  // Entries of dir (recursively) whose inode is also linked from outside
  // it: links a layer change left in trash/ that still count somewhere.
  std::vector<std::string> links_shared_with_outside(const std::string& dir) {
    std::map<ino_t, std::pair<nlink_t, std::vector<std::string>>> seen;
    for (const auto& e : entries_below(dir)) {
      struct stat st {};
      if (::lstat(e.path().c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
      auto& [count, paths] = seen[st.st_ino];
      count = st.st_nlink;
      paths.push_back(e.path().string());
    }
    std::vector<std::string> out;
    for (const auto& [ino, v] : seen) {
      if (v.first > v.second.size()) out.insert(out.end(), v.second.begin(), v.second.end());
    }
    return out;
  }
  std::string trash() const { return root_ + "/store/trash"; }

  // h1 and a/h2 are one lower file. h1 is written (a copy of 8 KiB, linked
  // in the index), checkpoint A freezes it, then a chmod of a/h2 copies it
  // again, by chunk: the new top links A's copy as its chunked copy's base.
  void link_a_frozen_copy_as_base() {
    write_lower("h1", "linked\n");
    fs::create_directories(lower_ + "/a");
    fs::create_hard_link(lower_ + "/h1", lower_ + "/a/h2");
    live();
    write("h1", std::string(8192, 'x'));
    service_->checkpoint("A");
    chmod("a/h2", 0600);
    ASSERT_EQ(bases("layers").size(), 1u) << "the scenario no longer makes a .base link";
    EXPECT_EQ(nlink("h1"), 2u);
    EXPECT_EQ(nlink("a/h2"), 2u);
  }

  std::unique_ptr<LayerService> service_;
};

// The bug of issue 17 finding 5 (fsdiff seed 9100015): the dropped layer's
// .base link, in trash/ until a purge on another thread, counted in the
// st_nlink of the frozen copy the names resolve to again.
TEST_F(LinkCountTest, RewindLeavesNoLinkThatCountsInTrash) {
  link_a_frozen_copy_as_base();
  offline();
  store_->rewind("A");  // the store's own step: nothing purges trash/ here
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
  mount(small_chunks());
  EXPECT_EQ(nlink("h1"), 2u);
  EXPECT_EQ(nlink("a/h2"), 2u);
}

TEST_F(LinkCountTest, LiveRewindCountsRightAtOnce) {
  link_a_frozen_copy_as_base();
  service_->rewind("A");
  EXPECT_EQ(nlink("h1"), 2u);
  EXPECT_EQ(nlink("a/h2"), 2u);
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
}

TEST_F(LinkCountTest, RewindOverSeveralLayersAndResetLeaveNoCountingLink) {
  link_a_frozen_copy_as_base();
  service_->checkpoint("B");
  chmod("h1", 0640);
  service_->checkpoint("C");
  service_->rewind("A");
  EXPECT_EQ(nlink("h1"), 2u);
  EXPECT_EQ(nlink("a/h2"), 2u);
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
  service_->reset();
  EXPECT_EQ(nlink("h1"), 2u);
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
}

// compact builds the merged layer of links to its sources' inodes: the
// sources' own links must not count once the stack no longer has them.
TEST_F(LinkCountTest, CompactLeavesNoLinkThatCountsInTrash) {
  live();
  {
    auto c = overlay_->create(kRootIno, "g", 0644, O_RDWR, me_);
    ASSERT_TRUE(c);
    EXPECT_TRUE(overlay_->release(c->second.get()).ok());
  }
  write("g", std::string(8192, 'g'));
  service_->checkpoint("A");
  chmod("g", 0600);  // a chunked copy whose base is A's file
  service_->checkpoint("B");
  ASSERT_EQ(bases("layers").size(), 1u);
  EXPECT_EQ(nlink("g"), 1u);
  service_->compact({});
  EXPECT_EQ(nlink("g"), 1u);
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
  EXPECT_EQ(read("g"), std::string(8192, 'g'));
}

// A layer directory no stack names (a compact or a rewind cut short by a
// crash) may link the inodes of layers that stay: the next start releases
// those links before anything is served, not some time later.
TEST_F(LinkCountTest, GarbageCollectionReleasesLinksToKeptInodes) {
  live();
  {
    auto c = overlay_->create(kRootIno, "g", 0644, O_RDWR, me_);
    ASSERT_TRUE(c);
    EXPECT_TRUE(overlay_->release(c->second.get()).ok());
  }
  service_->checkpoint("A");
  EXPECT_EQ(nlink("g"), 1u);
  offline();
  // What a merge cut short leaves: a layer of links to A's files.
  const std::string id = store_->create_layer();
  const std::string a_tree = root_ + "/store/layers/" + store_->records().front().id + "/tree";
  fs::create_hard_link(a_tree + "/g", root_ + "/store/layers/" + id + "/tree/g");
  store_->collect_garbage();
  EXPECT_EQ(links_shared_with_outside(trash()), std::vector<std::string>{});
  mount(small_chunks());
  EXPECT_EQ(nlink("g"), 1u);
}

// Rule 2 and the counts a copy records, as numbers (link_count.h).
TEST(LinkCountRules, AStoreCopyCountsNamesNotTheStoresOwnLinks) {
  EXPECT_EQ(store_copy_nlink(1, false, -1), 1u);  // one tree name
  EXPECT_EQ(store_copy_nlink(2, true, -1), 1u);   // a tree name and chunks/
  EXPECT_EQ(store_copy_nlink(2, false, 1), 2u);   // tree, index; one name below
  EXPECT_EQ(store_copy_nlink(3, true, 1), 2u);    // tree, index, chunks/; one below
  EXPECT_EQ(store_copy_nlink(1, false, 2), 2u);   // only the index: two below
  EXPECT_EQ(store_copy_nlink(0, true, -1), 0u);   // gone: never below zero
}

TEST(LinkCountRules, ACopyRecordsTheNamesItLeavesBelow) {
  // A lower file with three names, copied up by one of them.
  EXPECT_EQ(lower_links_of_copy(3, 3, false, -1, false), 2);
  // A store copy with two tree names and one name below, copied by one of
  // its tree names: the other tree name and the one below stay below.
  EXPECT_EQ(lower_links_of_copy(3, 3, false, 1, false), 2);
  // The same when chunked (raw holds the chunks/ link), and as an orphan.
  EXPECT_EQ(lower_links_of_copy(3, 4, true, 1, false), 2);
  EXPECT_EQ(lower_links_of_copy(3, 3, false, 1, true), 3);
  int n = 1;
  EXPECT_TRUE(one_fewer_lower_name(n));
  EXPECT_EQ(n, 0);
  EXPECT_FALSE(one_fewer_lower_name(n));
  EXPECT_EQ(n, 0);
  n = -1;
  EXPECT_FALSE(one_fewer_lower_name(n));
}

}  // namespace
}  // namespace cowfs::testing
