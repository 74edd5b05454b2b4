#include "tests/integration/fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace cowfs_it {
namespace {

[[noreturn]] void throw_errno(int e, const std::string& what) {
  throw std::system_error(e, std::generic_category(), what);
}

std::string canonical_parent(const std::string& path) {
  // realpath() of the parent only: the path itself may be a dead FUSE mount.
  auto slash = path.find_last_of('/');
  std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  std::string base = path.substr(slash + 1);
  char buf[PATH_MAX];
  if (::realpath(parent.c_str(), buf) == nullptr) return path;
  std::string p = buf;
  return p == "/" ? "/" + base : p + "/" + base;
}

std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

uint64_t mount_id_at(int dirfd, const char* name) {
  struct statx stx {};
  if (::statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0) return 0;
  return stx.stx_mnt_id;
}

std::vector<std::string> read_dir_names(int dirfd) {
  std::vector<std::string> names;
  int fd = ::dup(dirfd);
  if (fd < 0) return names;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return names;
  }
  ::rewinddir(d);
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

void remove_at(int dirfd, const std::string& name, uint64_t mnt_id) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (mount_id_at(dirfd, name.c_str()) != mnt_id) return;  // a mount: never descend
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      for (const auto& child : read_dir_names(fd)) remove_at(fd, child, mnt_id);
      ::close(fd);
    }
    ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  } else {
    ::unlinkat(dirfd, name.c_str(), 0);
  }
}

std::string xattr_path(int dirfd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
}

std::map<std::string, std::string> read_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    if (errno == ENOTSUP || errno == ENODATA) return out;
    throw_errno(errno, "llistxattr " + path);
  }
  std::string names(static_cast<size_t>(n) + 1, '\0');
  n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) throw_errno(errno, "llistxattr " + path);
  names.resize(static_cast<size_t>(n));
  size_t pos = 0;
  while (pos < names.size()) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    if (name.empty()) continue;
    ssize_t vn = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vn < 0) throw_errno(errno, "lgetxattr " + path + " " + name);
    std::string value(static_cast<size_t>(vn), '\0');
    vn = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vn < 0) throw_errno(errno, "lgetxattr " + path + " " + name);
    value.resize(static_cast<size_t>(vn));
    out[name] = value;
  }
  return out;
}

uint64_t hash_fd(int fd, const std::string& what) {
  uint64_t h = 0xcbf29ce484222325ULL;
  std::string buf(1 << 20, '\0');
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "read " + what);
    }
    if (n == 0) break;
    h = fnv1a(std::string_view(buf.data(), static_cast<size_t>(n)), h);
    off += n;
  }
  return h;
}

FileInfo info_from(const struct stat& st) {
  FileInfo fi;
  fi.type = st.st_mode & S_IFMT;
  fi.perm = st.st_mode & 07777;
  fi.uid = st.st_uid;
  fi.gid = st.st_gid;
  fi.size = st.st_size;
  fi.mtime_ns = ns_of(st.st_mtim);
  fi.ctime_ns = ns_of(st.st_ctim);
  fi.ino = st.st_ino;
  fi.nlink = st.st_nlink;
  fi.rdev = st.st_rdev;
  return fi;
}

void walk(int dirfd, const std::string& prefix, uint64_t mnt_id, Manifest& m,
          const std::function<bool(const std::string&)>& skip) {
  auto names = read_dir_names(dirfd);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string rel = prefix.empty() ? name : prefix + "/" + name;
    if (skip && skip(rel)) continue;
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      throw_errno(errno, "manifest: lstat " + rel);
    }
    FileInfo fi = info_from(st);
    fi.xattrs = read_xattrs(xattr_path(dirfd, name));
    if (S_ISREG(st.st_mode)) {
      Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
      if (!fd) throw_errno(errno, "manifest: open " + rel);
      fi.hash = hash_fd(fd.get(), rel);
    } else if (S_ISLNK(st.st_mode)) {
      std::string buf(PATH_MAX + 1, '\0');
      ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
      if (n < 0) throw_errno(errno, "manifest: readlink " + rel);
      fi.target.assign(buf.data(), static_cast<size_t>(n));
    }
    m.entries[rel] = fi;
    if (S_ISDIR(st.st_mode) && mount_id_at(dirfd, name.c_str()) == mnt_id) {
      Fd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) throw_errno(errno, "manifest: opendir " + rel);
      walk(sub.get(), rel, mnt_id, m, skip);
    }
  }
}

std::string oct(mode_t m) {
  std::ostringstream s;
  s << std::oct << m;
  return s.str();
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (out.size() > 80) out = out.substr(0, 77) + "...";
  return out + "\"";
}

std::string type_name(mode_t t) {
  switch (t) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFCHR:
      return "chardev";
    case S_IFBLK:
      return "blockdev";
    case S_IFSOCK:
      return "socket";
    default:
      return "type" + oct(t);
  }
}

std::string xattrs_str(const std::map<std::string, std::string>& x) {
  std::string s = "{";
  for (const auto& [k, v] : x) {
    if (s.size() > 1) s += ", ";
    s += k + "=" + quote(v);
  }
  return s + "}";
}

// For each non-directory path: the other paths with the same inode.
std::map<std::string, std::vector<std::string>> link_peers(const Manifest& m) {
  std::map<ino_t, std::vector<std::string>> by_ino;
  for (const auto& [path, fi] : m.entries) {
    if (fi.type != S_IFDIR) by_ino[fi.ino].push_back(path);
  }
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [ino, paths] : by_ino) {
    for (const auto& p : paths) {
      for (const auto& q : paths) {
        if (q != p) out[p].push_back(q);
      }
    }
  }
  return out;
}

std::string join_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (const auto& e : v) s += (s.size() > 1 ? ", " : "") + e;
  return s + "]";
}

}  // namespace

const std::string& cowfs_bin() {
  static const std::string bin = COWFS_BIN;
  return bin;
}

std::string errno_name(int e) {
  const char* name = ::strerrorname_np(e);
  return std::string(name ? name : "E?") + " (" + std::strerror(e) + ")";
}

// --- Fd and I/O helpers -------------------------------------------------------

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Fd open_or_throw(const std::string& path, int flags, mode_t mode) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  if (!fd) throw_errno(errno, "open " + path);
  return fd;
}

Fd openat_or_throw(int dirfd, const std::string& name, int flags, mode_t mode) {
  Fd fd(::openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode));
  if (!fd) throw_errno(errno, "openat " + name.substr(0, 40) + "...");
  return fd;
}

struct stat stat_or_throw(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_errno(errno, "stat " + path);
  return st;
}

struct stat lstat_or_throw(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_errno(errno, "lstat " + path);
  return st;
}

struct stat fstat_or_throw(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "fstat");
  return st;
}

std::string pread_exact(int fd, off_t off, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, off + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "pread");
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

std::string pread_all(int fd) {
  std::string out;
  std::string buf(1 << 20, '\0');
  off_t off = 0;
  for (;;) {
    ssize_t r = ::pread(fd, buf.data(), buf.size(), off);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "pread");
    }
    if (r == 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
    off += r;
  }
  return out;
}

void pwrite_all(int fd, std::string_view data, off_t off) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t r =
        ::pwrite(fd, data.data() + done, data.size() - done, off + static_cast<off_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "pwrite");
    }
    done += static_cast<size_t>(r);
  }
}

void write_fd_all(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t r = ::write(fd, data.data() + done, data.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "write");
    }
    done += static_cast<size_t>(r);
  }
}

std::string read_file(const std::string& path) {
  Fd fd = open_or_throw(path, O_RDONLY);
  return pread_all(fd.get());
}

void write_file(const std::string& path, std::string_view data, mode_t mode) {
  Fd fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  write_fd_all(fd.get(), data);
  if (::close(fd.release()) != 0) throw_errno(errno, "close " + path);
}

void append_file(const std::string& path, std::string_view data) {
  Fd fd = open_or_throw(path, O_WRONLY | O_APPEND);
  write_fd_all(fd.get(), data);
  if (::close(fd.release()) != 0) throw_errno(errno, "close " + path);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  for (auto& [name, ino] : list_dir_inos(path)) out.push_back(name);
  return out;
}

std::vector<std::pair<std::string, ino_t>> list_dir_inos(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) throw_errno(errno, "opendir " + path);
  std::vector<std::pair<std::string, ino_t>> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.emplace_back(n, e->d_ino);
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw_errno(e, "readdir " + path);
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::string first_difference(std::string_view expected, std::string_view actual) {
  size_t n = std::min(expected.size(), actual.size());
  for (size_t i = 0; i < n; ++i) {
    if (expected[i] != actual[i]) {
      std::ostringstream s;
      s << "first difference at offset " << i << " (expected byte 0x" << std::hex
        << (static_cast<unsigned>(expected[i]) & 0xff) << ", got 0x"
        << (static_cast<unsigned>(actual[i]) & 0xff) << std::dec << "); sizes: expected "
        << expected.size() << ", got " << actual.size();
      return s.str();
    }
  }
  if (expected.size() != actual.size()) {
    return "sizes differ: expected " + std::to_string(expected.size()) + ", got " +
           std::to_string(actual.size()) + " (common prefix equal)";
  }
  return "";
}

std::string pattern(size_t n, uint64_t seed) {
  std::string out(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<char>(x >> (8 * j));
  }
  return out;
}

uint64_t fnv1a(std::string_view data, uint64_t h) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {
int64_t usage_at(int dirfd, const std::string& name, uint64_t mnt_id) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  int64_t total = static_cast<int64_t>(st.st_blocks) * 512;
  if (S_ISDIR(st.st_mode) && mount_id_at(dirfd, name.c_str()) == mnt_id) {
    Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) {
      for (const auto& child : read_dir_names(fd.get())) total += usage_at(fd.get(), child, mnt_id);
    }
  }
  return total;
}
}  // namespace

int64_t disk_usage(const std::string& path) {
  return usage_at(AT_FDCWD, path, mount_id_at(AT_FDCWD, path.c_str()));
}

void remove_tree(const std::string& path) {
  remove_at(AT_FDCWD, path, mount_id_at(AT_FDCWD, path.c_str()));
}

int64_t ns_of(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

namespace {

struct LinkKey {
  dev_t dev;
  ino_t ino;
  bool operator<(const LinkKey& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

void copy_xattrs(const std::string& from, const std::string& to) {
  for (const auto& [name, value] : read_xattrs(from)) {
    if (::lsetxattr(to.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      throw_errno(errno, "copy_tree: setxattr " + name);
    }
  }
}

void copy_entries(int sfd, int dfd, int droot, const std::string& prefix,
                  std::map<LinkKey, std::string>& links) {
  auto names = read_dir_names(sfd);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    struct stat st {};
    if (::fstatat(sfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      throw_errno(errno, "copy_tree: lstat " + name);
    }
    struct stat existing {};
    bool exists = ::fstatat(dfd, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !(S_ISDIR(st.st_mode) && S_ISDIR(existing.st_mode))) {
      remove_at(dfd, name, mount_id_at(dfd, "."));
      exists = false;
    }
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto it = links.find({st.st_dev, st.st_ino});
      if (it != links.end()) {
        if (::linkat(droot, it->second.c_str(), dfd, name.c_str(), 0) != 0) {
          throw_errno(errno, "copy_tree: link " + name);
        }
        continue;
      }
      links[{st.st_dev, st.st_ino}] = rel;
    }
    if (S_ISDIR(st.st_mode)) {
      if (!exists && ::mkdirat(dfd, name.c_str(), 0700) != 0) {
        throw_errno(errno, "copy_tree: mkdir " + name);
      }
      Fd s(::openat(sfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      Fd d(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!s || !d) throw_errno(errno, "copy_tree: open dir " + name);
      copy_entries(s.get(), d.get(), droot, rel, links);
      copy_xattrs(xattr_path(sfd, name), xattr_path(dfd, name));
      if (::fchown(d.get(), st.st_uid, st.st_gid) != 0 ||
          ::fchmod(d.get(), st.st_mode & 07777) != 0 || ::futimens(d.get(), times) != 0) {
        throw_errno(errno, "copy_tree: attributes of " + name);
      }
    } else if (S_ISREG(st.st_mode)) {
      Fd s(::openat(sfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME));
      if (!s) s.reset(::openat(sfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      Fd d(::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!s || !d) throw_errno(errno, "copy_tree: open " + name);
      std::string buf(1 << 20, '\0');
      off_t off = 0;
      for (;;) {
        ssize_t n = ::pread(s.get(), buf.data(), buf.size(), off);
        if (n < 0) throw_errno(errno, "copy_tree: read " + name);
        if (n == 0) break;
        // Zero blocks are skipped (left as holes), to keep sparse files sparse.
        for (ssize_t b = 0; b < n; b += 4096) {
          size_t len = static_cast<size_t>(std::min<ssize_t>(4096, n - b));
          std::string_view block(buf.data() + b, len);
          if (block.find_first_not_of('\0') != std::string_view::npos) {
            pwrite_all(d.get(), block, off + b);
          }
        }
        off += n;
      }
      if (::ftruncate(d.get(), st.st_size) != 0) throw_errno(errno, "copy_tree: truncate " + name);
      copy_xattrs(xattr_path(sfd, name), xattr_path(dfd, name));
      if (::fchown(d.get(), st.st_uid, st.st_gid) != 0 ||
          ::fchmod(d.get(), st.st_mode & 07777) != 0 || ::futimens(d.get(), times) != 0) {
        throw_errno(errno, "copy_tree: attributes of " + name);
      }
    } else {
      if (S_ISLNK(st.st_mode)) {
        std::string target(PATH_MAX + 1, '\0');
        ssize_t n = ::readlinkat(sfd, name.c_str(), target.data(), target.size());
        if (n < 0) throw_errno(errno, "copy_tree: readlink " + name);
        target.resize(static_cast<size_t>(n));
        if (::symlinkat(target.c_str(), dfd, name.c_str()) != 0) {
          throw_errno(errno, "copy_tree: symlink " + name);
        }
      } else if (::mknodat(dfd, name.c_str(), st.st_mode, st.st_rdev) != 0) {
        throw_errno(errno, "copy_tree: mknod " + name);
      }
      if (::fchownat(dfd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
        throw_errno(errno, "copy_tree: chown " + name);
      }
      // A symlink may hold trusted.* and security.* names (never user.*).
      copy_xattrs(xattr_path(sfd, name), xattr_path(dfd, name));
      if (!S_ISLNK(st.st_mode)) {
        if (::fchmodat(dfd, name.c_str(), st.st_mode & 07777, 0) != 0) {
          throw_errno(errno, "copy_tree: chmod " + name);
        }
      }
      if (::utimensat(dfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        throw_errno(errno, "copy_tree: utimes " + name);
      }
    }
  }
}

}  // namespace

void copy_tree(const std::string& src, const std::string& dst) {
  Fd s = open_or_throw(src, O_RDONLY | O_DIRECTORY);
  Fd d = open_or_throw(dst, O_RDONLY | O_DIRECTORY);
  std::map<LinkKey, std::string> links;
  copy_entries(s.get(), d.get(), d.get(), "", links);
  struct stat st = fstat_or_throw(s.get());
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  copy_xattrs(src, dst);
  if (::fchown(d.get(), st.st_uid, st.st_gid) != 0 || ::fchmod(d.get(), st.st_mode & 07777) != 0 ||
      ::futimens(d.get(), times) != 0) {
    throw_errno(errno, "copy_tree: attributes of " + dst);
  }
}

// --- Processes ----------------------------------------------------------------

std::string RunResult::describe() const {
  std::string s;
  if (timed_out) s += "timed out, ";
  s += "exit " + std::to_string(exit_code);
  if (stdio_held) s += " (stdout/stderr held open after exit)";
  if (!out.empty()) s += ", stdout: " + out;
  s += ", stderr: " + (err.empty() ? std::string("<empty>") : err);
  return s;
}

std::vector<std::string> RunResult::err_lines() const {
  std::vector<std::string> lines;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

Process::Process(const std::vector<std::string>& argv, const RunOptions& opts) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(outp[0]);
    ::close(outp[1]);
    throw_errno(e, "pipe2");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const char* cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();

  pid_ = ::fork();
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(outp[1], 1);
    ::dup2(errp[1], 2);
    if (cwd != nullptr && ::chdir(cwd) != 0) {
      static const char msg[] = "run: chdir failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::close_range(3, ~0U, 0);
    ::execvp(args[0], args.data());
    static const char msg[] = "run: exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(outp[1]);
  ::close(errp[1]);
  out_.reset(outp[0]);
  err_.reset(errp[0]);
  if (pid_ < 0) throw_errno(fork_errno, "fork");
  ::fcntl(out_.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_.get(), F_SETFL, O_NONBLOCK);
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
}

void Process::pump(int timeout_ms) {
  struct pollfd pfds[2];
  int n = 0;
  Fd* owners[2];
  std::string* sinks[2];
  if (out_) {
    pfds[n] = {out_.get(), POLLIN, 0};
    owners[n] = &out_;
    sinks[n++] = &result_.out;
  }
  if (err_) {
    pfds[n] = {err_.get(), POLLIN, 0};
    owners[n] = &err_;
    sinks[n++] = &result_.err;
  }
  if (n == 0) return;
  if (::poll(pfds, static_cast<nfds_t>(n), timeout_ms) <= 0) return;
  for (int i = 0; i < n; ++i) {
    if (pfds[i].revents == 0) continue;
    char buf[4096];
    for (;;) {
      ssize_t r = ::read(owners[i]->get(), buf, sizeof buf);
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) owners[i]->reset();  // EOF
      break;                           // EAGAIN or error
    }
  }
}

bool Process::exited() {
  pump(0);
  if (!reaped_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return reaped_;
}

RunResult Process::wait(std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + timeout;
  std::optional<clock::time_point> drain_deadline;
  for (;;) {
    if (!reaped_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    if (reaped_ && !out_ && !err_) break;
    auto now = clock::now();
    if (reaped_) {
      // The child is gone; a daemon it started may still hold the pipes.
      if (!drain_deadline) drain_deadline = now + 2s;
      if (now >= *drain_deadline) {
        result_.stdio_held = true;
        break;
      }
    } else if (now >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      reaped_ = true;
      result_.timed_out = true;
      continue;
    }
    pump(20);
  }
  out_.reset();
  err_.reset();
  if (WIFEXITED(status_)) {
    result_.exit_code = WEXITSTATUS(status_);
  } else if (WIFSIGNALED(status_)) {
    result_.exit_code = 128 + WTERMSIG(status_);
  }
  return result_;
}

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts) {
  Process p(argv, opts);
  return p.wait(opts.timeout);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto step = 1ms;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
    step = std::min<std::chrono::milliseconds>(step * 2, 50ms);
  }
}

// --- Mounts -------------------------------------------------------------------

std::vector<std::string> mount_points() {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mp;
    fields >> id >> parent >> devno >> root >> mp;
    out.push_back(unescape_mountinfo(mp));
  }
  return out;
}

bool is_mounted(const std::string& path) {
  std::string p = canonical_parent(path);
  for (const auto& mp : mount_points()) {
    if (mp == p) return true;
  }
  return false;
}

std::vector<std::string> mounts_under(const std::string& dir) {
  std::string d = canonical_parent(dir);
  std::vector<std::string> out;
  for (const auto& mp : mount_points()) {
    if (mp == d || mp.rfind(d + "/", 0) == 0) out.push_back(mp);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

std::vector<pid_t> cowfs_daemons(const std::string& mountpoint) {
  static const std::string bin = [] {
    char buf[PATH_MAX];
    return ::realpath(cowfs_bin().c_str(), buf) ? std::string(buf) : cowfs_bin();
  }();
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::string base = std::string("/proc/") + e->d_name;
    char exe[PATH_MAX];
    ssize_t n = ::readlink((base + "/exe").c_str(), exe, sizeof exe - 1);
    if (n <= 0) continue;
    std::string exe_s(exe, static_cast<size_t>(n));
    static const std::string kDeleted = " (deleted)";
    if (exe_s.size() > kDeleted.size() &&
        exe_s.compare(exe_s.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
      exe_s.resize(exe_s.size() - kDeleted.size());
    }
    if (exe_s != bin) continue;
    std::ifstream cmd(base + "/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    bool match = false;
    size_t pos = 0;
    std::string prev;
    while (pos < all.size()) {
      std::string arg = all.c_str() + pos;
      pos += arg.size() + 1;
      // The daemon of a mount stacked on this one names it as its lower.
      if (arg == mountpoint && prev != "--lower" && prev != "--store") match = true;
      prev = std::move(arg);
    }
    if (match && process_alive(static_cast<pid_t>(pid))) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool force_unmount(const std::string& path) {
  if (!is_mounted(path)) return true;
  if (::umount2(path.c_str(), 0) != 0) {
    // Possibly a FUSE mount of another user, or busy: detach lazily.
    ::umount2(path.c_str(), MNT_DETACH);
  }
  return !is_mounted(path);
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw_errno(errno, "mkdtemp " + tmpl);
  path_ = tmpl;
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  for (const auto& mp : mounts_under(path_)) {
    if (!cowfs_daemons(mp).empty()) {
      RunResult r = run({"fusermount3", "-u", "-z", mp}, {.cwd = "", .timeout = 10s});
      (void)r;
    }
    force_unmount(mp);
  }
  if (std::getenv("COWFS_IT_KEEP") != nullptr) {
    std::cerr << "COWFS_IT_KEEP: kept " << path_ << "\n";
    return;
  }
  remove_tree(path_);
}

std::string TempDir::mkdir(const std::string& rel, mode_t mode) const {
  std::string full = sub(rel);
  size_t pos = path_.size() + 1;
  while (pos <= full.size()) {
    size_t slash = full.find('/', pos);
    if (slash == std::string::npos) slash = full.size();
    std::string prefix = full.substr(0, slash);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST)
      throw_errno(errno, "mkdir " + prefix);
    pos = slash + 1;
  }
  return full;
}

ReadOnlyBind::ReadOnlyBind(const std::string& src, const std::string& dst) : dst_(dst) {
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    throw_errno(errno, "mount --bind " + src + " " + dst);
  }
  if (::mount(nullptr, dst.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    int e = errno;
    force_unmount(dst);
    throw_errno(e, "mount -o remount,bind,ro " + dst);
  }
  struct statvfs sv {};
  if (::statvfs(dst.c_str(), &sv) != 0 || (sv.f_flag & ST_RDONLY) == 0) {
    force_unmount(dst);
    throw std::runtime_error("bind mount " + dst + " is not read-only");
  }
}

ReadOnlyBind::~ReadOnlyBind() { force_unmount(dst_); }

std::vector<std::string> mount_argv(const MountSpec& spec) {
  std::vector<std::string> argv = spec.run_as;
  argv.insert(argv.end(), {cowfs_bin(), "mount", "--store", spec.store});
  for (const auto& l : spec.lowers) argv.insert(argv.end(), {"--lower", l});
  argv.insert(argv.end(), spec.extra_args.begin(), spec.extra_args.end());
  argv.push_back(spec.mountpoint);
  return argv;
}

CowfsMount::CowfsMount(MountSpec spec) : spec_(std::move(spec)) { mount(); }

CowfsMount::~CowfsMount() {
  if (mounted_) (void)unmount();
}

void CowfsMount::mount() {
  RunResult r = run(mount_argv(spec_), {.cwd = "", .timeout = 60s});
  bool live = is_mounted(spec_.mountpoint);
  if (r.exit_code != 0 || r.timed_out) {
    if (live) {
      mounted_ = true;
      (void)unmount();
    }
    throw std::runtime_error("cowfs mount failed: " + r.describe());
  }
  if (!live) {
    throw std::runtime_error("cowfs mount exited 0 but " + spec_.mountpoint +
                             " is not mounted (the mount must be live when it returns); " +
                             r.describe());
  }
  mounted_ = true;
  auto pids = cowfs_daemons(spec_.mountpoint);
  daemon_ = pids.empty() ? -1 : pids.back();
}

std::string CowfsMount::unmount() {
  if (!mounted_) return "";
  std::string problems;
  if (!is_mounted(spec_.mountpoint)) {
    // Unmounted behind our back (e.g. fusermount3 -u): the daemon should be
    // on its way out.
    mounted_ = false;
    if (daemon_ > 0 && !wait_until([&] { return !process_alive(daemon_); }, 15s)) {
      ::kill(daemon_, SIGKILL);
      problems = "the cowfs daemon (pid " + std::to_string(daemon_) +
                 ") still runs 15 s after its mount went away";
    }
    daemon_ = -1;
    return problems;
  }
  if (daemon_ > 0 && !process_alive(daemon_)) {
    problems += "the cowfs daemon (pid " + std::to_string(daemon_) + ") died while mounted; ";
  }
  std::vector<std::string> argv = spec_.run_as;
  argv.insert(argv.end(), {cowfs_bin(), "umount", spec_.mountpoint});
  RunResult r = run(argv, {.cwd = "", .timeout = 60s});
  if (r.exit_code != 0 || r.timed_out) problems += "cowfs umount failed: " + r.describe() + "; ";
  if (is_mounted(spec_.mountpoint)) {
    if (r.exit_code == 0) problems += "cowfs umount exited 0 but the mountpoint is still mounted; ";
    run({"fusermount3", "-u", "-z", spec_.mountpoint}, {.cwd = "", .timeout = 10s});
    force_unmount(spec_.mountpoint);
  }
  mounted_ = false;
  if (daemon_ > 0 && !wait_until([&] { return !process_alive(daemon_); }, 15s)) {
    problems +=
        "the cowfs daemon (pid " + std::to_string(daemon_) + ") still runs 15 s after unmount; ";
    ::kill(daemon_, SIGKILL);
    wait_until([&] { return !process_alive(daemon_); }, 5s);
  }
  daemon_ = -1;
  if (!problems.empty()) problems.resize(problems.size() - 2);
  return problems;
}

void CowfsMount::remount() {
  std::string problems = unmount();
  if (!problems.empty()) throw std::runtime_error("remount: unmount failed: " + problems);
  mount();
}

void CowfsMount::kill_daemon() {
  for (pid_t pid : cowfs_daemons(spec_.mountpoint)) ::kill(pid, SIGKILL);
}

Watchdog::Watchdog(std::chrono::milliseconds timeout, std::function<void()> on_expire) {
  thread_ = std::thread([this, timeout, fn = std::move(on_expire)] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return done_; })) {
      lock.unlock();
      fn();
    }
  });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

// --- Manifest -------------------------------------------------------------------

Manifest Manifest::take(const std::string& root,
                        const std::function<bool(const std::string&)>& skip) {
  Manifest m;
  struct stat st = lstat_or_throw(root);
  FileInfo fi = info_from(st);
  fi.xattrs = read_xattrs(root);
  m.entries["."] = fi;
  Fd fd = open_or_throw(root, O_RDONLY | O_DIRECTORY);
  walk(fd.get(), "", mount_id_at(AT_FDCWD, root.c_str()), m, skip);
  return m;
}

std::string diff(const Manifest& expected, const Manifest& actual, unsigned fields) {
  std::ostringstream out;
  std::map<std::string, std::vector<std::string>> peers_e, peers_a;
  if (fields & kLinkGroups) {
    peers_e = link_peers(expected);
    peers_a = link_peers(actual);
  }
  for (const auto& [path, e] : expected.entries) {
    auto it = actual.entries.find(path);
    if (it == actual.entries.end()) {
      out << "  missing: " << path << " (" << type_name(e.type) << ")\n";
      continue;
    }
    const FileInfo& a = it->second;
    std::vector<std::string> d;
    bool dir = e.type == S_IFDIR;
    if ((fields & kType) && e.type != a.type) {
      d.push_back("type " + type_name(e.type) + " != " + type_name(a.type));
    }
    if ((fields & kPerm) && e.perm != a.perm)
      d.push_back("mode " + oct(e.perm) + " != " + oct(a.perm));
    if ((fields & kOwner) && (e.uid != a.uid || e.gid != a.gid)) {
      d.push_back("owner " + std::to_string(e.uid) + ":" + std::to_string(e.gid) +
                  " != " + std::to_string(a.uid) + ":" + std::to_string(a.gid));
    }
    if (e.size != a.size && ((!dir && (fields & kSize)) || (dir && (fields & kDirSize)))) {
      d.push_back("size " + std::to_string(e.size) + " != " + std::to_string(a.size));
    }
    if ((fields & kMtime) && e.mtime_ns != a.mtime_ns) {
      d.push_back("mtime " + std::to_string(e.mtime_ns) + " != " + std::to_string(a.mtime_ns));
    }
    if ((fields & kCtime) && e.ctime_ns != a.ctime_ns) {
      d.push_back("ctime " + std::to_string(e.ctime_ns) + " != " + std::to_string(a.ctime_ns));
    }
    if ((fields & kIno) && e.ino != a.ino) {
      d.push_back("ino " + std::to_string(e.ino) + " != " + std::to_string(a.ino));
    }
    if (e.nlink != a.nlink && ((!dir && (fields & kNlink)) || (dir && (fields & kDirNlink)))) {
      d.push_back("nlink " + std::to_string(e.nlink) + " != " + std::to_string(a.nlink));
    }
    if ((fields & kRdev) && (e.type == S_IFCHR || e.type == S_IFBLK) && e.rdev != a.rdev) {
      d.push_back("rdev differs");
    }
    if ((fields & kTarget) && e.target != a.target) {
      d.push_back("target " + quote(e.target) + " != " + quote(a.target));
    }
    if ((fields & kXattrs) && e.xattrs != a.xattrs) {
      d.push_back("xattrs " + xattrs_str(e.xattrs) + " != " + xattrs_str(a.xattrs));
    }
    if ((fields & kContent) && e.type == S_IFREG && a.type == S_IFREG && e.hash != a.hash) {
      d.push_back("content differs");
    }
    if ((fields & kLinkGroups) && !dir) {
      auto pe = peers_e.count(path) ? peers_e[path] : std::vector<std::string>{};
      auto pa = peers_a.count(path) ? peers_a[path] : std::vector<std::string>{};
      if (pe != pa) d.push_back("hard-link peers " + join_list(pe) + " != " + join_list(pa));
    }
    if (!d.empty()) {
      out << "  " << path << ":";
      for (const auto& s : d) out << " " << s << ";";
      out << "\n";
    }
  }
  for (const auto& [path, a] : actual.entries) {
    if (!expected.entries.count(path)) {
      out << "  unexpected: " << path << " (" << type_name(a.type) << ")\n";
    }
  }
  return out.str();
}

// --- Test user ---------------------------------------------------------------

TestUser ensure_test_user() {
  static const char* kUser = "cowfs-test";
  struct passwd* pw = ::getpwnam(kUser);
  if (pw == nullptr) {
    RunResult r = run({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                       "--user-group", kUser});
    if (r.exit_code != 0)
      throw std::runtime_error("useradd " + std::string(kUser) + ": " + r.describe());
    pw = ::getpwnam(kUser);
    if (pw == nullptr) throw std::runtime_error("useradd made no user " + std::string(kUser));
  }
  TestUser u;
  u.name = kUser;
  u.uid = pw->pw_uid;
  u.gid = pw->pw_gid;
  u.run_as = {"setpriv", "--reuid=" + std::to_string(u.uid), "--regid=" + std::to_string(u.gid),
              "--clear-groups", "--"};
  return u;
}

RunResult TestUser::sh(const std::string& script) const {
  std::vector<std::string> argv = run_as;
  argv.insert(argv.end(), {"/bin/sh", "-c", script});
  return run(argv);
}

// --- CowfsTest --------------------------------------------------------------------

namespace {

void set_mtime_ns(const std::string& path, int64_t ns) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(ns / 1'000'000'000LL);
  ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(ns % 1'000'000'000LL);
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    throw_errno(errno, "utimensat " + path);
  }
}

void must(int rc, const std::string& what) {
  if (rc != 0) throw_errno(errno, what);
}

}  // namespace

// The standard lower (index 0):
//   small.txt       kSmall, mtime kSmallMtimeNs
//   big.bin         kBigSize bytes of pattern(seed 1)
//   exec.sh         0755 script
//   owned.txt       owner 4242:4343, mode 0640
//   hard1, dir/hard2   one inode, kLinked
//   dir/a.txt, dir/sub/b.txt, dir/sub/deep/c.txt; dir has xattr user.dirattr=yes
//   empty/          empty directory
//   sym -> small.txt, dsym -> dir, dangling -> does/not/exist
//   fifo            a FIFO
//   xattr.txt       with xattr user.test=1
//   sparse.bin      4 KiB of 'D' at 0 and at 4 MiB, hole between
//   whnames/        foo, bar, .wh.foo, .wh..wh..opq (names peers treat as markers)
//   dir, dir/sub, dir/sub/deep, empty, whnames have mtime kOldDirMtimeNs
void CowfsTest::populate_lower(int index, const std::string& root) {
  if (index != 0) return;
  auto p = [&](const std::string& rel) { return root + "/" + rel; };
  write_file(p("small.txt"), kSmall);
  set_mtime_ns(p("small.txt"), kSmallMtimeNs);
  write_file(p("big.bin"), big_content());
  write_file(p("exec.sh"), "#!/bin/sh\necho hi\n", 0755);
  must(::chmod(p("exec.sh").c_str(), 0755), "chmod exec.sh");
  write_file(p("owned.txt"), "owned by someone else\n", 0640);
  must(::chown(p("owned.txt").c_str(), 4242, 4343), "chown owned.txt");
  must(::mkdir(p("dir").c_str(), 0755), "mkdir dir");
  must(::mkdir(p("dir/sub").c_str(), 0755), "mkdir dir/sub");
  must(::mkdir(p("dir/sub/deep").c_str(), 0700), "mkdir dir/sub/deep");
  write_file(p("dir/a.txt"), "a\n");
  write_file(p("dir/sub/b.txt"), "b\n");
  write_file(p("dir/sub/deep/c.txt"), "c\n");
  must(::setxattr(p("dir").c_str(), "user.dirattr", "yes", 3, 0), "setxattr dir");
  write_file(p("hard1"), kLinked);
  must(::link(p("hard1").c_str(), p("dir/hard2").c_str()), "link hard1");
  must(::mkdir(p("empty").c_str(), 0755), "mkdir empty");
  must(::symlink("small.txt", p("sym").c_str()), "symlink sym");
  must(::symlink("dir", p("dsym").c_str()), "symlink dsym");
  must(::symlink("does/not/exist", p("dangling").c_str()), "symlink dangling");
  must(::mkfifo(p("fifo").c_str(), 0644), "mkfifo");
  write_file(p("xattr.txt"), "has xattr\n");
  must(::setxattr(p("xattr.txt").c_str(), "user.test", "1", 1, 0), "setxattr xattr.txt");
  {
    Fd fd = open_or_throw(p("sparse.bin"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string d(4096, 'D');
    pwrite_all(fd.get(), d, 0);
    pwrite_all(fd.get(), d, 4 << 20);
  }
  must(::mkdir(p("whnames").c_str(), 0755), "mkdir whnames");
  for (const char* n : {"foo", "bar", ".wh.foo", ".wh..wh..opq"}) {
    write_file(p(std::string("whnames/") + n), std::string("content of ") + n + "\n");
  }
  // Old directory times, so that any update through the mount is visible.
  for (const char* d : {"dir", "dir/sub", "dir/sub/deep", "empty", "whnames"}) {
    set_mtime_ns(p(d), kOldDirMtimeNs);
  }
}

bool reference_mode() {
  static const bool on = [] {
    const char* v = std::getenv("COWFS_IT_REFERENCE");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

void CowfsTest::SetUp() {
  ::umask(022);
  tmp_ = std::make_unique<TempDir>();
  std::vector<std::string> lowers;
  for (int i = 0; i < lower_count(); ++i) {
    std::string src = tmp_->mkdir("lower" + std::to_string(i) + "-src");
    populate_lower(i, src);
    std::string dst = tmp_->mkdir("lower" + std::to_string(i));
    binds_.push_back(std::make_unique<ReadOnlyBind>(src, dst));
    lowers.push_back(dst);
  }
  for (const auto& l : lowers) lower_manifests_.push_back(Manifest::take(l));
  store_ = tmp_->sub("store");
  std::string mp = tmp_->mkdir("mnt");
  if (reference_mode()) {
    for (int i = lower_count() - 1; i >= 0; --i) copy_tree(lower_src("", i), mp);
    return;
  }
  mount_ = std::make_unique<CowfsMount>(MountSpec{store_, lowers, mp, mount_args(), {}});
  watchdog_ = std::make_unique<Watchdog>(test_timeout(), [mp, t = test_timeout()] {
    ADD_FAILURE() << "test still running after " << t.count() << " ms: killing the cowfs daemon of "
                  << mp << " to unblock it";
    for (pid_t pid : cowfs_daemons(mp)) ::kill(pid, SIGKILL);
  });
}

void CowfsTest::TearDown() {
  if (mount_) {
    std::string problems = mount_->unmount();
    EXPECT_EQ(problems, "") << "unmounting " << mnt();
  }
  watchdog_.reset();
  if (HasFailure() && !store_.empty()) {
    std::ifstream log(store_ + "/cowfs.log");
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(log, line)) lines.push_back(line);
    size_t from = lines.size() > 40 ? lines.size() - 40 : 0;
    std::cerr << "---- last " << (lines.size() - from) << " lines of " << store_
              << "/cowfs.log ----\n";
    for (size_t i = from; i < lines.size(); ++i) std::cerr << lines[i] << "\n";
    std::cerr << "----\n";
  }
  mount_.reset();
  for (size_t i = 0; i < lower_manifests_.size(); ++i) {
    Manifest now = Manifest::take(lower("", static_cast<int>(i)));
    EXPECT_EQ(diff(lower_manifests_[i], now, kEverything), "")
        << "lower " << i << " changed (lowers must never be written)";
  }
  binds_.clear();
  tmp_.reset();
}

std::string CowfsTest::mnt(const std::string& rel) const {
  std::string base = tmp_->sub("mnt");
  return rel.empty() ? base : base + "/" + rel;
}

std::string CowfsTest::lower(const std::string& rel, int index) const {
  std::string base = tmp_->sub("lower" + std::to_string(index));
  return rel.empty() ? base : base + "/" + rel;
}

std::string CowfsTest::lower_src(const std::string& rel, int index) const {
  std::string base = tmp_->sub("lower" + std::to_string(index) + "-src");
  return rel.empty() ? base : base + "/" + rel;
}

void CowfsTest::remount() {
  if (mount_) mount_->remount();
}

void CowfsTest::expect_top_empty(const std::string& context) const {
  if (reference_mode()) return;
  EXPECT_EQ(top_entries(), std::vector<std::string>{})
      << "the top layer should hold nothing " << context;
}

void CowfsTest::expect_copied_up(const std::string& rel) const {
  if (reference_mode()) return;
  EXPECT_TRUE(top_has(rel)) << rel << " should have been copied into the top layer";
}

std::string CowfsTest::top_tree() const {
  std::ifstream in(store_ + "/stack");
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  if (!last.empty()) {
    std::string id = last.substr(0, last.find(' '));
    std::string tree = store_ + "/layers/" + id + "/tree";
    struct stat st {};
    if (::stat(tree.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return tree;
  }
  std::vector<std::string> layers;
  try {
    layers = list_dir(store_ + "/layers");
  } catch (const std::exception&) {
  }
  if (layers.size() == 1) return store_ + "/layers/" + layers[0] + "/tree";
  throw std::runtime_error("cannot find the top layer's tree in " + store_);
}

std::vector<std::string> CowfsTest::top_entries() const {
  std::set<std::pair<dev_t, ino_t>> sentinels;
  try {
    for (const auto& n : list_dir(store_ + "/whiteouts")) {
      struct stat st {};
      if (::lstat((store_ + "/whiteouts/" + n).c_str(), &st) == 0) {
        sentinels.emplace(st.st_dev, st.st_ino);
      }
    }
  } catch (const std::exception&) {
  }
  std::string tree = top_tree();
  Manifest m = Manifest::take(tree);
  struct stat root = stat_or_throw(tree);
  std::vector<std::string> out;
  for (const auto& [path, fi] : m.entries) {
    if (path == ".") continue;
    if (fi.type == S_IFREG && sentinels.count({root.st_dev, fi.ino})) continue;
    out.push_back(path);
  }
  return out;
}

bool CowfsTest::top_has(const std::string& rel) const {
  struct stat st {};
  return ::lstat((top_tree() + "/" + rel).c_str(), &st) == 0;
}

const std::string& CowfsTest::ref() {
  if (ref_.empty()) {
    std::string r = tmp_->mkdir("ref");
    for (int i = lower_count() - 1; i >= 0; --i) copy_tree(lower_src("", i), r);
    ref_ = r;
  }
  return ref_;
}

void CowfsTest::expect_same_as_ref(unsigned fields, const std::string& context) {
  Manifest want = Manifest::take(ref());
  Manifest got = Manifest::take(mnt());
  EXPECT_EQ(diff(want, got, fields), "")
      << "mount (actual) differs from the plain-directory reference (expected)"
      << (context.empty() ? "" : " " + context);
}

// ---------------------------------------------------------------------------
// FuseRequests.

namespace {
bool write_tracefs(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value << "\n";
  f.flush();
  return static_cast<bool>(f);
}
}  // namespace

FuseRequests::FuseRequests(const std::string& mountpoint) {
  const std::string tracing = "/sys/kernel/tracing";
  if (::geteuid() != 0) {
    why_not_ = "counting FUSE requests needs root (tracefs)";
    return;
  }
  if (::access((tracing + "/events/fuse").c_str(), F_OK) != 0) {
    (void)::mount("nodev", tracing.c_str(), "tracefs", 0, nullptr);
  }
  if (::access((tracing + "/events/fuse/fuse_request_send").c_str(), F_OK) != 0) {
    why_not_ = "this kernel has no fuse tracepoints";
    return;
  }
  static std::atomic<int> next{0};
  std::string dir =
      tracing + "/instances/cowfs-it-" + std::to_string(::getpid()) + "-" + std::to_string(next++);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    why_not_ = "mkdir " + dir + ": " + errno_name(errno);
    return;
  }
  dir_ = dir;
  struct stat st = stat_or_throw(mountpoint);
  // The tracepoint's connection is the kernel's dev_t: major << 20 | minor.
  const uint64_t dev = (static_cast<uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev);
  const std::string ev = dir_ + "/events/fuse/fuse_request_send/";
  if (!write_tracefs(ev + "filter", "connection == " + std::to_string(dev)) ||
      !write_tracefs(ev + "enable", "1") || !write_tracefs(dir_ + "/tracing_on", "1")) {
    throw std::runtime_error("cannot enable the fuse tracepoint in " + dir_);
  }
}

FuseRequests::~FuseRequests() {
  if (dir_.empty()) return;
  write_tracefs(dir_ + "/tracing_on", "0");
  write_tracefs(dir_ + "/events/fuse/fuse_request_send/enable", "0");
  (void)::rmdir(dir_.c_str());
}

int FuseRequests::count(const std::string& opcode) const {
  std::ifstream f(dir_ + "/trace");
  const std::string needle = "(" + opcode + ")";
  int n = 0;
  for (std::string line; std::getline(f, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

namespace {
const char* const kUringParameter = "/sys/module/fuse/parameters/enable_uring";
}

UringParameter::UringParameter(bool on) {
  std::ifstream in(kUringParameter);
  if (!std::getline(in, old_))
    throw std::runtime_error("this kernel has no " + std::string(kUringParameter));
  std::ofstream out(kUringParameter);
  out << (on ? "1" : "0") << std::flush;
  if (!out) throw std::runtime_error(std::string("cannot write ") + kUringParameter);
}

UringParameter::~UringParameter() {
  std::ofstream out(kUringParameter);
  out << (old_ == "Y" ? "1" : "0") << std::flush;
}

std::string mount_transport(const std::string& store, const std::vector<std::string>& run_as) {
  std::vector<std::string> argv = run_as;
  argv.insert(argv.end(), {cowfs_bin(), "layers", "--store", store, "--json"});
  RunResult r = run(argv);
  if (r.exit_code != 0) throw std::runtime_error("cowfs layers --json: " + r.describe());
  static const std::regex member("\"transport\":\"([^\"]*)\"");
  std::smatch m;
  if (!std::regex_search(r.out, m, member)) {
    throw std::runtime_error("no transport in cowfs layers --json: " + r.out);
  }
  return m[1];
}

}  // namespace cowfs_it
