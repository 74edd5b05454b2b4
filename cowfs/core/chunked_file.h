// ChunkedFile: the runtime state of a file copied up by chunk — its copies
// in the store layers (each a sparse data file and a ChunkMap) and its base.
//
// Reads are planned into segments (which fd and offset supplies each piece,
// or zeros); writes first make the chunks they only partly cover whole in
// the top copy. Maps are kept in memory and persisted on fsync, release and
// checkpoint: the data is fdatasynced before the map that points at it, so
// a crash can lose unsynced writes but never presents a half-copied chunk.
// A truncate persists the lowered floor at once, so truncated bytes never
// come back after a crash.
//
// Thread-safety: every public member locks mu_ (a leaf: nothing else is
// taken under it); what load() sets is not changed again.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cowfs/core/chunk_map.h"
#include "cowfs/core/layer.h"
#include "cowfs/core/tree_lock.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/result.h"
#include "cowfs/sys/thread_annotations.h"
#include "cowfs/sys/unique_fd.h"

namespace cowfs {

inline constexpr const char* kChunkedXattr = "user.cowfs.chunked";

struct ChunkedCopy {
  LayerPtr layer;
  UniqueFd data;  // O_RDWR for the top copy (see writable_top), O_RDONLY below
  ChunkMap map;
  bool dirty = false;
  int open_flags = O_RDONLY;  // how data is reopened after close_fds()
};

struct ReadPiece {
  int fd;  // -1: zeros
  off_t offset;
  size_t length;
};

class ChunkedFile {
 public:
  ChunkedFile();
  ChunkedFile(const ChunkedFile&) = delete;
  ChunkedFile& operator=(const ChunkedFile&) = delete;
  ~ChunkedFile();

  // Loads the copies of the file with origin ino from the store layers of
  // stack, starting at the layer that holds its topmost copy.
  static Result<std::shared_ptr<ChunkedFile>> load(const LayerStack& stack, size_t from_layer,
                                                   uint64_t ino);

  // Makes a chunked copy of the file in the top layer, chained onto this
  // one, or (when this is null) rooted on base. Returns the data file's
  // name in work/ for the caller to move into the tree. See copy_up.cc.
  uint32_t chunk_size() const { return chunk_size_; }

  Result<std::vector<ReadPiece>> plan_read(off_t offset, size_t length, off_t file_size)
      EXCLUDES(mu_);
  // Makes every chunk that [offset, offset+length) touches present in the
  // top copy, copying from below the parts the write will not cover.
  // overwrite: the caller will write every byte of the range (a write, not
  // an fallocate), so chunks it covers whole need no copy. Returns the
  // chunks claimed that way, to give back with unclaim() if the write fails.
  Result<std::vector<uint64_t>> prepare_write(const LayerPtr& top, off_t offset, size_t length,
                                              bool overwrite) EXCLUDES(mu_);
  void unclaim(const std::vector<uint64_t>& chunks) EXCLUDES(mu_);
  Status truncate(const LayerPtr& top, off_t new_size, off_t old_size) EXCLUDES(mu_);
  // Persists dirty maps; with sync, data first, then the maps, durably.
  Status flush(bool sync) EXCLUDES(mu_);
  // fsync(2) of the file open as io_fd: its data and every dirty map,
  // durably, syncing each data file once.
  Status fsync(int io_fd, bool datasync) EXCLUDES(mu_);
  // Bytes the top copy holds in chunks (for reports).
  uint64_t top_chunk_bytes() const EXCLUDES(mu_);

  // Saves the top copy's map as a map file, durably, so that it no longer
  // needs kChunkRefXattr (whose room a user's xattr may want).
  Status save_top_map() EXCLUDES(mu_);
  // Closes every fd it holds; the next call that needs them reopens them.
  // Its fds count in Node::open_fds, and an overlay over its fd budget
  // calls this, but only while it holds the sole reference: the fds of a
  // read plan must stay valid until the plan is gone.
  void close_fds() EXCLUDES(mu_);

 private:
  // load()'s work on a file not yet shared.
  Status load_copies(const LayerStack& stack, size_t from) REQUIRES(mu_);
  Status materialize(uint64_t chunk, off_t file_size) REQUIRES(mu_);
  // After a partial write into chunk, whose two predecessors the top gained
  // lately (recent_: copied up, or claimed by a whole write): copies up the
  // next chunks as well (kSequentialAhead). Scattered writes reach the
  // daemon in file order too, but rarely three chunks in a row.
  Status materialize_ahead(uint64_t chunk, off_t file_size) REQUIRES(mu_);
  void note_gained(uint64_t chunk) REQUIRES(mu_);
  bool gained_lately(uint64_t chunk) const REQUIRES(mu_);
  Result<std::vector<ReadPiece>> plan_locked(off_t offset, size_t length, off_t file_size)
      REQUIRES(mu_);
  Status save(ChunkedCopy& c, bool sync) REQUIRES(mu_);
  // Reopens what close_fds() closed; every entry point that uses an fd
  // calls it first.
  Status open_fds() REQUIRES(mu_);
  Status open_copy(ChunkedCopy& c) REQUIRES(mu_);
  // Brings Node::open_fds in line with the fds held now.
  void recount() REQUIRES(mu_);
  // An ordinary user's file made read-only loads with a read-only top fd;
  // it is opened for writing again when a write or truncate needs it.
  Status writable_top() REQUIRES(mu_);

  // Taken under the tree lock (a truncate under setattr), never the other
  // way round; and nothing is taken under it.
  mutable Mutex mu_ ACQUIRED_AFTER(tree_lock);
  // Set by load() before the file is shared, then only read:
  uint32_t chunk_size_ = 0;
  LayerPtr base_layer_;    // null if the file had no base
  std::string base_name_;  // below base_layer_'s root, or in its chunks/
  off_t base_size_ = 0;
  uint64_t ino_ = 0;

  std::vector<ChunkedCopy> copies_ GUARDED_BY(mu_);  // top first
  UniqueFd base_ GUARDED_BY(mu_);                    // O_RDONLY; see base_layer_
  long counted_fds_ GUARDED_BY(mu_) = 0;
  std::array<uint64_t, 16> recent_ GUARDED_BY(mu_);  // UINT64_MAX: none
  size_t recent_next_ GUARDED_BY(mu_) = 0;
  std::vector<UniqueFd> retired_ GUARDED_BY(mu_);  // replaced top fds, kept open for read plans
  bool top_read_only_ GUARDED_BY(mu_) = false;     // see writable_top
};

using ChunkedPtr = std::shared_ptr<ChunkedFile>;

// Where chunk files of origin ino live in a layer's chunks/ directory.
std::string chunk_data_name(uint64_t ino);
std::string chunk_map_name(uint64_t ino);
std::string chunk_base_name(uint64_t ino);
// A copy made without data (copy_up.h) has no map file yet: its first map,
// which holds no chunk, is the value of this xattr of the copy itself:
// metadata of the same inode, committed in order with the rest of it. One
// fewer inode than a map file, which matters: creating an inode costs more
// than everything else a rename does.
inline constexpr const char* kChunkRefXattr = "user.cowfs.chunkref";
std::string ref_value(const ChunkMap& empty_map);
std::optional<ChunkMap> parse_ref_value(const std::string& value);

// Writes map as chunks/<ino>.map of dirfd, atomically (aside, then rename).
Status write_map_file(int chunks_dirfd, uint64_t ino, const ChunkMap& map, bool sync);

// Freeing the space of chunked copies that nothing reaches any more.
//
// A chunked copy's data file is a hard link between the layer's tree (the
// file's names), its chunks/ directory and, for a file with several names,
// its index/. When the last name goes (an unlink, a rename over it) only
// the chunks/ link is left: no lookup can reach the copy again, so unless
// an open descriptor still uses it, its data, map and base link are garbage.
//
// Only the writable top is ever collected: a frozen layer is never
// modified, whatever it holds. Nothing a name reaches is touched, whether
// or not its map could be saved. The data file goes last, so a crash half
// way leaves a copy that the next collection finds again.

// Removes the copy of origin ino from the chunks/ directory chunks_dirfd if
// its data file has no other link. Returns whether it did.
Result<bool> drop_unreachable_copy(int chunks_dirfd, uint64_t ino);
// Removes every such copy in chunks_dirfd except those whose origin in_use
// says an open descriptor still uses. Returns the origins of those removed.
Result<std::vector<uint64_t>> collect_unreachable_copies(
    int chunks_dirfd, const std::function<bool(uint64_t)>& in_use);

}  // namespace cowfs
