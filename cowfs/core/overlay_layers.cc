// Overlay: living through stack changes (checkpoint, rewind, reset,
// compact) while mounted.
#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "cowfs/core/copy_up.h"
#include "cowfs/core/overlay.h"
#include "cowfs/core/store.h"
#include "cowfs/core/whiteout.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

bool contains(const std::vector<std::string>& ids, const std::string& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

struct PairHash {
  size_t operator()(const std::pair<uint64_t, std::string>& p) const {
    return std::hash<uint64_t>()(p.first) * 31 + std::hash<std::string>()(p.second);
  }
};

// Calls visit(parent_components, name, subdir) for every entry below dirfd,
// where subdir is an O_PATH fd of the entry if it is a directory, else -1.
template <typename Visit>
void walk_tree(int dirfd, std::vector<std::string>& path, Visit& visit) {
  auto entries = sys::read_dir(dirfd);
  if (!entries) return;
  for (const auto& e : *entries) {
    if (e.type != DT_DIR) {
      visit(path, e.name, -1);
      continue;
    }
    auto sub = sys::open_at(dirfd, e.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    visit(path, e.name, sub ? sub->get() : -1);
    if (!sub) continue;
    path.push_back(e.name);
    walk_tree(sub->get(), path, visit);
    path.pop_back();
  }
}

}  // namespace

std::string Overlay::path_of(const Node& node) const {
  if (node.ino == kRootIno) return "/";
  std::vector<const Node*> chain;
  for (const Node* n = &node; n != nullptr && n->ino != kRootIno; n = n->parent.get()) {
    chain.push_back(n);
  }
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) out += "/" + (*it)->name;
  if (node.unlinked || !node.parent) out += " (deleted)";
  return out;
}

std::vector<std::string> Overlay::writers_in(const std::vector<std::string>& ids) const {
  std::vector<std::string> out;
  MutexLock lock(handles_mu_);
  for (const FileHandle* fh : writers_) {
    const LayerPtr& layer = fh->node->backing_layer();
    if (layer && contains(ids, layer->id)) {
      out.push_back(path_of(*fh->node) + " (pid " + std::to_string(fh->pid) + ")");
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Invalidations Overlay::invalidations_for(const std::vector<LayerPtr>& dropped,
                                         std::vector<KeptDir>* kept_dirs) const {
  Invalidations inv;
  // What the kernel may have cached, by (parent, name).
  std::unordered_map<std::pair<uint64_t, std::string>, uint64_t, PairHash> children;
  // Directories by their (parent, name), read here, where the tree lock
  // is known to be held (visit below is analysed without it).
  std::unordered_map<std::pair<uint64_t, std::string>, NodePtr, PairHash> dirs;
  const auto nodes = inodes_.snapshot();
  for (const auto& n : nodes) {
    if (n->parent) children[{n->parent->ino, n->name}] = n->ino;
    // A hard link's other names are cached by the kernel too.
    for (const auto& alias : n->aliases) children.emplace(alias, n->ino);
    if (n->is_dir() && n->parent) dirs[{n->parent->ino, n->name}] = n;
  }
  std::unordered_set<uint64_t> inodes{kRootIno};
  std::unordered_set<uint64_t> kept;
  for (const auto& layer : dropped) {
    auto visit = [&](const std::vector<std::string>& dir, const std::string& name, int subdir) {
      uint64_t parent = kRootIno;
      for (const auto& c : dir) {
        auto it = children.find({parent, c});
        if (it == children.end()) return;  // the kernel knows nothing below
        parent = it->second;
      }
      inodes.insert(parent);
      auto it = children.find({parent, name});
      if (it != children.end()) inodes.insert(it->second);
      // A directory that only passes through: what changed below it is in
      // this tree too, and is visited.
      if (subdir >= 0 && it != children.end() && kept_dirs != nullptr &&
          !sys::get_xattr(subdir, kOpaqueXattr).ok() &&
          !sys::get_xattr(subdir, kRedirectXattr).ok()) {
        auto d = dirs.find({parent, name});
        if (d != dirs.end() && d->second->ino == it->second) {
          if (kept.insert(d->second->ino).second) kept_dirs->push_back({parent, name, d->second});
          return;
        }
      }
      inv.entries.emplace_back(parent, name);
    };
    std::vector<std::string> path;
    walk_tree(layer->root.get(), path, visit);
    // Copied-up hard-linked files are known by their origin.
    if (auto idx = sys::read_dir(layer->index.get())) {
      for (const auto& e : *idx) inodes.insert(std::strtoull(e.name.c_str(), nullptr, 16));
    }
  }
  // A file whose copy goes may be known to the kernel by names the dropped
  // trees do not hold (hard links, copies reached by the index). Under the
  // writeback cache the kernel trusts its own size and times of an inode it
  // keeps, so every such name must be looked up again, to meet the file's
  // new generation (see refresh_nodes).
  for (const auto& n : nodes) {
    if (n->is_dir()) continue;
    const LayerPtr layer = n->layer;
    const bool copy_dropped =
        layer && std::any_of(dropped.begin(), dropped.end(),
                             [&](const LayerPtr& l) { return l->id == layer->id; });
    if (!copy_dropped && !inodes.contains(n->ino)) continue;
    inodes.insert(n->ino);
    if (n->parent && !n->unlinked) inv.entries.emplace_back(n->parent->ino, n->name);
    for (const auto& [dir, name] : n->aliases) inv.entries.emplace_back(dir, name);
  }
  // A name both in a dropped tree and among a node's names is sent once.
  std::sort(inv.entries.begin(), inv.entries.end());
  inv.entries.erase(std::unique(inv.entries.begin(), inv.entries.end()), inv.entries.end());
  inv.inodes.assign(inodes.begin(), inodes.end());
  return inv;
}

void Overlay::refresh_nodes(const std::vector<std::string>& dropped, bool view_changed) {
  root_->parts.clear();
  for (const auto& layer : stack_.layers) {
    auto fd = sys::open_at(layer->root.get(), ".", O_PATH | O_DIRECTORY);
    if (fd) root_->parts.emplace_back(layer, fd.take(), true);
  }
  auto nodes = inodes_.snapshot();
  auto depth = [](const NodePtr& n) REQUIRES(tree_lock) {
    int d = 0;
    for (const Node* p = n->parent.get(); p != nullptr; p = p->parent.get()) ++d;
    return d;
  };
  std::vector<std::pair<int, NodePtr>> order;
  for (auto& n : nodes) {
    if (n != root_) order.emplace_back(depth(n), n);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [d, n] : order) {
    bool uses_dropped = false;
    if (n->is_dir()) {
      for (const auto& part : n->parts)
        uses_dropped = uses_dropped || contains(dropped, part.layer->id);
    } else {
      uses_dropped = n->layer && contains(dropped, n->layer->id);
    }
    if (!uses_dropped && !(view_changed && n->is_dir())) continue;
    if (view_changed && uses_dropped && !n->is_dir()) n->generation.fetch_add(1);
    if (!n->parent || n->unlinked) continue;  // reachable by no name: keeps its fds
    // Its names are unknown; the copies are in the index.
    if (n->pinned && !n->is_dir() && refind_in_index(*n)) continue;
    if (n->parent->unlinked) {
      n->unlinked = true;
      n->parent.reset();
      continue;
    }
    auto p = probe(*n->parent, n->name);
    if (p && p->ino == n->ino && (p->st.st_mode & S_IFMT) == n->type) {
      if (n->is_dir()) {
        n->parts = std::move(p->parts);
      } else {
        n->layer = p->layer;
        {
          MutexLock lock(n->fd_mu);
          adopt_fd(*n, std::move(p->fd));
        }
        n->via_index = p->via_index;
        n->lower_links = p->lower_links;
        n->chunks = std::move(p->chunks);
        n->data_gen.fetch_add(1);
      }
      continue;
    }
    // The name now means something else (or nothing): the kernel will look
    // it up again once its entry is invalidated.
    n->unlinked = true;
    n->parent.reset();
  }
}

Invalidations Overlay::change_stack(
    const std::function<StackChange(const LayerStack& current)>& change, bool freezes_top,
    const std::vector<std::string>& refuse_writers_in) {
  WriterLock io(io_mu_);
  TreeWriteLock tree(tree_mu_);
  if (!refuse_writers_in.empty()) {
    auto writers = writers_in(refuse_writers_in);
    if (!writers.empty()) {
      std::string list;
      for (const auto& w : writers) list += (list.empty() ? "" : ", ") + w;
      throw StoreError("files of the layers to drop are open for writing: " + list +
                       "; close them (stop the writers) and retry");
    }
  }
  // Frozen layers must hold their chunk maps, durably, before they freeze:
  // a frozen layer is never written again, so a map it lacks is lost.
  if (freezes_top) {
    if (Status s = flush_files(chunked_files_locked(), true); !s.ok()) {
      throw StoreError("cannot make the top layer's chunk maps durable (" +
                       std::string(std::strerror(s.error())) + "); nothing was changed");
    }
  }
  // A layer about to freeze is never collected again; compact and the rest
  // are the collector's turn too.
  collect_unreachable_locked();
  StackChange c = change(stack_);
  Invalidations inv;
  std::vector<KeptDir> kept_dirs;
  if (c.view_changed) {
    std::vector<LayerPtr> gone;
    for (const auto& l : stack_.layers) {
      if (contains(c.dropped, l->id)) gone.push_back(l);
    }
    inv = invalidations_for(gone, &kept_dirs);
  }
  stack_ = std::move(c.stack);
  stack_gen_.fetch_add(1);
  refresh_nodes(c.dropped, c.view_changed);
  // A kept directory's entry goes only if its name now means something else
  // (refresh_nodes unlinks it then).
  for (const auto& k : kept_dirs) {
    if (k.dir->unlinked || !k.dir->parent || k.dir->name != k.name) {
      inv.entries.emplace_back(k.parent, k.name);
    }
  }
  return inv;
}

}  // namespace cowfs
