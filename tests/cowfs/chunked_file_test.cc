// Chunked copy-up, differentially: every operation is applied to a big file
// through the overlay and to a plain string; they must agree after each step,
// across checkpoints, rewinds and remounts.
#include <random>
#include <set>

#include "cowfs/core/layer_service.h"
#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

constexpr uint32_t kChunk = 64 << 10;

TEST(ChunkRef, RoundTripsAndRefusesDamage) {
  ChunkMap map(kChunk, 12345);
  map.set_base("L0:dir with spaces/f");
  auto back = parse_ref_value(ref_value(map));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->chunk_size(), kChunk);
  EXPECT_EQ(back->floor(), 12345u);
  EXPECT_EQ(back->base(), "L0:dir with spaces/f");
  EXPECT_EQ(back->count(), 0u);
  auto chained = parse_ref_value(ref_value(ChunkMap(kChunk, 7)));
  ASSERT_TRUE(chained);
  EXPECT_TRUE(chained->chained());
  EXPECT_FALSE(parse_ref_value("65536 7"));
  EXPECT_FALSE(parse_ref_value("65535 7 L0:f"));
  EXPECT_FALSE(parse_ref_value("x 7 L0:f"));
  EXPECT_FALSE(parse_ref_value(""));
}

class ChunkedTest : public OverlayTest {
 protected:
  Overlay::Options opts() {
    Overlay::Options o{::geteuid() == 0};
    o.chunk_threshold = 1 << 20;
    o.chunk_size = kChunk;
    return o;
  }
  void remount() {
    service_.reset();
    mount(opts());
    service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), nullptr);
  }
  uint64_t top_bytes() {
    ::sync();  // blocks reserved for delayed allocation would count double
    uint64_t total = 0;
    std::set<ino_t> seen;  // a chunked copy's data has a second name in chunks/
    for (auto& e : std::filesystem::recursive_directory_iterator(store_->path() + "/layers/" +
                                                                 store_->records().back().id)) {
      struct stat st {};
      if (::lstat(e.path().c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          seen.insert(st.st_ino).second) {
        total += static_cast<uint64_t>(st.st_blocks) * 512;
      }
    }
    return total;
  }
  void truncate(const std::string& rel, off_t size) {
    SetAttr a;
    a.size = true;
    a.values.st_size = size;
    ASSERT_TRUE(overlay_->setattr(*walk(rel), a, nullptr));
  }
  std::unique_ptr<LayerService> service_;
};

TEST_F(ChunkedTest, FirstWriteCopiesOneChunkNotTheFile) {
  std::string big(8 << 20, 'a');
  write_lower("db", big);
  remount();
  write("db", "XYZ", 5 << 20);
  big.replace(5 << 20, 3, "XYZ");
  EXPECT_EQ(read("db"), big);
  EXPECT_LE(top_bytes(), 2u * kChunk + 64 * 1024);  // the chunk, its map, small files
  EXPECT_EQ(lower_content("db"), std::string(8 << 20, 'a'));
  remount();
  EXPECT_EQ(read("db"), big);
}

TEST_F(ChunkedTest, SequentialSmallWritesCopyAhead) {
  std::string big(8 << 20, 'a');
  write_lower("db", big);
  remount();
  write("db", std::string(4096, 'x'), 0);
  const uint64_t one = top_bytes();
  // Two neighbours are not yet a run: the kernel sends even scattered
  // writes in file order, and some of them neighbour.
  write("db", std::string(4096, 'y'), kChunk);
  const uint64_t two = top_bytes();
  EXPECT_LE(two - one, kChunk + 4096);
  // The third chunk in a row: a front-to-back writer.
  write("db", std::string(4096, 'w'), 2 * kChunk);
  const uint64_t ahead = top_bytes();
  EXPECT_GE(ahead - two, (1u << 20) + kChunk - 4096);
  // Writes elsewhere copy their chunk alone, in order or not.
  write("db", std::string(4096, 'z'), 7 << 20);
  for (int i = 1; i <= 16; ++i) write("db", "r", static_cast<off_t>((2 * i + 40) * kChunk));
  const uint64_t scattered = top_bytes();
  EXPECT_LE(scattered - ahead, 17 * kChunk + 4096);
  write("db", std::string(4096, 'z'), (7 << 20) + kChunk);
  EXPECT_LE(top_bytes() - scattered, kChunk + 4096);
  big.replace(0, 4096, std::string(4096, 'x'));
  big.replace(kChunk, 4096, std::string(4096, 'y'));
  big.replace(2 * kChunk, 4096, std::string(4096, 'w'));
  big.replace(7 << 20, 4096, std::string(4096, 'z'));
  big.replace((7 << 20) + kChunk, 4096, std::string(4096, 'z'));
  for (int i = 1; i <= 16; ++i) big[static_cast<size_t>((2 * i + 40) * kChunk)] = 'r';
  EXPECT_EQ(read("db"), big);
  remount();
  EXPECT_EQ(read("db"), big);
}

TEST_F(ChunkedTest, MetadataChangesCopyNoData) {
  write_lower("db", std::string(4 << 20, 'b'));
  remount();
  SetAttr a;
  a.mode = true;
  a.values.st_mode = 0600;
  ASSERT_TRUE(overlay_->setattr(*walk("db"), a, nullptr));
  ASSERT_TRUE(overlay_->setxattr(*walk("db"), "user.k", "v", 0).ok());
  EXPECT_LE(top_bytes(), 64u * 1024);
  EXPECT_EQ(read("db"), std::string(4 << 20, 'b'));
}

TEST_F(ChunkedTest, RenameMovesNoData) {
  std::string small(40 << 10, 's'), big(4 << 20, 'b');
  write_lower("a/small", small);
  write_lower("a/big", big);
  remount();
  const uint64_t before = top_bytes();
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "b", 0755, me_));
  ASSERT_TRUE(overlay_->rename(dir("a"), "small", dir("b"), "small", 0).ok());
  ASSERT_TRUE(overlay_->rename(dir("a"), "big", dir("b"), "big", 0).ok());
  EXPECT_LE(top_bytes() - before, 16u << 10);
  EXPECT_EQ(read("b/small"), small);
  EXPECT_EQ(read("b/big"), big);
  EXPECT_FALSE(walk("a/small"));
  remount();
  EXPECT_EQ(read("b/small"), small);
  EXPECT_EQ(read("b/big"), big);
  // A user's xattr as big as the store allows still fits on a moved file.
  const std::string big_value(4000, 'v');
  Status set = overlay_->setxattr(*walk("b/small"), "user.big", big_value, 0);
  ASSERT_TRUE(set.ok()) << std::strerror(set.error());
  EXPECT_EQ(*overlay_->getxattr(*walk("b/small"), "user.big"), big_value);
  EXPECT_EQ(read("b/small"), small);
  remount();
  EXPECT_EQ(read("b/small"), small);
  EXPECT_EQ(*overlay_->getxattr(*walk("b/small"), "user.big"), big_value);
  // Written after the move: the data comes up then, by chunk.
  write("b/small", "XY", 100);
  small.replace(100, 2, "XY");
  EXPECT_EQ(read("b/small"), small);
  service_->checkpoint("moved");
  write("b/small", "Z", 10);
  small.replace(10, 1, "Z");
  remount();
  EXPECT_EQ(read("b/small"), small);
  EXPECT_EQ(overlay_->getattr(*walk("b/small"))->st_size, 40 << 10);
  service_->rewind("moved");
  small.replace(10, 1, "s");
  EXPECT_EQ(read("b/small"), small);
  EXPECT_EQ(lower_content("a/small"), std::string(40 << 10, 's'));
  EXPECT_EQ(lower_content("a/big"), std::string(4 << 20, 'b'));
}

TEST_F(ChunkedTest, ManyMoreMovedFilesThanTheFdLimitAllowsStayReadable) {
  // Each moved file reads through its copy and its base: two fds, which
  // the overlay's fd budget must cover like any other.
  LowFdLimit limit(600);
  for (int i = 0; i < 1000; ++i) write_lower("flat/b" + std::to_string(i), std::to_string(i));
  remount();
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "hashed", 0755, me_));
  for (int i = 0; i < 1000; ++i) {
    const std::string name = "b" + std::to_string(i);
    Status s = overlay_->rename(dir("flat"), name, dir("hashed"), name, 0);
    ASSERT_TRUE(s.ok()) << i << ": " << std::strerror(s.error());
  }
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(read("hashed/b" + std::to_string(i)), std::to_string(i)) << i;
  }
  EXPECT_LT(Node::open_fds.load(), 600);
  // A checkpoint reloads every chunked file at once.
  service_->checkpoint("moved");
  EXPECT_EQ(read("hashed/b500"), "500");
  write("hashed/b7", "seven");
  EXPECT_EQ(read("hashed/b7"), "seven");
  remount();
  EXPECT_EQ(read("hashed/b7"), "seven");
  EXPECT_EQ(read("hashed/b999"), "999");
}

TEST_F(ChunkedTest, RandomOperationsMatchAPlainCopy) {
  std::mt19937_64 rng(12345);
  std::string model(3 * (1 << 20) + 1234, '\0');
  for (auto& c : model) c = static_cast<char>('a' + rng() % 26);
  write_lower("f", model);
  remount();
  std::vector<std::pair<std::string, std::string>> checkpoints;  // label, model
  for (int step = 0; step < 300; ++step) {
    const int op = static_cast<int>(rng() % 100);
    const size_t size = model.size();
    if (op < 55) {  // pwrite, often across chunk boundaries, sometimes past the end
      size_t off = rng() % (size + kChunk);
      size_t len = 1 + rng() % (op < 10 ? 3 * kChunk : 5000);
      std::string data(len, static_cast<char>('A' + step % 26));
      write("f", data, static_cast<off_t>(off));
      if (off + len > model.size()) model.resize(off + len, '\0');
      model.replace(off, len, data);
    } else if (op < 70) {  // truncate down or up
      size_t n = rng() % (size + 2 * kChunk);
      truncate("f", static_cast<off_t>(n));
      model.resize(n, '\0');
    } else if (op < 80) {  // append
      std::string data(1 + rng() % 20000, 'Z');
      write("f", data, static_cast<off_t>(model.size()));
      model += data;
    } else if (op < 88) {
      std::string label = "c" + std::to_string(step);
      service_->checkpoint(label);
      checkpoints.emplace_back(label, model);
    } else if (op < 94 && !checkpoints.empty()) {
      auto& [label, at] = checkpoints[rng() % checkpoints.size()];
      service_->rewind(label);
      model = at;
      // Checkpoints above the one rewound to are gone.
      while (checkpoints.back().first != label) checkpoints.pop_back();
    } else {
      remount();
    }
    ASSERT_EQ(overlay_->getattr(*walk("f"))->st_size, static_cast<off_t>(model.size()))
        << "step " << step;
    auto got = read("f");
    ASSERT_TRUE(got) << "step " << step;
    ASSERT_TRUE(*got == model) << "step " << step << " op " << op;
  }
}

}  // namespace
}  // namespace cowfs::testing
