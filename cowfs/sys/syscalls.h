// Thin wrappers of the syscalls cowfs makes on files of the store and the
// lowers. Each returns the errno captured right after the call, so nothing
// reads errno two lines later.
//
// Every call that makes data durable or moves it into place (fsync,
// fdatasync, syncfs, rename, write, pwrite) is made through these wrappers,
// which go through Env (env.h), so that tests can fail any of them. Other
// syscalls (stat, open, xattrs, lseek...) are also made directly where a
// wrapper would only hide them; a result of those is checked where it is
// made.
//
// Files are always addressed relative to a directory fd: full paths are
// never built, which keeps paths up to PATH_MAX working.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "cowfs/sys/result.h"
#include "cowfs/sys/unique_fd.h"

namespace cowfs::sys {

Result<UniqueFd> open_at(int dirfd, const char* name, int flags, mode_t mode = 0);
// Reopens an O_PATH fd with real access flags through /proc/self/fd.
Result<UniqueFd> reopen(int path_fd, int flags);
Result<struct stat> stat_at(int dirfd, const char* name, int flags = AT_SYMLINK_NOFOLLOW);
Result<struct stat> stat_fd(int fd);
Status mkdir_at(int dirfd, const char* name, mode_t mode);
Status mknod_at(int dirfd, const char* name, mode_t mode, dev_t dev);
Status symlink_at(const char* target, int dirfd, const char* name);
Result<std::string> readlink_at(int dirfd, const char* name);
Status unlink_at(int dirfd, const char* name, int flags);
// Through Env (env.h).
Status rename_at(int olddir, const char* oldname, int newdir, const char* newname,
                 unsigned flags = 0);
// Through Env (env.h).
Status link_at(int olddir, const char* oldname, int newdir, const char* newname, int flags);
// Through Env (env.h): fsync, fdatasync, syncfs, and writes of a whole
// buffer (a short write is continued; an error returns its errno).
Status fsync_fd(int fd, bool datasync = false);
Status syncfs_fd(int fd);
Status write_all(int fd, std::string_view data);
Status pwrite_all(int fd, const void* data, size_t n, off_t offset);
// fsync(2) of the directory dirfd (which may be an O_PATH fd).
Status fsync_dir_fd(int dirfd);

// Metadata changes on an O_PATH fd (via /proc/self/fd, never following a
// symlink that the fd itself names).
Status chmod_fd(int path_fd, mode_t mode);
// Whether process pid has gid among its supplementary groups
// (/proc/PID/status); false when the process is gone.
bool process_in_group(pid_t pid, gid_t gid);
Status chown_fd(int path_fd, uid_t uid, gid_t gid);
// times as for utimensat(2) (UTIME_NOW, UTIME_OMIT allowed).
Status utimens_fd(int path_fd, const struct timespec times[2]);
Status truncate_fd(int fd, off_t size);
// fallocate(2) and copy_file_range(2) of fds open for writing (the latter
// returns the bytes copied; offsets are explicit, the fds' own stay put).
Status fallocate_fd(int fd, int mode, off_t offset, off_t length);
Result<size_t> copy_range(int in_fd, off_t in_offset, int out_fd, off_t out_offset, size_t length,
                          unsigned flags);

// Extended attributes of the inode an fd (O_PATH allowed) refers to.
// is_symlink picks the l* variants: user xattrs do not exist on symlinks.
Result<std::string> get_xattr(int path_fd, const char* name, bool is_symlink = false);
Status set_xattr(int path_fd, const char* name, std::string_view value, int flags,
                 bool is_symlink = false);
Result<std::vector<std::string>> list_xattr(int path_fd, bool is_symlink = false);
Status remove_xattr(int path_fd, const char* name, bool is_symlink = false);
// The same on a path: a symlink's own xattrs are reached through its
// directory ("/proc/self/fd/<dirfd>/<name>"), since its fd's magic link is
// not the symlink.
Result<std::string> get_xattr_at_path(const std::string& path, const char* name, bool is_symlink);
Status set_xattr_at_path(const std::string& path, const char* name, std::string_view value,
                         int flags, bool is_symlink);
Result<std::vector<std::string>> list_xattr_at_path(const std::string& path, bool is_symlink);
Status remove_xattr_at_path(const std::string& path, const char* name, bool is_symlink);

std::string proc_path(int fd);

// lgetxattr of dirfd/name without opening it.
Result<std::string> get_xattr_at(int dirfd, const char* name, const char* xname);

// Opens rel below root_fd as O_PATH directory, never leaving root_fd and
// never following a symlink (for redirects stored in the store).
Result<UniqueFd> open_dir_beneath(int root_fd, const char* rel);
Result<UniqueFd> open_beneath(int root_fd, const char* rel, int flags);

struct DirEntry {
  std::string name;
  ino_t ino;
  unsigned char type;
};
// All entries except "." and "..", read from a fresh descriptor of dirfd.
Result<std::vector<DirEntry>> read_dir(int dirfd);

}  // namespace cowfs::sys
