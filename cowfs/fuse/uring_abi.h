// The FUSE-over-io_uring part of the kernel's FUSE ABI (protocol 7.42,
// Linux 6.14), declared here because Debian 12's <linux/fuse.h> stops at
// 7.38. Written from the kernel's documented interface
// (include/uapi/linux/fuse.h, Documentation/filesystems/fuse-io-uring.rst);
// the static_asserts pin the layout the kernel expects.
#pragma once

#include <linux/fuse.h>

#include <cstddef>
#include <cstdint>

namespace cowfs::uring_abi {

// INIT flag: the daemon serves requests through io_uring. Bit 41 of the
// 64-bit flags, so bit 9 of fuse_init_in/out.flags2.
inline constexpr uint64_t kOverIoUring = 1ULL << 41;
inline constexpr uint32_t kOverIoUringFlags2 = static_cast<uint32_t>(kOverIoUring >> 32);

// The sub-commands of IORING_OP_URING_CMD on /dev/fuse.
inline constexpr uint32_t kCmdRegister = 1;
inline constexpr uint32_t kCmdCommitAndFetch = 2;

inline constexpr size_t kInOutHeaderSize = 128;
inline constexpr size_t kOpInOutSize = 128;

struct EntInOut {
  uint64_t flags;
  // The request's unique id; a commit names it.
  uint64_t commit_id;
  // Bytes of the payload buffer used: the request's arguments after the
  // per-operation header, or the reply's arguments after fuse_out_header.
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};

// The header buffer of a ring entry (iov[0] at registration).
struct ReqHeader {
  // fuse_in_header of a request; fuse_out_header of its reply.
  char in_out[kInOutHeaderSize];
  // The per-operation header (the request's first argument), e.g. fuse_write_in.
  char op_in[kOpInOutSize];
  EntInOut ring_ent_in_out;
};

// In the 80-byte command area of a 128-byte SQE.
struct CmdReq {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

static_assert(sizeof(EntInOut) == 32);
static_assert(sizeof(ReqHeader) == 288);
static_assert(offsetof(ReqHeader, ring_ent_in_out) == 256);
static_assert(sizeof(CmdReq) == 24);
static_assert(sizeof(fuse_in_header) <= kInOutHeaderSize);

}  // namespace cowfs::uring_abi
