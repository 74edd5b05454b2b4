#include "cowfs/fuse/kernel_io.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

#include "cowfs/fuse/kernel_order.h"
#include "cowfs/fuse/uring_abi.h"
#include "cowfs/fuse/uring_transport.h"
#include "cowfs/sys/mutex.h"

namespace cowfs {
namespace {

// One session per process: the hooks of fuse_custom_io get the session's
// userdata (the op handlers' context), so the channel's state lives here.
std::atomic<fuse_session*> g_session{nullptr};
std::atomic<bool> g_want_uring{false};
// The INIT request comes once, before any other, on the session's own fd.
std::atomic<uint64_t> g_init_unique{0};
std::atomic<bool> g_kernel_offers_v2{false};
std::atomic<bool> g_negotiates_uring{false};

Mutex g_transport_mu;
std::unique_ptr<UringTransport> g_transport GUARDED_BY(g_transport_mu);
std::string g_transport_name GUARDED_BY(g_transport_mu) = "/dev/fuse";

template <typename T>
T field(const void* base, size_t offset) {
  T v{};
  std::memcpy(&v, static_cast<const char*>(base) + offset, sizeof v);
  return v;
}

template <typename T>
void set_field(void* base, size_t offset, T v) {
  std::memcpy(static_cast<char*>(base) + offset, &v, sizeof v);
}

ssize_t io_read(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n = ::read(fd, buf, len);
  if (n >= static_cast<ssize_t>(sizeof(fuse_in_header) + sizeof(fuse_init_in))) {
    const auto in = field<fuse_in_header>(buf, 0);
    if (in.opcode == FUSE_INIT) {
      const char* arg = static_cast<const char*>(buf) + sizeof in;
      const auto flags = field<uint32_t>(arg, offsetof(fuse_init_in, flags));
      const auto flags2 = field<uint32_t>(arg, offsetof(fuse_init_in, flags2));
      g_kernel_offers_v2 = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      const bool offers_uring =
          (flags & FUSE_INIT_EXT) != 0 && (flags2 & uring_abi::kOverIoUringFlags2) != 0;
      if (g_want_uring && !offers_uring) {
        MutexLock lock(g_transport_mu);
        g_transport_name = "/dev/fuse (the kernel did not offer io_uring in INIT)";
        spdlog::info("io: {}", g_transport_name);
      }
      g_negotiates_uring = g_want_uring && offers_uring;
      g_init_unique = in.unique;
    }
  }
  return n;
}

// Rewrites the INIT reply's flags before the kernel sees them. Returns the
// largest payload a request or reply can carry (what a ring entry needs).
size_t negotiate(iovec* iov) {
  auto* arg = iov[1].iov_base;
  auto flags = field<uint32_t>(arg, offsetof(fuse_init_out, flags));
  if (g_kernel_offers_v2) flags |= FUSE_HANDLE_KILLPRIV_V2;
  if (g_negotiates_uring) {
    flags |= FUSE_INIT_EXT;
    auto flags2 = field<uint32_t>(arg, offsetof(fuse_init_out, flags2));
    set_field(arg, offsetof(fuse_init_out, flags2), flags2 | uring_abi::kOverIoUringFlags2);
  }
  set_field(arg, offsetof(fuse_init_out, flags), flags);
  const auto max_write = field<uint32_t>(arg, offsetof(fuse_init_out, max_write));
  const auto max_pages = field<uint16_t>(arg, offsetof(fuse_init_out, max_pages));
  return std::max<size_t>(max_write, size_t{max_pages} * 4096);
}

void start_rings(size_t payload_size) {
  std::string error;
  auto transport =
      UringTransport::start(g_session, fuse_session_fd(g_session), payload_size, &error);
  MutexLock lock(g_transport_mu);
  if (!transport) {
    // The kernel keeps sending requests to /dev/fuse until every queue has
    // an entry, so serving goes on there.
    g_transport_name = "/dev/fuse (io_uring setup failed: " + error + ")";
    spdlog::error("io: {}", g_transport_name);
    return;
  }
  g_transport = std::move(transport);
  spdlog::info("io: {}", g_transport->describe());
}

ssize_t io_writev(int fd, iovec* iov, int count, void* /*userdata*/) {
  kernel_order::sending();
  ssize_t taken = 0;
  if (UringTransport::take_reply(iov, count, &taken)) return taken;
  const uint64_t init = g_init_unique.load(std::memory_order_relaxed);
  bool start_uring = false;
  size_t payload_size = 0;
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= sizeof(fuse_init_out)) {
    const auto out = field<fuse_out_header>(iov[0].iov_base, 0);
    if (out.unique == init) {
      g_init_unique = 0;  // the one INIT reply
      if (out.error == 0) {
        payload_size = negotiate(iov);
        start_uring = g_negotiates_uring;
      }
    }
  }
  const ssize_t n = ::writev(fd, iov, count);
  // Rings register only on an initialized connection: the kernel took
  // the INIT reply inside this writev.
  if (start_uring && n >= 0) start_rings(payload_size);
  return n;
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

int install_kernel_io(fuse_session* se, bool want_uring, const std::string& why_dev) {
  static const fuse_custom_io io = {
      .writev = io_writev,
      .read = io_read,
      .splice_receive = io_splice,
      .splice_send = io_splice_send,
  };
  g_session = se;
  g_want_uring = want_uring;
  if (!want_uring) {
    MutexLock lock(g_transport_mu);
    g_transport_name = "/dev/fuse (" + why_dev + ")";
  }
  return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

bool kernel_io_negotiates_uring() { return g_negotiates_uring; }

std::string kernel_io_transport() {
  MutexLock lock(g_transport_mu);
  return g_transport ? g_transport->describe() : g_transport_name;
}

void stop_kernel_io() {
  std::unique_ptr<UringTransport> transport;
  {
    MutexLock lock(g_transport_mu);
    transport = std::move(g_transport);
  }
  if (transport) transport->stop();
}

}  // namespace cowfs
