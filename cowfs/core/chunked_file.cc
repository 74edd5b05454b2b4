#include "cowfs/core/chunked_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <optional>

#include "cowfs/core/node.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

std::string hex(uint64_t ino) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, ino);
  return buf;
}

Result<std::string> read_whole(int dirfd, const std::string& name) {
  auto fd = sys::open_at(dirfd, name.c_str(), O_RDONLY);
  if (!fd) return Errno{fd.error()};
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0) return Errno{errno};
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

std::string chunk_data_name(uint64_t ino) { return hex(ino); }
std::string chunk_map_name(uint64_t ino) { return hex(ino) + ".map"; }
std::string chunk_base_name(uint64_t ino) { return hex(ino) + ".base"; }
// "<chunk size> <floor> <base>"; the base may be empty (a chained copy).
std::string ref_value(const ChunkMap& empty_map) {
  return std::to_string(empty_map.chunk_size()) + " " + std::to_string(empty_map.floor()) + " " +
         empty_map.base();
}

std::optional<ChunkMap> parse_ref_value(const std::string& target) {
  const size_t a = target.find(' ');
  const size_t b = a == std::string::npos ? a : target.find(' ', a + 1);
  if (b == std::string::npos) return std::nullopt;
  uint64_t cs = 0, floor = 0;
  auto [e1, r1] = std::from_chars(target.data(), target.data() + a, cs);
  auto [e2, r2] = std::from_chars(target.data() + a + 1, target.data() + b, floor);
  if (r1 != std::errc() || e1 != target.data() + a || r2 != std::errc() ||
      e2 != target.data() + b || cs < 4096 || cs > (1u << 30) || !std::has_single_bit(cs)) {
    return std::nullopt;
  }
  ChunkMap map(static_cast<uint32_t>(cs), floor);
  map.set_base(target.substr(b + 1));
  return map;
}

Status write_map_file(int dirfd, uint64_t ino, const ChunkMap& map, bool sync) {
  const std::string name = chunk_map_name(ino);
  const std::string tmp = name + ".tmp";
  auto fd = sys::open_at(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd) return Errno{fd.error()};
  const std::string bytes = map.serialize();
  COWFS_TRY(sys::pwrite_all(fd->get(), bytes.data(), bytes.size(), 0));
  if (sync) COWFS_TRY(sys::fsync_fd(fd->get(), true));
  COWFS_TRY(sys::rename_at(dirfd, tmp.c_str(), dirfd, name.c_str()));
  if (sync) COWFS_TRY(sys::fsync_dir_fd(dirfd));
  return {};
}

Result<bool> drop_unreachable_copy(int dirfd, uint64_t ino) {
  const std::string data = chunk_data_name(ino);
  auto st = sys::stat_at(dirfd, data.c_str());
  if (!st) return st.error() == ENOENT ? Result<bool>(false) : Result<bool>(Errno{st.error()});
  if (!S_ISREG(st->st_mode) || st->st_nlink > 1) return false;
  for (const std::string& name :
       {chunk_map_name(ino), chunk_map_name(ino) + ".tmp", chunk_base_name(ino)}) {
    Status s = sys::unlink_at(dirfd, name.c_str(), 0);
    if (!s.ok() && s.error() != ENOENT) return Errno{s.error()};
  }
  COWFS_TRY(sys::unlink_at(dirfd, data.c_str(), 0));
  return true;
}

Result<std::vector<uint64_t>> collect_unreachable_copies(
    int dirfd, const std::function<bool(uint64_t)>& in_use) {
  auto entries = sys::read_dir(dirfd);
  if (!entries) return Errno{entries.error()};
  std::vector<uint64_t> dropped;
  for (const auto& e : *entries) {
    // Data files are named by the origin alone (16 hex digits).
    uint64_t ino = 0;
    auto [end, ec] = std::from_chars(e.name.data(), e.name.data() + e.name.size(), ino, 16);
    if (ec != std::errc() || end != e.name.data() + e.name.size() || e.name.size() != 16) continue;
    if (in_use && in_use(ino)) continue;
    auto r = drop_unreachable_copy(dirfd, ino);
    if (!r) return Errno{r.error()};
    if (*r) dropped.push_back(ino);
  }
  return dropped;
}

Result<std::shared_ptr<ChunkedFile>> ChunkedFile::load(const LayerStack& stack, size_t from,
                                                       uint64_t ino) {
  auto cf = std::make_shared<ChunkedFile>();
  cf->ino_ = ino;
  {
    // Not shared yet: the lock only satisfies the rules of the members.
    MutexLock lock(cf->mu_);
    COWFS_TRY(cf->load_copies(stack, from));
  }
  // A checkpoint loads every chunked file the kernel knows of at once: their
  // fds are opened again when one is used.
  cf->close_fds();
  return cf;
}

Status ChunkedFile::load_copies(const LayerStack& stack, size_t from) {
  const uint64_t ino = ino_;
  for (size_t i = from; i < stack.size(); ++i) {
    const LayerPtr& layer = stack.layers[i];
    if (!layer->in_store()) break;
    if (!layer->chunks.valid()) continue;
    const bool top = layer == stack.top();
    const std::string name = chunk_data_name(ino);
    auto data = sys::open_at(layer->chunks.get(), name.c_str(), top ? O_RDWR : O_RDONLY);
    if (!data && top && data.error() == EACCES) {
      data = sys::open_at(layer->chunks.get(), name.c_str(), O_RDONLY);
      top_read_only_ = true;
    }
    if (!data && data.error() == ENOENT) {
      // A map without its data is damage, not absence.
      if (read_whole(layer->chunks.get(), chunk_map_name(ino))) return Errno{EIO};
      continue;
    }
    if (!data) return Errno{data.error()};
    std::optional<ChunkMap> map;
    auto bytes = read_whole(layer->chunks.get(), chunk_map_name(ino));
    if (bytes) {
      map = ChunkMap::parse(*bytes);
    } else if (bytes.error() == ENOENT) {
      auto ref = sys::get_xattr(data->get(), kChunkRefXattr);
      if (!ref && ref.error() == ENODATA) continue;
      if (!ref) return Errno{ref.error()};
      map = parse_ref_value(*ref);
    } else {
      return Errno{bytes.error()};
    }
    if (!map) return Errno{EIO};  // a damaged map is never guessed at
    const bool rooted = !map->chained();
    const std::string base = map->base();
    const int flags = top && !top_read_only_ ? O_RDWR : O_RDONLY;
    copies_.push_back(ChunkedCopy{layer, data.take(), std::move(*map), false, flags});
    if (!rooted) continue;
    if (base == "S") {
      base_layer_ = layer;
      base_name_ = chunk_base_name(ino);
    } else if (base.size() > 2 && base[0] == 'L') {
      size_t colon = base.find(':');
      int n = std::atoi(base.substr(1, colon - 1).c_str());
      for (const auto& l : stack.layers) {
        if (!l->in_store() && l->lower_index == n) {
          base_layer_ = l;
          base_name_ = base.substr(colon + 1);
        }
      }
    }
    if (!base_layer_) return Errno{EIO};      // a lower the store knew is gone
    if (!open_fds().ok()) return Errno{EIO};  // the base vanished under the store
    auto st = sys::stat_fd(base_.get());
    base_size_ = st ? st->st_size : 0;
    break;
  }
  if (copies_.empty()) return Errno{EIO};
  chunk_size_ = copies_.front().map.chunk_size();
  return {};
}

ChunkedFile::ChunkedFile() { recent_.fill(UINT64_MAX); }

ChunkedFile::~ChunkedFile() {
  MutexLock lock(mu_);
  Node::open_fds.fetch_sub(counted_fds_);
}

void ChunkedFile::recount() {
  long n = base_.valid() ? 1 : 0;
  for (const auto& c : copies_) n += c.data.valid() ? 1 : 0;
  n += static_cast<long>(retired_.size());
  Node::open_fds.fetch_add(n - counted_fds_);
  counted_fds_ = n;
}

Status ChunkedFile::open_fds() {
  if (base_layer_ && !base_.valid()) {
    auto b = base_layer_->in_store()
                 ? sys::open_at(base_layer_->chunks.get(), base_name_.c_str(), O_RDONLY)
                 : sys::open_beneath(base_layer_->root.get(), base_name_.c_str(), O_RDONLY);
    if (!b) return Errno{b.error()};
    base_ = b.take();
    recount();
  }
  for (auto& c : copies_) COWFS_TRY(open_copy(c));
  return {};
}

Status ChunkedFile::open_copy(ChunkedCopy& c) {
  if (c.data.valid()) return {};
  auto d = sys::open_at(c.layer->chunks.get(), chunk_data_name(ino_).c_str(), c.open_flags);
  if (!d) return Errno{d.error()};
  c.data = d.take();
  recount();
  return {};
}

void ChunkedFile::close_fds() {
  MutexLock lock(mu_);
  base_.reset();
  for (auto& c : copies_) c.data.reset();
  retired_.clear();
  recount();
}

Result<std::vector<ReadPiece>> ChunkedFile::plan_locked(off_t offset, size_t length,
                                                        off_t file_size) {
  COWFS_TRY(open_fds());
  std::vector<ReadPiece> out;
  if (offset >= file_size) return out;
  length = std::min<size_t>(length, static_cast<size_t>(file_size - offset));
  std::vector<const ChunkMap*> maps;
  for (const auto& c : copies_) maps.push_back(&c.map);
  for (const auto& seg : resolve_chunks(maps, static_cast<uint64_t>(base_size_),
                                        static_cast<uint64_t>(offset), length)) {
    int fd = -1;
    if (seg.source >= 0) fd = copies_[static_cast<size_t>(seg.source)].data.get();
    if (seg.source == Segment::kBase) fd = base_.get();
    out.push_back({fd, static_cast<off_t>(seg.offset), static_cast<size_t>(seg.length)});
  }
  return out;
}

Result<std::vector<ReadPiece>> ChunkedFile::plan_read(off_t offset, size_t length,
                                                      off_t file_size) {
  MutexLock lock(mu_);
  return plan_locked(offset, length, file_size);
}

Status ChunkedFile::materialize(uint64_t chunk, off_t file_size) {
  ChunkedCopy& top = copies_.front();
  const off_t start = static_cast<off_t>(chunk * chunk_size_);
  if (start < file_size) {
    const size_t len = static_cast<size_t>(std::min<off_t>(chunk_size_, file_size - start));
    auto plan = plan_locked(start, len, file_size);
    if (!plan) return Errno{plan.error()};
    std::vector<char> buf;
    for (const auto& p : *plan) {
      if (p.fd == top.data.get()) continue;  // cannot happen: the top lacks the chunk
      if (p.fd < 0) {
        // Bytes that must read as zero: drop whatever an unsynced earlier
        // write may have left in the top copy.
        if (::fallocate(top.data.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, p.offset,
                        static_cast<off_t>(p.length)) < 0 &&
            errno != EOPNOTSUPP) {
          return Errno{errno};
        }
        continue;
      }
      buf.resize(p.length);
      size_t got = 0;
      while (got < p.length) {
        ssize_t n =
            ::pread(p.fd, buf.data() + got, p.length - got, p.offset + static_cast<off_t>(got));
        if (n < 0) return Errno{errno};
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      std::fill(buf.begin() + static_cast<long>(got), buf.end(), 0);
      COWFS_TRY(sys::pwrite_all(top.data.get(), buf.data(), buf.size(), p.offset));
    }
  }
  top.map.set(chunk);
  top.dirty = true;
  note_gained(chunk);
  return {};
}

void ChunkedFile::unclaim(const std::vector<uint64_t>& chunks) {
  MutexLock lock(mu_);
  // The write that claimed them failed: what lies below is still the content.
  for (uint64_t c : chunks) copies_.front().map.unset(c);
}

Result<std::vector<uint64_t>> ChunkedFile::prepare_write(const LayerPtr& top_layer, off_t offset,
                                                         size_t length, bool overwrite) {
  MutexLock lock(mu_);
  std::vector<uint64_t> claimed;
  if (copies_.empty() || copies_.front().layer != top_layer) return Errno{EIO};
  if (length == 0) return claimed;
  COWFS_TRY(open_fds());
  COWFS_TRY(writable_top());
  // The size is needed only to copy a chunk; most writes land in chunks
  // already present, and this runs on every write.
  std::optional<off_t> size;
  const uint64_t cs = chunk_size_;
  const uint64_t first = static_cast<uint64_t>(offset) / cs;
  const uint64_t last = (static_cast<uint64_t>(offset) + length - 1) / cs;
  ChunkMap& map = copies_.front().map;
  for (uint64_t c = first; c <= last; ++c) {
    if (map.has(c)) continue;
    const bool whole = overwrite && static_cast<uint64_t>(offset) <= c * cs &&
                       static_cast<uint64_t>(offset) + length >= (c + 1) * cs;
    if (whole) {
      map.set(c);
      copies_.front().dirty = true;
      claimed.push_back(c);
      note_gained(c);
    } else {
      if (!size) {
        auto st = sys::stat_fd(copies_.front().data.get());
        if (!st) return Errno{st.error()};
        size = st->st_size;
      }
      const bool follows = c >= 2 && gained_lately(c - 1) && gained_lately(c - 2);
      COWFS_TRY(materialize(c, *size));
      if (c == last && follows) COWFS_TRY(materialize_ahead(c, *size));
    }
  }
  return claimed;
}

namespace {

// A writer that fills a file in small pieces front to back (a database
// walking its table in batches) would otherwise change the map, and
// allocate blocks in the store, at almost every fsync: copying this much
// ahead at once makes both rare, for at most this much copied in vain.
constexpr uint64_t kSequentialAhead = 1 << 20;

}  // namespace

void ChunkedFile::note_gained(uint64_t chunk) { recent_[recent_next_++ % recent_.size()] = chunk; }

bool ChunkedFile::gained_lately(uint64_t chunk) const {
  return std::find(recent_.begin(), recent_.end(), chunk) != recent_.end();
}

Status ChunkedFile::materialize_ahead(uint64_t chunk, off_t file_size) {
  const uint64_t cs = chunk_size_;
  if (cs >= kSequentialAhead || file_size <= 0) return {};
  const uint64_t end = (static_cast<uint64_t>(file_size) + cs - 1) / cs;  // past the last chunk
  const uint64_t stop = std::min(end, chunk + 1 + kSequentialAhead / cs);
  ChunkMap& map = copies_.front().map;
  for (uint64_t c = chunk + 1; c < stop; ++c) {
    if (!map.has(c)) COWFS_TRY(materialize(c, file_size));
  }
  return {};
}

Status ChunkedFile::truncate(const LayerPtr& top_layer, off_t new_size, off_t old_size) {
  MutexLock lock(mu_);
  if (copies_.empty() || copies_.front().layer != top_layer) return Errno{EIO};
  if (new_size >= old_size) return {};
  COWFS_TRY(open_fds());
  COWFS_TRY(writable_top());
  ChunkedCopy& top = copies_.front();
  top.map.lower_floor(static_cast<uint64_t>(new_size));
  top.map.clear_from((static_cast<uint64_t>(new_size) + chunk_size_ - 1) / chunk_size_);
  // Durable before the data shrinks, so cut bytes cannot resurface.
  return save(top, true);
}

Status ChunkedFile::save(ChunkedCopy& c, bool sync) {
  if (!c.dirty && !sync) return {};
  COWFS_TRY(write_map_file(c.layer->chunks.get(), ino_, c.map, sync));
  c.dirty = false;
  return {};
}

Status ChunkedFile::writable_top() {
  if (!top_read_only_) return {};  // the usual case: no syscall per write
  UniqueFd& data = copies_.front().data;
  auto rw = sys::reopen(data.get(), O_RDWR);
  if (!rw) return Errno{rw.error()};
  top_read_only_ = false;
  // Read plans handed out earlier may still name the read-only fd.
  retired_.push_back(std::move(data));
  data = rw.take();
  copies_.front().open_flags = O_RDWR;
  recount();
  return {};
}

Status ChunkedFile::save_top_map() {
  MutexLock lock(mu_);
  if (copies_.empty()) return Errno{EIO};
  return save(copies_.front(), true);
}

Status ChunkedFile::flush(bool sync) {
  MutexLock lock(mu_);
  for (auto& c : copies_) {
    if (!c.dirty) continue;
    if (sync && !c.data.valid()) {
      // A checkpoint flushes every file at once: no fd is kept for it.
      COWFS_TRY(open_copy(c));
      Status s = sys::fsync_fd(c.data.get(), true);
      c.data.reset();
      recount();
      COWFS_TRY(s);
    } else if (sync) {
      COWFS_TRY(sys::fsync_fd(c.data.get(), true));
    }
    COWFS_TRY(save(c, sync));
  }
  return {};
}

Status ChunkedFile::fsync(int io_fd, bool datasync) {
  MutexLock lock(mu_);
  auto io = sys::stat_fd(io_fd);
  if (!io) return Errno{io.error()};
  bool io_synced = false;
  for (auto& c : copies_) {
    if (!c.dirty) continue;
    COWFS_TRY(open_copy(c));
    auto st = sys::stat_fd(c.data.get());
    if (!st) return Errno{st.error()};
    const bool is_io = st->st_ino == io->st_ino && st->st_dev == io->st_dev;
    COWFS_TRY(sys::fsync_fd(c.data.get(), is_io ? datasync : true));
    io_synced = io_synced || is_io;
    COWFS_TRY(save(c, true));
  }
  if (!io_synced) COWFS_TRY(sys::fsync_fd(io_fd, datasync));
  return {};
}

uint64_t ChunkedFile::top_chunk_bytes() const {
  MutexLock lock(mu_);
  if (copies_.empty()) return 0;
  return copies_.front().map.count() * chunk_size_;
}

}  // namespace cowfs
