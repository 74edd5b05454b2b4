#include "cowfs/core/copy_up.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <string_view>
#include <vector>

#include "cowfs/core/chunked_file.h"
#include "cowfs/core/link_count.h"
#include "cowfs/core/overlay.h"
#include "cowfs/core/xattr_names.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {

std::string index_name(uint64_t ino) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, ino);
  return buf;
}

namespace {

std::string origin_record_name(ino_t store_ino) {
  return "o" + index_name(static_cast<uint64_t>(store_ino));
}

std::string links_record_name(ino_t store_ino) {
  return "l" + index_name(static_cast<uint64_t>(store_ino));
}

// A record is a symlink in the layer's index whose target is a decimal number.
template <typename Int>
std::optional<Int> read_record(const Layer& layer, const std::string& name) {
  if (!layer.index.valid()) return std::nullopt;
  auto target = sys::readlink_at(layer.index.get(), name.c_str());
  if (!target) return std::nullopt;
  Int v = 0;
  auto [end, ec] = std::from_chars(target->data(), target->data() + target->size(), v);
  if (ec != std::errc() || end != target->data() + target->size()) return std::nullopt;
  return v;
}

// Written aside and renamed over, so a crash leaves the old record or the new.
Status write_record(const Layer& layer, const std::string& name, const std::string& value) {
  const std::string tmp = name + ".new";
  (void)sys::unlink_at(layer.index.get(), tmp.c_str(), 0);
  COWFS_TRY(sys::symlink_at(value.c_str(), layer.index.get(), tmp.c_str()));
  return sys::rename_at(layer.index.get(), tmp.c_str(), layer.index.get(), name.c_str());
}

}  // namespace

Status link_replacing(int olddir, const char* oldname, int newdir, const char* newname, int flags) {
  Status s = sys::link_at(olddir, oldname, newdir, newname, flags);
  if (s.ok() || s.error() != EEXIST) return s;
  (void)sys::unlink_at(newdir, newname, 0);
  return sys::link_at(olddir, oldname, newdir, newname, flags);
}

std::optional<uint64_t> read_origin_record(const Layer& layer, ino_t store_ino) {
  return read_record<uint64_t>(layer, origin_record_name(store_ino));
}

Status write_origin_record(const Layer& layer, ino_t store_ino, uint64_t origin) {
  return write_record(layer, origin_record_name(store_ino), std::to_string(origin));
}

void drop_origin_record(const Layer& layer, ino_t store_ino) {
  if (layer.index.valid()) {
    (void)sys::unlink_at(layer.index.get(), origin_record_name(store_ino).c_str(), 0);
  }
}

std::optional<int> read_lower_links(const Layer& layer, int fd, const struct stat& st) {
  std::optional<int> v;
  if (!S_ISREG(st.st_mode)) {
    v = read_record<int>(layer, links_record_name(st.st_ino));
  } else if (auto text = sys::get_xattr(fd, kLowerLinksXattr)) {
    int n = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
    v = ec == std::errc() && end == text->data() + text->size() ? n : 0;
  }
  if (v && *v < 0) return 0;
  return v;
}

Status write_lower_links(const Layer& layer, int fd, const struct stat& st, int count) {
  if (S_ISREG(st.st_mode)) return sys::set_xattr(fd, kLowerLinksXattr, std::to_string(count), 0);
  return write_record(layer, links_record_name(st.st_ino), std::to_string(count));
}

namespace {

Status copy_range(int src, int dst, off_t off, off_t len) {
  // copy_file_range shares extents on the same filesystem; across
  // filesystems (a lower is usually elsewhere) fall back to pread/pwrite.
  while (len > 0) {
    loff_t in = off, out = off;
    ssize_t n = ::copy_file_range(src, &in, dst, &out, static_cast<size_t>(len), 0);
    if (n > 0) {
      off += n;
      len -= n;
      continue;
    }
    if (n == 0) return Errno{EIO};  // the source shrank under us
    if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS) {
      return Errno{errno};
    }
    std::vector<char> buf(1 << 20);
    while (len > 0) {
      size_t want = static_cast<size_t>(std::min<off_t>(len, static_cast<off_t>(buf.size())));
      ssize_t r = ::pread(src, buf.data(), want, off);
      if (r < 0) return Errno{errno};
      if (r == 0) return Errno{EIO};
      COWFS_TRY(sys::pwrite_all(dst, buf.data(), static_cast<size_t>(r), off));
      off += r;
      len -= r;
    }
  }
  return {};
}

}  // namespace

Status copy_file_data(int src_fd, int dst_fd, off_t size) {
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src_fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      // No SEEK_DATA support: copy everything.
      COWFS_TRY(copy_range(src_fd, dst_fd, pos, size - pos));
      break;
    }
    off_t hole = ::lseek(src_fd, data, SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    COWFS_TRY(copy_range(src_fd, dst_fd, data, hole - data));
    pos = hole;
  }
  // Trailing holes still count in the size.
  return sys::truncate_fd(dst_fd, size);
}

Status copy_metadata(int src_path_fd, const struct stat& src, int dirfd, const char* name,
                     bool privileged, bool from_store) {
  auto dst = sys::open_at(dirfd, name, O_PATH | O_NOFOLLOW);
  if (!dst) return Errno{dst.error()};
  return copy_metadata_to(sys::proc_path(src_path_fd), src, dst->get(),
                          sys::proc_path(dirfd) + "/" + name, privileged, from_store);
}

Status copy_metadata_to(const std::string& src_xattrs, const struct stat& src, int dst_path_fd,
                        const std::string& dst_xattrs, bool privileged, bool from_store) {
  const bool is_link = S_ISLNK(src.st_mode);
  if (privileged) {
    COWFS_TRY(sys::chown_fd(dst_path_fd, src.st_uid, src.st_gid));
  }
  if (!is_link) {
    // After chown, which clears set-id bits.
    COWFS_TRY(sys::chmod_fd(dst_path_fd, src.st_mode & 07777));
  }
  auto names = sys::list_xattr_at_path(src_xattrs, is_link);
  if (names) {
    for (const auto& n : *names) {
      auto value = sys::get_xattr_at_path(src_xattrs, n.c_str(), is_link);
      if (!value) continue;
      // Our own markers are re-derived by the caller, not copied; a lower's
      // names are the user's and get escaped like any the user sets.
      if (from_store && n.starts_with(xattr_names::kOurs) &&
          !n.starts_with(xattr_names::kEscaped)) {
        continue;
      }
      const std::string stored = from_store ? n : xattr_names::to_store(n);
      Status s = sys::set_xattr_at_path(dst_xattrs, stored.c_str(), *value, 0, is_link);
      // A store filesystem without some namespace (e.g. security.*) loses
      // only that attribute; say so instead of failing the write.
      if (!s.ok() && s.error() != ENOTSUP && s.error() != EPERM) return s;
    }
  }
  struct timespec times[2] = {src.st_atim, src.st_mtim};
  return sys::utimens_fd(dst_path_fd, times);
}

Result<int> Overlay::top_dir(Node& dir) {
  if (dir.parts.front().layer == stack_.top()) return part_fd(dir, 0);
  if (!dir.parent) return Errno{ENOENT};
  auto ptop = top_dir(*dir.parent);
  if (!ptop) return ptop;
  auto below = part_fd(dir, 0);
  if (!below) return below;
  auto st = sys::stat_fd(*below);
  if (!st) return Errno{st.error()};

  std::string tmp = temp_name();
  COWFS_TRY(sys::mkdir_at(work_fd_, tmp.c_str(), 0700));
  Status s;
  auto tfd = sys::open_at(work_fd_, tmp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!tfd) {
    s = Errno{tfd.error()};
  } else {
    s = copy_metadata_to(sys::proc_path(*below), *st, tfd->get(), sys::proc_path(tfd->get()),
                         opts_.is_root, dir.parts.front().layer->in_store());
    if (s.ok()) s = sys::set_xattr(tfd->get(), kOriginXattr, std::to_string(dir.ino), 0);
  }
  auto parent_times = sys::stat_fd(*ptop);
  if (s.ok()) s = sys::rename_at(work_fd_, tmp.c_str(), *ptop, dir.name.c_str(), RENAME_NOREPLACE);
  if (!s.ok()) {
    (void)sys::unlink_at(work_fd_, tmp.c_str(), AT_REMOVEDIR);
    return Errno{s.error()};
  }
  if (parent_times) {
    // Creating the copy is not a change of the parent the user can see.
    struct timespec t[2] = {parent_times->st_atim, parent_times->st_mtim};
    ::utimensat(*ptop, "", t, AT_EMPTY_PATH);
  }
  auto fd = sys::open_at(*ptop, dir.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  int raw = fd->get();
  dir.parts.insert(dir.parts.begin(), DirPart(stack_.top(), fd.take()));
  return raw;
}

Status Overlay::copy_up(Node& node, CopyData data) {
  if (node.is_dir()) {
    auto r = top_dir(node);
    return r ? Status() : Status(Errno{r.error()});
  }
  if (node.layer == stack_.top()) return {};

  auto nfd = fd_of(node);
  if (!nfd) return Errno{nfd.error()};
  const int node_fd = *nfd;
  auto st = sys::stat_fd(node_fd);
  if (!st) return Errno{st.error()};
  // Counted before a chunked copy links the file as its base.
  nlink_t names = st->st_nlink;
  if (node.layer->in_store()) {
    auto visible = stat_node(node);
    names = visible ? visible->st_nlink : 1;
  }
  // A pinned node lost the name it was found by (its other names still
  // resolve through the index), so its copy gets no name in the tree.
  const bool orphan = node.unlinked || !node.parent || node.pinned;
  int dest_dir = work_fd_;
  if (!orphan) {
    auto ptop = top_dir(*node.parent);
    if (!ptop) return Errno{ptop.error()};
    dest_dir = *ptop;
  }

  std::string tmp = temp_name();
  Status s;
  bool chunked = false;
  std::string ref;  // a reference's first map, if it is one
  if (S_ISREG(st->st_mode)) {
    auto dst = sys::open_at(work_fd_, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (!dst) return Errno{dst.error()};
    // A reference to a whole file of a frozen layer would be one more link
    // to it, which its other names would count: such a file is copied.
    if (data == CopyData::kReference && !node.chunks && node.layer->in_store()) {
      data = CopyData::kContent;
    }
    const bool by_chunk = data == CopyData::kReference || node.chunks ||
                          static_cast<uint64_t>(st->st_size) >= opts_.chunk_threshold;
    chunked = data != CopyData::kNothing && stack_.top()->chunks.valid() && by_chunk;
    if (chunked) {
      s = copy_up_chunked(node, *st, tmp, *dst, data, &ref);
    } else if (data != CopyData::kNothing && st->st_size > 0) {
      auto src = sys::reopen(node_fd, O_RDONLY);
      s = src ? copy_file_data(src->get(), dst->get(), st->st_size) : Status(Errno{src.error()});
    }
    // A reference holds no data to sync (see copy_up.h).
    if (s.ok() && !(chunked && data == CopyData::kReference)) s = sys::fsync_fd(dst->get());
  } else if (S_ISLNK(st->st_mode)) {
    auto target = sys::readlink_at(node_fd, "");
    s = target ? sys::symlink_at(target->c_str(), work_fd_, tmp.c_str())
               : Status(Errno{target.error()});
  } else {
    s = sys::mknod_at(work_fd_, tmp.c_str(), st->st_mode, st->st_rdev);
  }
  UniqueFd tfd;
  if (s.ok()) {
    auto fd = sys::open_at(work_fd_, tmp.c_str(), O_PATH | O_NOFOLLOW);
    if (fd) {
      tfd = fd.take();
    } else {
      s = Errno{fd.error()};
    }
  }
  if (s.ok()) {
    auto from = xattr_path(node);
    s = from ? copy_metadata_to(*from, *st, tfd.get(), sys::proc_path(work_fd_) + "/" + tmp,
                                opts_.is_root, node.layer->in_store())
             : Status(Errno{from.error()});
  }
  // A file with several lower names, or the copy of one (lower_links >= 0):
  // each layer's copy is found by its other names through that layer's index.
  // Hard links made in a store layer are the same: after a checkpoint their
  // names resolve to the frozen copy, and find this one through the index.
  const bool multi_linked = !S_ISDIR(st->st_mode) && (names > 1 || node.lower_links >= 0);
  // The copy takes the name it was reached by (or has lost it, if it is an
  // orphan); every other name stays below, in a lower or a frozen layer,
  // and finds the copy through the index (link_count.h).
  const int lower_links =
      lower_links_of_copy(names, st->st_nlink, node.chunks != nullptr, node.lower_links, orphan);
  if (s.ok() && !S_ISREG(st->st_mode)) {
    auto tst = sys::stat_fd(tfd.get());
    s = tst ? write_origin_record(*stack_.top(), tst->st_ino, node.ino)
            : Status(Errno{tst.error()});
    if (s.ok() && multi_linked) s = write_lower_links(*stack_.top(), tfd.get(), *tst, lower_links);
  } else if (s.ok()) {
    s = sys::set_xattr(tfd.get(), kOriginXattr, std::to_string(node.ino), 0);
    if (s.ok() && multi_linked) {
      s = sys::set_xattr(tfd.get(), kLowerLinksXattr, std::to_string(lower_links), 0);
    }
    // Set last: the xattr the store would give up first for a user's one
    // (Overlay::setxattr) is then the one that did not fit in the inode.
    if (s.ok() && !ref.empty() && !sys::set_xattr(tfd.get(), kChunkRefXattr, ref, 0).ok()) {
      // No room for it (a long base path): a map file does the same.
      auto map = parse_ref_value(ref);
      s = map ? write_map_file(stack_.top()->chunks.get(), node.ino, *map, true)
              : Status(Errno{EIO});
    }
  }
  if (s.ok() && multi_linked) {
    // Link into the index first: a crash before the rename below leaves an
    // index entry that the next lookup of any name of the file will use.
    s = sys::link_at(work_fd_, tmp.c_str(), stack_.top()->index.get(), index_name(node.ino).c_str(),
                     0);
    if (s.ok()) node.lower_links = lower_links;
  }
  if (s.ok() && !orphan) {
    auto parent_times = sys::stat_fd(dest_dir);
    s = sys::rename_at(work_fd_, tmp.c_str(), dest_dir, node.name.c_str(), RENAME_NOREPLACE);
    if (s.ok() && parent_times) {
      struct timespec t[2] = {parent_times->st_atim, parent_times->st_mtim};
      ::utimensat(dest_dir, "", t, AT_EMPTY_PATH);
    }
  } else if (s.ok() && orphan) {
    // Nobody can reach it by name; the handle keeps it alive.
    s = sys::unlink_at(work_fd_, tmp.c_str(), 0);
  }
  if (!s.ok()) {
    (void)sys::unlink_at(work_fd_, tmp.c_str(), 0);
    return s;
  }
  {
    MutexLock lock(node.fd_mu);
    adopt_fd(node, std::move(tfd));
  }
  node.layer = stack_.top();
  // An orphan's copy has no name in the tree: it is found again through
  // the index, or (no other name at all) only through its pinned fd.
  node.via_index = orphan && multi_linked;
  node.pinned = orphan;
  node.chunks.reset();
  if (chunked) {
    auto loaded = ChunkedFile::load(stack_, 0, node.ino);
    if (!loaded) return Errno{loaded.error()};
    node.chunks = loaded.take();
  }
  node.data_gen.fetch_add(1);
  return {};
}

namespace {

// The path of the object at fd below the root of the layer at root_fd.
Result<std::string> path_below(int fd, int root_fd) {
  auto here = sys::readlink_at(AT_FDCWD, sys::proc_path(fd).c_str());
  auto root = sys::readlink_at(AT_FDCWD, sys::proc_path(root_fd).c_str());
  if (!here || !root) return Errno{EIO};
  const size_t skip = root->size() + (*root == "/" ? 0 : 1);
  if (here->size() <= skip || here->compare(0, root->size(), *root) != 0) return Errno{EIO};
  return here->substr(skip);
}

}  // namespace

Status Overlay::copy_up_chunked(Node& node, const struct stat& st, const std::string& tmp,
                                UniqueFd& dst, CopyData data, std::string* ref) {
  const Layer& top = *stack_.top();
  COWFS_TRY(sys::truncate_fd(dst.get(), st.st_size));
  ChunkMap map(node.chunks ? node.chunks->chunk_size() : opts_.chunk_size,
               static_cast<uint64_t>(st.st_size));
  if (!node.chunks) {
    // The first chunked copy: remember where the untouched bytes live.
    if (node.layer->in_store()) {
      const std::string base = chunk_base_name(node.ino);
      (void)sys::unlink_at(top.chunks.get(), base.c_str(), 0);
      auto nfd = fd_of(node);
      if (!nfd) return Errno{nfd.error()};
      if (::linkat(AT_FDCWD, sys::proc_path(*nfd).c_str(), top.chunks.get(), base.c_str(),
                   AT_SYMLINK_FOLLOW) < 0) {
        return Errno{errno};
      }
      map.set_base("S");
    } else {
      auto nfd = fd_of(node);
      if (!nfd) return Errno{nfd.error()};
      auto rel = path_below(*nfd, node.layer->root.get());
      if (!rel) return Errno{rel.error()};
      map.set_base("L" + std::to_string(node.layer->lower_index) + ":" + *rel);
    }
  }
  if (data == CopyData::kReference) {
    // A map file left by an earlier copy in this layer would win over it.
    (void)sys::unlink_at(top.chunks.get(), chunk_map_name(node.ino).c_str(), 0);
    *ref = ref_value(map);
  } else {
    COWFS_TRY(write_map_file(top.chunks.get(), node.ino, map, true));
  }
  const std::string name = chunk_data_name(node.ino);
  COWFS_TRY(link_replacing(work_fd_, tmp.c_str(), top.chunks.get(), name.c_str(), 0));
  return sys::set_xattr(dst.get(), kChunkedXattr, "1", 0);
}

}  // namespace cowfs
