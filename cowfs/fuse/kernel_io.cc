#include "cowfs/fuse/kernel_io.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "cowfs/fuse/kernel_order.h"

namespace cowfs {
namespace {

// The INIT request comes once, before any other, on the session's own fd.
std::atomic<uint64_t> g_init_unique{0};
std::atomic<bool> g_kernel_offers_v2{false};

ssize_t io_read(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n = ::read(fd, buf, len);
  if (n >= static_cast<ssize_t>(sizeof(fuse_in_header) + sizeof(uint32_t) * 4)) {
    fuse_in_header in{};
    std::memcpy(&in, buf, sizeof in);
    if (in.opcode == FUSE_INIT) {
      uint32_t flags = 0;
      std::memcpy(&flags, static_cast<char*>(buf) + sizeof in + offsetof(fuse_init_in, flags),
                  sizeof flags);
      g_kernel_offers_v2 = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      g_init_unique = in.unique;
    }
  }
  return n;
}

ssize_t io_writev(int fd, iovec* iov, int count, void* /*userdata*/) {
  kernel_order::sending();
  const uint64_t init = g_init_unique.load(std::memory_order_relaxed);
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    fuse_out_header out{};
    std::memcpy(&out, iov[0].iov_base, sizeof out);
    if (out.unique == init) g_init_unique = 0;  // the one INIT reply
    if (out.unique == init && out.error == 0 && g_kernel_offers_v2) {
      auto* arg = static_cast<char*>(iov[1].iov_base) + offsetof(fuse_init_out, flags);
      uint32_t flags = 0;
      std::memcpy(&flags, arg, sizeof flags);
      flags |= FUSE_HANDLE_KILLPRIV_V2;
      std::memcpy(arg, &flags, sizeof flags);
    }
  }
  return ::writev(fd, iov, count);
}

ssize_t io_splice(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned flags,
                  void* /*userdata*/) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

ssize_t io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned flags,
                       void* userdata) {
  kernel_order::sending();
  return io_splice(fdin, offin, fdout, offout, len, flags, userdata);
}

}  // namespace

int install_kernel_io(fuse_session* se) {
  static const fuse_custom_io io = {
      .writev = io_writev,
      .read = io_read,
      .splice_receive = io_splice,
      .splice_send = io_splice_send,
  };
  return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

}  // namespace cowfs
