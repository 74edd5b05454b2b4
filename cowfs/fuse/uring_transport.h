// FUSE over io_uring: the kernel hands requests to ring entries that the
// daemon registered, one queue per CPU, and takes each reply together with
// the fetch of the next request (one io_uring_enter per request instead of
// a read(2) and a write(2) on /dev/fuse, and the request is served on the
// CPU that made it). Linux 6.14 has it; libfuse 3.14 cannot drive it, so
// this is the part libfuse lacks: the rings. Requests are still decoded and
// answered by libfuse (fuse_session_process_buf); its replies come back
// through the channel shim (kernel_io.cc), which hands those of ring
// requests to take_reply().
//
// /dev/fuse stays in use beside the rings: the kernel sends FORGET and
// INTERRUPT there, and notifications (cache invalidations) go there.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

struct fuse_session;
struct iovec;

namespace cowfs {

// Why FUSE over io_uring cannot be used here (kernel too old, the fuse
// module's parameter off, io_uring not permitted), or "" if it can.
std::string uring_unavailable_reason();

class UringTransport {
 public:
  // Registers the ring entries of every queue (the connection must have
  // been initialized with FUSE_OVER_IO_URING) and serves requests on one
  // thread per queue. payload_size is the largest request or reply payload
  // the kernel negotiated (max_write, max_pages). Returns null and says why
  // in *error if a queue could not be set up.
  static std::unique_ptr<UringTransport> start(fuse_session* se, int fuse_fd, size_t payload_size,
                                               std::string* error);
  ~UringTransport();
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  // Stops serving and joins the queue threads. Requests the kernel queues
  // afterwards wait until the connection ends, as on /dev/fuse once its
  // readers stop.
  void stop();
  // "io_uring: 2 queues x 4 entries of 1024 KiB, 1234 requests" (served so far)
  std::string describe() const;

  // For the channel shim: if the calling thread is serving a ring request
  // and iov is that request's reply, puts the reply into the ring entry,
  // queues its commit, sets *result to what writev(2) would have returned,
  // and returns true. Everything else (notifications, replies to requests
  // that came through /dev/fuse) returns false and goes to /dev/fuse.
  static bool take_reply(const iovec* iov, int count, ssize_t* result);

 private:
  struct Queue;
  UringTransport() = default;

  std::unique_ptr<Queue[]> queues_;
  size_t nr_queues_ = 0;
  size_t depth_ = 0;
  size_t payload_size_ = 0;
  int stop_fd_ = -1;  // an eventfd every queue polls; written to stop them
};

}  // namespace cowfs
