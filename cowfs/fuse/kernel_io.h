// The channel between libfuse and /dev/fuse, for what libfuse 3.14 cannot
// negotiate itself.
//
// The kernel asks for security.capability before every write to a FUSE
// file, a full round trip per write(2), unless the filesystem takes over
// killing privileges (FUSE_HANDLE_KILLPRIV_V2); then it marks the
// superblock SB_NOSEC and asks once per inode. libfuse 3.14 does not know
// the flag, so this shim reads the INIT request and adds it to the reply
// when the kernel offered it. The overlay keeps its side of the bargain: a
// write or truncate by a caller other than root clears set-user-ID and
// set-group-ID (Overlay::drop_set_id), and the store's filesystem drops
// file capabilities on any write.
//
// It negotiates FUSE over io_uring the same way (FUSE_OVER_IO_URING in the
// INIT reply's flags2), starts the rings once the kernel has taken the
// reply, and hands the replies of ring requests to them
// (uring_transport.h). Everything else passes through untouched.
#pragma once

#include <string>

struct fuse_session;

namespace cowfs {

// Installs the shim on a mounted session. want_uring: negotiate io_uring if
// the kernel offers it; else why_dev says why not. Returns 0 or -errno.
int install_kernel_io(fuse_session* se, bool want_uring, const std::string& why_dev);

// True from the INIT request on if io_uring is being negotiated. Replies
// must then come back through writev (the rings copy them), so the session
// must not ask for splice replies.
bool kernel_io_negotiates_uring();

// The transport serving requests, for the log and `cowfs layers --json`:
// "io_uring: ..." or "/dev/fuse".
std::string kernel_io_transport();

// Stops the rings; after the session loop has returned.
void stop_kernel_io();

}  // namespace cowfs
