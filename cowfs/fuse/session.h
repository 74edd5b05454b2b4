// Serving an Overlay on a FUSE mount. The only interface between main and
// the kernel adapter in ops.cc.
#pragma once

#include <functional>
#include <string>

#include "cowfs/core/overlay.h"

namespace cowfs {

// How requests travel between the kernel and the daemon: FUSE over
// io_uring (Linux 6.14 with the fuse module's enable_uring on) or reads and
// writes of /dev/fuse. Auto takes io_uring where it is available.
enum class IoMode { kAuto, kUring, kDev };

struct SessionConfig {
  std::string mountpoint;
  std::string fsname;  // shown as the mount's source (the store path)
  bool allow_nonempty = false;
  bool allow_other = false;  // let other users in (kernel checks permissions)
  double cache_timeout = 86400.0;
  // The kernel keeps written pages and sends them in batches (on fsync,
  // close, memory pressure) instead of one request per write(2).
  bool writeback_cache = true;
  IoMode io = IoMode::kAuto;
};

// Why FUSE over io_uring cannot be used here, or "" if it can
// (uring_transport.cc).
std::string uring_unavailable_reason();

// The transport serving the mount: "io_uring: ..." or "/dev/fuse ...".
std::string session_transport();

// Mounts, calls on_mounted once the kernel accepted the mount, serves
// requests until unmounted or signalled, then unmounts. Returns 0 on a clean
// end, otherwise an errno-like code; mount failures are described in *error.
// on_mounted receives the handle through which the kernel's caches can be
// invalidated; it is valid until run_session returns.
// on_stopping runs once requests stop being served, before the kernel handle
// goes away.
int run_session(Overlay& overlay, const SessionConfig& cfg,
                const std::function<void(KernelCache*)>& on_mounted,
                const std::function<void()>& on_stopping, std::string* error);

}  // namespace cowfs
