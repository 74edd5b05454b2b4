// The kernel adapter: one thin handler per FUSE low-level operation. Each
// decodes the request, calls Overlay, and replies; errors are errnos, and an
// exception never crosses into libfuse (handlers reply EIO or ENOMEM).
//
// cowfs/fuse is the only directory that includes libfuse: this file, and
// kernel_io.cc, the shim on the channel under it.
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <optional>
#include <vector>

#include "cowfs/fuse/kernel_io.h"
#include "cowfs/fuse/kernel_order.h"
#include "cowfs/fuse/session.h"

namespace cowfs {
namespace {

struct Context {
  Overlay* overlay;
  SessionConfig cfg;
  bool writeback = false;  // the kernel agreed to the writeback cache
};

// A lower that went away (a dead network or FUSE mount) is an I/O error to
// the application, not a broken connection of ours.
int boundary_errno(int e);
int fuse_reply_err_mapped(fuse_req_t req, int e) { return fuse_reply_err(req, boundary_errno(e)); }

int boundary_errno(int e) {
  switch (e) {
    case ENOTCONN:
    case ECONNABORTED:
    case ECANCELED:  // a lower served by FUSE over io_uring whose daemon died
    case ECONNRESET:
    case ESHUTDOWN:
    case EHOSTDOWN:
      return EIO;
    default:
      return e;
  }
}

Context& ctx(fuse_req_t req) { return *static_cast<Context*>(fuse_req_userdata(req)); }
Overlay& ov(fuse_req_t req) { return *ctx(req).overlay; }

Caller caller_of(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->uid, c->gid, c->pid, c->umask};
}

// Runs a handler body; anything thrown becomes an errno reply.
template <typename F>
void guarded(fuse_req_t req, const char* op, F&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err_mapped(req, ENOMEM);
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected error: {}", op, e.what());
    fuse_reply_err_mapped(req, EIO);
  }
}

// What the kernel is told of a node it will hold a reference to.
fuse_entry_param entry_param(fuse_req_t req, const Entry& e) {
  fuse_entry_param p{};
  p.ino = e.node->ino;
  p.generation = e.node->generation.load();
  p.attr = e.attr;
  p.attr_timeout = ctx(req).cfg.cache_timeout;
  p.entry_timeout = ctx(req).cfg.cache_timeout;
  return p;
}

void reply_entry(fuse_req_t req, const Entry& e) {
  const fuse_entry_param p = entry_param(req, e);
  if (fuse_reply_entry(req, &p) != 0) ov(req).forget(e.node->ino, 1);  // interrupted
}

template <typename R>
void reply_entry_or_err(fuse_req_t req, R& r) {
  if (!r) {
    fuse_reply_err_mapped(req, r.error());
    return;
  }
  reply_entry(req, *r);
}

FileHandle* handle(fuse_file_info* fi) {
  return fi == nullptr ? nullptr : reinterpret_cast<FileHandle*>(fi->fh);
}

// Listed at the first readdir of each pass (offset 0), not at opendir: on a
// warm walk the kernel serves readdir from its cache and a listing made at
// every opendir would be thrown away unread.
struct DirHandle {
  std::optional<DirListing> listing;
};

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& context = *static_cast<Context*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // Spliced replies go straight to /dev/fuse; a ring's replies must come
  // back through the channel shim, which copies them into the ring entry.
  if (!kernel_io_negotiates_uring()) {
    want(FUSE_CAP_SPLICE_WRITE);
    want(FUSE_CAP_SPLICE_MOVE);
  }
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_PARALLEL_DIROPS);
  // The kernel caches ACLs (and enforces them, as on the lowers' own
  // filesystems) instead of asking for them at every permission check and
  // every `ls -l`. The cache stays exact: ACLs change only through this
  // mount (the kernel drops its copy on setxattr and setattr) or by a layer
  // change (which invalidates the inode). Mode and ACL are kept in sync, and
  // default ACLs inherited, by the store's filesystem, where they are set.
  want(FUSE_CAP_POSIX_ACL);
  // New objects get their permissions as on a local filesystem: the kernel
  // sends the mode unmasked with the caller's umask, which Overlay applies
  // unless a default ACL of the directory decides (the store's filesystem
  // applies that where the object is made; the daemon's own umask is 0).
  want(FUSE_CAP_DONT_MASK);
  // Locks are kept by the kernel for this mount: every process that uses
  // the data goes through it, so local POSIX and BSD locks are exact.
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  // Sizes and times of cached files are then the kernel's: every write goes
  // through this mount, and a layer change that alters a file gives it a new
  // generation, so the kernel drops the inode it knew (Node::generation).
  if (context.cfg.writeback_cache) want(FUSE_CAP_WRITEBACK_CACHE);
  context.writeback = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  context.overlay->set_kernel_keeps_mtime(context.writeback);
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "lookup", [&] {
    auto r = ov(req).lookup(parent, name);
    if (!r && r.error() == ENOENT) {
      // Negative entries may be cached: every change of the view goes
      // through this mount, and the kernel drops them on create.
      fuse_entry_param p{};
      p.entry_timeout = ctx(req).cfg.cache_timeout;
      fuse_reply_entry(req, &p);
      return;
    }
    reply_entry_or_err(req, r);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  ov(req).forget(ino, nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) ov(req).forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "getattr", [&] {
    auto r = ov(req).getattr(ino);
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    fuse_reply_attr(req, &*r, ctx(req).cfg.cache_timeout);
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  guarded(req, "setattr", [&] {
    SetAttr a;
    a.values = *attr;
    a.mode = to_set & FUSE_SET_ATTR_MODE;
    a.uid = to_set & FUSE_SET_ATTR_UID;
    a.gid = to_set & FUSE_SET_ATTR_GID;
    a.size = to_set & FUSE_SET_ATTR_SIZE;
    a.atime = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW);
    a.mtime = to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
    a.atime_now = to_set & FUSE_SET_ATTR_ATIME_NOW;
    a.mtime_now = to_set & FUSE_SET_ATTR_MTIME_NOW;
    a.caller = caller_of(req);
    auto r = ov(req).setattr(ino, a, handle(fi));
    kernel_order::replying(handle(fi));
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    fuse_reply_attr(req, &*r, ctx(req).cfg.cache_timeout);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, "readlink", [&] {
    auto r = ov(req).readlink(ino);
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    fuse_reply_readlink(req, r->c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guarded(req, "mknod", [&] {
    auto r = ov(req).mknod(parent, name, mode, rdev, caller_of(req));
    reply_entry_or_err(req, r);
  });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guarded(req, "mkdir", [&] {
    auto r = ov(req).mkdir(parent, name, mode, caller_of(req));
    reply_entry_or_err(req, r);
  });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  guarded(req, "symlink", [&] {
    auto r = ov(req).symlink(target, parent, name, caller_of(req));
    reply_entry_or_err(req, r);
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  guarded(req, "link", [&] {
    auto r = ov(req).link(ino, newparent, newname);
    reply_entry_or_err(req, r);
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "unlink", [&] { fuse_reply_err_mapped(req, ov(req).unlink(parent, name).error()); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "rmdir", [&] { fuse_reply_err_mapped(req, ov(req).rmdir(parent, name).error()); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  guarded(req, "rename", [&] {
    fuse_reply_err_mapped(req, ov(req).rename(parent, name, newparent, newname, flags).error());
  });
}

// With the writeback cache the kernel reads pages around partial writes
// through any handle, write-only ones too, and keeps O_APPEND's offsets
// itself: a backing fd opened O_APPEND would put every write at its end.
int backing_flags(fuse_req_t req, int flags) {
  if (!ctx(req).writeback) return flags;
  flags &= ~O_APPEND;
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "open", [&] {
    const int flags = backing_flags(req, fi->flags);
    auto r = ov(req).open(ino, flags);
    // A daemon without root may not read a write-only file: whole-page
    // writes still work, a partial one fails where the kernel reads around it.
    if (!r && r.error() == EACCES && flags != fi->flags) {
      r = ov(req).open(ino, fi->flags & ~O_APPEND);
    }
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    if (fi->flags & O_TRUNC) (void)ov(req).drop_set_id((*r)->fd(), caller_of(req));
    (*r)->pid = fuse_req_ctx(req)->pid;
    fi->fh = reinterpret_cast<uint64_t>(r->release());
    // Every change to file data passes through this mount, so cached pages
    // stay valid across opens.
    fi->keep_cache = 1;
    kernel_order::replying(handle(fi));
    if (fuse_reply_open(req, fi) != 0) {
      // Interrupted before any write: nothing to save.
      if (!ov(req).release(handle(fi))) spdlog::warn("open: release of an unused handle failed");
      delete handle(fi);
    }
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  guarded(req, "create", [&] {
    auto r = ov(req).create(parent, name, mode, backing_flags(req, fi->flags), caller_of(req));
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    r->second->pid = fuse_req_ctx(req)->pid;
    fi->fh = reinterpret_cast<uint64_t>(r->second.release());
    fi->keep_cache = 1;
    const fuse_entry_param p = entry_param(req, r->first);
    kernel_order::replying(handle(fi));
    if (fuse_reply_create(req, &p, fi) != 0) {
      ov(req).forget(p.ino, 1);
      if (!ov(req).release(handle(fi))) spdlog::warn("create: release of an unused handle failed");
      delete handle(fi);
    }
  });
}

// Zeros for the parts of a chunked file that read as zero.
const char* zeros(size_t n) {
  static const std::vector<char> buf(4 << 20, 0);
  return n <= buf.size() ? buf.data() : nullptr;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "read", [&] {
    auto plan = ov(req).read_plan(*handle(fi), off, size);
    kernel_order::replying(handle(fi));
    if (!plan) return (void)fuse_reply_err_mapped(req, plan.error());
    const auto& pieces = plan->pieces;
    if (pieces.empty()) return (void)fuse_reply_buf(req, nullptr, 0);
    // fuse_bufvec ends in a one-element array; make room for every piece.
    std::vector<char> storage(sizeof(fuse_bufvec) + pieces.size() * sizeof(fuse_buf));
    auto* buf = reinterpret_cast<fuse_bufvec*>(storage.data());
    for (size_t i = 0; i < pieces.size(); ++i) {
      fuse_buf& b = buf->buf[i];
      b = fuse_buf{};
      b.size = pieces[i].length;
      if (pieces[i].fd < 0) {
        b.mem = const_cast<char*>(zeros(pieces[i].length));
        if (b.mem == nullptr) return (void)fuse_reply_err_mapped(req, EIO);
      } else {
        b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
        b.fd = pieces[i].fd;
        b.pos = pieces[i].offset;
      }
    }
    buf->count = pieces.size();
    buf->idx = 0;
    buf->off = 0;
    fuse_reply_data(req, buf, FUSE_BUF_SPLICE_MOVE);
  });
}

void op_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "write", [&] {
    const size_t size = fuse_buf_size(in);
    auto n = ov(req).write(*handle(fi), off, size, caller_of(req), [in, size](int fd, off_t at) {
      // FUSE_BUFVEC_INIT(size), without its compound literal (C99, which
      // clang's -Wpedantic rejects in C++).
      fuse_bufvec out{};
      out.count = 1;
      out.buf[0].size = size;
      out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      out.buf[0].fd = fd;
      out.buf[0].pos = at;
      return fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
    });
    kernel_order::replying(handle(fi));
    if (!n) return (void)fuse_reply_err_mapped(req, n.error());
    fuse_reply_write(req, *n);
  });
}

// close(2): what it reports is what this replies (after the kernel wrote
// back its cached pages, whose errors it reports itself).
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "flush", [&] {
    const Status s = ov(req).flush(*handle(fi));
    kernel_order::replying(handle(fi));
    fuse_reply_err_mapped(req, s.error());
  });
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  kernel_order::releasing(handle(fi));
  // The kernel ignores this reply: a map that cannot be saved now stays
  // dirty and is reported by the next fsync or checkpoint.
  if (Status s = ov(req).release(handle(fi)); !s.ok()) {
    spdlog::error("release of inode {}: cannot save its chunk map: {}", ino,
                  std::strerror(s.error()));
  }
  delete handle(fi);
  fuse_reply_err_mapped(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "fsync", [&] {
    const Status s = ov(req).fsync(*handle(fi), datasync != 0);
    kernel_order::replying(handle(fi));
    fuse_reply_err_mapped(req, s.error());
  });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "opendir", [&] {
    auto* h = new DirHandle{};
    fi->fh = reinterpret_cast<uint64_t>(h);
    // Listings change only through this mount (the kernel drops the cache
    // on every change it makes) or by a layer change (which invalidates the
    // directory's inode), so the kernel may keep them.
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    kernel_order::replying(h);
    if (fuse_reply_open(req, fi) != 0) delete h;
  });
}

// Offsets: 1 and 2 are "." and "..", n + 3 is the item after listing[n].
void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                bool plus) {
  guarded(req, plus ? "readdirplus" : "readdir", [&] {
    auto* h = reinterpret_cast<DirHandle*>(fi->fh);
    if (off == 0 || !h->listing) {
      // Listed when the kernel asks, not at opendir: a change in between
      // must not be cached as if it had not happened.
      auto fresh = ov(req).list_dir(ino);
      if (!fresh) {
        kernel_order::replying(h);
        return (void)fuse_reply_err_mapped(req, fresh.error());
      }
      h->listing = fresh.take();
    }
    std::string buf(size, '\0');
    size_t used = 0;
    auto add = [&](const char* name, const struct stat& st, off_t next,
                   const fuse_entry_param* e) -> bool {
      size_t need = plus ? fuse_add_direntry_plus(req, nullptr, 0, name, e, next)
                         : fuse_add_direntry(req, nullptr, 0, name, &st, next);
      if (used + need > size) return false;
      if (plus) {
        fuse_add_direntry_plus(req, buf.data() + used, size - used, name, e, next);
      } else {
        fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      }
      used += need;
      return true;
    };
    for (off_t o = off; o < 2; ++o) {
      struct stat st {};
      st.st_mode = S_IFDIR;
      st.st_ino = o == 0 ? ino : FUSE_ROOT_ID;
      fuse_entry_param e{};
      e.attr = st;  // ino 0: the kernel does not take a reference
      if (!add(o == 0 ? "." : "..", st, o + 1, &e)) break;
      off = o + 1;
    }
    const auto& items = h->listing->items;
    for (size_t i = off >= 2 ? static_cast<size_t>(off - 2) : 0; off >= 2 && i < items.size();
         ++i) {
      const auto& item = items[i];
      const off_t next = static_cast<off_t>(i) + 3;
      if (!plus) {
        struct stat st {};
        st.st_ino = item.ino;
        st.st_mode = static_cast<mode_t>(item.type) << 12;
        if (!add(item.name.c_str(), st, next, nullptr)) break;
        continue;
      }
      auto r = ov(req).lookup(ino, item.name);
      if (!r) continue;  // removed since it was listed
      const fuse_entry_param e = entry_param(req, *r);
      if (!add(item.name.c_str(), e.attr, next, &e)) {
        ov(req).forget(e.ino, 1);  // not sent: the kernel took no reference
        break;
      }
    }
    kernel_order::replying(h);
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  kernel_order::releasing(reinterpret_cast<DirHandle*>(fi->fh));
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err_mapped(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "fsyncdir",
          [&] { fuse_reply_err_mapped(req, ov(req).fsync_dir(ino, datasync != 0).error()); });
}

void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  guarded(req, "statfs", [&] {
    auto r = ov(req).statfs();
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    fuse_reply_statfs(req, &*r);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guarded(req, "setxattr", [&] {
    fuse_reply_err_mapped(req,
                          ov(req).setxattr(ino, name, std::string(value, size), flags).error());
  });
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, "getxattr", [&] {
    auto r = ov(req).getxattr(ino, name);
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    if (size == 0) return (void)fuse_reply_xattr(req, r->size());
    if (r->size() > size) return (void)fuse_reply_err_mapped(req, ERANGE);
    fuse_reply_buf(req, r->data(), r->size());
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, "listxattr", [&] {
    auto r = ov(req).listxattr(ino);
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    std::string all;
    for (const auto& n : *r) {
      all += n;
      all += '\0';
    }
    if (size == 0) return (void)fuse_reply_xattr(req, all.size());
    if (all.size() > size) return (void)fuse_reply_err_mapped(req, ERANGE);
    fuse_reply_buf(req, all.data(), all.size());
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guarded(req, "removexattr",
          [&] { fuse_reply_err_mapped(req, ov(req).removexattr(ino, name).error()); });
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  (void)ino;
  guarded(req, "fallocate", [&] {
    const Status s = ov(req).fallocate(*handle(fi), mode, offset, length, caller_of(req));
    kernel_order::replying(handle(fi));
    fuse_reply_err_mapped(req, s.error());
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  (void)ino;
  guarded(req, "lseek", [&] {
    auto r = ov(req).seek(*handle(fi), off, whence);
    kernel_order::replying(handle(fi));
    if (!r) return (void)fuse_reply_err_mapped(req, r.error());
    fuse_reply_lseek(req, *r);
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                        fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                        int flags) {
  (void)ino_in;
  (void)ino_out;
  guarded(req, "copy_file_range", [&] {
    auto n = ov(req).copy_file_range(*handle(fi_in), off_in, *handle(fi_out), off_out, len,
                                     static_cast<unsigned>(flags), caller_of(req));
    kernel_order::replying(handle(fi_in), handle(fi_out));
    if (!n) return (void)fuse_reply_err_mapped(req, n.error());
    fuse_reply_write(req, *n);
  });
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write_buf = op_write_buf;
  // Data goes straight to the backing file and locks are the kernel's; what
  // is left to do at close(2) is to save a chunked file's map, whose error
  // close must report.
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.copy_file_range = op_copy_file_range;
  return ops;
}

class FuseKernelCache : public KernelCache {
 public:
  explicit FuseKernelCache(fuse_session* se) : se_(se) {}
  void invalidate_entry(uint64_t parent, const std::string& name) override {
    fuse_lowlevel_notify_inval_entry(se_, parent, name.c_str(), name.size());
  }
  void invalidate_inode(uint64_t ino) override { fuse_lowlevel_notify_inval_inode(se_, ino, 0, 0); }

 private:
  fuse_session* se_;
};

}  // namespace

std::string session_transport() { return kernel_io_transport(); }

namespace {

// libfuse's option syntax treats ',' and '\' specially.
std::string escape_option(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

int run_session(Overlay& overlay, const SessionConfig& cfg,
                const std::function<void(KernelCache*)>& on_mounted,
                const std::function<void()>& on_stopping, std::string* error) {
  // Decided before anything is mounted: --io uring where it cannot work
  // mounts nothing.
  bool want_uring = false;
  std::string why_dev = "--io dev";
  if (cfg.io != IoMode::kDev) {
    why_dev = uring_unavailable_reason();
    want_uring = why_dev.empty();
    if (!want_uring && cfg.io == IoMode::kUring) {
      *error = "--io uring: " + why_dev;
      return EOPNOTSUPP;
    }
  }
  if (!want_uring) spdlog::info("io: /dev/fuse ({})", why_dev);
  Context context{&overlay, cfg};
  std::string opts = "default_permissions,fsname=" + escape_option(cfg.fsname) + ",subtype=cowfs";
  if (cfg.allow_other) opts += ",allow_other";
  const char* argv[] = {"cowfs", "-o", opts.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_lowlevel_ops ops = make_ops();
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &context);
  if (se == nullptr) {
    *error = "cannot create the FUSE session (see the log)";
    return EINVAL;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    *error = "cannot install signal handlers";
    return EINVAL;
  }
  if (fuse_session_mount(se, cfg.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    *error =
        "cannot mount on " + cfg.mountpoint + " (is /dev/fuse usable and fusermount3 installed?)";
    return EIO;
  }
  if (int r = install_kernel_io(se, want_uring, why_dev); r != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    *error = std::string("cannot set up the FUSE channel: ") + std::strerror(-r);
    return EIO;
  }
  FuseKernelCache kernel(se);
  on_mounted(&kernel);
  // Objects are created with the modes Overlay computes from the caller's
  // umask, and the store's own files name theirs: a umask of the daemon
  // would be applied on top (a caller's umask 000 gave 755 directories).
  // Set once, before requests are served, as it is the whole process's.
  ::umask(0);
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(loop, 1);
  fuse_loop_cfg_set_idle_threads(loop, 8);
  int r = fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);
  stop_kernel_io();
  on_stopping();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return r < 0 ? -r : 0;
}

}  // namespace cowfs
