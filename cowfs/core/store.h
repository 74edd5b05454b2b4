// Store: the on-disk home of the writable layers.
//
//   STORE/format          "cowfs-store <version>" — refused if not ours
//   STORE/stack           layer list, bottom to top, one "<id> <created> <label>"
//                         per line; the last line is the writable top (label "-").
//                         Replaced atomically (write aside, fsync, rename).
//   STORE/layers/<id>/tree   the layer's files, user names stored verbatim
//   STORE/layers/<id>/index  hard links named by origin inode (see copy_up.h)
//   STORE/whiteouts/w<N>  sentinel inodes; a whiteout is a hard link to one
//   STORE/work/           temporaries of atomic copy-up (same filesystem)
//   STORE/trash/          dropped layers awaiting deletion
//   STORE/lock            flock()ed by the one cowfs that serves the store
//
// Because markers live outside tree/ (or are recognised by inode identity),
// no user file name can be mistaken for one.
//
// Opening a store with an unknown format throws StoreError with a message
// meant for the user; nothing is created in that case.
#pragma once

#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "cowfs/core/layer.h"
#include "cowfs/sys/unique_fd.h"

namespace cowfs {

inline constexpr int kStoreFormatVersion = 1;

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LayerRecord {
  std::string id;
  std::time_t created = 0;
  std::string label;  // "-" for the top
};

class Store {
 public:
  // Opens STORE, creating an empty store if the directory is missing or empty.
  static Store open(const std::string& path, bool create);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  int work_fd() const { return work_.get(); }
  int whiteouts_fd() const { return whiteouts_.get(); }
  dev_t dev() const { return dev_; }
  const std::vector<LayerRecord>& records() const { return records_; }

  // Builds layer objects for the store's layers (top first) followed by the lowers.
  LayerStack build_stack(const std::vector<std::string>& lowers) const;

  // Takes the store's lock; throws StoreError naming the holder if busy.
  void lock_exclusive();

 private:
  Store() = default;
  void load_records();
  void write_records(const std::vector<LayerRecord>& recs);
  std::string new_layer_id() const;
  void create_layer_dirs(const std::string& id);

  std::string path_;
  UniqueFd fd_;
  UniqueFd work_;
  UniqueFd whiteouts_;
  UniqueFd lock_;
  dev_t dev_ = 0;
  std::vector<LayerRecord> records_;
};

}  // namespace cowfs
