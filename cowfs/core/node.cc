#include "cowfs/core/node.h"

#include "cowfs/sys/syscalls.h"

namespace cowfs {

uint64_t compose_ino(const Layer& layer, const struct stat& st) {
  constexpr uint64_t kMask = (uint64_t{1} << 56) - 1;
  uint64_t ino = static_cast<uint64_t>(st.st_ino);
  if (layer.in_store()) {
    // Store inode numbers are used as they are; 1 is the FUSE root's id.
    return ino == kRootIno ? ((uint64_t{0xff} << 56) | ino) : ino;
  }
  uint64_t tag = static_cast<uint64_t>(layer.lower_index + 1);
  if (st.st_dev != layer.dev) {
    // A filesystem mounted inside a lower: fold its device in so numbers
    // from the two filesystems do not collide.
    tag += 64 + (static_cast<uint64_t>(st.st_dev) % 128);
  }
  return (tag << 56) | (ino & kMask);
}

std::atomic<long> Node::open_fds{0};

Node::Node(uint64_t number, mode_t mode, NodeInit init)
    : ino(number),
      type(mode & S_IFMT),
      parent(std::move(init.parent)),
      name(std::move(init.name)),
      layer(std::move(init.layer)),
      fd(std::move(init.fd)),
      via_index(init.via_index),
      parts(std::move(init.parts)),
      lower_links(init.lower_links),
      chunks(std::move(init.chunks)) {
  if (fd.valid()) open_fds.fetch_add(1);
}

Node::~Node() {
  if (fd.valid()) open_fds.fetch_sub(1);
}

DirPart::DirPart(LayerPtr l, UniqueFd f, bool is_fixed)
    : layer(std::move(l)), fixed(is_fixed), fd_(std::move(f)) {
  if (fd_.valid()) Node::open_fds.fetch_add(1);
}

DirPart::DirPart(DirPart&& other) noexcept
    : layer(std::move(other.layer)),
      fixed(other.fixed),
      fd_(std::move(other.fd_)),
      closed_ino_(other.closed_ino_) {}

DirPart& DirPart::operator=(DirPart&& other) noexcept {
  if (this != &other) {
    if (fd_.valid()) Node::open_fds.fetch_sub(1);
    layer = std::move(other.layer);
    fd_ = std::move(other.fd_);
    fixed = other.fixed;
    closed_ino_ = other.closed_ino_;
  }
  return *this;
}

DirPart::~DirPart() {
  if (fd_.valid()) Node::open_fds.fetch_sub(1);
}

void DirPart::close(const Mutex&) {
  if (!fd_.valid()) return;
  if (auto st = sys::stat_fd(fd_.get())) closed_ino_ = st->st_ino;
  fd_ = UniqueFd();
  Node::open_fds.fetch_sub(1);
}

void DirPart::adopt(UniqueFd f, const Mutex&) {
  if (fd_.valid()) Node::open_fds.fetch_sub(1);
  fd_ = std::move(f);
  if (fd_.valid()) Node::open_fds.fetch_add(1);
}

void InodeTable::set_root(NodePtr root) {
  MutexLock lock(mu_);
  root->nlookup = 1;  // pinned: the kernel never forgets the root
  nodes_[kRootIno] = std::move(root);
}

NodePtr InodeTable::find(uint64_t ino) const {
  MutexLock lock(mu_);
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : it->second;
}

NodePtr InodeTable::intern(NodePtr fresh, bool count) {
  MutexLock lock(mu_);
  auto [it, inserted] = nodes_.try_emplace(fresh->ino, fresh);
  if (count) it->second->nlookup.fetch_add(1);
  return it->second;
}

namespace {

// The parent of a node that has just left the table with no other holder:
// no thread can reach it any more, so its TREE field is taken without the
// tree lock (which forget, called from FUSE forget, does not hold).
NodePtr take_parent(Node& gone) NO_THREAD_SAFETY_ANALYSIS { return std::move(gone.parent); }

}  // namespace

void InodeTable::forget(uint64_t ino, uint64_t n) {
  MutexLock lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || ino == kRootIno) return;
  // Re-found under the lock, so a lookup racing with this forget wins.
  if (it->second->nlookup.fetch_sub(n) > n) return;
  // A node that a child still names as its parent stays: a new lookup of it
  // must find this very node, which is the one copy-ups and stack changes
  // of its children use. It goes with the last of them.
  for (;;) {
    NodePtr node = it->second;
    if (node.use_count() > 2) return;  // the table, node, and someone else
    nodes_.erase(it);
    NodePtr parent = take_parent(*node);
    node.reset();
    if (!parent || parent->ino == kRootIno || parent->nlookup.load() > 0) return;
    it = nodes_.find(parent->ino);
    if (it == nodes_.end() || it->second != parent) return;
    parent.reset();
  }
}

std::vector<NodePtr> InodeTable::snapshot() const {
  MutexLock lock(mu_);
  std::vector<NodePtr> out;
  out.reserve(nodes_.size());
  for (const auto& [ino, n] : nodes_) out.push_back(n);
  return out;
}

size_t InodeTable::size() const {
  MutexLock lock(mu_);
  return nodes_.size();
}

}  // namespace cowfs
