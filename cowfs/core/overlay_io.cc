// Overlay: the data changes of open files (write, fallocate,
// copy_file_range), each with what a local filesystem does around it.
#include <fcntl.h>
#include <sys/stat.h>

#include "cowfs/core/overlay.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {

Result<size_t> Overlay::write(FileHandle& fh, off_t offset, size_t length, const Caller& caller,
                              const CopyIn& copy_in) {
  auto lease = write_lease(fh, offset, length);
  if (!lease) return Errno{lease.error()};
  // As the kernel does, privileges go before the data changes.
  if (Status s = drop_set_id(lease->fd, caller); !s.ok()) {
    lease->abandon();
    return Errno{s.error()};
  }
  ssize_t n = 0;
  if (!kernel_keeps_mtime_.load()) {
    n = copy_in(lease->fd, offset);
  } else {
    StripeLock times(times_mu_, fh.node->ino);
    auto st = sys::stat_fd(lease->fd);
    if (!st) {
      lease->abandon();
      return Errno{st.error()};
    }
    n = copy_in(lease->fd, offset);
    // Not reported: the bytes are written, and an error would make the
    // caller retry a write that happened. A time that cannot be put back is
    // the write's own, as without the writeback cache, until the kernel
    // sends its times.
    const struct timespec t[2] = {{0, UTIME_OMIT}, st->st_mtim};
    (void)sys::utimens_fd(lease->fd, t);
  }
  if (n < static_cast<ssize_t>(length)) lease->abandon();
  if (n < 0) return Errno{static_cast<int>(-n)};
  return static_cast<size_t>(n);
}

Status Overlay::fallocate(FileHandle& fh, int mode, off_t offset, off_t length,
                          const Caller& caller) {
  if (offset < 0 || length <= 0) return Errno{EINVAL};
  // Not a write: every chunk it touches keeps its content from below.
  auto lease = write_lease(fh, offset, static_cast<size_t>(length), false);
  if (!lease) return Errno{lease.error()};
  // A local filesystem's fallocate is a modification: set-ID bits go first,
  // as for write.
  if (Status s = drop_set_id(lease->fd, caller); !s.ok()) {
    lease->abandon();
    return s;
  }
  return sys::fallocate_fd(lease->fd, mode, offset, length);
}

Result<size_t> Overlay::copy_file_range(FileHandle& in, off_t in_offset, FileHandle& out,
                                        off_t out_offset, size_t length, unsigned flags,
                                        const Caller& caller) {
  if (is_chunked(in) || is_chunked(out)) return Errno{EOPNOTSUPP};
  auto from = io_fd(in);
  if (!from) return Errno{from.error()};
  auto lease = write_lease(out, out_offset, length);
  if (!lease) return Errno{lease.error()};
  // Writes into out: its set-ID bits go first, as for write.
  if (Status s = drop_set_id(lease->fd, caller); !s.ok()) {
    lease->abandon();
    return Errno{s.error()};
  }
  return sys::copy_range(*from, in_offset, lease->fd, out_offset, length, flags);
}

}  // namespace cowfs
