// LowerCache: a local, bounded, read-through cache of the data of lowers
// marked remote (sshfs, NFS, CIFS, 9p), in chunks of the copy-up chunk size.
//
// It caches production, not the rehearsal: it lives outside the store, and
// survives remounts, reset and rewind. Nothing in it is needed for
// correctness: an entry that is missing, stale or damaged is fetched again
// from the lower, and an entry that cannot be written leaves the read to go
// to the lower directly.
//
// Identity. An entry is named by a 128-bit hash of (lower name, path of the
// file relative to the lower's root) and the chunk index. Not by inode
// number: sshfs numbers its inodes per mount, so they mean nothing after a
// remount. Validity: each entry ends with a trailer holding the lower
// file's size and mtime (ns) when it was fetched, the chunk size, its index
// and length, and a checksum of its data (XXH64); it is served only when
// all of them match the lower file as stat'ed when the source was made and
// the data's checksum is right, so a production file that changed (size or
// mtime) is never served from the cache, and a corrupt or truncated entry is
// refetched. Lowers are immutable while mounted (see DESIGN.md), so a
// Source is stat'ed once, when a file is opened.
//
// On disk (DIR):
//   FORMAT                      "cowfs-lower-cache 1"; also the flock that
//                               keeps a second process out
//   data/XX/<32 hex>.<index>    the chunk's bytes at offset 0 (so they can be
//                               spliced as they are), then the trailer
//   tmp/                        entries being written; emptied at open
//
// Crash safety, without fsync: an entry is written under tmp/ and renamed
// into data/. A kill leaves at most a temp file, removed by the next open; a
// power cut may leave a renamed entry short or full of garbage, which the
// trailer and checksum reject. So no fsync is needed for the cache to be
// right, and none is done.
//
// Bound: after each insertion the entries (data and trailers) take at most
// max_bytes; the least recently used go first. Recency is kept in memory;
// at open the entries are ordered by their files' mtimes, and the first hit
// on an entry in a process sets its mtime, so the order survives remounts.
//
// The lower is only read: pread on the fd the caller passes in a Source (an
// fd opened O_RDONLY). Nothing here ever opens a lower file.
//
// Thread safety: every member may be called from any thread. mu_ guards the
// index and the counters; it is a leaf (nothing else is taken while it is
// held) and is not held during I/O. A chunk being fetched by one thread is
// waited for by the others, so each chunk is read from the lower once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cowfs/core/chunked_file.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/result.h"
#include "cowfs/sys/thread_annotations.h"
#include "cowfs/sys/unique_fd.h"

namespace cowfs {

// XXH64 (the xxHash 64-bit hash), the checksum of cache entries.
uint64_t xxh64(const void* data, size_t length, uint64_t seed);

// "50G", "512M", "4096", "1.5T" (binary units; K, M, G, T, optionally
// followed by "iB" or "B"): bytes, or nullopt when it is not a size.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// Whether f_type (statfs) is a filesystem whose data comes over a network:
// FUSE (sshfs and other FUSE network filesystems), NFS, CIFS/SMB, 9p,
// Ceph, AFS, Coda, NCP. Such lowers are marked remote by cowfs mount.
bool is_network_fs_type(long f_type);

struct LowerCacheStats {
  uint64_t bytes = 0;          // entries' size on disk (data and trailers)
  uint64_t entries = 0;        // chunks held
  uint64_t max_bytes = 0;      // the bound
  uint64_t hits = 0;           // chunks served from the cache
  uint64_t misses = 0;         // chunks fetched from the lower
  uint64_t fetched_bytes = 0;  // bytes read from the lower
  uint64_t rejected = 0;       // entries found stale or damaged (then refetched)
  uint64_t evictions = 0;      // entries removed to keep the bound
  uint64_t bypassed = 0;       // chunks read from the lower without caching (cache write failed)
};

class LowerCache {
 public:
  struct Options {
    std::string dir;
    uint64_t max_bytes = 50ull << 30;
    uint32_t chunk_size = 64 << 10;
  };

  // Opens (creating it if needed) the cache in options.dir. EBUSY: another
  // process has it open.
  static Result<std::unique_ptr<LowerCache>> open(const Options& options);
  ~LowerCache();
  LowerCache(const LowerCache&) = delete;
  LowerCache& operator=(const LowerCache&) = delete;

  // A file of a remote lower as the cache knows it: the fd reads it (owned
  // by the caller, O_RDONLY, open for as long as the Source is used).
  struct Source {
    int fd = -1;
    uint64_t key[2] = {0, 0};
    off_t size = 0;
    int64_t mtime_ns = 0;
  };
  // lower: the lower's name (stable across mounts: its path as configured);
  // rel_path: the file's path relative to the lower's root. fstats fd.
  static Result<Source> source(std::string_view lower, std::string_view rel_path, int fd);
  // The path of the file open as fd relative to the directory open as
  // root_fd (both may be O_PATH), as the kernel names them now.
  static Result<std::string> relative_path(int root_fd, int fd);

  // Where the bytes [offset, offset + length) of src come from, clipped to
  // its size: pieces of cache entries whose fds are appended to hold (valid
  // while hold lives), fetched from the lower first where missing. Errors
  // are the lower's.
  Result<std::vector<ReadPiece>> plan_read(const Source& src, off_t offset, size_t length,
                                           std::vector<UniqueFd>& hold) EXCLUDES(mu_);

  LowerCacheStats stats() const EXCLUDES(mu_);
  const std::string& dir() const { return options_.dir; }
  uint32_t chunk_size() const { return options_.chunk_size; }

 private:
  struct Entry {
    uint64_t bytes = 0;
    std::list<std::string>::iterator lru;
    bool touched = false;  // its mtime was set by a hit in this process
  };

  LowerCache(Options options, UniqueFd dir, UniqueFd lock, UniqueFd data, UniqueFd tmp);
  Status load_index() EXCLUDES(mu_);
  // The entry's fd, with the chunk's bytes at 0, or an invalid fd when it
  // must be fetched (missing, stale, damaged).
  Result<UniqueFd> lookup(const Source& src, uint64_t index, size_t length, const std::string& name)
      EXCLUDES(mu_);
  // Reads the chunk from the lower and stores it; the entry's fd, or the
  // lower's own fd (not owned, in the piece) when storing it failed.
  Result<ReadPiece> fetch(const Source& src, uint64_t index, size_t length, const std::string& name,
                          std::vector<UniqueFd>& hold) EXCLUDES(mu_);
  void insert_locked(const std::string& name, uint64_t bytes) REQUIRES(mu_);
  void touch_locked(const std::string& name) REQUIRES(mu_);
  void forget_locked(const std::string& name) REQUIRES(mu_);
  void evict_locked(const std::string& keep) REQUIRES(mu_);

  const Options options_;
  const UniqueFd dir_;
  const UniqueFd lock_;  // FORMAT, flock'ed while open
  const UniqueFd data_;
  const UniqueFd tmp_;

  mutable Mutex mu_;
  CondVar fetched_;  // a chunk left inflight_
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::list<std::string> lru_ GUARDED_BY(mu_);  // most recently used first
  std::unordered_set<std::string> inflight_ GUARDED_BY(mu_);
  uint64_t temp_seq_ GUARDED_BY(mu_) = 0;
  LowerCacheStats stats_ GUARDED_BY(mu_);
};

}  // namespace cowfs
