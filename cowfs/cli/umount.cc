// cowfs umount: flush, unmount, and wait until the daemon let go of the store.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cowfs/cli/commands.h"
#include "cowfs/core/control.h"
#include "cowfs/core/mount_checks.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs::cli {

void setup_umount(CLI::App& app, UmountOptions& o) {
  auto* cmd = app.add_subcommand("umount", "Flush and unmount a cowfs mount");
  cmd->add_option("MOUNTPOINT", o.mountpoint, "The mount to remove")->required();
  cmd->add_option("--timeout", o.timeout, "Seconds to wait for the daemon to finish");
}

namespace {

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

}  // namespace

int run_umount(const UmountOptions& o) {
  // A dead mount cannot be stat'ed: resolve only the directory it is in.
  const std::filesystem::path given = std::filesystem::absolute(o.mountpoint).lexically_normal();
  const std::string name = given.filename().empty() ? given.parent_path().filename().string()
                                                    : given.filename().string();
  const std::string parent = given.filename().empty() ? given.parent_path().parent_path().string()
                                                      : given.parent_path().string();
  const std::string mnt = (std::filesystem::path(canonical_path(parent)) / name).string();
  const std::string store = cowfs_mount_source(mnt);
  if (store.empty()) return fail(o.mountpoint + " is not a cowfs mount", 2);
  // Everything written is made durable first, while the mount can still be
  // kept: if that fails the user hears why and the mount stays, so nothing
  // is lost (free space and retry, or fusermount3 -u to give it up).
  int fd = ::open(mnt.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    Status s = sys::syncfs_fd(fd);
    ::close(fd);
    if (!s.ok()) {
      return fail("cannot write back the data written to " + o.mountpoint + ": " +
                  std::strerror(s.error()) + "; still mounted (free space and retry)");
    }
  }
  if (auto reply = control_request(store, {"sync"}); reply && !reply->ok) {
    std::string text = reply->text;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return fail(text + "; still mounted (fix the store's disk and retry)");
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
  // What the daemon could not save in its last moments.
  const std::string error_file = store + "/unmount-error";
  std::ifstream in(error_file);
  std::string why;
  if (in && std::getline(in, why) && !why.empty()) {
    std::error_code ec;
    std::filesystem::remove(error_file, ec);
    return fail("unmounted " + o.mountpoint + ", but " + why);
  }
  return 0;
}

}  // namespace cowfs::cli
