// The channel between libfuse and /dev/fuse, for what libfuse 3.14 cannot
// negotiate itself.
//
// The kernel asks for security.capability before every write to a FUSE
// file, a full round trip per write(2), unless the filesystem takes over
// killing privileges (FUSE_HANDLE_KILLPRIV_V2); then it marks the
// superblock SB_NOSEC and asks once per inode. libfuse 3.14 does not know
// the flag, so this shim reads the INIT request and adds it to the reply
// when the kernel offered it. Everything else passes through untouched.
// The overlay keeps its side of the bargain: a write or truncate by a
// caller other than root clears set-user-ID and set-group-ID
// (Overlay::drop_set_id), and the store's filesystem drops file
// capabilities on any write.
#pragma once

struct fuse_session;

namespace cowfs {

// Installs the shim on a mounted session. Returns 0 or -errno.
int install_kernel_io(fuse_session* se);

}  // namespace cowfs
