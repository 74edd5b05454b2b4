// ChunkMap: which chunks of one file one store layer holds, and how to
// resolve a byte range of a chunked file through a stack of such maps.
//
// A big file is copied up by chunk: the layer's copy is a sparse file that
// holds only the chunks written since, and this map (persisted beside it as
// STORE/layers/<id>/chunks/<origin>.map) says which. Everything else reads
// from the layers below, down to the base: the whole file the first chunked
// copy was made from (a lower file, or a whole file of a frozen layer).
//
// floor: the smallest size the file had in this layer. Below a layer, bytes
// at or past its floor were cut off by a truncate, so they read as zeros even
// if the file has grown again: truncated bytes never resurface.
//
// Pure data; no I/O. Not thread-safe (ChunkedFile locks around it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cowfs {

class ChunkMap {
 public:
  ChunkMap() = default;
  ChunkMap(uint32_t chunk_size, uint64_t floor) : chunk_size_(chunk_size), floor_(floor) {}

  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t floor() const { return floor_; }
  void lower_floor(uint64_t size) {
    if (size < floor_) floor_ = size;
  }

  bool has(uint64_t chunk) const {
    return chunk / 8 < bits_.size() && (bits_[chunk / 8] >> (chunk % 8)) & 1;
  }
  void set(uint64_t chunk);
  void unset(uint64_t chunk) {
    if (chunk / 8 < bits_.size()) bits_[chunk / 8] &= static_cast<uint8_t>(~(1u << (chunk % 8)));
  }
  // Forgets every chunk at or past first (after a truncate).
  void clear_from(uint64_t first);
  uint64_t count() const;

  // Where the base lives, for the lowest chunked copy of a file: "L<n>:<path>"
  // (lower n, path below its root) or "S" (the hard link <origin>.base beside
  // the map). Empty for a copy chained onto a chunked copy below it.
  const std::string& base() const { return base_; }
  void set_base(std::string base) { base_ = std::move(base); }
  bool chained() const { return base_.empty(); }

  std::string serialize() const;
  static std::optional<ChunkMap> parse(std::string_view data);

 private:
  uint32_t chunk_size_ = 0;
  uint64_t floor_ = 0;
  std::string base_;
  std::vector<uint8_t> bits_;
};

// A piece of a read: `source` is the index of the map (top first) that holds
// it, kBase for the base file, kZeros for bytes that read as zero.
struct Segment {
  static constexpr int kBase = -1;
  static constexpr int kZeros = -2;
  int source;
  uint64_t offset;
  uint64_t length;
};

// Resolves [offset, offset + length) through maps (top first, each over the
// next, the last over the base). base_size bounds what the base can supply.
// Adjacent pieces from one source are merged.
std::vector<Segment> resolve_chunks(const std::vector<const ChunkMap*>& maps, uint64_t base_size,
                                    uint64_t offset, uint64_t length);

}  // namespace cowfs
