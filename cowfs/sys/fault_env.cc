#include "cowfs/sys/fault_env.h"

#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "cowfs/sys/syscalls.h"

namespace cowfs::sys {
namespace {

std::string fd_path(int fd) {
  char buf[4096];
  ssize_t n = ::readlink(proc_path(fd).c_str(), buf, sizeof buf - 1);
  if (n < 0) return {};
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

size_t FaultEnv::add(Fault f) {
  MutexLock lock(mu_);
  faults_.push_back({std::move(f)});
  return faults_.size() - 1;
}

void FaultEnv::clear() {
  MutexLock lock(mu_);
  faults_.clear();
}

uint64_t FaultEnv::calls(Op op) const {
  MutexLock lock(mu_);
  return calls_[static_cast<int>(op)];
}

uint64_t FaultEnv::injected(size_t index) const {
  MutexLock lock(mu_);
  return index < faults_.size() ? faults_[index].failed : 0;
}

int FaultEnv::decide(Call call, bool needs_path) {
  // The fd's path only when some predicate may look at it: resolving it
  // is a syscall of its own.
  MutexLock lock(mu_);
  ++calls_[static_cast<int>(call.op)];
  bool resolved = !needs_path;
  for (auto& a : faults_) {
    if (a.fault.op != call.op) continue;
    if (a.fault.match) {
      if (!resolved) {
        call.path = fd_path(call.fd);
        resolved = true;
      }
      if (!a.fault.match(call)) continue;
    }
    if (a.seen++ < a.fault.skip) continue;
    if (a.failed >= a.fault.times) continue;
    ++a.failed;
    if (a.fault.error == kCrash) ::kill(::getpid(), SIGKILL);
    return a.fault.error;
  }
  return 0;
}

Status FaultEnv::fsync(int fd, bool datasync) {
  if (int e = decide({datasync ? Op::kFdatasync : Op::kFsync, fd, {}}, true)) return Errno{e};
  return Env::fsync(fd, datasync);
}

Status FaultEnv::syncfs(int fd) {
  if (int e = decide({Op::kSyncfs, fd, {}}, true)) return Errno{e};
  return Env::syncfs(fd);
}

Status FaultEnv::rename(int olddir, const char* oldname, int newdir, const char* newname,
                        unsigned flags) {
  if (int e = decide({Op::kRename, newdir, newname}, false)) return Errno{e};
  return Env::rename(olddir, oldname, newdir, newname, flags);
}

Status FaultEnv::link(int olddir, const char* oldname, int newdir, const char* newname, int flags) {
  if (int e = decide({Op::kLink, newdir, newname}, false)) return Errno{e};
  return Env::link(olddir, oldname, newdir, newname, flags);
}

Result<size_t> FaultEnv::write(int fd, const void* buf, size_t n) {
  if (int e = decide({Op::kWrite, fd, {}}, true)) return Errno{e};
  return Env::write(fd, buf, n);
}

Result<size_t> FaultEnv::pwrite(int fd, const void* buf, size_t n, off_t offset) {
  if (int e = decide({Op::kWrite, fd, {}}, true)) return Errno{e};
  return Env::pwrite(fd, buf, n, offset);
}

std::function<bool(const Call&)> path_contains(std::string text) {
  return [text = std::move(text)](const Call& c) { return c.path.find(text) != std::string::npos; };
}

std::optional<std::vector<Fault>> parse_faults(const std::string& spec, std::string* error) {
  std::vector<Fault> out;
  std::istringstream in(spec);
  std::string item;
  auto bad = [&](const std::string& why) {
    *error = "COWFS_TEST_FAULTS: '" + item + "': " + why;
    return std::nullopt;
  };
  auto number = [](const std::string& s, uint64_t* v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
  };
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    Fault f;
    const size_t eq = item.rfind('=');
    if (eq == std::string::npos) return bad("no =ERRNO");
    const std::string err = item.substr(eq + 1);
    static const std::pair<const char*, int> kNames[] = {
        {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"EDQUOT", EDQUOT}};
    f.error = 0;
    for (const auto& [name, value] : kNames) {
      if (err == name) f.error = value;
    }
    uint64_t v = 0;
    if (err == "KILL") f.error = kCrash;
    if (f.error == 0 && number(err, &v) && v > 0 && v < 4096) f.error = static_cast<int>(v);
    if (f.error == 0) return bad("unknown errno '" + err + "'");
    std::string head = item.substr(0, eq);
    if (size_t star = head.rfind('*'); star != std::string::npos) {
      if (!number(head.substr(star + 1), &f.times)) return bad("bad *TIMES");
      head.resize(star);
    }
    if (size_t at = head.rfind('@'); at != std::string::npos) {
      if (!number(head.substr(at + 1), &f.skip)) return bad("bad @SKIP");
      head.resize(at);
    }
    std::string op = head;
    if (size_t colon = head.find(':'); colon != std::string::npos) {
      op = head.substr(0, colon);
      f.match = path_contains(head.substr(colon + 1));
    }
    if (op == "fsync") {
      f.op = Op::kFsync;
    } else if (op == "fdatasync") {
      f.op = Op::kFdatasync;
    } else if (op == "syncfs") {
      f.op = Op::kSyncfs;
    } else if (op == "rename") {
      f.op = Op::kRename;
    } else if (op == "link") {
      f.op = Op::kLink;
    } else if (op == "write") {
      f.op = Op::kWrite;
    } else {
      return bad("unknown call '" + op + "'; use fsync, fdatasync, syncfs, rename, link or write");
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::string install_faults_from_environment() {
  const char* spec = std::getenv("COWFS_TEST_FAULTS");
  if (spec == nullptr || *spec == '\0') return "";
  std::string error;
  auto faults = parse_faults(spec, &error);
  if (!faults) return error;
  // Lives as long as the process: calls may be in flight until exit.
  static FaultEnv* env = new FaultEnv;
  for (auto& f : *faults) env->add(std::move(f));
  set_env(env);
  return "";
}

}  // namespace cowfs::sys
