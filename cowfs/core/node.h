// Node: one file or directory of the merged view, and the inode table that
// maps FUSE node ids to nodes.
//
// A node's id is also the st_ino it reports. It is derived from the file's
// origin — the layer class and inode number where the file first existed —
// and copy-up records that origin (kOriginXattr), so st_ino survives
// copy-up, checkpoints and remounts, and every name of a hard-linked file
// resolves to the same node.
//
// A node reaches its backing files through O_PATH fds, never through paths:
// renames above it cannot make it stale and long paths are never built.
//
// Lookup counting: the kernel holds a reference for every entry we reply
// with through lookup, create, mknod, mkdir, symlink, link and readdirplus
// (except "." and ".."); InodeTable::intern() adds it and forget() drops it.
// A node leaves the table when its count reaches zero and nothing else holds
// it (a child naming it as parent, an open handle): one node per inode
// number while any is in use.
//
// Locking (checked by clang, see cowfs/sys/thread_annotations.h): fields
// marked TREE are GUARDED_BY(tree_lock), the Overlay's tree lock
// (tree_lock.h): read under a shared lock, written under the exclusive one.
// A node's fd and its directory parts' fds are also reopened by readers
// under the shared tree lock, so they are guarded by the node's fd_mu. The
// lock order is in overlay.h.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cowfs/core/chunked_file.h"
#include "cowfs/core/layer.h"
#include "cowfs/core/tree_lock.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/thread_annotations.h"
#include "cowfs/sys/unique_fd.h"

namespace cowfs {

inline constexpr uint64_t kRootIno = 1;

// st_ino for an object found in layer at its (dev, ino). Store layers keep
// their own inode numbers; lower N is tagged in the top byte.
uint64_t compose_ino(const Layer& layer, const struct stat& st);

// One layer's directory merged into a directory node. Its fd counts in
// Node::open_fds and may be closed to stay within the fd limit: it is found
// again by the node's name in its parent's part of the same layer
// (Overlay::part_fd). A part for which that name is wrong, because it was
// reached through a redirect or the directory was renamed, is fixed: it
// keeps its fd.
//
// The fd is guarded by the fd_mu of the node that owns the part, which the
// analysis can only be told through the calls that reach it: each names
// that mutex (owner) and requires it held.
struct DirPart {
  DirPart(LayerPtr l, UniqueFd f, bool is_fixed = false);
  DirPart(DirPart&& other) noexcept;
  DirPart& operator=(DirPart&& other) noexcept;
  DirPart(const DirPart&) = delete;
  DirPart& operator=(const DirPart&) = delete;
  ~DirPart();

  // Closes the fd, remembering the inode it must find on reopening.
  void close(const Mutex& owner) REQUIRES(owner);
  void adopt(UniqueFd f, const Mutex& owner) REQUIRES(owner);
  int fd([[maybe_unused]] const Mutex& owner) const REQUIRES(owner) { return fd_.get(); }
  ino_t closed_ino([[maybe_unused]] const Mutex& owner) const REQUIRES(owner) { return closed_ino_; }
  // A part still being collected, in no node yet: nobody else can see it.
  int unshared_fd() const { return fd_.get(); }

  // Not annotated: set before the part is in a node, then only read, except
  // fixed, which a rename sets under the exclusive tree lock.
  LayerPtr layer;
  bool fixed = false;

 private:
  UniqueFd fd_;  // O_PATH | O_DIRECTORY; -1 while closed
  ino_t closed_ino_ = 0;
};

class Node;

// What a new node is bound to (see the TREE fields of Node), given to its
// constructor: set before the node is shared, so without the tree lock.
struct NodeInit {
  std::shared_ptr<Node> parent;
  std::string name;
  LayerPtr layer;
  UniqueFd fd;
  bool via_index = false;
  int lower_links = -1;
  std::shared_ptr<ChunkedFile> chunks;
  std::vector<DirPart> parts;
};

class Node {
 public:
  Node(uint64_t number, mode_t mode, NodeInit init = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const uint64_t ino;
  const mode_t type;
  bool is_dir() const { return S_ISDIR(type); }

  // TREE: the name it was last reached by; parent == nullptr once the last
  // visible name is gone (an open-unlinked file).
  std::shared_ptr<Node> parent GUARDED_BY(tree_lock);
  std::string name GUARDED_BY(tree_lock);
  bool unlinked GUARDED_BY(tree_lock) = false;
  // TREE, non-directories: other names the kernel was given for it (hard
  // links). When `name` goes, one of them takes its place, so the file keeps
  // a name its copy-up can land on and a rewind can find it by.
  // Kept by directory number: the kernel may forget a directory and get a
  // new node for it.
  std::vector<std::pair<uint64_t, std::string>> aliases GUARDED_BY(tree_lock);

  // TREE, non-directories: where the data lives now. fd may be closed to
  // stay within the process's fd limit (Overlay::fd_of opens it again from
  // the parent's directory in that layer, or from the index); a pinned node
  // has lost the name it could be found by and keeps its fd.
  LayerPtr layer GUARDED_BY(tree_lock);
  // Reopened under the shared tree lock, so guarded by fd_mu (a closed fd
  // is reopened by the first reader, once). fd_mu comes after the tree lock
  // and, between nodes, a child's before its parent's (see Overlay::part_fd).
  Mutex fd_mu ACQUIRED_AFTER(tree_lock);
  UniqueFd fd GUARDED_BY(fd_mu);  // O_PATH, O_NOFOLLOW
  bool via_index GUARDED_BY(tree_lock) = false;
  bool pinned GUARDED_BY(tree_lock) = false;
  // Node fds open in the process, to decide when to close some.
  static std::atomic<long> open_fds;

  // TREE, directories: the parts merged into this directory, top first,
  // ending at the first opaque part.
  // The vector is TREE; each part's fd is the node's fd_mu's (see DirPart).
  std::vector<DirPart> parts GUARDED_BY(tree_lock);
  // TREE, regular files copied up from a multiply linked lower file: how
  // many of its lower names still resolve to it (-1: not such a file).
  int lower_links GUARDED_BY(tree_lock) = -1;
  // TREE, regular files copied up by chunk: their copies and base.
  ChunkedPtr chunks GUARDED_BY(tree_lock);

  // Bumped whenever the backing file changes (copy-up), so open handles
  // know to reopen.
  std::atomic<uint64_t> data_gen{0};
  std::atomic<uint64_t> nlookup{0};
  // Open handles (Overlay::open, create; until release): while there is
  // one, a chunked copy that lost its last name keeps its data.
  std::atomic<int> open_handles{0};
  // The inode generation the kernel is told. A layer change that alters the
  // file bumps it, so the kernel drops the inode it cached (with the
  // writeback cache it trusts its own size and times over ours).
  std::atomic<uint64_t> generation{0};

  // Layer of the node's topmost instance.
  const LayerPtr& backing_layer() const REQUIRES_SHARED(tree_lock) {
    return is_dir() ? parts.front().layer : layer;
  }
};

using NodePtr = std::shared_ptr<Node>;

class InodeTable {
 public:
  void set_root(NodePtr root);
  NodePtr find(uint64_t ino) const;
  // Returns the node already known under fresh->ino, or inserts fresh.
  // When count is set the kernel now holds one more reference.
  NodePtr intern(NodePtr fresh, bool count);
  void forget(uint64_t ino, uint64_t n);
  size_t size() const;
  std::vector<NodePtr> snapshot() const;

 private:
  mutable Mutex mu_ ACQUIRED_AFTER(tree_lock);
  std::unordered_map<uint64_t, NodePtr> nodes_ GUARDED_BY(mu_);
};

}  // namespace cowfs
