// cowfs mount: check the request, start the daemon, return once mounted.
#include <fcntl.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cowfs/cli/commands.h"
#include "cowfs/core/control.h"
#include "cowfs/core/copy_up.h"
#include "cowfs/core/layer_service.h"
#include "cowfs/core/lower_cache.h"
#include "cowfs/core/mount_checks.h"
#include "cowfs/core/overlay.h"
#include "cowfs/core/store.h"
#include "cowfs/fuse/session.h"
#include "cowfs/sys/fault_env.h"
#include "cowfs/sys/mutex.h"

namespace cowfs::cli {

int fail(const std::string& msg, int code) {
  std::cerr << "cowfs: " << msg << "\n";
  return code;
}

void setup_mount(CLI::App& app, MountOptions& o) {
  auto* cmd = app.add_subcommand("mount", "Mount a copy-on-write view of the lowers");
  cmd->add_option("--store", o.store, "Directory of the writable layers (created if missing)")
      ->required();
  cmd->add_option("--lower", o.lowers, "Read-only lower directory, top first (repeatable)")
      ->required();
  cmd->add_flag("--foreground,-f", o.foreground, "Stay in the foreground, log to stderr too");
  cmd->add_option("--log-level", o.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  cmd->add_option("-o", o.fuse_opts, "Mount options: nonempty, no_writeback_cache")->delimiter(',');
  cmd->add_option("--chunk-threshold", o.chunk_threshold,
                  "Files at least this big (bytes) are copied up by chunk");
  cmd->add_option("--chunk-size", o.chunk_size,
                  "Chunk size in bytes: a power of two from 4096 to 4194304");
  cmd->add_option("--lower-cache", o.lower_cache,
                  "Keep the data read from remote lowers in this directory (read-through, "
                  "kept across mounts, resets and rewinds; one mount at a time)");
  cmd->add_option("--lower-cache-size", o.lower_cache_size,
                  "Bound of the lower cache (e.g. 50G, 512M); least recently used chunks go "
                  "first")
      ->capture_default_str();
  cmd->add_option("--remote-lower", o.remote_lowers,
                  "Mark this lower (one of --lower) remote: its reads go through --lower-cache. "
                  "Lowers on FUSE (sshfs), NFS, CIFS/SMB, 9p or Ceph are remote by themselves "
                  "(repeatable)");
  cmd->add_option("--io", o.io,
                  "Transport to the kernel: auto (io_uring where available), uring or dev "
                  "(/dev/fuse); default $COWFS_IO, else auto")
      ->check(CLI::IsMember({"auto", "uring", "dev"}));
  cmd->add_option("MOUNTPOINT", o.mountpoint, "Where to mount")->required();
}

namespace {

// Tells the waiting parent of a background mount how it went.
struct Reporter {
  int fd = -1;
  void send(const std::string& msg) {
    if (fd < 0) return;
    (void)!::write(fd, msg.data(), msg.size());
    ::close(fd);
    fd = -1;
  }
};

void record_unmount_error(Store& store, const std::string& msg) {
  try {
    store.set_unmount_error(msg);
  } catch (const StoreError& e) {
    spdlog::error("cannot record that for cowfs umount either: {}", e.what());
  }
}

void raise_fd_limit() {
  // One O_PATH fd per known inode, as in passthrough_hp: use all we may.
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  // Root may go up to the kernel's ceiling; others to their hard limit.
  struct rlimit want {
    rl.rlim_max, rl.rlim_max
  };
  if (::geteuid() == 0) {
    std::ifstream in("/proc/sys/fs/nr_open");
    rlim_t ceiling = 0;
    if (in >> ceiling && ceiling > rl.rlim_max) want = {ceiling, ceiling};
  }
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Calls check every second on a thread of its own until stopped.
class LowerWatch {
 public:
  ~LowerWatch() { stop(); }
  void start(std::function<void()> check) {
    thread_ = std::thread([this, check = std::move(check)] { run(check); });
  }
  void stop() EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run(const std::function<void()>& check) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!stopping_) {
      if (std::chrono::steady_clock::now() < next) {
        cv_.wait_for(mu_, next - std::chrono::steady_clock::now());
        continue;
      }
      lock.unlock();  // check() takes service_mu, which comes first
      check();
      lock.lock();
      next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
  }

  Mutex mu_;  // a leaf: nothing is taken under it
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Dispatches a control request to the layer service of the running mount.
std::string handle_control(LayerService& svc, const std::vector<std::string>& w) {
  auto arg = [&](size_t i) { return i < w.size() && w[i] != "-" ? w[i] : std::string(); };
  const std::string cmd = w.empty() ? "" : w[0];
  spdlog::info("control: {}", cmd);
  if (cmd == "checkpoint") return svc.checkpoint(arg(1));
  if (cmd == "rewind") return svc.rewind(arg(1));
  if (cmd == "reset") return svc.reset();
  if (cmd == "layers") return svc.layers(arg(1) == "json");
  if (cmd == "compact") return svc.compact(split(arg(1), ','));
  if (cmd == "diff") return svc.diff(arg(2), arg(3), arg(1) == "json");
  if (cmd == "sync") return svc.sync();
  throw StoreError("unknown control request '" + cmd + "'");
}

int serve(const MountOptions& o, bool allow_nonempty, Reporter& rep) {
  const bool store_existed = std::filesystem::exists(o.store);
  auto cleanup_store = [&] {
    if (!store_existed) {
      std::error_code ec;
      std::filesystem::remove_all(o.store, ec);
    }
  };
  try {
    if (std::string bad = sys::install_faults_from_environment(); !bad.empty()) {
      throw std::runtime_error(bad);
    }
    Store store = Store::open(o.store, true);
    store.lock_exclusive();
    store.clear_unmount_error();
    store.collect_garbage();  // validates the stack first
    store.set_lowers(o.lowers);
    if (!store_existed) {
      // A new view's root looks like the production root.
      UniqueFd lower_root = store.layer_root("");
      UniqueFd top_root = store.layer_root(store.records().back().id);
      struct stat st {};
      if (lower_root.valid() && top_root.valid() &&
          ::fstatat(lower_root.get(), "", &st, AT_EMPTY_PATH) == 0) {
        (void)copy_metadata(lower_root.get(), st, top_root.get(), ".", ::geteuid() == 0, false);
      }
    }

    auto logger = spdlog::basic_logger_mt("cowfs", o.store + "/cowfs.log");
    if (o.foreground) {
      logger->sinks().push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    }
    logger->set_level(spdlog::level::from_str(o.log_level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);

    Whiteouts whiteouts;
    if (auto s = whiteouts.init(store.whiteouts_fd(), store.dev()); !s.ok()) {
      throw StoreError("cannot read the store's whiteouts: " +
                       std::string(std::strerror(s.error())));
    }
    Overlay::Options opts;
    opts.is_root = ::geteuid() == 0;
    opts.chunk_threshold = o.chunk_threshold;
    opts.chunk_size = static_cast<uint32_t>(o.chunk_size);
    // Opened before the overlay, which reads through it, and closed after.
    std::unique_ptr<LowerCache> lower_cache;
    if (!o.lower_cache.empty()) {
      auto cache =
          LowerCache::open({o.lower_cache, *parse_byte_size(o.lower_cache_size), opts.chunk_size});
      if (!cache) {
        throw std::runtime_error(
            cache.error() == EBUSY
                ? "the lower cache " + o.lower_cache +
                      " is in use by another cowfs mount; give each mount its own --lower-cache"
                : "cannot open the lower cache " + o.lower_cache + ": " +
                      std::strerror(cache.error()));
      }
      lower_cache = cache.take();
      opts.lower_cache = lower_cache.get();
      for (const auto& l : o.lowers) {
        struct statfs sf {};
        const bool by_hand =
            std::find(o.remote_lowers.begin(), o.remote_lowers.end(), l) != o.remote_lowers.end();
        const bool detected = ::statfs(l.c_str(), &sf) == 0 && is_network_fs_type(sf.f_type);
        opts.remote_lowers.push_back(by_hand || detected);
        if (by_hand || detected) {
          spdlog::info("lower {} is remote ({}): its reads go through the cache in {}", l,
                       by_hand ? "--remote-lower" : "network filesystem", o.lower_cache);
        }
      }
      const auto st = lower_cache->stats();
      spdlog::info("lower cache {}: {} chunk(s), {} of {} bytes", o.lower_cache, st.entries,
                   st.bytes, st.max_bytes);
    }
    raise_fd_limit();  // before the overlay sizes its fd budget
    Overlay overlay(store.build_stack(o.lowers), &whiteouts, store.work_fd(), opts);
    std::thread([path = o.store] { Store::purge_trash(path); }).detach();

    SessionConfig cfg;
    cfg.mountpoint = o.mountpoint;
    cfg.fsname = o.store;
    cfg.allow_nonempty = allow_nonempty;
    cfg.writeback_cache = o.writeback_cache;
    cfg.allow_other = ::geteuid() == 0;
    cfg.io = o.io == "uring" ? IoMode::kUring : o.io == "dev" ? IoMode::kDev : IoMode::kAuto;
    std::string error;
    ControlServer control;
    std::unique_ptr<LayerService> service;
    // Layer commands and lower revival run one at a time: first in the lock
    // order (Overlay's lock order, overlay.h).
    Mutex service_mu;
    LowerWatch watch;
    Status final_flush;
    spdlog::info("mounting {} (store {}, {} lower(s))", cfg.mountpoint, o.store, o.lowers.size());
    int r = run_session(
        overlay, cfg,
        [&](KernelCache* kernel) {
          service =
              std::make_unique<LayerService>(store, whiteouts, &overlay, kernel, o.mountpoint);
          service->set_transport_source(session_transport);
          control.start(o.store, [&](const std::vector<std::string>& w) {
            MutexLock lock(service_mu);
            return handle_control(*service, w);
          });
          watch.start([&] {
            MutexLock lock(service_mu);
            for (const auto& path : service->revive_lowers()) {
              spdlog::warn("lower {} is back: reopened it", path);
            }
          });
          rep.send("ok\n");
        },
        [&] {
          watch.stop();
          control.stop();
          // The last chance to save the chunk maps: a failure loses the
          // chunks written since the last sync. Logged, left in
          // STORE/unmount-error for `cowfs umount` to report, and the
          // daemon's exit status.
          final_flush = overlay.flush_all(true);
          if (!final_flush.ok()) {
            const std::string msg = "cannot save the chunk maps at unmount: " +
                                    std::string(std::strerror(final_flush.error())) +
                                    "; data written since the last sync may be lost";
            spdlog::error("{}", msg);
            record_unmount_error(store, msg);
          } else {
            // Copies that lost their last name while open (collected at
            // the next mount otherwise). Not after a failed save: the
            // store is then left as it is for whoever looks into it.
            overlay.collect_unreachable();
          }
        },
        &error);
    if (!error.empty()) {
      cleanup_store();
      rep.send(error + "\n");
      return fail(error);
    }
    spdlog::info("unmounted {}", cfg.mountpoint);
    spdlog::shutdown();
    return r == 0 && final_flush.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    if (dynamic_cast<const StoreError*>(&e) == nullptr) cleanup_store();
    rep.send(std::string(e.what()) + "\n");
    return fail(e.what());
  }
}

}  // namespace

int run_mount(MountOptions o) {
  MountRequest req{o.store, o.lowers, o.mountpoint, false};
  for (const auto& opt : o.fuse_opts) {
    if (opt == "nonempty") {
      req.allow_nonempty = true;
    } else if (opt == "no_writeback_cache") {
      o.writeback_cache = false;
    } else {
      return fail("unknown mount option '" + opt + "'; use nonempty or no_writeback_cache", 2);
    }
  }
  if (auto err = check_mount_request(req)) return fail(*err, 2);
  if (o.io.empty()) {
    const char* env = std::getenv("COWFS_IO");
    o.io = env != nullptr && *env != '\0' ? env : "auto";
    if (o.io != "auto" && o.io != "uring" && o.io != "dev") {
      return fail("COWFS_IO='" + o.io + "' is not auto, uring or dev", 2);
    }
  }
  if (o.io == "uring") {
    if (std::string why_not = uring_unavailable_reason(); !why_not.empty()) {
      return fail("--io uring: " + why_not, 2);
    }
  }
  if (o.chunk_size < 4096 || o.chunk_size > (4u << 20) || (o.chunk_size & (o.chunk_size - 1))) {
    return fail("--chunk-size " + std::to_string(o.chunk_size) +
                    " is not a power of two from 4096 to 4194304",
                2);
  }
  // The daemon leaves the working directory; resolve paths while we can.
  o.store = canonical_path(o.store);
  o.mountpoint = canonical_path(o.mountpoint);
  for (auto& l : o.lowers) l = canonical_path(l);
  if (o.lower_cache.empty()) {
    if (!o.remote_lowers.empty()) return fail("--remote-lower needs --lower-cache DIR", 2);
  } else {
    auto size = parse_byte_size(o.lower_cache_size);
    if (!size || *size < (o.chunk_size + 4096) * 4) {
      return fail("--lower-cache-size " + o.lower_cache_size +
                      " is not a size of at least four chunks (e.g. 50G, 512M)",
                  2);
    }
    o.lower_cache = canonical_path(o.lower_cache);
    for (auto& r : o.remote_lowers) {
      r = canonical_path(r);
      if (std::find(o.lowers.begin(), o.lowers.end(), r) == o.lowers.end()) {
        return fail("--remote-lower " + r + " is not one of the --lower directories", 2);
      }
    }
    // The cache is written: never in production, the store or the view.
    for (const auto& l : o.lowers) {
      if (path_within(o.lower_cache, l) || path_within(l, o.lower_cache)) {
        return fail("--lower-cache " + o.lower_cache + " overlaps the lower " + l +
                        "; put the cache on a local disk outside the lowers",
                    2);
      }
    }
    for (const auto& [what, p] :
         {std::pair<std::string, std::string>{"store", o.store}, {"mountpoint", o.mountpoint}}) {
      if (path_within(o.lower_cache, p) || path_within(p, o.lower_cache)) {
        return fail("--lower-cache " + o.lower_cache + " overlaps the " + what + " " + p +
                        "; put the cache in a directory of its own",
                    2);
      }
    }
  }
  if (o.foreground) {
    Reporter none;
    return serve(o, req.allow_nonempty, none);
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) < 0) return fail(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) return fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      if (null > 2) ::close(null);
    }
    if (::chdir("/") < 0) _exit(1);
    Reporter rep{pipefd[1]};
    _exit(serve(o, req.allow_nonempty, rep));
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  if (msg == "ok\n") return 0;
  ::waitpid(pid, nullptr, 0);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return fail(msg.empty() ? "the mount process died before mounting (see the store's cowfs.log)"
                          : msg);
}

}  // namespace cowfs::cli
