// Overlay: operations that change names — creating, linking, deleting and
// renaming entries — and the merged directory listing.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <unordered_set>

#include "cowfs/core/copy_up.h"
#include "cowfs/core/link_count.h"
#include "cowfs/core/overlay.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

unsigned char dtype_of(mode_t mode) { return static_cast<unsigned char>((mode & S_IFMT) >> 12); }

}  // namespace

// Creates an object called name in dir's top directory by calling make(dirfd,
// name). Where a whiteout of a deleted lower name sits, the object is made in
// work/ and swapped in atomically; a directory made there is opaque, so the
// deleted directory's old content stays hidden.
template <typename Make>
static Status create_entry(Overlay& ov, int top, int work, const std::string& name,
                           const std::string& tmp, bool is_dir, Make make,
                           Status (Overlay::*place)(Node&, const std::string&, const std::string&),
                           Node& dir, bool whiteout_present) {
  if (!whiteout_present) return make(top, name.c_str());
  COWFS_TRY(make(work, tmp.c_str()));
  if (is_dir) {
    auto fd = sys::open_at(work, tmp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    Status s = fd ? sys::set_xattr(fd->get(), kOpaqueXattr, "y", 0) : Status(Errno{fd.error()});
    if (!s.ok()) {
      (void)sys::unlink_at(work, tmp.c_str(), AT_REMOVEDIR);
      return s;
    }
  }
  Status s = (ov.*place)(dir, name, tmp);
  if (!s.ok()) (void)sys::unlink_at(work, tmp.c_str(), is_dir ? AT_REMOVEDIR : 0);
  return s;
}

Result<Entry> Overlay::mknod(uint64_t parent, const std::string& name, mode_t mode, dev_t rdev,
                             const Caller& caller) {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  COWFS_TRY(name_free(**dir, name));
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const bool wh = sys::stat_at(*top, name.c_str()).ok();
  const mode_t perm = creation_mode(*top, mode, caller, !wh);
  auto make = [&](int d, const char* n) {
    if (S_ISREG(mode)) {
      auto f = sys::open_at(d, n, O_WRONLY | O_CREAT | O_EXCL, perm);
      return f ? Status() : Status(Errno{f.error()});
    }
    return sys::mknod_at(d, n, (mode & S_IFMT) | perm, rdev);
  };
  COWFS_TRY(create_entry(*this, *top, work_fd_, name, temp_name(), false, make, &Overlay::place,
                         **dir, wh));
  return finish_create(*dir, name, caller, mode);
}

Result<Entry> Overlay::mkdir(uint64_t parent, const std::string& name, mode_t mode,
                             const Caller& caller) {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  COWFS_TRY(name_free(**dir, name));
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const bool wh = sys::stat_at(*top, name.c_str()).ok();
  const mode_t perm = creation_mode(*top, mode | S_IFDIR, caller, !wh);
  auto make = [&](int d, const char* n) { return sys::mkdir_at(d, n, perm); };
  COWFS_TRY(create_entry(*this, *top, work_fd_, name, temp_name(), true, make, &Overlay::place,
                         **dir, wh));
  return finish_create(*dir, name, caller);
}

Result<Entry> Overlay::symlink(const std::string& target, uint64_t parent, const std::string& name,
                               const Caller& caller) {
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  COWFS_TRY(name_free(**dir, name));
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const bool wh = sys::stat_at(*top, name.c_str()).ok();
  auto make = [&](int d, const char* n) { return sys::symlink_at(target.c_str(), d, n); };
  COWFS_TRY(create_entry(*this, *top, work_fd_, name, temp_name(), false, make, &Overlay::place,
                         **dir, wh));
  return finish_create(*dir, name, caller);
}

Result<Entry> Overlay::link(uint64_t ino, uint64_t newparent, const std::string& newname) {
  if (newname.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  TreeWriteLock lock(tree_mu_);
  NodePtr n = inodes_.find(ino);
  if (!n) return Errno{ESTALE};
  if (n->is_dir()) return Errno{EPERM};
  auto dir = dir_node(newparent);
  if (!dir) return Errno{dir.error()};
  COWFS_TRY(name_free(**dir, newname));
  COWFS_TRY(copy_up(*n, CopyData::kReference));
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const bool wh = sys::stat_at(*top, newname.c_str()).ok();
  auto nfd = fd_of(*n);
  if (!nfd) return Errno{nfd.error()};
  const std::string src = sys::proc_path(*nfd);
  auto make = [&](int d, const char* name) {
    if (::linkat(AT_FDCWD, src.c_str(), d, name, AT_SYMLINK_FOLLOW) < 0)
      return Status(Errno{errno});
    return Status();
  };
  COWFS_TRY(create_entry(*this, *top, work_fd_, newname, temp_name(), false, make, &Overlay::place,
                         **dir, wh));
  // The kernel expects the very inode it linked; symlinks carry no origin
  // record, so do not look the new name up by identity.
  n->unlinked = false;
  if (!n->parent) {
    n->parent = *dir;
    n->name = newname;
  } else {
    add_alias(*n, *dir, newname);
  }
  inodes_.intern(n, true);
  return entry_for(n);
}

Result<bool> Overlay::merged_empty(Node& dir) {
  auto listing = list_dir_locked(dir);
  if (!listing) return Errno{listing.error()};
  return listing->items.empty();
}

// Removes the whiteouts in dir's top part so the store directory can be
// removed or replaced. Only called once the merged view is known empty.
Status Overlay::make_merged_empty(Node& dir) {
  if (dir.parts.front().layer != stack_.top()) return {};
  auto top = part_fd(dir, 0);
  if (!top) return Errno{top.error()};
  const int fd = *top;
  auto entries = sys::read_dir(fd);
  if (!entries) return Errno{entries.error()};
  for (const auto& e : *entries) {
    COWFS_TRY(sys::unlink_at(fd, e.name.c_str(), 0));
  }
  return {};
}

Status Overlay::remove_name(int top, const std::string& name, bool in_top, bool need_whiteout,
                            bool is_dir) {
  if (!in_top) return whiteouts_->make(top, name.c_str());
  if (!need_whiteout) return sys::unlink_at(top, name.c_str(), is_dir ? AT_REMOVEDIR : 0);
  // The whiteout replaces the entry in one rename, so a crash leaves one
  // or the other. A directory cannot be renamed over, but can be swapped.
  std::string tmp = temp_name();
  COWFS_TRY(whiteouts_->make(work_fd_, tmp.c_str()));
  Status s = sys::rename_at(work_fd_, tmp.c_str(), top, name.c_str(), is_dir ? RENAME_EXCHANGE : 0);
  if (s.ok() && is_dir) return sys::unlink_at(work_fd_, tmp.c_str(), AT_REMOVEDIR);
  if (!s.ok()) (void)sys::unlink_at(work_fd_, tmp.c_str(), 0);
  return s;
}

Status Overlay::move_leaving_whiteout(int from, const std::string& name, int to,
                                      const std::string& newname, const Node& src, bool in_top) {
  // The whiteout must be in place the moment the entry leaves its old name:
  // in between, the lower's name would be back, and a crash there would keep
  // both the moved object and the production one it replaced.
  auto whiteout_in_top = sys::stat_at(to, newname.c_str());
  if (whiteout_in_top && whiteouts_->is_whiteout(*whiteout_in_top)) {
    // The new name holds a whiteout already: one swap moves the entry and
    // leaves that whiteout at the old name.
    return sys::rename_at(from, name.c_str(), to, newname.c_str(), RENAME_EXCHANGE);
  }
  if (!src.is_dir()) {
    // A second link lands at the new name (replacing what is there), then
    // a whiteout replaces the old one. A crash in between leaves the file
    // under both names, which rename(2) allows; never the lower's file.
    std::string link = temp_name();
    COWFS_TRY(sys::link_at(from, name.c_str(), work_fd_, link.c_str(), 0));
    Status s = sys::rename_at(work_fd_, link.c_str(), to, newname.c_str());
    if (!s.ok()) {
      (void)sys::unlink_at(work_fd_, link.c_str(), 0);
      return s;
    }
    return remove_name(from, name, true, true, false);
  }
  // A directory: the new name becomes a whiteout first, then one swap moves
  // the directory there and the whiteout to the old name. A crash in between
  // hides the new name, whose own directory (if any) was empty and is being
  // replaced; the old name and its content are still there.
  if (!in_top) {
    COWFS_TRY(whiteouts_->make(to, newname.c_str()));
    Status s = sys::rename_at(from, name.c_str(), to, newname.c_str(), RENAME_EXCHANGE);
    if (!s.ok()) (void)sys::unlink_at(to, newname.c_str(), 0);
    return s;
  }
  // The new name holds an empty directory of the top (the one replaced):
  // swap a whiteout in for it, then the moved directory, then drop it.
  std::string tmp = temp_name();
  COWFS_TRY(whiteouts_->make(work_fd_, tmp.c_str()));
  Status s = sys::rename_at(work_fd_, tmp.c_str(), to, newname.c_str(), RENAME_EXCHANGE);
  if (!s.ok()) {
    (void)sys::unlink_at(work_fd_, tmp.c_str(), 0);
    return s;
  }
  s = sys::rename_at(from, name.c_str(), to, newname.c_str(), RENAME_EXCHANGE);
  if (!s.ok()) {
    // Put the replaced directory back.
    if (sys::rename_at(work_fd_, tmp.c_str(), to, newname.c_str(), RENAME_EXCHANGE).ok()) {
      (void)sys::unlink_at(work_fd_, tmp.c_str(), 0);
    }
    return s;
  }
  return sys::unlink_at(work_fd_, tmp.c_str(), AT_REMOVEDIR);
}

Status Overlay::unlink(uint64_t parent, const std::string& name) {
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  auto child = resolve(*dir, name, false);
  if (!child) return Errno{child.error()};
  NodePtr n = *child;
  if (n->is_dir()) return Errno{EISDIR};
  if (n->layer != stack_.top()) {
    // Other names below (in a lower or a frozen layer) must keep seeing the
    // file and its true link count: they find the top copy by the index.
    auto st = stat_node(*n);
    if (st && st->st_nlink > 1) {
      set_name(*n, *dir, name);
      COWFS_TRY(copy_up(*n, CopyData::kReference));
    }
  }
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  // The node can no longer be found again under this name.
  drop_name(*n, *dir, name);
  const bool in_top = sys::stat_at(*top, name.c_str()).ok();
  const bool need_wh = lower_has(**dir, name);
  COWFS_TRY(remove_name(*top, name, in_top, need_wh, false));
  COWFS_TRY(index_survivor(*n));
  if (!in_top && n->layer->in_store() && one_fewer_lower_name(n->lower_links)) {
    // A frozen copy stays as it was checkpointed. It is not in the top only
    // when this was its last name (see above), so nobody reads the count.
    if (n->layer == stack_.top()) save_lower_links(*n);
  }
  // Below the top (a file with more names was copied up above), this was
  // its one name, whatever the frozen copy's own count still says.
  auto st = stat_node(*n);
  if (n->parent == *dir && n->name == name &&
      (!st || st->st_nlink == 0 || n->layer != stack_.top())) {
    n->unlinked = true;
    n->parent.reset();
  }
  free_if_unreachable(*n);
  return {};
}

Status Overlay::rmdir(uint64_t parent, const std::string& name) {
  TreeWriteLock lock(tree_mu_);
  auto dir = dir_node(parent);
  if (!dir) return Errno{dir.error()};
  auto child = resolve(*dir, name, false);
  if (!child) return Errno{child.error()};
  NodePtr n = *child;
  if (!n->is_dir()) return Errno{ENOTDIR};
  auto empty = merged_empty(*n);
  if (!empty) return Errno{empty.error()};
  if (!*empty) return Errno{ENOTEMPTY};
  auto top = top_dir(**dir);
  if (!top) return Errno{top.error()};
  const bool in_top = n->parts.front().layer == stack_.top();
  const bool need_wh = lower_has(**dir, name);
  if (in_top) COWFS_TRY(make_merged_empty(*n));
  COWFS_TRY(remove_name(*top, name, in_top, need_wh, true));
  n->unlinked = true;
  n->parent.reset();
  return {};
}

Status Overlay::set_redirect(Node& dir) {
  // Only a directory whose content continues below needs a redirect, and
  // only if it does not carry one already.
  if (dir.parts.size() < 2 && dir.parts.front().layer == stack_.top()) return {};
  auto top = top_dir(dir);
  if (!top) return Errno{top.error()};
  if (sys::get_xattr(*top, kRedirectXattr).ok()) return {};
  if (dir.parts.size() < 2) return {};
  // A redirect is looked up name by name in the view of the layers below
  // the top (collect_redirect_parts), so it is the directory's path in that
  // view: not where its first part below lies in that part's own layer,
  // which a layer in between may have renamed away (fsdiff seed 3300081:
  // L1 moved a lower directory to b/d, L2 moved b to a/b; a later rename of
  // a/b/d must record "a/b/d", as "b/d" is a whiteout in L2). Its names up
  // to the root are that path, unless an ancestor was moved in the top:
  // that one's own redirect is its path below.
  std::vector<const std::string*> names{&dir.name};
  std::string prefix;
  for (Node* p = dir.parent.get(); p != nullptr && p != root_.get(); p = p->parent.get()) {
    if (p->parts.front().layer == stack_.top()) {
      auto pfd = part_fd(*p, 0);
      if (!pfd) return Errno{pfd.error()};
      if (auto r = sys::get_xattr(*pfd, kRedirectXattr)) {
        prefix = *r;
        break;
      }
    }
    names.push_back(&p->name);
  }
  std::string rel = prefix;
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    if (!rel.empty()) rel += '/';
    rel += **it;
  }
  return sys::set_xattr(*top, kRedirectXattr, rel, 0);
}

Status Overlay::rename(uint64_t parent, const std::string& name, uint64_t newparent,
                       const std::string& newname, unsigned flags) {
  if (newname.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errno{EINVAL};
  TreeWriteLock lock(tree_mu_);
  auto sdir = dir_node(parent);
  if (!sdir) return Errno{sdir.error()};
  auto ddir = dir_node(newparent);
  if (!ddir) return Errno{ddir.error()};
  auto src_r = resolve(*sdir, name, false);
  if (!src_r) return Errno{src_r.error()};
  NodePtr src = *src_r;
  auto dst_r = resolve(*ddir, newname, false);
  if (!dst_r && dst_r.error() != ENOENT) return Errno{dst_r.error()};
  NodePtr dst = dst_r ? *dst_r : nullptr;

  if (dst && (flags & RENAME_NOREPLACE)) return Errno{EEXIST};
  if (!dst && (flags & RENAME_EXCHANGE)) return Errno{ENOENT};
  if (dst == src) return {};
  if (dst && !(flags & RENAME_EXCHANGE)) {
    if (src->is_dir() && !dst->is_dir()) return Errno{ENOTDIR};
    if (!src->is_dir() && dst->is_dir()) return Errno{EISDIR};
    if (dst->is_dir()) {
      auto empty = merged_empty(*dst);
      if (!empty) return Errno{empty.error()};
      if (!*empty) return Errno{ENOTEMPTY};
    }
  }

  // Both ends must be real entries of the top layer.
  // (The lambdas are checked as functions of their own, which hold nothing:
  // each says that it runs under the exclusive tree lock.)
  auto prepare = [&](const NodePtr& n) REQUIRES(tree_lock) -> Status {
    if (!n->is_dir()) return copy_up(*n, CopyData::kReference);
    auto t = top_dir(*n);
    if (!t) return Errno{t.error()};
    return set_redirect(*n);
  };
  // Copy-up places a file under the name it was reached by: the name being
  // renamed (or exchanged) certainly is one.
  auto claim = [&](const NodePtr& n, const NodePtr& dir, const std::string& at)
                   REQUIRES(tree_lock) -> Status {
    if (!n->is_dir()) set_name(*n, dir, at);
    COWFS_TRY(prepare(n));
    auto top = top_dir(*dir);
    if (!top) return Errno{top.error()};
    if (n->is_dir() || sys::stat_at(*top, at.c_str()).ok()) return {};
    // Reached through the index: the name exists only below. Give it its
    // link in the top first, so it can be moved like any other.
    auto nfd = fd_of(*n);
    if (!nfd) return Errno{nfd.error()};
    if (::linkat(AT_FDCWD, sys::proc_path(*nfd).c_str(), *top, at.c_str(), AT_SYMLINK_FOLLOW) < 0) {
      return Errno{errno};
    }
    if (one_fewer_lower_name(n->lower_links)) save_lower_links(*n);
    return {};
  };
  COWFS_TRY(claim(src, *sdir, name));
  if (dst && !dst->is_dir() && !(flags & RENAME_EXCHANGE) && dst->layer != stack_.top()) {
    auto dst_st = stat_node(*dst);
    if (dst_st && dst_st->st_nlink > 1) {
      // Its other names must keep seeing the file with one link less.
      set_name(*dst, *ddir, newname);
      COWFS_TRY(copy_up(*dst, CopyData::kReference));
    }
  }
  if (dst && (flags & RENAME_EXCHANGE)) COWFS_TRY(claim(dst, *ddir, newname));
  auto stop = top_dir(**sdir);
  if (!stop) return Errno{stop.error()};
  auto dtop = top_dir(**ddir);
  if (!dtop) return Errno{dtop.error()};

  // A directory with no content below that lands where a lower name was
  // must hide what was there; one with a redirect already does.
  auto needs_opaque = [&](const NodePtr& n, Node& to_dir,
                          const std::string& to_name) REQUIRES(tree_lock) {
    return n->is_dir() && n->parts.size() == 1 && lower_has(to_dir, to_name);
  };
  auto mark_opaque = [&](const NodePtr& n) REQUIRES(tree_lock) -> Status {
    auto fd = part_fd(*n, 0);
    if (!fd) return Errno{fd.error()};
    return sys::set_xattr(*fd, kOpaqueXattr, "y", 0);
  };
  // A moved directory's parts are no longer found by its name.
  auto fix_parts = [](const NodePtr& n) REQUIRES(tree_lock) {
    if (!n || !n->is_dir()) return;
    for (auto& part : n->parts) part.fixed = true;
  };

  if (flags & RENAME_EXCHANGE) {
    if (needs_opaque(src, **ddir, newname)) COWFS_TRY(mark_opaque(src));
    if (needs_opaque(dst, **sdir, name)) COWFS_TRY(mark_opaque(dst));
    COWFS_TRY(sys::rename_at(*stop, name.c_str(), *dtop, newname.c_str(), RENAME_EXCHANGE));
    fix_parts(src);
    fix_parts(dst);
    std::swap(src->parent, dst->parent);
    std::swap(src->name, dst->name);
    return {};
  }

  if (needs_opaque(src, **ddir, newname)) COWFS_TRY(mark_opaque(src));
  if (dst) drop_name(*dst, *ddir, newname);
  const bool src_needs_wh = lower_has(**sdir, name);
  auto dst_top = sys::stat_at(*dtop, newname.c_str());
  if (dst_top && dst && dst->is_dir()) COWFS_TRY(make_merged_empty(*dst));
  if (dst_top && S_ISDIR(src->type) && !S_ISDIR(dst_top->st_mode)) {
    // Only a whiteout can be a non-directory under a directory's new name
    // here; swapping it into the old name is exactly the whiteout needed there.
    COWFS_TRY(sys::rename_at(*stop, name.c_str(), *dtop, newname.c_str(), RENAME_EXCHANGE));
    if (!src_needs_wh) COWFS_TRY(sys::unlink_at(*stop, name.c_str(), 0));
  } else if (src_needs_wh) {
    COWFS_TRY(move_leaving_whiteout(*stop, name, *dtop, newname, *src, dst_top.ok()));
  } else {
    COWFS_TRY(sys::rename_at(*stop, name.c_str(), *dtop, newname.c_str()));
  }
  if (dst && !dst->is_dir() && !dst_top && dst->layer == stack_.top() &&
      one_fewer_lower_name(dst->lower_links)) {
    // The replaced name lived only below: one fewer of them reaches the copy.
    save_lower_links(*dst);
  }
  if (dst) {
    COWFS_TRY(index_survivor(*dst));
    auto st = stat_node(*dst);
    if (dst->is_dir() || !st || st->st_nlink == 0) {
      dst->unlinked = true;
      dst->parent.reset();
    }
    free_if_unreachable(*dst);
  }
  fix_parts(src);
  src->parent = *ddir;
  src->name = newname;
  return {};
}

Result<DirListing> Overlay::list_dir_locked(Node& dir) const {
  DirListing out;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < dir.parts.size(); ++i) {
    const DirPart& part = dir.parts[i];
    auto dfd = part_fd(dir, i);
    if (!dfd) return Errno{dfd.error()};
    auto entries = sys::read_dir(*dfd);
    if (!entries) return Errno{entries.error()};
    const bool store = part.layer->in_store();
    for (auto& e : *entries) {
      if (!seen.insert(e.name).second) continue;
      unsigned char type = e.type;
      struct stat st {};
      if (type == DT_UNKNOWN) {
        auto s = sys::stat_at(*dfd, e.name.c_str());
        if (!s) continue;
        st = *s;
        type = dtype_of(st.st_mode);
      }
      if (store && type == DT_REG && whiteouts_->is_whiteout_ino(e.ino)) continue;
      st.st_ino = e.ino;
      st.st_dev = part.layer->dev;
      uint64_t ino = compose_ino(*part.layer, st);
      if (store && (type == DT_REG || type == DT_DIR)) {
        if (auto origin = sys::get_xattr_at(*dfd, e.name.c_str(), kOriginXattr)) {
          ino = std::strtoull(origin->c_str(), nullptr, 10);
        }
      } else if (store) {
        if (auto origin = read_origin_record(*part.layer, e.ino)) ino = *origin;
      }
      out.items.push_back({std::move(e.name), ino, type});
    }
  }
  return out;
}

Result<DirListing> Overlay::list_dir(uint64_t ino) {
  TreeReadLock lock(tree_mu_);
  auto dir = dir_node(ino);
  if (!dir) return Errno{dir.error()};
  return list_dir_locked(**dir);
}

}  // namespace cowfs
