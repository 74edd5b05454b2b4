// The kernel's ordering of requests on an open file, told to ThreadSanitizer.
//
// The kernel sends RELEASE (RELEASEDIR) for a file (directory) handle only
// after every other request on it has been answered, so each handler's use
// of the handle, and its reply, happen before op_release deletes it and
// closes its descriptors. That ordering goes through /dev/fuse — one thread
// writes a reply, another reads the RELEASE (spliced into a pipe) — which
// TSAN does not model: without these calls it reports the deletion as racing
// with the last use (op_read's read_plan, or libfuse's pread of the handle's
// descriptor while it builds a small read's reply, against op_release).
//
// The rule:
//   - ops.cc: a handler that used a handle calls replying(handle) after its
//     last use of it and before it replies; op_release and op_releasedir
//     call releasing(handle) before they touch it;
//   - kernel_io.cc: sending() right before a reply is handed to the kernel,
//     after libfuse has read what the reply carries (reads of the handle's
//     descriptors included).
// In a TSAN build these are __tsan_release on the handle's address (at
// replying and again at sending, on the same thread) and __tsan_acquire at
// releasing: an edge from every reply on a handle to its release. In any
// other build they are nothing. They order only what the kernel orders: a
// race between two requests on one handle is still reported.
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COWFS_KERNEL_ORDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(COWFS_KERNEL_ORDER_TSAN)
#define COWFS_KERNEL_ORDER_TSAN 1
#endif

#if defined(COWFS_KERNEL_ORDER_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace cowfs::kernel_order {

#if defined(COWFS_KERNEL_ORDER_TSAN)
// The handles the request this thread is answering used (at most two:
// copy_file_range's), until its reply is sent.
inline thread_local void* t_used[2] = {nullptr, nullptr};
#endif

// Before the reply to a request that used `handle` (and `other`; null: none).
inline void replying(const void* handle, const void* other = nullptr) {
#if defined(COWFS_KERNEL_ORDER_TSAN)
  t_used[0] = const_cast<void*>(handle);
  t_used[1] = const_cast<void*>(other);
  for (void* h : t_used) {
    if (h != nullptr) __tsan_release(h);
  }
#else
  (void)handle;
  (void)other;
#endif
}

// Right before this thread hands a reply to the kernel.
inline void sending() {
#if defined(COWFS_KERNEL_ORDER_TSAN)
  for (void*& h : t_used) {
    if (h != nullptr) __tsan_release(h);
    h = nullptr;
  }
#endif
}

// At the start of RELEASE or RELEASEDIR of `handle`.
inline void releasing(const void* handle) {
#if defined(COWFS_KERNEL_ORDER_TSAN)
  if (handle != nullptr) __tsan_acquire(const_cast<void*>(handle));
#else
  (void)handle;
#endif
}

}  // namespace cowfs::kernel_order
