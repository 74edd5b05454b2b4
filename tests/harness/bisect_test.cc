// Unit tests of bisect's pieces: the binary search, and LayerHold on an
// unmounted store (layers set aside and put back, nothing copied or lost,
// and a bisect killed at any point undone by restore()).
#include "harness/bisect.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cowfs/core/store.h"
#include "harness/store.h"
#include "tests/harness/test_util.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;
using rehearse::first_bad_point;
using rehearse::LayerHold;

TEST(BisectSearch, FindsTheFirstFailingPointWithLogarithmicProbes) {
  for (size_t n = 2; n <= 33; ++n) {
    for (size_t first = 1; first < n; ++first) {
      std::vector<size_t> probed;
      size_t got = first_bad_point(0, n - 1, [&](size_t i) {
        EXPECT_GT(i, 0u);
        EXPECT_LT(i, n - 1);
        probed.push_back(i);
        return i < first;
      });
      EXPECT_EQ(got, first) << "n=" << n;
      size_t bound = 0;
      while ((size_t{1} << bound) < n - 1) ++bound;
      EXPECT_LE(probed.size(), bound) << "n=" << n << " first=" << first;
    }
  }
}

class LayerHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>("bisect-hold");
    store_ = tmp_->sub("store");
    cowfs::Store st = cowfs::Store::open(store_, true);
    for (const char* v : {"1.0", "1.1", "1.2"}) {
      write(st, std::string("file-") + v, v);
      st.checkpoint(v);
    }
    write(st, "uncheckpointed", "top");
  }
  // A file in the store's top layer, as a mount would have written it.
  static void write(const cowfs::Store& st, const std::string& name, const std::string& body) {
    std::ofstream(st.path() + "/layers/" + st.records().back().id + "/tree/" + name) << body;
  }
  std::vector<cowfs::LayerRecord> records() { return cowfs::Store::open(store_, false).records(); }
  std::vector<std::string> ids() {
    std::vector<std::string> out;
    for (const auto& r : records()) out.push_back(r.id + " " + r.label);
    return out;
  }
  std::string tree(size_t i, const std::string& name) {
    return read_file(store_ + "/layers/" + records().at(i).id + "/tree/" + name);
  }

  std::unique_ptr<TempDir> tmp_;
  std::string store_;
};

TEST_F(LayerHoldTest, HoldShowsTheCheckpointsUpToOneAndRestorePutsEverythingBack) {
  const auto before = ids();
  const auto recs = records();
  ASSERT_EQ(before.size(), 4u);
  LayerHold hold(store_);
  EXPECT_EQ(hold.frozen_labels(), (std::vector<std::string>{"1.0", "1.1", "1.2"}));
  EXPECT_FALSE(hold.restore());  // nothing held

  hold.hold(2);
  EXPECT_TRUE(hold.held());
  auto view = records();
  ASSERT_EQ(view.size(), 3u);
  EXPECT_EQ(view[0].label, "1.0");
  EXPECT_EQ(view[1].label, "1.1");
  EXPECT_EQ(view[2].label, "-");
  EXPECT_EQ(tree(0, "file-1.0"), "1.0");
  EXPECT_EQ(tree(1, "file-1.1"), "1.1");
  // The new top is empty; the old one and 1.2 are set aside, not deleted.
  EXPECT_TRUE(fs::is_empty(store_ + "/layers/" + view[2].id + "/tree"));
  EXPECT_TRUE(fs::exists(store_ + "/bisect/" + recs[2].id + "/tree/file-1.2"));
  EXPECT_TRUE(fs::exists(store_ + "/bisect/" + recs[3].id + "/tree/uncheckpointed"));
  EXPECT_THROW(hold.hold(1), rehearse::StoreError);  // already held
  // What the check writes goes with the scratch top.
  std::ofstream(store_ + "/layers/" + view[2].id + "/tree/scratch") << "x";

  EXPECT_TRUE(hold.restore());
  EXPECT_FALSE(hold.held());
  EXPECT_EQ(ids(), before);
  EXPECT_EQ(tree(2, "file-1.2"), "1.2");
  EXPECT_EQ(tree(3, "uncheckpointed"), "top");
  EXPECT_FALSE(fs::exists(store_ + "/layers/" + view[2].id));
  EXPECT_FALSE(fs::exists(store_ + "/bisect"));

  hold.hold(0);  // before the first increment: no checkpoint at all
  EXPECT_EQ(records().size(), 1u);
  EXPECT_TRUE(hold.restore());
  EXPECT_EQ(ids(), before);
  EXPECT_THROW(hold.hold(4), rehearse::StoreError);
  EXPECT_EQ(ids(), before);
}

TEST_F(LayerHoldTest, RestoreUndoesABisectKilledHalfway) {
  const auto before = ids();
  const auto recs = records();
  // Killed after saving the stack and moving two of the layers.
  fs::create_directory(store_ + "/bisect");
  fs::copy_file(store_ + "/stack", store_ + "/bisect/stack");
  for (size_t i : {2, 3}) {
    fs::rename(store_ + "/layers/" + recs[i].id, store_ + "/bisect/" + recs[i].id);
  }
  LayerHold hold(store_);
  EXPECT_TRUE(hold.restore());
  EXPECT_EQ(ids(), before);
  EXPECT_EQ(tree(3, "uncheckpointed"), "top");

  // Killed while writing the saved stack: nothing had moved.
  fs::create_directory(store_ + "/bisect.new");
  EXPECT_FALSE(hold.restore());
  EXPECT_FALSE(fs::exists(store_ + "/bisect.new"));
  EXPECT_EQ(ids(), before);
}

TEST_F(LayerHoldTest, RefusedWhileACowfsServesTheStore) {
  cowfs::Store server = cowfs::Store::open(store_, false);
  server.lock_exclusive();  // as a mounted cowfs holds it
  LayerHold hold(store_);
  EXPECT_THROW(hold.hold(1), rehearse::StoreError);
  EXPECT_FALSE(hold.held());
}

}  // namespace
}  // namespace rehearse_test
