// cowfs command line: mount a copy-on-write view of read-only lowers, and
// unmount it. Each subcommand has its options struct, a setup_ and a run_
// function; main only wires them.
#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cowfs/core/mount_checks.h"
#include "cowfs/core/overlay.h"
#include "cowfs/core/store.h"
#include "cowfs/fuse/session.h"

namespace {

using cowfs::canonical_path;

int fail(const std::string& msg, int code = 1) {
  std::cerr << "cowfs: " << msg << "\n";
  return code;
}

// ---- mount -----------------------------------------------------------------

struct MountOptions {
  std::string store;
  std::vector<std::string> lowers;
  std::string mountpoint;
  bool foreground = false;
  std::string log_level = "info";
  std::vector<std::string> fuse_opts;
};

void setup_mount(CLI::App& app, MountOptions& o) {
  auto* cmd = app.add_subcommand("mount", "Mount a copy-on-write view of the lowers");
  cmd->add_option("--store", o.store, "Directory of the writable layers (created if missing)")
      ->required();
  cmd->add_option("--lower", o.lowers, "Read-only lower directory, top first (repeatable)")
      ->required();
  cmd->add_flag("--foreground,-f", o.foreground, "Stay in the foreground, log to stderr too");
  cmd->add_option("--log-level", o.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  cmd->add_option("-o", o.fuse_opts, "Mount options: nonempty")->delimiter(',');
  cmd->add_option("MOUNTPOINT", o.mountpoint, "Where to mount")->required();
}

// Writes the outcome of a background mount to the waiting parent.
struct Reporter {
  int fd = -1;
  void send(const std::string& msg) {
    if (fd < 0) return;
    (void)!::write(fd, msg.data(), msg.size());
    ::close(fd);
    fd = -1;
  }
};

void raise_fd_limit() {
  // One O_PATH fd per known inode, as in passthrough_hp: use all we may.
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int serve(const MountOptions& o, bool allow_nonempty, Reporter& rep) {
  const std::string store_path = canonical_path(o.store);
  const bool store_existed = std::filesystem::exists(store_path);
  auto cleanup_store = [&] {
    if (!store_existed) {
      std::error_code ec;
      std::filesystem::remove_all(store_path, ec);
    }
  };
  try {
    cowfs::Store store = cowfs::Store::open(store_path, true);
    store.lock_exclusive();

    auto logger = spdlog::basic_logger_mt("cowfs", store_path + "/cowfs.log");
    if (o.foreground) {
      logger->sinks().push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    }
    logger->set_level(spdlog::level::from_str(o.log_level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);

    cowfs::Whiteouts whiteouts;
    if (auto s = whiteouts.init(store.whiteouts_fd(), store.dev()); !s.ok()) {
      throw cowfs::StoreError("cannot read the store's whiteouts: " +
                              std::string(std::strerror(s.error())));
    }
    std::vector<std::string> lowers;
    for (const auto& l : o.lowers) lowers.push_back(canonical_path(l));
    cowfs::Overlay overlay(store.build_stack(lowers), &whiteouts, store.work_fd(),
                           cowfs::Overlay::Options{::geteuid() == 0});
    raise_fd_limit();

    cowfs::SessionConfig cfg;
    cfg.mountpoint = canonical_path(o.mountpoint);
    cfg.fsname = store_path;
    cfg.allow_nonempty = allow_nonempty;
    cfg.allow_other = ::geteuid() == 0;
    std::string error;
    spdlog::info("mounting {} (store {}, {} lower(s))", cfg.mountpoint, store_path, lowers.size());
    int r = cowfs::run_session(overlay, cfg, [&] { rep.send("ok\n"); }, &error);
    if (!error.empty()) {
      cleanup_store();
      rep.send(error + "\n");
      return fail(error);
    }
    spdlog::info("unmounted {}", cfg.mountpoint);
    spdlog::shutdown();
    return r == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    if (!dynamic_cast<const cowfs::StoreError*>(&e) || !store_existed) cleanup_store();
    rep.send(std::string(e.what()) + "\n");
    return fail(e.what());
  }
}

int run_mount(MountOptions o) {
  cowfs::MountRequest req{o.store, o.lowers, o.mountpoint, false};
  for (const auto& opt : o.fuse_opts) {
    if (opt == "nonempty") {
      req.allow_nonempty = true;
    } else {
      return fail("unknown mount option '" + opt + "'; the only one is -o nonempty", 2);
    }
  }
  if (auto err = cowfs::check_mount_request(req)) return fail(*err, 2);
  // The daemon leaves the working directory; resolve paths while we can.
  o.store = canonical_path(o.store);
  o.mountpoint = canonical_path(o.mountpoint);
  for (auto& l : o.lowers) l = canonical_path(l);
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
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return fail(msg.empty() ? "the mount process died before mounting (see the store's cowfs.log)"
                          : msg);
}

// ---- umount ----------------------------------------------------------------

struct UmountOptions {
  std::string mountpoint;
  double timeout = 30;
};

void setup_umount(CLI::App& app, UmountOptions& o) {
  auto* cmd = app.add_subcommand("umount", "Flush and unmount a cowfs mount");
  cmd->add_option("MOUNTPOINT", o.mountpoint, "The mount to remove")->required();
  cmd->add_option("--timeout", o.timeout, "Seconds to wait for the daemon to finish");
}

// The mount's source as recorded in /proc/self/mountinfo ("" if not a cowfs mount).
std::string cowfs_mount_source(const std::string& mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  auto unescape = [](const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\\' && i + 3 < s.size()) {
        out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        out += s[i];
      }
    }
    return out;
  };
  std::string found;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, point;
    ls >> id >> parent >> dev >> root >> point;
    if (unescape(point) != mnt) continue;
    std::string tok;
    while (ls >> tok && tok != "-") {
    }
    std::string fstype, source;
    ls >> fstype >> source;
    found = fstype == "fuse.cowfs" ? unescape(source) : "";
  }
  return found;
}

int run_umount(const UmountOptions& o) {
  const std::string mnt = canonical_path(o.mountpoint);
  const std::string store = cowfs_mount_source(mnt);
  if (store.empty()) return fail(o.mountpoint + " is not a cowfs mount", 2);
  int fd = ::open(mnt.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::syncfs(fd);
    ::close(fd);
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", mnt.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return fail("cannot unmount " + o.mountpoint + " (is it busy? see fusermount3's message)");
  }
  // The store is free once the daemon has let go of its lock.
  int lock = ::open((store + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (lock < 0) return 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.timeout);
  while (::flock(lock, LOCK_SH | LOCK_NB) < 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::close(lock);
      return fail("unmounted, but the cowfs daemon of " + store + " did not exit in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::close(lock);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cowfs: a copy-on-write view of read-only production data"};
  app.set_version_flag("--version", std::string("cowfs ") + COWFS_VERSION);
  app.require_subcommand(1);
  MountOptions mount_opts;
  UmountOptions umount_opts;
  setup_mount(app, mount_opts);
  setup_umount(app, umount_opts);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + " (see cowfs --help)", 2);
  }
  if (app.got_subcommand("mount")) return run_mount(mount_opts);
  if (app.got_subcommand("umount")) return run_umount(umount_opts);
  return 0;
}
