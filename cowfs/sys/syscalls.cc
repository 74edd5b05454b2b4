#include "cowfs/sys/syscalls.h"

#include <dirent.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cowfs/sys/env.h"

namespace cowfs::sys {
namespace {
Errno last_errno() { return Errno{errno}; }
}  // namespace

std::string proc_path(int fd) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/proc/self/fd/%d", fd);
  return buf;
}

Result<std::string> get_xattr_at(int dirfd, const char* name, const char* xname) {
  std::string p = proc_path(dirfd) + "/" + name;
  char buf[64];
  ssize_t n = ::lgetxattr(p.c_str(), xname, buf, sizeof buf);
  if (n < 0) return last_errno();
  return std::string(buf, static_cast<size_t>(n));
}

Result<UniqueFd> open_dir_beneath(int root_fd, const char* rel) {
  return open_beneath(root_fd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW);
}

Result<UniqueFd> open_beneath(int root_fd, const char* rel, int flags) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
  if (fd < 0) return last_errno();
  return UniqueFd(static_cast<int>(fd));
}

Result<UniqueFd> open_at(int dirfd, const char* name, int flags, mode_t mode) {
  int fd = ::openat(dirfd, name, flags | O_CLOEXEC, mode);
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

Result<UniqueFd> reopen(int path_fd, int flags) {
  int fd = ::open(proc_path(path_fd).c_str(), (flags | O_CLOEXEC) & ~O_NOFOLLOW);
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

Result<struct stat> stat_at(int dirfd, const char* name, int flags) {
  struct stat st {};
  if (::fstatat(dirfd, name, &st, flags) < 0) return last_errno();
  return st;
}

Result<struct stat> stat_fd(int fd) {
  struct stat st {};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return last_errno();
  return st;
}

Status mkdir_at(int dirfd, const char* name, mode_t mode) {
  if (::mkdirat(dirfd, name, mode) < 0) return last_errno();
  return {};
}

Status mknod_at(int dirfd, const char* name, mode_t mode, dev_t dev) {
  if (::mknodat(dirfd, name, mode, dev) < 0) return last_errno();
  return {};
}

Status symlink_at(const char* target, int dirfd, const char* name) {
  if (::symlinkat(target, dirfd, name) < 0) return last_errno();
  return {};
}

Result<std::string> readlink_at(int dirfd, const char* name) {
  std::string buf(PATH_MAX + 1, '\0');
  ssize_t n = ::readlinkat(dirfd, name, buf.data(), buf.size());
  if (n < 0) return last_errno();
  if (static_cast<size_t>(n) >= buf.size()) return Errno{ENAMETOOLONG};
  buf.resize(static_cast<size_t>(n));
  return buf;
}

Status unlink_at(int dirfd, const char* name, int flags) {
  if (::unlinkat(dirfd, name, flags) < 0) return last_errno();
  return {};
}

Status rename_at(int olddir, const char* oldname, int newdir, const char* newname, unsigned flags) {
  return env().rename(olddir, oldname, newdir, newname, flags);
}

Status link_at(int olddir, const char* oldname, int newdir, const char* newname, int flags) {
  return env().link(olddir, oldname, newdir, newname, flags);
}

Status fsync_fd(int fd, bool datasync) { return env().fsync(fd, datasync); }

Status syncfs_fd(int fd) { return env().syncfs(fd); }

Status write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = env().write(fd, data.data(), data.size());
    if (!n) return Errno{n.error()};
    if (*n == 0) return Errno{EIO};  // a regular file never takes nothing
    data.remove_prefix(*n);
  }
  return {};
}

Status pwrite_all(int fd, const void* data, size_t n, off_t offset) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    auto w = env().pwrite(fd, p, n, offset);
    if (!w) return Errno{w.error()};
    if (*w == 0) return Errno{EIO};
    p += *w;
    n -= *w;
    offset += static_cast<off_t>(*w);
  }
  return {};
}

Status fsync_dir_fd(int dirfd) {
  // An O_PATH fd cannot be fsynced: open the directory itself.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return last_errno();
  UniqueFd guard(fd);
  return fsync_fd(fd);
}

Status chmod_fd(int path_fd, mode_t mode) {
  if (::fchmodat(AT_FDCWD, proc_path(path_fd).c_str(), mode, 0) < 0) return last_errno();
  return {};
}

Status chown_fd(int path_fd, uid_t uid, gid_t gid) {
  if (::fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    return last_errno();
  }
  return {};
}

Status utimens_fd(int path_fd, const struct timespec times[2]) {
  // AT_EMPTY_PATH acts on the fd's own inode (Linux >= 5.8), never following a symlink.
  if (::utimensat(path_fd, "", times, AT_EMPTY_PATH) < 0) return last_errno();
  return {};
}

Status truncate_fd(int fd, off_t size) {
  if (::ftruncate(fd, size) < 0) return last_errno();
  return {};
}

Status fallocate_fd(int fd, int mode, off_t offset, off_t length) {
  if (::fallocate(fd, mode, offset, length) < 0) return last_errno();
  return {};
}

Result<size_t> copy_range(int in_fd, off_t in_offset, int out_fd, off_t out_offset, size_t length,
                          unsigned flags) {
  loff_t in = in_offset, out = out_offset;
  ssize_t n = ::copy_file_range(in_fd, &in, out_fd, &out, length, flags);
  if (n < 0) return last_errno();
  return static_cast<size_t>(n);
}

Result<std::string> get_xattr(int path_fd, const char* name, bool is_symlink) {
  return get_xattr_at_path(proc_path(path_fd), name, is_symlink);
}

Result<std::string> get_xattr_at_path(const std::string& p, const char* name, bool is_symlink) {
  for (;;) {
    ssize_t n = is_symlink ? ::lgetxattr(p.c_str(), name, nullptr, 0)
                           : ::getxattr(p.c_str(), name, nullptr, 0);
    if (n < 0) return last_errno();
    std::string value(static_cast<size_t>(n), '\0');
    ssize_t m = is_symlink ? ::lgetxattr(p.c_str(), name, value.data(), value.size())
                           : ::getxattr(p.c_str(), name, value.data(), value.size());
    if (m < 0 && errno == ERANGE) continue;  // grew in between
    if (m < 0) return last_errno();
    value.resize(static_cast<size_t>(m));
    return value;
  }
}

Status set_xattr(int path_fd, const char* name, std::string_view value, int flags,
                 bool is_symlink) {
  return set_xattr_at_path(proc_path(path_fd), name, value, flags, is_symlink);
}

Status set_xattr_at_path(const std::string& p, const char* name, std::string_view value, int flags,
                         bool is_symlink) {
  int r = is_symlink ? ::lsetxattr(p.c_str(), name, value.data(), value.size(), flags)
                     : ::setxattr(p.c_str(), name, value.data(), value.size(), flags);
  if (r < 0) return last_errno();
  return {};
}

Result<std::vector<std::string>> list_xattr(int path_fd, bool is_symlink) {
  return list_xattr_at_path(proc_path(path_fd), is_symlink);
}

Result<std::vector<std::string>> list_xattr_at_path(const std::string& p, bool is_symlink) {
  for (;;) {
    ssize_t n =
        is_symlink ? ::llistxattr(p.c_str(), nullptr, 0) : ::listxattr(p.c_str(), nullptr, 0);
    if (n < 0) return last_errno();
    // Most files have none: no second call per copy-up for them.
    if (n == 0) return std::vector<std::string>{};
    std::string buf(static_cast<size_t>(n), '\0');
    ssize_t m = is_symlink ? ::llistxattr(p.c_str(), buf.data(), buf.size())
                           : ::listxattr(p.c_str(), buf.data(), buf.size());
    if (m < 0 && errno == ERANGE) continue;
    if (m < 0) return last_errno();
    std::vector<std::string> names;
    size_t start = 0;
    for (size_t i = 0; i < static_cast<size_t>(m); ++i) {
      if (buf[i] == '\0') {
        names.emplace_back(buf.data() + start, i - start);
        start = i + 1;
      }
    }
    return names;
  }
}

Status remove_xattr(int path_fd, const char* name, bool is_symlink) {
  return remove_xattr_at_path(proc_path(path_fd), name, is_symlink);
}

Status remove_xattr_at_path(const std::string& p, const char* name, bool is_symlink) {
  int r = is_symlink ? ::lremovexattr(p.c_str(), name) : ::removexattr(p.c_str(), name);
  if (r < 0) return last_errno();
  return {};
}

Result<std::vector<DirEntry>> read_dir(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return last_errno();
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    Errno e = last_errno();
    ::close(fd);
    return e;
  }
  std::vector<DirEntry> out;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      if (errno != 0) {
        Errno e = last_errno();
        ::closedir(d);
        return e;
      }
      break;
    }
    if (de->d_name[0] == '.' &&
        (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0'))) {
      continue;
    }
    out.push_back({de->d_name, de->d_ino, de->d_type});
  }
  ::closedir(d);
  return out;
}

}  // namespace cowfs::sys

namespace cowfs::sys {

bool process_in_group(pid_t pid, gid_t gid) {
  if (pid <= 0) return false;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream groups(line.substr(7));
    unsigned long g = 0;
    while (groups >> g) {
      if (g == gid) return true;
    }
    return false;
  }
  return false;
}

}  // namespace cowfs::sys
