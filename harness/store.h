// The seam between the harness and cowfs.
//
//  * Mounter: mount / unmount / is-mounted of a workspace's view.
//  * LayerStore: checkpoint, rewind, reset, layers, diff of a store.
//
// CowfsCli implements both by running the `cowfs` binary (the harness never
// includes FUSE headers and treats cowfs as an external program). The
// pipeline's tests run it against the real cowfs (tests/harness); the
// interface keeps the pipeline free of how cowfs is reached (a --in-place
// run has no LayerStore at all).
//
// Every failure throws StoreError with cowfs' own one-line message.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rehearse {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LayerInfo {
  std::string id;
  std::string label;  // "" for the writable top
  int64_t created = 0;
  int64_t files = 0;
  int64_t bytes = 0;
  int64_t chunked_bytes = 0;
  bool top = false;
};

// cowfs' lower cache (`cowfs layers --json`, lower_cache).
struct LowerCacheInfo {
  std::string dir;
  int64_t bytes = 0;
  int64_t max_bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t fetched_bytes = 0;
};

struct DiffEntry {
  std::string path;
  int64_t bytes = 0;
};

struct StoreDiff {
  std::vector<DiffEntry> added, changed, deleted;
  std::vector<std::pair<std::string, std::string>> renamed;  // from, to
  int64_t bytes = 0;  // what the changes hold in the store, renamed files included
};

class Mounter {
 public:
  virtual ~Mounter() = default;
  virtual void mount(const std::vector<std::string>& lowers, const std::string& mountpoint) = 0;
  virtual void umount(const std::string& mountpoint) = 0;
  virtual bool is_mounted(const std::string& mountpoint) = 0;
};

class LayerStore {
 public:
  virtual ~LayerStore() = default;
  virtual void checkpoint(const std::string& label) = 0;
  virtual void rewind(const std::string& label) = 0;
  virtual void reset() = 0;
  virtual std::vector<LayerInfo> layers() = 0;  // top first
  // Changes between two checkpoints; nullopt from = production, nullopt to =
  // the current top.
  virtual StoreDiff diff(const std::optional<std::string>& from,
                         const std::optional<std::string>& to) = 0;
};

class CowfsCli : public Mounter, public LayerStore {
 public:
  CowfsCli(std::string binary, std::string store)
      : bin_(std::move(binary)), store_(std::move(store)) {}
  // Arguments added to every `cowfs mount` (the lower cache's).
  void set_mount_args(std::vector<std::string> args) { mount_args_ = std::move(args); }
  // The lower cache as the last layers() saw it (a mounted store with one).
  const std::optional<LowerCacheInfo>& lower_cache() const { return lower_cache_; }

  void mount(const std::vector<std::string>& lowers, const std::string& mountpoint) override;
  void umount(const std::string& mountpoint) override;
  bool is_mounted(const std::string& mountpoint) override;
  void checkpoint(const std::string& label) override;
  void rewind(const std::string& label) override;
  void reset() override;
  std::vector<LayerInfo> layers() override;
  StoreDiff diff(const std::optional<std::string>& from,
                 const std::optional<std::string>& to) override;

 private:
  std::string run(const std::vector<std::string>& args, const std::string& what);
  std::string bin_;
  std::string store_;
  std::vector<std::string> mount_args_;
  std::optional<LowerCacheInfo> lower_cache_;
};

// Where the cowfs binary is: $REHEARSE_COWFS, else next to this executable,
// else ../cowfs relative to it (the build tree), else "cowfs" from $PATH.
std::string find_cowfs_binary();

// Is there a cowfs (fuse.cowfs) mount at path (absolute)?
bool cowfs_mounted_at(const std::string& path);

// Is `label` a valid cowfs layer label (1-64 chars of [A-Za-z0-9._-])?
bool valid_label(const std::string& label);

}  // namespace rehearse
