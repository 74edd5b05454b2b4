#include "cowfs/core/chunk_map.h"

#include <gtest/gtest.h>

namespace cowfs {
namespace {

TEST(ChunkMapTest, SetHasClearAndCount) {
  ChunkMap m(4096, 100000);
  m.set(0);
  m.set(9);
  m.set(17);
  EXPECT_TRUE(m.has(9));
  EXPECT_FALSE(m.has(8));
  EXPECT_EQ(m.count(), 3u);
  m.clear_from(9);
  EXPECT_TRUE(m.has(0));
  EXPECT_FALSE(m.has(9));
  EXPECT_FALSE(m.has(17));
  EXPECT_EQ(m.count(), 1u);
}

TEST(ChunkMapTest, SerializeRoundTripsAndRejectsDamage) {
  ChunkMap m(65536, 12345);
  m.set_base("L0:var/Data.fs");
  m.set(3);
  m.set(1000);
  auto bytes = m.serialize();
  auto back = ChunkMap::parse(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->chunk_size(), 65536u);
  EXPECT_EQ(back->floor(), 12345u);
  EXPECT_EQ(back->base(), "L0:var/Data.fs");
  EXPECT_TRUE(back->has(1000));
  EXPECT_EQ(back->count(), 2u);
  EXPECT_FALSE(ChunkMap::parse(bytes.substr(0, bytes.size() - 1)));
  bytes[0] = 'x';
  EXPECT_FALSE(ChunkMap::parse(bytes));
}

TEST(ChunkMapTest, ResolvesTopmostHolderAndBase) {
  ChunkMap top(4096, 1 << 20), mid(4096, 1 << 20);
  top.set(1);
  mid.set(1);
  mid.set(2);
  auto segs = resolve_chunks({&top, &mid}, 1 << 20, 0, 4 * 4096);
  ASSERT_EQ(segs.size(), 4u);
  EXPECT_EQ(segs[0].source, Segment::kBase);
  EXPECT_EQ(segs[1].source, 0);
  EXPECT_EQ(segs[2].source, 1);
  EXPECT_EQ(segs[3].source, Segment::kBase);
  EXPECT_EQ(segs[3].offset, 3u * 4096);
}

TEST(ChunkMapTest, TruncatedBytesNeverResurface) {
  // The top was cut to 5000 bytes and grew again: below it, nothing past
  // 5000 may show, whatever the base holds.
  ChunkMap top(4096, 5000);
  auto segs = resolve_chunks({&top}, 1 << 20, 0, 3 * 4096);
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].source, Segment::kBase);
  EXPECT_EQ(segs[0].length, 5000u);
  EXPECT_EQ(segs[1].source, Segment::kZeros);
  EXPECT_EQ(segs[1].offset, 5000u);
}

TEST(ChunkMapTest, BaseShorterThanFileReadsZeros) {
  ChunkMap top(4096, 1 << 20);
  auto segs = resolve_chunks({&top}, 6000, 4096, 4096);
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].length, 6000u - 4096u);
  EXPECT_EQ(segs[1].source, Segment::kZeros);
}

}  // namespace
}  // namespace cowfs
