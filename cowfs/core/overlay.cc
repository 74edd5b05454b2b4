#include "cowfs/core/overlay.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <utility>

#include "cowfs/core/copy_up.h"
#include "cowfs/core/link_count.h"
#include "cowfs/core/xattr_names.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {

namespace {

std::optional<uint64_t> parse_u64(const std::string& s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// The stable number of an object found in layer: its recorded origin if it
// was copied up into the store, else its own.
uint64_t identity(const Layer& layer, int fd, const struct stat& st) {
  if (layer.in_store()) {
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
      if (auto origin = sys::get_xattr(fd, kOriginXattr)) {
        if (auto v = parse_u64(*origin)) return *v;
      }
    } else if (auto v = read_origin_record(layer, st.st_ino)) {
      return *v;
    }
  }
  return compose_ino(layer, st);
}

bool has_xattr(int fd, const char* name) { return sys::get_xattr(fd, name).ok(); }

// The open flags of a handle's own fd on its backing file. O_DIRECT is the
// kernel's business, not the store's: the kernel already sends every read
// and write of an O_DIRECT file to us, past its page cache, in the caller's
// blocks. The bytes of a write reach the backing fd from libfuse's request
// buffer, behind the request header and so never aligned, which a store fd
// opened O_DIRECT refuses with EINVAL (and a store filesystem without
// O_DIRECT, such as an old tmpfs, refuses the open itself). O_SYNC and
// O_DSYNC do pass: they are what makes a write durable.
int backing_open_flags(int flags) { return flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT); }

bool is_name(const Node& n, const NodePtr& dir, const std::string& name)
    REQUIRES_SHARED(tree_lock) {
  return n.parent && n.parent->ino == dir->ino && n.name == name;
}

}  // namespace

Overlay::Overlay(LayerStack stack, Whiteouts* whiteouts, int work_fd, Options opts)
    : stack_(std::move(stack)), whiteouts_(whiteouts), work_fd_(work_fd), opts_(opts) {
  NodeInit init;
  for (const auto& layer : stack_.layers) {
    auto fd = sys::open_at(layer->root.get(), ".", O_PATH | O_DIRECTORY);
    if (fd) init.parts.emplace_back(layer, fd.take(), true);
  }
  root_ = std::make_shared<Node>(kRootIno, S_IFDIR, std::move(init));
  inodes_.set_root(root_);
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    // Half for node fds, the rest for open files, directories and layers.
    fd_budget_ = std::max<long>(256, static_cast<long>(rl.rlim_cur) / 2);
  }
}

std::string Overlay::temp_name() {
  return "t" + std::to_string(::getpid()) + "-" + std::to_string(temp_counter_.fetch_add(1));
}

Result<NodePtr> Overlay::dir_node(uint64_t ino) const {
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  if (!n->is_dir()) return Errno{ENOTDIR};
  return n;
}

static void collect_dir_parts(const LayerStack& stack, size_t li, UniqueFd fd,
                              std::vector<DirPart>& parts, bool& stop);

// The parts of the directory at path (a redirect: relative to the layers'
// roots) in the merged view of the layers below li. The path is looked up
// one name at a time, as any lookup is: a directory on the way may itself
// have been renamed (redirected), or be opaque, in its own layer.
static void collect_redirect_parts(const LayerStack& stack, size_t li, const std::string& path,
                                   std::vector<DirPart>& parts) {
  const auto names = redirect_names(path);
  if (names.empty()) return;  // not a path we wrote: nothing continues below
  // Where the lookup stands: each layer's root at first (not owned), then
  // the parts found for the names so far.
  std::vector<std::pair<size_t, int>> at;
  for (size_t j = li + 1; j < stack.size(); ++j) at.emplace_back(j, stack.layers[j]->root.get());
  std::vector<DirPart> cur;
  for (const auto& name : names) {
    std::vector<DirPart> next;
    for (const auto& [k, dfd] : at) {
      auto st = sys::stat_at(dfd, name.c_str());
      if (!st) continue;
      // A whiteout or a non-directory hides the name below it.
      if (!S_ISDIR(st->st_mode)) break;
      auto fd = sys::open_at(dfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) break;
      bool stop = false;
      collect_dir_parts(stack, k, fd.take(), next, stop);
      if (stop) break;
    }
    cur = std::move(next);
    at.clear();
    for (const auto& part : cur) {
      size_t k = 0;
      while (k < stack.size() && stack.layers[k] != part.layer) ++k;
      at.emplace_back(k, part.unshared_fd());
    }
    if (at.empty()) return;
  }
  for (auto& part : cur) {
    // Found by the recorded path, not by the directory's own name.
    part.fixed = true;
    parts.push_back(std::move(part));
  }
}

// Collects the parts of a directory found at fd in layer li: that one and,
// where a redirect says the content lives elsewhere below, the directory at
// the recorded path in the layers underneath. Sets stop when the parent's
// parts must not supply more parts at the same name.
static void collect_dir_parts(const LayerStack& stack, size_t li, UniqueFd fd,
                              std::vector<DirPart>& parts, bool& stop) {
  const LayerPtr& layer = stack.layers[li];
  const int raw = fd.get();
  parts.emplace_back(layer, std::move(fd));
  if (!layer->in_store()) return;
  if (has_xattr(raw, kOpaqueXattr)) {
    stop = true;
    return;
  }
  auto redirect = sys::get_xattr(raw, kRedirectXattr);
  if (!redirect) return;  // the caller continues at the same name
  stop = true;
  collect_redirect_parts(stack, li, *redirect, parts);
}

Result<Overlay::Probe> Overlay::probe(Node& dir, const std::string& name) const {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  Probe p;
  bool found_dir = false;
  for (size_t i = 0; i < dir.parts.size(); ++i) {
    const DirPart& part = dir.parts[i];
    auto dfd = part_fd(dir, i);
    if (!dfd) return Errno{dfd.error()};
    auto st = sys::stat_at(*dfd, name.c_str());
    if (!st) {
      if (st.error() == ENOENT || st.error() == ENOTDIR) continue;
      return Errno{st.error()};
    }
    if (part.layer->in_store() && whiteouts_->is_whiteout(*st)) break;
    if (found_dir && !S_ISDIR(st->st_mode)) break;  // hidden below a directory
    auto fd = sys::open_at(*dfd, name.c_str(), O_PATH | O_NOFOLLOW);
    if (!fd) return Errno{fd.error()};
    if (!S_ISDIR(st->st_mode)) {
      p.st = *st;
      p.layer = part.layer;
      p.ino = identity(*part.layer, fd->get(), *st);
      p.fd = fd.take();
      if (part.layer->in_store() && st->st_nlink > 1) {
        if (auto links = read_lower_links(*part.layer, p.fd.get(), *st)) p.lower_links = *links;
      }
      // Another name of this file may have been copied up into a layer
      // above this one: that copy is the file now.
      if (st->st_nlink > 1) (void)index_copy(p.ino, part.layer->id, p);
      COWFS_TRY(load_chunks(p));
      return p;
    }
    if (!found_dir) {
      found_dir = true;
      p.st = *st;
      p.layer = part.layer;
      p.ino = identity(*part.layer, fd->get(), *st);
    }
    size_t li = 0;
    while (li < stack_.size() && stack_.layers[li]->id != part.layer->id) ++li;
    if (li == stack_.size()) continue;  // a part left over from an older stack
    bool stop = false;
    collect_dir_parts(stack_, li, fd.take(), p.parts, stop);
    if (stop) break;
  }
  if (!found_dir) return Errno{ENOENT};
  return p;
}

Status Overlay::name_free(Node& dir, const std::string& name) const {
  auto p = probe(dir, name);
  if (p) return Errno{EEXIST};
  if (p.error() == ENOENT || p.error() == ENOTDIR) return {};
  return Errno{p.error()};
}

// Whether binding node n to dir/name (see bind) would change it.
bool Overlay::needs_bind(const Node& n, const NodePtr& dir, const std::string& name) {
  if (!n.parent || n.unlinked || n.pinned) return true;
  if (n.is_dir() || is_name(n, dir, name)) return false;
  // Another name of a file (a hard link): a new alias unless it is known.
  return std::find(n.aliases.begin(), n.aliases.end(),
                   std::pair<uint64_t, std::string>{dir->ino, name}) == n.aliases.end();
}

void Overlay::bind(Node& n, Node& fresh, const NodePtr& dir, const std::string& name) {
  if (n.pinned && !n.unlinked && n.parent) {
    // Its recorded name went away; this one is as good (and says whether
    // it is a name that lives only below, behind the index).
    n.parent = dir;
    n.name = name;
    n.via_index = fresh.via_index;
  } else if (n.parent && !n.unlinked) {
    add_alias(n, dir, name);
  } else {
    if (n.type == fresh.type) {
      // The number was freed and reused while the kernel still knew the
      // old file: the node now stands for the new one.
      n.layer = fresh.layer;
      UniqueFd fd;
      {
        MutexLock lock(fresh.fd_mu);
        fd = std::move(fresh.fd);
      }
      {
        MutexLock lock(n.fd_mu);
        adopt_fd(n, std::move(fd));
      }
      n.via_index = fresh.via_index;
      n.pinned = false;
      n.parts = std::move(fresh.parts);
      n.lower_links = fresh.lower_links;
      n.chunks = fresh.chunks;
    }
    n.parent = dir;
    n.name = name;
    n.unlinked = false;
  }
}

Result<NodePtr> Overlay::probe_node(const NodePtr& dir, const std::string& name) const {
  auto p = probe(*dir, name);
  if (!p) return Errno{p.error()};
  NodeInit init;
  init.parent = dir;
  init.name = name;
  if (S_ISDIR(p->st.st_mode)) {
    init.parts = std::move(p->parts);
  } else {
    init.layer = p->layer;
    init.fd = std::move(p->fd);
    init.via_index = p->via_index;
    init.lower_links = p->lower_links;
    init.chunks = std::move(p->chunks);
  }
  return std::make_shared<Node>(p->ino, p->st.st_mode, std::move(init));
}

Result<NodePtr> Overlay::resolve(const NodePtr& dir, const std::string& name, bool count) {
  auto fresh = probe_node(dir, name);
  if (!fresh) return fresh;
  NodePtr n = inodes_.intern(*fresh, count);
  if (n != *fresh) bind(*n, **fresh, dir, name);
  return n;
}

Result<NodePtr> Overlay::resolve_shared(const NodePtr& dir, const std::string& name,
                                        bool* needs_exclusive) {
  auto fresh = probe_node(dir, name);
  if (!fresh) return fresh;
  NodePtr n = inodes_.intern(*fresh, true);
  // Readers of n hold the same shared lock: changing it takes the
  // exclusive one.
  *needs_exclusive = n != *fresh && needs_bind(*n, dir, name);
  return n;
}

void Overlay::adopt_fd(Node& n, UniqueFd fd) {
  if (n.fd.valid()) Node::open_fds.fetch_sub(1);
  if (fd.valid()) Node::open_fds.fetch_add(1);
  n.fd = std::move(fd);
}

Result<int> Overlay::fd_of(Node& n) {
  if (n.is_dir()) return part_fd(n, 0);
  MutexLock lock(n.fd_mu);
  if (n.fd.valid()) return n.fd.get();
  Result<UniqueFd> fd = Errno{ESTALE};
  if (n.via_index) {
    fd = sys::open_at(n.layer->index.get(), index_name(n.ino).c_str(), O_PATH | O_NOFOLLOW);
  } else if (n.parent) {
    Node& parent = *n.parent;
    for (size_t i = 0; i < parent.parts.size(); ++i) {
      if (parent.parts[i].layer->id == n.layer->id) {
        auto pfd = part_fd(parent, i);
        fd = pfd ? sys::open_at(*pfd, n.name.c_str(), O_PATH | O_NOFOLLOW)
                 : Result<UniqueFd>(Errno{pfd.error()});
        break;
      }
    }
  }
  if (!fd) return Errno{fd.error()};
  adopt_fd(n, fd.take());
  return n.fd.get();
}

Result<int> Overlay::part_fd(Node& dir, size_t i) const {
  MutexLock lock(dir.fd_mu);
  DirPart& part = dir.parts[i];
  if (part.fd(dir.fd_mu) >= 0) return part.fd(dir.fd_mu);
  if (part.fixed || !dir.parent) return Errno{ESTALE};
  Node& parent = *dir.parent;
  size_t j = 0;
  // By id: after a checkpoint, nodes resolved before and after it hold
  // different objects for the same layer.
  while (j < parent.parts.size() && parent.parts[j].layer->id != part.layer->id) ++j;
  if (j == parent.parts.size()) return Errno{ESTALE};
  auto pfd = part_fd(parent, j);
  if (!pfd) return pfd;
  auto fd = sys::open_at(*pfd, dir.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return Errno{fd.error() == ENOENT ? ESTALE : fd.error()};
  auto st = sys::stat_fd(fd->get());
  if (!st) return Errno{st.error()};
  // Names only move under the exclusive tree lock, which also makes the
  // rename fix the parts; this is the check that it did.
  if (st->st_ino != part.closed_ino(dir.fd_mu)) return Errno{ESTALE};
  part.adopt(fd.take(), dir.fd_mu);
  return part.fd(dir.fd_mu);
}

Result<int> Overlay::backing(Node& n) { return fd_of(n); }

Result<std::string> Overlay::xattr_path(Node& n) {
  if (S_ISLNK(n.type)) return symlink_xattr_path(n);
  if (!n.is_dir() && n.parent && !n.pinned && !n.unlinked && !n.via_index) {
    // A file whose fd was closed (trim_fds) is reached by name, as fd_of
    // would reopen it: a tree walk's getxattr per file then neither opens
    // an fd nor makes others close.
    bool by_name = false;
    {
      MutexLock lock(n.fd_mu);
      by_name = !n.fd.valid();
    }
    Node& parent = *n.parent;
    for (size_t i = 0; by_name && i < parent.parts.size(); ++i) {
      if (parent.parts[i].layer->id != n.layer->id) continue;
      auto pfd = part_fd(parent, i);
      if (!pfd) return Errno{pfd.error()};
      return sys::proc_path(*pfd) + "/" + n.name;
    }
  }
  auto fd = backing(n);
  if (!fd) return Errno{fd.error()};
  return sys::proc_path(*fd);
}

// A symlink's own xattrs are reached through a name: /proc/self/fd/N of its
// O_PATH fd names procfs' link instead. The name the node goes by may not be
// its copy's in the copy's layer (a hard link found by another name, or one
// whose name moved to the name being unlinked), so a candidate counts only
// if it is that very inode: its own name there, else the layer's index.
Result<std::string> Overlay::symlink_xattr_path(Node& n) {
  auto fd = backing(n);
  if (!fd) return Errno{fd.error()};
  auto own = sys::stat_fd(*fd);
  if (!own) return Errno{own.error()};
  auto same = [&](const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && st.st_ino == own->st_ino && st.st_dev == own->st_dev;
  };
  if (n.parent && !n.unlinked) {
    Node& parent = *n.parent;
    for (size_t i = 0; i < parent.parts.size(); ++i) {
      if (parent.parts[i].layer->id != n.layer->id) continue;
      auto pfd = part_fd(parent, i);
      if (!pfd) return Errno{pfd.error()};
      std::string path = sys::proc_path(*pfd) + "/" + n.name;
      if (same(path)) return path;
    }
  }
  if (n.layer && n.layer->index.valid()) {
    std::string path = sys::proc_path(n.layer->index.get()) + "/" + index_name(n.ino);
    if (same(path)) return path;
  }
  return Errno{EIO};
}

void Overlay::save_lower_links(Node& n) {
  // Best effort, as the count only corrects st_nlink.
  auto fd = fd_of(n);
  if (!fd) return;
  if (auto st = sys::stat_fd(*fd)) (void)write_lower_links(*n.layer, *fd, *st, n.lower_links);
}

void Overlay::pin(Node& n) {
  if (n.is_dir()) return;
  (void)fd_of(n);
  n.pinned = true;
}

void Overlay::add_alias(Node& n, const NodePtr& dir, const std::string& name) {
  // A handful is plenty: most hard-linked files have two or three names.
  constexpr size_t kMaxAliases = 16;
  if (n.is_dir() || is_name(n, dir, name)) return;
  const std::pair<uint64_t, std::string> alias{dir->ino, name};
  if (std::find(n.aliases.begin(), n.aliases.end(), alias) != n.aliases.end()) return;
  if (n.aliases.size() < kMaxAliases) n.aliases.push_back(alias);
}

void Overlay::set_name(Node& n, const NodePtr& dir, const std::string& name) {
  std::erase(n.aliases, std::pair<uint64_t, std::string>{dir->ino, name});
  NodePtr was_parent = std::exchange(n.parent, dir);
  std::string was_name = std::exchange(n.name, name);
  if (was_parent && !n.pinned && !n.unlinked) add_alias(n, was_parent, was_name);
  n.pinned = false;
}

void Overlay::drop_name(Node& n, const NodePtr& dir, const std::string& name) {
  std::erase(n.aliases, std::pair<uint64_t, std::string>{dir->ino, name});
  if (!is_name(n, dir, name)) return;
  while (!n.aliases.empty()) {
    auto [dir_ino, other] = std::move(n.aliases.back());
    n.aliases.pop_back();
    NodePtr d = inodes_.find(dir_ino);
    if (!d || !d->is_dir()) continue;
    auto p = probe(*d, other);
    if (p && p->ino == n.ino) {
      n.parent = std::move(d);
      n.name = std::move(other);
      n.via_index = p->via_index;
      return;
    }
  }
  pin(n);
}

Status Overlay::index_survivor(Node& n) {
  if (n.is_dir() || !n.pinned || n.unlinked || n.layer != stack_.top() || n.lower_links >= 0) {
    return {};
  }
  auto fd = fd_of(n);
  if (!fd) return Errno{fd.error()};
  auto st = sys::stat_fd(*fd);
  if (!st) return Errno{st.error()};
  // The link in chunks/ is the store's, not a name.
  if (st->st_nlink <= (n.chunks ? 1U : 0U)) return {};
  // Linked before the count is set: a crash in between overstates the
  // count by one instead of hiding the file.
  COWFS_TRY(link_replacing(AT_FDCWD, sys::proc_path(*fd).c_str(), stack_.top()->index.get(),
                           index_name(n.ino).c_str(), AT_SYMLINK_FOLLOW));
  COWFS_TRY(write_lower_links(*stack_.top(), *fd, *st, 0));
  n.lower_links = 0;
  n.via_index = true;
  return {};
}

bool Overlay::index_copy(uint64_t ino, const std::string& above_id, Probe& p) const {
  const std::string name = index_name(ino);
  for (const auto& layer : stack_.layers) {
    if (!layer->in_store() || layer->id == above_id) break;
    auto fd = sys::open_at(layer->index.get(), name.c_str(), O_PATH | O_NOFOLLOW);
    if (!fd) continue;
    auto st = sys::stat_fd(fd->get());
    if (!st) continue;
    p.st = *st;
    p.layer = layer;
    p.fd = fd.take();
    p.via_index = true;
    p.lower_links = read_lower_links(*layer, p.fd.get(), *st).value_or(0);
    return true;
  }
  return false;
}

Status Overlay::load_chunks(Probe& p) const {
  if (!p.layer->in_store() || !S_ISREG(p.st.st_mode) || !has_xattr(p.fd.get(), kChunkedXattr)) {
    return {};
  }
  size_t li = 0;
  while (li < stack_.size() && stack_.layers[li]->id != p.layer->id) ++li;
  auto chunks = ChunkedFile::load(stack_, li, p.ino);
  if (!chunks) return Errno{chunks.error()};
  p.chunks = chunks.take();
  return {};
}

bool Overlay::refind_in_index(Node& n) {
  Probe p;
  p.ino = n.ino;
  if (!index_copy(n.ino, "", p) || !load_chunks(p).ok()) return false;
  n.layer = p.layer;
  {
    MutexLock lock(n.fd_mu);
    adopt_fd(n, std::move(p.fd));
  }
  n.via_index = true;
  n.lower_links = p.lower_links;
  n.chunks = std::move(p.chunks);
  n.data_gen.fetch_add(1);
  return true;
}

void Overlay::trim_fds() {
  if (Node::open_fds.load(std::memory_order_relaxed) <= fd_budget_) return;
  TreeWriteLock tree(tree_mu_);
  if (Node::open_fds.load() <= fd_budget_) return;
  // Closing all unpinned ones is simpler than LRU bookkeeping and costs a
  // reopen only for nodes that are used again.
  for (const auto& n : inodes_.snapshot()) {
    if (n->is_dir()) {
      if (n == root_ || n->unlinked || !n->parent) continue;
      MutexLock lock(n->fd_mu);
      for (auto& part : n->parts) {
        if (!part.fixed) part.close(n->fd_mu);
      }
      continue;
    }
    // Another reference may be a read plan using its fds (read_plan takes
    // it under tree_mu_, which is held here).
    if (n->chunks && n->chunks.use_count() == 1) n->chunks->close_fds();
    if (n->pinned || n->unlinked) continue;
    if (!n->via_index && !n->parent) continue;
    MutexLock lock(n->fd_mu);
    adopt_fd(*n, UniqueFd());
  }
}

Result<struct stat> Overlay::stat_node(Node& n) {
  auto bfd = backing(n);
  if (!bfd) return Errno{bfd.error()};
  auto st = sys::stat_fd(*bfd);
  if (!st) return st;
  st->st_ino = n.ino;
  if (n.is_dir()) {
    if (n.parts.size() > 1) st->st_nlink = 1;  // merged: the count is unknown, as on NFS
  } else {
    // The invariant of link_count.h: the store's own links (chunks/,
    // index/) are not names the user made; names below that reach the copy
    // are.
    if (n.layer->in_store()) {
      st->st_nlink = store_copy_nlink(st->st_nlink, n.chunks != nullptr, n.lower_links);
    }
    if (n.unlinked && n.layer != stack_.top()) st->st_nlink = 0;
  }
  return st;
}

Result<Entry> Overlay::entry_for(const NodePtr& node) {
  auto st = stat_node(*node);
  if (!st) return Errno{st.error()};
  return Entry{node, *st};
}

Result<Entry> Overlay::lookup(uint64_t parent, const std::string& name) {
  trim_fds();
  NodePtr counted;  // holds a reference for the kernel, but must be bound to this name first
  {
    TreeReadLock lock(tree_mu_);
    auto dir = dir_node(parent);
    if (!dir) return Errno{dir.error()};
    bool needs_exclusive = false;
    auto n = resolve_shared(*dir, name, &needs_exclusive);
    if (!n) return Errno{n.error()};
    if (!needs_exclusive) {
      auto e = entry_for(*n);
      if (!e) inodes_.forget((*n)->ino, 1);
      return e;
    }
    counted = n.take();
  }
  // Rare: a node the kernel holds gets a new name or a new backing (see
  // bind). The name is resolved again, as it may have changed in between;
  // the reference taken above kept the node in the table until now.
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  Result<NodePtr> n = dir ? resolve(*dir, name, true) : Result<NodePtr>(Errno{dir.error()});
  const uint64_t counted_ino = counted->ino;
  counted.reset();
  inodes_.forget(counted_ino, 1);
  if (!n) return Errno{n.error()};
  auto e = entry_for(*n);
  if (!e) inodes_.forget((*n)->ino, 1);
  return e;
}

void Overlay::forget(uint64_t ino, uint64_t nlookup) { inodes_.forget(ino, nlookup); }

Result<struct stat> Overlay::getattr(uint64_t ino) {
  trim_fds();
  TreeReadLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  return stat_node(*n);
}

Result<struct stat> Overlay::setattr(uint64_t ino, const SetAttr& a, FileHandle* fh) {
  trim_fds();
  // The kernel's times must not be undone by a write that keeps the old
  // mtime (see set_kernel_keeps_mtime).
  if (a.mtime && kernel_keeps_mtime_.load()) {
    StripeLock times(times_mu_, ino);
    return setattr_locked(ino, a, fh);
  }
  return setattr_locked(ino, a, fh);
}

Result<struct stat> Overlay::setattr_locked(uint64_t ino, const SetAttr& a, FileHandle* fh) {
  TreeWriteLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  // Truncating to zero needs none of the old data; changing metadata only
  // needs a reference to it.
  CopyData data = CopyData::kReference;
  if (a.size) data = a.values.st_size == 0 ? CopyData::kNothing : CopyData::kContent;
  COWFS_TRY(copy_up(*n, data));
  auto bfd = backing(*n);
  if (!bfd) return Errno{bfd.error()};
  const int fd = *bfd;
  if (a.mode) {
    if (S_ISLNK(n->type)) return Errno{EOPNOTSUPP};
    COWFS_TRY(sys::chmod_fd(fd, a.values.st_mode & 07777));
  }
  if (a.uid || a.gid) {
    COWFS_TRY(sys::chown_fd(fd, a.uid ? a.values.st_uid : static_cast<uid_t>(-1),
                            a.gid ? a.values.st_gid : static_cast<gid_t>(-1)));
  }
  if (a.size) {
    if (n->is_dir()) return Errno{EISDIR};
    if (n->chunks) {
      auto cur = sys::stat_fd(fd);
      if (!cur) return Errno{cur.error()};
      COWFS_TRY(n->chunks->truncate(stack_.top(), a.values.st_size, cur->st_size));
    }
    if (fh != nullptr && fh->writable() && fh->gen_ == n->data_gen.load() &&
        fh->stack_gen_ == stack_gen_.load()) {
      // The handle's own fd: ftruncate must work whatever the file's mode.
      COWFS_TRY(sys::truncate_fd(fh->fd(), a.values.st_size));
    } else {
      auto w = sys::reopen(fd, O_WRONLY);
      if (!w) return Errno{w.error()};
      COWFS_TRY(sys::truncate_fd(w->get(), a.values.st_size));
    }
    COWFS_TRY(drop_set_id(fd, a.caller));
  }
  if (a.atime || a.mtime) {
    struct timespec t[2];
    t[0] = a.atime ? (a.atime_now ? timespec{0, UTIME_NOW} : a.values.st_atim)
                   : timespec{0, UTIME_OMIT};
    t[1] = a.mtime ? (a.mtime_now ? timespec{0, UTIME_NOW} : a.values.st_mtim)
                   : timespec{0, UTIME_OMIT};
    COWFS_TRY(sys::utimens_fd(fd, t));
  }
  return stat_node(*n);
}

Status Overlay::drop_set_id(int fd, const Caller& caller) {
  if (caller.uid == 0) return {};
  auto st = sys::stat_fd(fd);
  if (!st) return Errno{st.error()};
  if (!S_ISREG(st->st_mode)) return {};
  // As the kernel decides for a local filesystem (setattr_should_drop_sgid):
  // set-user-ID always goes; set-group-ID goes where the group may execute,
  // or else where the caller is not in the file's group.
  mode_t drop = st->st_mode & S_ISUID;
  if (st->st_mode & S_ISGID) {
    if ((st->st_mode & S_IXGRP) ||
        (caller.gid != st->st_gid && !sys::process_in_group(caller.pid, st->st_gid))) {
      drop |= S_ISGID;
    }
  }
  if (drop == 0) return {};
  return sys::chmod_fd(fd, st->st_mode & 07777 & ~drop);
}

Result<std::string> Overlay::readlink(uint64_t ino) {
  trim_fds();
  TreeReadLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  if (!S_ISLNK(n->type)) return Errno{EINVAL};
  auto fd = fd_of(*n);
  if (!fd) return Errno{fd.error()};
  return sys::readlink_at(*fd, "");
}

Result<std::unique_ptr<FileHandle>> Overlay::open(uint64_t ino, int flags) {
  trim_fds();
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  if (n->is_dir()) return Errno{EISDIR};
  const bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  auto fh = std::make_unique<FileHandle>();
  fh->node = n;
  fh->flags = flags;
  const int open_flags = backing_open_flags(flags);
  // The handle is not shared yet; its lock (taken before the tree lock, as
  // reopen_handle does) is for attach's rule.
  MutexLock hl(fh->mu_);
  if (writes) {
    TreeWriteLock lock(tree_mu_);
    COWFS_TRY(copy_up(*n, (flags & O_TRUNC) ? CopyData::kNothing : CopyData::kContent));
    if ((flags & O_TRUNC) && n->chunks) {
      // The open empties the data file; its map must then no longer send
      // the holes a later write leaves to the copies below.
      auto bfd = backing(*n);
      if (!bfd) return Errno{bfd.error()};
      auto cur = sys::stat_fd(*bfd);
      if (!cur) return Errno{cur.error()};
      COWFS_TRY(n->chunks->truncate(stack_.top(), 0, cur->st_size));
    }
    COWFS_TRY(attach(*fh, open_flags));
    register_handle(fh.get());
    n->open_handles.fetch_add(1);
  } else {
    TreeReadLock lock(tree_mu_);
    COWFS_TRY(attach(*fh, open_flags));
    // Counted under the tree lock, which an unlink that might free the
    // copy holds exclusively: it sees this handle or the name is gone.
    n->open_handles.fetch_add(1);
  }
  return fh;
}

Status Overlay::attach(FileHandle& fh, int flags) {
  auto pfd = fd_of(*fh.node);
  if (!pfd) return Errno{pfd.error()};
  auto fd = sys::reopen(*pfd, flags);
  if (!fd) return Errno{fd.error()};
  fh.current_.store(fd->get(), std::memory_order_release);
  fh.remote_ = remote_source(*fh.node, fd->get());
  fh.fds_.push_back(fd.take());
  fh.gen_ = fh.node->data_gen.load();
  fh.stack_gen_ = stack_gen_.load();
  return {};
}

std::optional<LowerCache::Source> Overlay::remote_source(const Node& n, int fd) const {
  if (!opts_.lower_cache) return std::nullopt;
  const LayerPtr& layer = n.layer;
  if (!layer || layer->kind != Layer::Kind::kLower || layer->lower_index < 0 ||
      static_cast<size_t>(layer->lower_index) >= opts_.remote_lowers.size() ||
      !opts_.remote_lowers[static_cast<size_t>(layer->lower_index)]) {
    return std::nullopt;
  }
  // Keyed by the path below the lower's root, which a remount keeps (sshfs
  // renumbers inodes). A file whose path cannot be had is read uncached.
  auto rel = LowerCache::relative_path(layer->root.get(), fd);
  if (!rel) return std::nullopt;
  auto src = LowerCache::source(layer->path, *rel, fd);
  if (!src) return std::nullopt;
  return *src;
}

void Overlay::register_handle(FileHandle* fh) {
  if (!fh->writable()) return;
  MutexLock lock(handles_mu_);
  writers_.insert(fh);
}

Status Overlay::flush(FileHandle& fh) {
  if (!fh.writable()) return {};
  ChunkedPtr chunks;
  {
    TreeReadLock tree(tree_mu_);
    chunks = fh.node->chunks;
  }
  if (!chunks) return {};
  return chunks->flush(false);
}

Status Overlay::release(FileHandle* fh) {
  Status s;
  if (fh->writable()) {
    s = flush(*fh);
    MutexLock lock(handles_mu_);
    writers_.erase(fh);
  }
  Node& n = *fh->node;
  if (n.open_handles.fetch_sub(1) != 1) return s;
  // The last descriptor of a chunked copy that lost its last name while
  // open: its space comes back now.
  bool nameless = false;
  {
    TreeReadLock tree(tree_mu_);
    nameless = n.chunks && (n.unlinked || !n.parent || n.pinned);
  }
  if (nameless) {
    TreeWriteLock tree(tree_mu_);
    free_if_unreachable(n);
  }
  return s;
}

void Overlay::free_if_unreachable(Node& n) {
  if (n.is_dir() || !n.chunks || n.layer != stack_.top() || n.open_handles.load() > 0) return;
  auto freed = drop_unreachable_copy(stack_.top()->chunks.get(), n.ino);
  // Space, not data: a copy that cannot be freed now is found again by the
  // next collection (collect_unreachable, or the next mount's).
  if (freed && *freed) n.chunks.reset();  // nothing of it may be saved again
}

void Overlay::collect_unreachable_locked() {
  const LayerPtr& top = stack_.top();
  if (!top->chunks.valid()) return;
  const auto nodes = inodes_.snapshot();
  std::unordered_set<uint64_t> open;
  for (const auto& n : nodes) {
    if (n->open_handles.load() > 0) open.insert(n->ino);
  }
  auto freed = collect_unreachable_copies(top->chunks.get(),
                                          [&](uint64_t ino) { return open.contains(ino); });
  if (!freed) return;  // space, not data: tried again next time
  const std::unordered_set<uint64_t> gone(freed->begin(), freed->end());
  for (const auto& n : nodes) {
    if (n->chunks && n->layer == top && gone.contains(n->ino)) n->chunks.reset();
  }
}

void Overlay::collect_unreachable() {
  TreeWriteLock tree(tree_mu_);
  collect_unreachable_locked();
}

Result<int> Overlay::reopen_handle(FileHandle& fh) {
  MutexLock hl(fh.mu_);
  if (fh.gen_ == fh.node->data_gen.load() && fh.stack_gen_ == stack_gen_.load()) return fh.fd();
  const int flags = backing_open_flags(fh.flags) & ~O_TRUNC;
  if (fh.writable()) {
    // The stack changed under an open writer (a checkpoint): its next write
    // goes to the new top, never into the now frozen layer.
    TreeWriteLock lock(tree_mu_);
    COWFS_TRY(copy_up(*fh.node));
    COWFS_TRY(attach(fh, flags));
  } else {
    // Follow a copy-up made through another handle, so this reader sees
    // what was written there.
    TreeReadLock lock(tree_mu_);
    COWFS_TRY(attach(fh, flags));
  }
  return fh.fd();
}

Result<int> Overlay::io_fd(FileHandle& fh) {
  if (fh.gen_.load(std::memory_order_acquire) ==
          fh.node->data_gen.load(std::memory_order_acquire) &&
      fh.stack_gen_.load(std::memory_order_acquire) == stack_gen_.load(std::memory_order_acquire)) {
    return fh.fd();
  }
  return reopen_handle(fh);
}

Result<WriteLease> Overlay::write_lease(FileHandle& fh, off_t offset, size_t length,
                                        bool overwrite) {
  std::shared_lock lock(io_mu_);
  auto fd = io_fd(fh);
  if (!fd) return Errno{fd.error()};
  ChunkedPtr chunks;
  LayerPtr top;
  {
    TreeReadLock tree(tree_mu_);
    chunks = fh.node->chunks;
    top = stack_.top();
  }
  std::vector<uint64_t> claimed;
  if (chunks) {
    auto r = chunks->prepare_write(top, offset, length, overwrite);
    if (!r) return Errno{r.error()};
    claimed = r.take();
  }
  return WriteLease{*fd, std::move(lock), std::move(chunks), std::move(claimed)};
}

bool Overlay::is_chunked(const FileHandle& fh) const {
  TreeReadLock tree(tree_mu_);
  return fh.node->chunks != nullptr;
}

Result<Overlay::ReadPlan> Overlay::read_plan(FileHandle& fh, off_t offset, size_t length) {
  auto fd = io_fd(fh);
  if (!fd) return Errno{fd.error()};
  ReadPlan plan;
  {
    TreeReadLock tree(tree_mu_);
    plan.keep = fh.node->chunks;
  }
  if (!plan.keep) {
    std::optional<LowerCache::Source> remote;
    if (opts_.lower_cache) {
      MutexLock hl(fh.mu_);
      if (fh.remote_ && fh.remote_->fd == *fd) remote = fh.remote_;
    }
    if (remote) {
      auto pieces = opts_.lower_cache->plan_read(*remote, offset, length, plan.held);
      if (!pieces) return Errno{pieces.error()};
      plan.pieces = pieces.take();
    } else {
      plan.pieces.push_back({*fd, offset, length});
    }
    return plan;
  }
  auto st = sys::stat_fd(*fd);
  if (!st) return Errno{st.error()};
  auto pieces = plan.keep->plan_read(offset, length, st->st_size);
  if (!pieces) return Errno{pieces.error()};
  plan.pieces = pieces.take();
  return plan;
}

Result<off_t> Overlay::seek(FileHandle& fh, off_t offset, int whence) {
  auto fd = io_fd(fh);
  if (!fd) return Errno{fd.error()};
  if (!is_chunked(fh) || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
    off_t r = ::lseek(*fd, offset, whence);
    if (r < 0) return Errno{errno};
    return r;
  }
  // Data and holes of a chunked file: those of whichever layer supplies
  // each piece; bytes that read as zeros are a hole.
  auto st = sys::stat_fd(*fd);
  if (!st) return Errno{st.error()};
  if (offset < 0 || offset >= st->st_size) return Errno{ENXIO};
  auto plan = read_plan(fh, offset, static_cast<size_t>(st->st_size - offset));
  if (!plan) return Errno{plan.error()};
  for (const auto& p : plan->pieces) {
    const off_t end = p.offset + static_cast<off_t>(p.length);
    if (p.fd < 0) {
      if (whence == SEEK_HOLE) return p.offset;
      continue;
    }
    off_t r = ::lseek(p.fd, p.offset, whence);
    if (r >= 0 && r < end) return r;
    if (r < 0 && errno != ENXIO) return Errno{errno};
    // ENXIO: the source ends (a hole to the end) within this piece.
    if (r < 0 && whence == SEEK_HOLE) return p.offset;
  }
  if (whence == SEEK_HOLE) return st->st_size;
  return Errno{ENXIO};
}

Status Overlay::fsync(FileHandle& fh, bool datasync) {
  auto fd = io_fd(fh);
  if (!fd) return Errno{fd.error()};
  ChunkedPtr chunks;
  {
    TreeReadLock tree(tree_mu_);
    chunks = fh.node->chunks;
  }
  // A chunked file's data is synced before its map, once.
  if (chunks) return chunks->fsync(*fd, datasync);
  return sys::fsync_fd(*fd, datasync);
}

Status Overlay::flush_all(bool sync) {
  // The files, taken under the tree lock; their maps are saved without it
  // (ChunkedFile locks itself), so names change while a sync runs.
  std::vector<ChunkedPtr> files;
  {
    TreeReadLock tree(tree_mu_);
    files = chunked_files_locked();
  }
  return flush_files(files, sync);
}

std::vector<ChunkedPtr> Overlay::chunked_files_locked() const {
  std::vector<ChunkedPtr> files;
  for (const auto& n : inodes_.snapshot()) {
    if (n->chunks) files.push_back(n->chunks);
  }
  return files;
}

Status Overlay::flush_files(const std::vector<ChunkedPtr>& files, bool sync) {
  Status result;
  for (const auto& chunks : files) {
    Status s = chunks->flush(sync);
    if (!s.ok()) result = s;
  }
  return result;
}

Result<struct stat> Overlay::top_entry(Node& dir, const std::string& name) {
  auto top = top_dir(dir);
  if (!top) return Errno{top.error()};
  return sys::stat_at(*top, name.c_str());
}

bool Overlay::lower_has(Node& dir, const std::string& name) const {
  for (size_t i = 0; i < dir.parts.size(); ++i) {
    const DirPart& part = dir.parts[i];
    if (part.layer == stack_.top()) continue;
    auto dfd = part_fd(dir, i);
    if (!dfd) continue;
    auto st = sys::stat_at(*dfd, name.c_str());
    if (!st) continue;
    return !(part.layer->in_store() && whiteouts_->is_whiteout(*st));
  }
  return false;
}

Status Overlay::place(Node& dir, const std::string& name, const std::string& tmp) {
  auto top = top_dir(dir);
  if (!top) return Errno{top.error()};
  auto existing = sys::stat_at(*top, name.c_str());
  if (existing && !whiteouts_->is_whiteout(*existing)) return Errno{EEXIST};
  if (!existing) return sys::rename_at(work_fd_, tmp.c_str(), *top, name.c_str(), RENAME_NOREPLACE);
  auto tst = sys::stat_at(work_fd_, tmp.c_str());
  if (tst && S_ISDIR(tst->st_mode)) {
    // A directory cannot replace a file by rename; swap, then drop the
    // whiteout that landed in work/.
    COWFS_TRY(sys::rename_at(work_fd_, tmp.c_str(), *top, name.c_str(), RENAME_EXCHANGE));
    return sys::unlink_at(work_fd_, tmp.c_str(), 0);
  }
  return sys::rename_at(work_fd_, tmp.c_str(), *top, name.c_str());
}

mode_t Overlay::creation_mode(int top, mode_t mode, const Caller& caller, bool in_place) const {
  mode_t perm = mode & 07777;
  if (!in_place || !sys::get_xattr(top, "system.posix_acl_default").ok()) perm &= ~caller.umask;
  if (opts_.is_root && !S_ISDIR(mode)) perm &= ~(S_ISUID | S_ISGID);
  return perm;
}

Result<Entry> Overlay::finish_create(const NodePtr& parent, const std::string& name,
                                     const Caller& caller, mode_t mode) {
  auto top = top_dir(*parent);
  if (!top) return Errno{top.error()};
  if (opts_.is_root) {
    gid_t gid = caller.gid;
    auto pst = sys::stat_fd(*top);
    if (pst && (pst->st_mode & S_ISGID)) gid = pst->st_gid;
    if (::fchownat(*top, name.c_str(), caller.uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
      return Errno{errno};
    }
    // The set-ID bits go on once the file is the caller's: a change of owner
    // clears them from a non-directory, root's too.
    const mode_t set_id = mode & (S_ISUID | S_ISGID);
    if (set_id != 0 && !S_ISDIR(mode) && !S_ISLNK(mode)) {
      auto st = sys::stat_at(*top, name.c_str());
      if (!st) return Errno{st.error()};
      if (::fchmodat(*top, name.c_str(), (st->st_mode & 07777) | set_id, 0) < 0) {
        return Errno{errno};
      }
    }
  }
  auto created = sys::stat_at(*top, name.c_str());
  if (created && !S_ISREG(created->st_mode) && !S_ISDIR(created->st_mode)) {
    // A new object: whatever a reused inode number once recorded is void.
    drop_origin_record(*stack_.top(), created->st_ino);
  }
  auto n = resolve(parent, name, true);
  if (!n) return Errno{n.error()};
  auto e = entry_for(*n);
  if (!e) inodes_.forget((*n)->ino, 1);
  return e;
}

Result<std::pair<Entry, std::unique_ptr<FileHandle>>> Overlay::create(uint64_t parent,
                                                                      const std::string& name,
                                                                      mode_t mode, int flags,
                                                                      const Caller& caller) {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  trim_fds();
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  COWFS_TRY(name_free(**dir, name));
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const int open_flags = (backing_open_flags(flags) & ~O_TRUNC) | O_CREAT | O_EXCL;
  UniqueFd fd;
  auto existing = sys::stat_at(*top, name.c_str());
  const mode_t perm = creation_mode(*top, mode, caller, !existing);
  if (existing) {
    // Only a whiteout can be here (probe found nothing): replace it atomically.
    std::string tmp = temp_name();
    auto f = sys::open_at(work_fd_, tmp.c_str(), open_flags, perm);
    if (!f) return Errno{f.error()};
    Status s = place(**dir, name, tmp);
    if (!s.ok()) {
      (void)sys::unlink_at(work_fd_, tmp.c_str(), 0);
      return Errno{s.error()};
    }
    fd = f.take();
  } else {
    auto f = sys::open_at(*top, name.c_str(), open_flags, perm);
    if (!f) return Errno{f.error()};
    fd = f.take();
  }
  auto e = finish_create(*dir, name, caller, mode);
  if (!e) return Errno{e.error()};
  auto fh = std::make_unique<FileHandle>();
  fh->node = e->node;
  fh->flags = flags;
  fh->set_fd(std::move(fd));
  fh->gen_ = e->node->data_gen.load();
  fh->stack_gen_ = stack_gen_.load();
  register_handle(fh.get());
  e->node->open_handles.fetch_add(1);
  return std::make_pair(e.take(), std::move(fh));
}

Result<struct statvfs> Overlay::statfs() {
  LayerPtr top;
  {
    TreeReadLock tree(tree_mu_);
    top = stack_.top();
  }
  struct statvfs sv {};
  if (::fstatvfs(top->root.get(), &sv) < 0) return Errno{errno};
  return sv;
}

LayerStack Overlay::stack() const {
  TreeReadLock tree(tree_mu_);
  return stack_;
}

Result<std::string> Overlay::getxattr(uint64_t ino, const std::string& name) {
  trim_fds();
  TreeReadLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  const bool store = n->backing_layer()->in_store();
  auto path = xattr_path(*n);
  if (!path) return Errno{path.error()};
  auto v = sys::get_xattr_at_path(*path, (store ? xattr_names::to_store(name) : name).c_str(),
                                  S_ISLNK(n->type));
  if (!v && v.error() == ENOTSUP) return Errno{ENODATA};
  return v;
}

Result<std::vector<std::string>> Overlay::listxattr(uint64_t ino) {
  trim_fds();
  TreeReadLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  auto bfd = xattr_path(*n);
  if (!bfd) return Errno{bfd.error()};
  auto names = sys::list_xattr_at_path(*bfd, S_ISLNK(n->type));
  if (!names) {
    if (names.error() == ENOTSUP) return std::vector<std::string>{};
    return names;
  }
  if (!n->backing_layer()->in_store()) return names;
  std::vector<std::string> out;
  for (const auto& s : *names) {
    if (auto u = xattr_names::from_store(s)) out.push_back(*u);
  }
  return out;
}

Status Overlay::setxattr(uint64_t ino, const std::string& name, const std::string& value,
                         int flags) {
  TreeWriteLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  COWFS_TRY(copy_up(*n, CopyData::kReference));
  auto bfd = xattr_path(*n);
  if (!bfd) return Errno{bfd.error()};
  const std::string stored = xattr_names::to_store(name);
  Status s = sys::set_xattr_at_path(*bfd, stored.c_str(), value, flags, S_ISLNK(n->type));
  if (s.ok() || (s.error() != ENOSPC && s.error() != E2BIG) || !n->chunks) return s;
  // The store's room for xattrs is full: a reference's own map gives way to
  // a map file (copy_up.h), once.
  auto ref = sys::get_xattr_at_path(*bfd, kChunkRefXattr, false);
  if (!ref) return s;
  COWFS_TRY(n->chunks->save_top_map());
  COWFS_TRY(sys::remove_xattr_at_path(*bfd, kChunkRefXattr, false));
  return sys::set_xattr_at_path(*bfd, stored.c_str(), value, flags, false);
}

Status Overlay::removexattr(uint64_t ino, const std::string& name) {
  TreeWriteLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  // Removing an attribute the file does not have must not copy it up.
  auto before = backing(*n);
  if (!before) return Errno{before.error()};
  auto has = sys::get_xattr(
      *before, (n->backing_layer()->in_store() ? xattr_names::to_store(name) : name).c_str(),
      S_ISLNK(n->type));
  if (!has) return Errno{has.error() == ENOTSUP ? ENODATA : has.error()};
  COWFS_TRY(copy_up(*n));
  auto bfd = xattr_path(*n);
  if (!bfd) return Errno{bfd.error()};
  return sys::remove_xattr_at_path(*bfd, xattr_names::to_store(name).c_str(), S_ISLNK(n->type));
}

Status Overlay::fsync_dir(uint64_t ino, bool datasync) {
  TreeReadLock lock(tree_mu_);
  auto dir = dir_node(ino);
  if (!dir) return Errno{dir.error()};
  if ((*dir)->parts.front().layer != stack_.top()) return {};  // nothing of ours to sync
  auto pfd = part_fd(**dir, 0);
  if (!pfd) return Errno{pfd.error()};
  auto fd = sys::reopen(*pfd, O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  return sys::fsync_fd(fd->get(), datasync);
}

}  // namespace cowfs
