#include "cowfs/fuse/uring_transport.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "cowfs/fuse/uring_abi.h"

namespace cowfs {
namespace {

namespace abi = uring_abi;

constexpr size_t kPage = 4096;
// Entries per queue. A queue is served by one thread, one request at a
// time: more entries only let the kernel hand over the next requests
// without waiting for a commit. Each holds a payload buffer of max_write.
constexpr size_t kDepth = 4;
// Room before the payload where a request is laid out as it would come
// from /dev/fuse (fuse_in_header, then the operation's header), so that
// libfuse decodes it and a write's data is used where the kernel put it,
// page-aligned (direct I/O needs that).
constexpr size_t kPrefix = kPage;
static_assert(kPrefix >= sizeof(fuse_in_header) + abi::kOpInOutSize);

bool is_teardown(int err) {
  return err == ENOTCONN || err == ECONNABORTED || err == ECANCELED || err == ENODEV;
}

// The kernel has one queue per possible CPU and picks the queue of the CPU
// a request is made on; every queue needs an entry before it uses any.
size_t possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  size_t highest = 0;
  if (in >> text) {
    std::istringstream list(text);
    std::string range;
    while (std::getline(list, range, ',')) {
      const auto dash = range.find('-');
      const std::string last = dash == std::string::npos ? range : range.substr(dash + 1);
      highest = std::max<size_t>(highest, std::strtoul(last.c_str(), nullptr, 10));
    }
    return highest + 1;
  }
  const long n = ::sysconf(_SC_NPROCESSORS_CONF);
  return n > 0 ? static_cast<size_t>(n) : 1;
}

std::string read_line(const char* path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

int create_ring(io_uring* ring, unsigned entries) {
  // Completions (the kernel's hand-over of a request) run when this
  // thread waits for them, not by interrupting what it is doing.
  io_uring_params p{};
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int r = io_uring_queue_init_params(entries, ring, &p);
  if (r == -EINVAL) {
    p = {};
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN;
    r = io_uring_queue_init_params(entries, ring, &p);
  }
  return r;
}

void prep_cmd(io_uring_sqe* sqe, int fuse_fd, uint32_t op, unsigned qid, uint64_t commit_id,
              iovec* iov) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fuse_fd, iov, iov != nullptr ? 2 : 0, 0);
  sqe->cmd_op = op;
  std::memset(sqe->cmd, 0, 80);
  abi::CmdReq req{};
  req.commit_id = commit_id;
  req.qid = static_cast<uint16_t>(qid);
  std::memcpy(sqe->cmd, &req, sizeof req);
}

struct Entry {
  abi::ReqHeader header{};
  iovec iov[2]{};
  char* buffer = nullptr;  // kPrefix + payload size, page-aligned
  char* payload = nullptr;
  void* queue = nullptr;  // the UringTransport::Queue serving it
  uint64_t commit_id = 0;
  bool replied = false;
};

// The ring entry whose request this thread is serving.
thread_local Entry* t_serving = nullptr;

}  // namespace

struct UringTransport::Queue {
  unsigned qid = 0;
  fuse_session* se = nullptr;
  int fuse_fd = -1;
  int stop_fd = -1;
  size_t payload_size = 0;
  io_uring ring{};
  bool have_ring = false;
  std::vector<Entry> entries;
  std::thread thread;
  std::promise<std::string> started;
  std::atomic<uint64_t> served{0};  // requests taken from the ring

  ~Queue() {
    for (auto& e : entries) std::free(e.buffer);
  }

  void run() {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(qid, &cpus);
    // Served on the CPU the requests come from; if that CPU is not ours
    // to use, anywhere.
    (void)::pthread_setaffinity_np(::pthread_self(), sizeof cpus, &cpus);
    std::string err = setup();
    started.set_value(err);
    if (err.empty()) serve();
    if (have_ring) io_uring_queue_exit(&ring);
  }

  std::string setup() {
    if (int r = create_ring(&ring, static_cast<unsigned>(kDepth + 1)); r < 0) {
      return std::string("cannot create an io_uring: ") + std::strerror(-r);
    }
    have_ring = true;
    for (auto& e : entries) {
      void* mem = nullptr;
      if (::posix_memalign(&mem, kPage, kPrefix + payload_size) != 0) return "out of memory";
      e.buffer = static_cast<char*>(mem);
      e.payload = e.buffer + kPrefix;
      e.iov[0] = {&e.header, sizeof e.header};
      e.iov[1] = {e.payload, payload_size};
      e.queue = this;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      prep_cmd(sqe, fuse_fd, abi::kCmdRegister, qid, 0, e.iov);
      io_uring_sqe_set_data(sqe, &e);
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_poll_add(sqe, stop_fd, POLLIN);
    io_uring_sqe_set_data(sqe, nullptr);
    if (int r = io_uring_submit(&ring); r < 0) {
      return std::string("cannot submit to the io_uring: ") + std::strerror(-r);
    }
    // A refused registration completes at once; an accepted one waits for
    // a request.
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr && cqe->res < 0) {
      return std::string("the kernel refused a ring entry: ") + std::strerror(-cqe->res);
    }
    return "";
  }

  void serve() {
    size_t live = entries.size();
    std::vector<std::pair<Entry*, int>> batch;
    batch.reserve(entries.size() + 1);
    bool stopping = false;
    while (live > 0 && !stopping) {
      int r = io_uring_submit_and_wait(&ring, 1);
      if (r < 0 && r != -EINTR) {
        spdlog::error("io_uring queue {}: {}", qid, std::strerror(-r));
        break;
      }
      batch.clear();
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring, head, cqe) {
        if (batch.size() == batch.capacity()) break;
        batch.emplace_back(static_cast<Entry*>(io_uring_cqe_get_data(cqe)), cqe->res);
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
      for (size_t i = 0; i < batch.size(); ++i) {
        auto [e, res] = batch[i];
        if (e == nullptr) {
          stopping = true;
          continue;
        }
        if (res < 0) {
          --live;
          if (!is_teardown(-res)) {
            spdlog::error("io_uring queue {}: the kernel failed an entry: {}", qid,
                          std::strerror(-res));
          }
          continue;
        }
        serve_one(*e);
        if (i + 1 < batch.size()) io_uring_submit(&ring);
      }
    }
  }

  void serve_one(Entry& e) {
    fuse_in_header in{};
    std::memcpy(&in, e.header.in_out, sizeof in);
    const uint32_t payload = e.header.ring_ent_in_out.payload_sz;
    e.commit_id = in.unique;
    e.replied = false;
    // The kernel puts a request's first argument (the operation's header)
    // in op_in and the rest in the payload; len covers all of them.
    if (in.len < sizeof in + payload || in.len - sizeof in - payload > abi::kOpInOutSize ||
        payload > payload_size) {
      spdlog::error("io_uring queue {}: malformed request (opcode {}, len {}, payload {})", qid,
                    in.opcode, in.len, payload);
      reply_error(e, EIO);
      return;
    }
    served.fetch_add(1, std::memory_order_relaxed);
    const size_t op_len = in.len - sizeof in - payload;
    char* start = e.payload - sizeof in - op_len;
    std::memcpy(start, &in, sizeof in);
    std::memcpy(start + sizeof in, e.header.op_in, op_len);
    fuse_buf buf{};
    buf.mem = start;
    buf.size = in.len;
    t_serving = &e;
    fuse_session_process_buf(se, &buf);
    t_serving = nullptr;
    if (!e.replied) {
      // Every handler replies before it returns; a request left without a
      // reply would hold its caller and this entry forever.
      spdlog::error("io_uring queue {}: no reply to opcode {}; answering EIO", qid, in.opcode);
      reply_error(e, EIO);
    }
  }

  void reply_error(Entry& e, int err) {
    fuse_out_header out{};
    out.len = sizeof out;
    out.error = -err;
    out.unique = e.commit_id;
    std::memcpy(e.header.in_out, &out, sizeof out);
    e.header.ring_ent_in_out.payload_sz = 0;
    e.replied = true;
    commit(e);
  }

  // Queued; the serve loop submits it (with the wait for the next request).
  void commit(Entry& e) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) {
      io_uring_submit(&ring);
      sqe = io_uring_get_sqe(&ring);
    }
    prep_cmd(sqe, fuse_fd, abi::kCmdCommitAndFetch, qid, e.commit_id, nullptr);
    io_uring_sqe_set_data(sqe, &e);
  }
};

std::unique_ptr<UringTransport> UringTransport::start(fuse_session* se, int fuse_fd,
                                                      size_t payload_size, std::string* error) {
  std::unique_ptr<UringTransport> t(new UringTransport());
  t->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (t->stop_fd_ < 0) {
    *error = std::string("eventfd: ") + std::strerror(errno);
    return nullptr;
  }
  t->nr_queues_ = possible_cpus();
  t->depth_ = kDepth;
  t->payload_size_ = (std::max(payload_size, size_t{8192}) + kPage - 1) / kPage * kPage;
  t->queues_ = std::make_unique<Queue[]>(t->nr_queues_);
  for (size_t q = 0; q < t->nr_queues_; ++q) {
    Queue& queue = t->queues_[q];
    queue.qid = static_cast<unsigned>(q);
    queue.se = se;
    queue.fuse_fd = fuse_fd;
    queue.stop_fd = t->stop_fd_;
    queue.payload_size = t->payload_size_;
    queue.entries.resize(kDepth);
  }
  for (size_t q = 0; q < t->nr_queues_; ++q) {
    Queue& queue = t->queues_[q];
    auto started = queue.started.get_future();
    queue.thread = std::thread([&queue] { queue.run(); });
    if (std::string err = started.get(); !err.empty()) {
      *error = "queue " + std::to_string(q) + ": " + err;
      t->stop();
      return nullptr;
    }
  }
  return t;
}

UringTransport::~UringTransport() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void UringTransport::stop() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
  }
  for (size_t q = 0; q < nr_queues_; ++q) {
    if (queues_[q].thread.joinable()) queues_[q].thread.join();
  }
}

std::string UringTransport::describe() const {
  uint64_t served = 0;
  for (size_t q = 0; q < nr_queues_; ++q) served += queues_[q].served.load();
  return "io_uring: " + std::to_string(nr_queues_) + " queues x " + std::to_string(depth_) +
         " entries of " + std::to_string(payload_size_ >> 10) + " KiB, " + std::to_string(served) +
         " requests";
}

bool UringTransport::take_reply(const iovec* iov, int count, ssize_t* result) {
  Entry* e = t_serving;
  if (e == nullptr || count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return false;
  fuse_out_header out{};
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  if (out.unique != e->commit_id) return false;
  if (e->replied) {
    // As /dev/fuse answers a second reply: the request is gone.
    errno = ENOENT;
    *result = -1;
    return true;
  }
  auto& queue = *static_cast<Queue*>(e->queue);
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  const size_t payload = total - sizeof out;
  if (payload > queue.payload_size) {
    spdlog::error("io_uring queue {}: a reply of {} bytes does not fit; answering EIO", queue.qid,
                  payload);
    queue.reply_error(*e, EIO);
    *result = static_cast<ssize_t>(total);
    return true;
  }
  char* dst = e->payload;
  for (int i = 0; i < count; ++i) {
    const char* src = static_cast<const char*>(iov[i].iov_base);
    size_t len = iov[i].iov_len;
    if (i == 0) {
      src += sizeof out;
      len -= sizeof out;
    }
    if (len > 0) std::memcpy(dst, src, len);
    dst += len;
  }
  std::memcpy(e->header.in_out, &out, sizeof out);
  e->header.ring_ent_in_out.payload_sz = static_cast<uint32_t>(payload);
  e->replied = true;
  queue.commit(*e);
  *result = static_cast<ssize_t>(total);
  return true;
}

std::string uring_unavailable_reason() {
  // Opening /dev/fuse loads the fuse module, whose parameter we read.
  if (int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC); fd >= 0) ::close(fd);
  const char* param = "/sys/module/fuse/parameters/enable_uring";
  if (::access(param, F_OK) != 0) {
    return "this kernel has no FUSE over io_uring (Linux 6.14 or later; " + std::string(param) +
           " is missing)";
  }
  const std::string on = read_line(param);
  if (on != "Y" && on != "1") {
    return "the fuse module's enable_uring parameter is off (as root: echo 1 > " +
           std::string(param) + ")";
  }
  io_uring ring{};
  if (int r = create_ring(&ring, 2); r < 0) {
    if (r == -EPERM || r == -EACCES) {
      return "io_uring is not permitted for this user (sysctl kernel.io_uring_disabled=" +
             read_line("/proc/sys/kernel/io_uring_disabled") + ")";
    }
    return std::string("cannot create an io_uring with 128-byte entries: ") + std::strerror(-r);
  }
  io_uring_queue_exit(&ring);
  return "";
}

}  // namespace cowfs
