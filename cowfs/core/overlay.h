// Overlay: the merged filesystem in POSIX terms. Every FUSE operation is one
// call here; results are values or errnos. Nothing here knows about FUSE, so
// the whole meaning of the filesystem is unit-tested on plain directories.
//
// Semantics (see DESIGN.md "cowfs: the contract"):
//  * A name resolves to the topmost layer that has it, unless a whiteout in
//    a higher store layer deletes it. Directories merge all their parts down
//    to the first opaque one.
//  * Lowers are only ever opened O_RDONLY or O_PATH. The first change to a
//    file below the top copies it up (copy_up.h); directories are created in
//    the top on demand, keeping their origin so st_ino never changes.
//  * Deleting or renaming away a name that a lower layer has leaves a
//    whiteout; a directory created where a lower name was deleted is opaque;
//    a renamed directory that has lower parts carries a redirect to them.
//
// Thread-safety: all public calls may run concurrently. Namespace changes
// take tree_mu_ exclusively, lookups and attribute reads share it, and data
// I/O on open handles takes no lock at all.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "cowfs/core/layer.h"
#include "cowfs/core/node.h"
#include "cowfs/core/whiteout.h"
#include "cowfs/sys/result.h"

namespace cowfs {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct Entry {
  NodePtr node;
  struct stat attr {};
};

struct SetAttr {
  bool mode = false, uid = false, gid = false, size = false, atime = false, mtime = false;
  bool atime_now = false, mtime_now = false;
  struct stat values {};
};

struct DirListing {
  struct Item {
    std::string name;
    uint64_t ino;
    unsigned char type;  // DT_*
  };
  std::vector<Item> items;
};

// An open file. The fd is on the file's current backing (a lower file only
// while the handle does not write).
struct FileHandle {
  NodePtr node;
  UniqueFd fd;
  int flags = 0;
  uint64_t gen = 0;
  bool writable() const { return (flags & O_ACCMODE) != O_RDONLY; }
};

class Overlay {
 public:
  struct Options {
    bool is_root = true;  // may set owners of new files to the caller's
  };

  // stack must be built by Store::build_stack; whiteouts initialised.
  Overlay(LayerStack stack, Whiteouts* whiteouts, int work_fd, Options opts);

  NodePtr root() const { return root_; }
  NodePtr node(uint64_t ino) const { return inodes_.find(ino); }
  size_t node_count() const { return inodes_.size(); }

  // Lookups: a successful reply holds a kernel reference (see node.h).
  Result<Entry> lookup(uint64_t parent, const std::string& name);
  void forget(uint64_t ino, uint64_t nlookup);

  Result<struct stat> getattr(uint64_t ino);
  Result<struct stat> setattr(uint64_t ino, const SetAttr& attr, FileHandle* fh);
  Result<std::string> readlink(uint64_t ino);

  Result<Entry> mknod(uint64_t parent, const std::string& name, mode_t mode, dev_t rdev,
                      const Caller& caller);
  Result<Entry> mkdir(uint64_t parent, const std::string& name, mode_t mode,
                      const Caller& caller);
  Result<Entry> symlink(const std::string& target, uint64_t parent, const std::string& name,
                        const Caller& caller);
  Result<Entry> link(uint64_t ino, uint64_t newparent, const std::string& newname);
  Status unlink(uint64_t parent, const std::string& name);
  Status rmdir(uint64_t parent, const std::string& name);
  Status rename(uint64_t parent, const std::string& name, uint64_t newparent,
                const std::string& newname, unsigned flags);

  Result<std::unique_ptr<FileHandle>> open(uint64_t ino, int flags);
  Result<std::pair<Entry, std::unique_ptr<FileHandle>>> create(uint64_t parent,
                                                              const std::string& name,
                                                              mode_t mode, int flags,
                                                              const Caller& caller);
  // The fd that serves I/O of fh now (reopened if the file was copied up
  // since the handle was opened).
  Result<int> io_fd(FileHandle& fh);

  Result<DirListing> list_dir(uint64_t ino);
  Status fsync_dir(uint64_t ino, bool datasync);
  Result<struct statvfs> statfs();

  Result<std::string> getxattr(uint64_t ino, const std::string& name);
  Result<std::vector<std::string>> listxattr(uint64_t ino);
  Status setxattr(uint64_t ino, const std::string& name, const std::string& value, int flags);
  Status removexattr(uint64_t ino, const std::string& name);

  const LayerStack& stack() const { return stack_; }

 private:
  // What a name resolves to below a directory, before it becomes a Node.
  struct Probe {
    struct stat st {};
    LayerPtr layer;
    UniqueFd fd;                 // non-directories
    std::vector<DirPart> parts;  // directories
    uint64_t ino = 0;
    int lower_links = -1;
  };
  Result<Probe> probe(const Node& dir, const std::string& name) const;
  Result<NodePtr> resolve(const NodePtr& dir, const std::string& name, bool count);
  Result<Entry> entry_for(const NodePtr& node);
  Result<struct stat> stat_node(const Node& node) const;
  Result<NodePtr> dir_node(uint64_t ino) const;

  // Copy-up and top-layer helpers; all need tree_mu_ held exclusively.
  Result<int> top_dir(Node& dir);
  Status copy_up(Node& node, bool with_data = true);
  bool lower_has(const Node& dir, const std::string& name) const;
  Result<struct stat> top_entry(Node& dir, const std::string& name);
  Status place(Node& dir, const std::string& name, const std::string& tmp_name);
  std::string temp_name();
  Status make_merged_empty(Node& dir);
  Result<bool> merged_empty(const Node& dir);
  Status set_redirect(Node& dir);
  Result<Entry> finish_create(const NodePtr& parent, const std::string& name,
                              const Caller& caller);
  Result<DirListing> list_dir_locked(const Node& dir) const;

  LayerStack stack_;
  Whiteouts* whiteouts_;
  int work_fd_;
  Options opts_;
  NodePtr root_;
  InodeTable inodes_;
  mutable std::shared_mutex tree_mu_;  // acquired before name_mu_ and InodeTable::mu_
  // Guards Node::parent/name/unlinked when changed under a shared tree_mu_
  // (a lookup re-linking a node); exclusive holders of tree_mu_ need not take it.
  std::mutex name_mu_;
  std::atomic<uint64_t> temp_counter_{0};
};

}  // namespace cowfs
