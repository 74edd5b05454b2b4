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
//   STORE/trash/          dropped layers awaiting deletion; no link in it
//                         counts in a file of the stack (link_count.h)
//   STORE/lock            flock()ed by the one cowfs that serves the store
//   STORE/unmount-error   why the last unmount could not save everything
//                         (read and removed by `cowfs umount`, which reports it)
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

// True for 1 to 64 of [A-Za-z0-9._-] (and not "-", the top's marker).
bool label_is_wellformed(const std::string& label);

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

  // Builds layer objects for the store's layers (top first) followed by the
  // lowers, reusing those of previous that keep their id and role.
  LayerStack build_stack(const std::vector<std::string>& lowers,
                         const LayerStack* previous = nullptr) const;

  // The lowers of the last mount (canonical paths, top first), so commands
  // on an unmounted store know what lies below it.
  std::vector<std::string> lowers() const;
  void set_lowers(const std::vector<std::string>& lowers);

  // Takes the store's lock; throws StoreError naming the holder if busy.
  void lock_exclusive();
  // True if a running cowfs holds the lock.
  bool locked_by_other() const;

  // Layer changes. Each is atomic on disk: the new stack file, renamed into
  // place, is the single commit point. Layers that leave the stack then
  // give up their links to inodes that stay (link_count.h) and are moved to
  // trash/, before the call returns (a crash in between leaves unreferenced
  // layer directories, which collect_garbage() releases and moves on the
  // next start). Frozen layers are never written. All throw StoreError with
  // a user message.
  //
  // checkpoint: the top is frozen under label and a new empty top started.
  void checkpoint(const std::string& label);
  // rewind: drops every layer above the one labelled label (and the top).
  // Returns the dropped layer ids, now in trash/.
  std::vector<std::string> rewind(const std::string& label);
  // reset: drops every layer; the view is the lowers alone.
  std::vector<std::string> reset();
  // Replaces the stack by recs (layers in recs must exist under layers/);
  // layers no longer named are moved to trash/. Used by compact.
  std::vector<std::string> replace_stack(const std::vector<LayerRecord>& recs);
  // A new, empty layer directory that is not yet in the stack. Its root
  // takes the mode, owner, times and xattrs of like_fd (a directory) if
  // given: the view's root keeps its attributes across layer changes.
  std::string create_layer(int like_fd = -1);
  // Moves a layer directory that is not in the stack to trash/.
  void discard_layer(const std::string& id);
  // O_PATH fd of a store layer's tree, or of the top lower for "".
  UniqueFd layer_root(const std::string& id) const;
  int layers_fd() const { return layers_.get(); }

  // Moves layer directories the stack does not name into trash/ (having
  // released their links to the stack's inodes: link_count.h), clears
  // work/ and frees the top layer's chunked copies that no name reaches
  // (chunked_file.h): what an interrupted command, copy-up or open file
  // left behind. Only while nothing serves the store (no file is open).
  void collect_garbage();
  // Frees the top layer's chunked copies that no name reaches; for an
  // unmounted store (a mounted one is the daemon's: Overlay::change_stack).
  void collect_unreachable_copies() const;
  // Deletes what is in trash/. The daemon runs it on a thread; single-
  // threaded callers use purge_trash_in_background(), a detached process, so
  // dropping a layer of any size returns at once. Nothing waits for it:
  // what is in trash/ counts nowhere.
  static void purge_trash(const std::string& store_path);
  void purge_trash_in_background() const;

  // STORE/unmount-error (see above). set throws StoreError if it cannot.
  void set_unmount_error(const std::string& msg);
  void clear_unmount_error();

  // Throws StoreError unless label is 1-64 of [A-Za-z0-9._-]; unique says
  // it must not name an existing layer, else it must name a frozen one.
  void check_label(const std::string& label, bool unique) const;

 private:
  Store() = default;
  void load_records();
  // Replaces the stack file durably; on failure (StoreError) the stack file
  // and records() still say what they said before.
  void write_records(const std::vector<LayerRecord>& recs);
  // write_records for a stack whose new top new_id was just created; on
  // failure that layer is removed too.
  void commit_records(const std::vector<LayerRecord>& recs, const std::string& new_id);
  std::string new_layer_id() const;
  void create_layer_dirs(const std::string& id, int like_fd = -1);
  // Which links of layers leaving the stack can count in the stack's files
  // (link_count.h): the .base links alone (what a rewind or reset drops), or
  // any (compact's sources, merged layers, what a crash left).
  enum class Release { kBases, kShared };
  // Releases those links of the layer directories ids, then moves them to
  // trash/ (one that cannot move stays for collect_garbage).
  void move_to_trash(const std::vector<std::string>& ids, Release release);
  // Moves the layers of before that records_ no longer names; returns them.
  std::vector<std::string> drop_unnamed(const std::vector<LayerRecord>& before, Release release);

  std::string path_;
  UniqueFd fd_;
  UniqueFd work_;
  UniqueFd whiteouts_;
  UniqueFd lock_;
  UniqueFd layers_;
  dev_t dev_ = 0;
  std::vector<LayerRecord> records_;
};

}  // namespace cowfs
