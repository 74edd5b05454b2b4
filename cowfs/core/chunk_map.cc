#include "cowfs/core/chunk_map.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace cowfs {
namespace {

constexpr std::string_view kMagic = "cowfs-chunks 1\n";

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t get_u64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(in[at + i])) << (8 * i);
  return v;
}

}  // namespace

void ChunkMap::set(uint64_t chunk) {
  if (chunk / 8 >= bits_.size()) bits_.resize(chunk / 8 + 1, 0);
  bits_[chunk / 8] |= static_cast<uint8_t>(1u << (chunk % 8));
}

void ChunkMap::clear_from(uint64_t first) {
  const size_t keep = static_cast<size_t>((first + 7) / 8);
  if (keep < bits_.size()) bits_.resize(keep);
  if (first % 8 != 0 && first / 8 < bits_.size()) {
    bits_[first / 8] &= static_cast<uint8_t>((1u << (first % 8)) - 1);
  }
}

uint64_t ChunkMap::count() const {
  uint64_t n = 0;
  for (uint8_t b : bits_) n += static_cast<uint64_t>(std::popcount(b));
  return n;
}

// Layout: magic, chunk size, floor, base length, base, bitmap length, bitmap.
std::string ChunkMap::serialize() const {
  std::string out(kMagic);
  put_u64(out, chunk_size_);
  put_u64(out, floor_);
  put_u64(out, base_.size());
  out += base_;
  put_u64(out, bits_.size());
  out.append(reinterpret_cast<const char*>(bits_.data()), bits_.size());
  return out;
}

std::optional<ChunkMap> ChunkMap::parse(std::string_view in) {
  if (!in.starts_with(kMagic)) return std::nullopt;
  size_t at = kMagic.size();
  auto need = [&](size_t n) { return at + n <= in.size(); };
  if (!need(24)) return std::nullopt;
  ChunkMap m;
  uint64_t cs = get_u64(in, at);
  m.floor_ = get_u64(in, at + 8);
  uint64_t base_len = get_u64(in, at + 16);
  at += 24;
  if (cs < 4096 || cs > (1u << 30) || !std::has_single_bit(cs) || !need(base_len)) {
    return std::nullopt;
  }
  m.chunk_size_ = static_cast<uint32_t>(cs);
  m.base_.assign(in.substr(at, base_len));
  at += base_len;
  if (!need(8)) return std::nullopt;
  uint64_t bits_len = get_u64(in, at);
  at += 8;
  if (!need(bits_len) || at + bits_len != in.size()) return std::nullopt;
  m.bits_.resize(bits_len);
  std::memcpy(m.bits_.data(), in.data() + at, bits_len);
  return m;
}

std::vector<Segment> resolve_chunks(const std::vector<const ChunkMap*>& maps, uint64_t base_size,
                                    uint64_t offset, uint64_t length) {
  std::vector<Segment> out;
  auto emit = [&](int source, uint64_t off, uint64_t len) {
    if (len == 0) return;
    if (!out.empty() && out.back().source == source &&
        out.back().offset + out.back().length == off) {
      out.back().length += len;
      return;
    }
    out.push_back({source, off, len});
  };
  if (maps.empty()) {
    emit(Segment::kBase, offset, length);
    return out;
  }
  const uint64_t cs = maps.front()->chunk_size();
  uint64_t pos = offset;
  const uint64_t end = offset + length;
  while (pos < end) {
    const uint64_t chunk = pos / cs;
    const uint64_t stop = std::min(end, (chunk + 1) * cs);
    // The topmost map holding the chunk supplies it, up to the lowest floor
    // of the maps above it.
    int source = Segment::kBase;
    uint64_t limit = UINT64_MAX;
    for (size_t i = 0; i < maps.size(); ++i) {
      if (maps[i]->has(chunk)) {
        source = static_cast<int>(i);
        break;
      }
      limit = std::min(limit, maps[i]->floor());
    }
    if (source == Segment::kBase) limit = std::min(limit, base_size);
    const uint64_t data_end = std::max(pos, std::min(stop, limit));
    emit(source, pos, data_end - pos);
    emit(Segment::kZeros, data_end, stop - data_end);
    pos = stop;
  }
  return out;
}

}  // namespace cowfs
