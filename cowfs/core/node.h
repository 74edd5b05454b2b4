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
// Locking: fields marked TREE are guarded by Overlay::tree_mu_ (read under a
// shared lock, written under the exclusive one). InodeTable::mu_ is
// acquired after tree_mu_, never before.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cowfs/core/chunked_file.h"
#include "cowfs/core/layer.h"
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
struct DirPart {
  DirPart(LayerPtr l, UniqueFd f, bool is_fixed = false);
  DirPart(DirPart&& other) noexcept;
  DirPart& operator=(DirPart&& other) noexcept;
  DirPart(const DirPart&) = delete;
  DirPart& operator=(const DirPart&) = delete;
  ~DirPart();

  // Closes the fd, remembering the inode it must find on reopening.
  void close();
  void adopt(UniqueFd f);

  LayerPtr layer;
  UniqueFd fd;  // O_PATH | O_DIRECTORY; GUARDED_BY(owner's fd_mu) when the tree lock is shared
  bool fixed = false;
  ino_t closed_ino = 0;
};

class Node {
 public:
  Node(uint64_t number, mode_t mode) : ino(number), type(mode & S_IFMT) {}
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const uint64_t ino;
  const mode_t type;
  bool is_dir() const { return S_ISDIR(type); }

  // TREE: the name it was last reached by; parent == nullptr once the last
  // visible name is gone (an open-unlinked file).
  std::shared_ptr<Node> parent;
  std::string name;
  bool unlinked = false;
  // TREE, non-directories: other names the kernel was given for it (hard
  // links). When `name` goes, one of them takes its place, so the file keeps
  // a name its copy-up can land on and a rewind can find it by.
  // Kept by directory number: the kernel may forget a directory and get a
  // new node for it.
  std::vector<std::pair<uint64_t, std::string>> aliases;

  // TREE, non-directories: where the data lives now. fd may be closed to
  // stay within the process's fd limit (Overlay::fd_of opens it again from
  // the parent's directory in that layer, or from the index); a pinned node
  // has lost the name it could be found by and keeps its fd.
  LayerPtr layer;
  UniqueFd fd;  // O_PATH, O_NOFOLLOW; GUARDED_BY(fd_mu): reopened under the shared tree lock
  bool via_index = false;
  bool pinned = false;
  std::mutex fd_mu;
  // Node fds open in the process, to decide when to close some.
  static std::atomic<long> open_fds;

  // TREE, directories: the parts merged into this directory, top first,
  // ending at the first opaque part.
  std::vector<DirPart> parts;
  // TREE, regular files copied up from a multiply linked lower file: how
  // many of its lower names still resolve to it (-1: not such a file).
  int lower_links = -1;
  // TREE, regular files copied up by chunk: their copies and base.
  ChunkedPtr chunks;

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
  const LayerPtr& backing_layer() const { return is_dir() ? parts.front().layer : layer; }
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
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, NodePtr> nodes_;  // GUARDED_BY(mu_)
};

}  // namespace cowfs
