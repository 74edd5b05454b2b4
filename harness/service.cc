#include "harness/service.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "harness/duration.h"
#include "harness/progress.h"

namespace rehearse {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(100);
// How long a start command may keep running after its service is ready
// before it counts as the service's foreground process.
constexpr auto kStartSettles = std::chrono::seconds(2);
constexpr auto kStopWait = std::chrono::seconds(60);
constexpr auto kTermWait = std::chrono::seconds(10);
constexpr auto kKillWait = std::chrono::seconds(5);

// /proc/PID/stat: state (field 3) and start time (field 22), read after the
// last ')' since the command name may hold anything.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
  unsigned long long start = 0;
};

std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return std::nullopt;
  auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  ProcStat st;
  rest >> st.state >> st.ppid;
  std::string skip;
  for (int field = 5; field < 22; ++field) rest >> skip;  // pgrp .. itrealvalue
  rest >> st.start;
  if (!rest) return std::nullopt;
  return st;
}

std::set<pid_t> my_children() {
  std::set<pid_t> out;
  const pid_t self = ::getpid();
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    auto st = proc_stat(static_cast<pid_t>(pid));
    if (st && st->ppid == self) out.insert(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

// Alive and still the process we recorded (start time matches). Reaps it
// when it is our own zombie child.
bool alive(pid_t pid, unsigned long long start) {
  int status = 0;
  ::waitpid(pid, &status, WNOHANG);  // ECHILD when not ours: fine
  auto st = proc_stat(pid);
  return st && st->start == start && st->state != 'Z' && st->state != 'X';
}

unsigned long long start_of(pid_t pid) {
  auto st = proc_stat(pid);
  return st ? st->start : 0;
}

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name, home;
};

std::optional<Account> account(const std::string& user) {
  if (user.empty()) return std::nullopt;
  struct passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) throw ServiceError("user '" + user + "' does not exist");
  return Account{pw->pw_uid, pw->pw_gid, pw->pw_name, pw->pw_dir};
}

struct Spawn {
  std::string command;
  std::optional<Account> as;
  std::string cwd;
  std::vector<std::string> env;  // full
  int log_fd = -1;
};

// Forks `/bin/sh -c command` in a session of its own (the terminal's Ctrl-C
// reaches rehearse, which stops its services in order), as the account.
pid_t spawn(const Spawn& s) {
  if (s.as && ::geteuid() != 0 && ::geteuid() != s.as->uid) {
    throw ServiceError("running service commands as user '" + s.as->name +
                       "' needs root; run rehearse as root or drop 'user'");
  }
  std::vector<char*> env;
  for (const auto& e : s.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  const char* argv[] = {"/bin/sh", "-c", s.command.c_str(), nullptr};
  pid_t pid = ::fork();
  if (pid < 0) throw ServiceError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setsid();
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    if (s.log_fd >= 0) {
      ::dup2(s.log_fd, 1);
      ::dup2(s.log_fd, 2);
    }
    ::close_range(3, ~0U, 0);
    if (s.as && ::geteuid() != s.as->uid) {
      if (::initgroups(s.as->name.c_str(), s.as->gid) != 0 || ::setgid(s.as->gid) != 0 ||
          ::setuid(s.as->uid) != 0) {
        _exit(126);
      }
    }
    if (::chdir(s.cwd.c_str()) != 0 && ::chdir("/") != 0) _exit(126);
    ::execve("/bin/sh", const_cast<char* const*>(argv), env.data());
    _exit(127);
  }
  return pid;
}

// Waits for our child until deadline; nullopt when it still runs.
std::optional<int> wait_child(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return 0;  // not ours any more: treat as gone
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit " + std::to_string(WEXITSTATUS(status));
}

struct PidFile {
  pid_t owner = 0;
  unsigned long long owner_start = 0;
  std::string root;
  std::vector<std::pair<pid_t, unsigned long long>> pids;
};

std::optional<PidFile> read_pid_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  PidFile f;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "owner") {
      ls >> f.owner >> f.owner_start;
    } else if (key == "root") {
      std::getline(ls >> std::ws, f.root);
    } else if (key == "pid") {
      pid_t p = 0;
      unsigned long long s = 0;
      ls >> p >> s;
      if (p > 0) f.pids.emplace_back(p, s);
    }
  }
  return f;
}

std::vector<pid_t> alive_pids(const PidFile& f) {
  std::vector<pid_t> out;
  for (const auto& [p, s] : f.pids) {
    if (alive(p, s)) out.push_back(p);
  }
  return out;
}

std::string join_pids(const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) s += (s.empty() ? "" : ", ") + std::to_string(p);
  return s;
}

class LogFd {
 public:
  explicit LogFd(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  ~LogFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  LogFd(const LogFd&) = delete;
  LogFd& operator=(const LogFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string log_path(const Workspace& ws, const std::string& name) {
  return ws.logs_dir() + "/service-" + name + ".log";
}

void log_line(const Workspace& ws, const std::string& name, const std::string& text) {
  std::ofstream out(log_path(ws, name), std::ios::app);
  out << "== rehearse: " << text << "\n";
}

std::vector<std::string> service_env(const Workspace& ws, const std::string& root,
                                     const std::optional<Account>& as) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    // A server run as another user must not inherit root's idea of home.
    if (as &&
        (kv.rfind("HOME=", 0) == 0 || kv.rfind("USER=", 0) == 0 || kv.rfind("LOGNAME=", 0) == 0)) {
      continue;
    }
    env.push_back(kv);
  }
  if (as) {
    env.push_back("HOME=" + as->home);
    env.push_back("USER=" + as->name);
    env.push_back("LOGNAME=" + as->name);
  }
  env.push_back("REHEARSE_ROOT=" + root);
  env.push_back("REHEARSE_RUN=" + ws.run_dir());
  return env;
}

// Runs one of a service's commands to its end (or the deadline, when its
// session is killed). Returns its wait status, nullopt on timeout.
std::optional<int> run_command(const Workspace& ws, const ServiceConfig& s,
                               const std::string& command, const std::string& root,
                               std::chrono::milliseconds limit) {
  LogFd log(log_path(ws, s.name));
  auto as = account(s.user);
  pid_t pid = spawn({expand_placeholders(command, root, ws.run_dir()), as, root,
                     service_env(ws, root, as), log.get()});
  auto r = wait_child(pid, Clock::now() + limit);
  if (!r) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return r;
}

bool wait_gone(const std::vector<std::pair<pid_t, unsigned long long>>& pids,
               std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  for (;;) {
    bool any = false;
    for (const auto& [p, s] : pids) any = any || alive(p, s);
    if (!any) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The stop protocol: the stop command, then SIGTERM, then SIGKILL. Throws
// ServiceError naming what survives.
void stop_service(const Workspace& ws, const ServiceConfig& s, const std::string& root,
                  const std::vector<std::pair<pid_t, unsigned long long>>& pids) {
  log_line(ws, s.name, "stopping");
  if (!s.stop.empty()) {
    auto r = run_command(ws, s, s.stop, root, kStopWait);
    if (!r) log_line(ws, s.name, "the stop command did not finish in time");
  }
  if (wait_gone(pids, s.stop.empty() ? std::chrono::milliseconds(0) : kStopWait)) return;
  for (const auto& [p, st] : pids) {
    if (alive(p, st)) ::kill(p, SIGTERM);
  }
  if (wait_gone(pids, kTermWait)) return;
  std::vector<pid_t> left;
  for (const auto& [p, st] : pids) {
    if (alive(p, st)) {
      ::kill(p, SIGKILL);
      left.push_back(p);
    }
  }
  log_line(ws, s.name, "killed with SIGKILL: pid " + join_pids(left));
  if (wait_gone(pids, kKillWait)) return;
  std::vector<pid_t> stuck;
  for (const auto& [p, st] : pids) {
    if (alive(p, st)) stuck.push_back(p);
  }
  throw ServiceError("service " + s.name + " does not stop: pid " + join_pids(stuck) +
                     " survives SIGKILL (blocked in the kernel, e.g. on a dead mount?); " +
                     "stop it by hand, then retry");
}

}  // namespace

std::string Services::log_tail(const Workspace& ws, const std::string& name, int lines) {
  std::ifstream in(log_path(ws, name));
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) all.push_back(line);
  }
  std::string out;
  for (size_t i = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0; i < all.size();
       ++i) {
    out += (out.empty() ? "" : " | ") + all[i];
  }
  return out.empty() ? "(its log " + log_path(ws, name) + " is empty)" : out;
}

Services::Services(const Workspace& ws, std::string data_root, Progress* progress)
    : ws_(ws), data_root_(std::move(data_root)), progress_(progress) {}

Services::~Services() {
  try {
    stop_all();
  } catch (const std::exception& e) {
    if (progress_) progress_->note(std::string("warning: ") + e.what());
  }
}

bool Services::running() const { return !running_.empty(); }

void Services::write_pid_file(const Running& r) const {
  std::error_code ec;
  fs::create_directories(ws_.services_dir(), ec);
  const std::string path = ws_.services_dir() + "/" + r.config->name;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "owner " << ::getpid() << " " << start_of(::getpid()) << "\n";
    out << "root " << data_root_ << "\n";
    for (pid_t p : r.pids) out << "pid " << p << " " << start_of(p) << "\n";
    out.flush();
    if (!out) throw ServiceError("cannot write " + tmp);
  }
  fs::rename(tmp, path, ec);
  if (ec) throw ServiceError("cannot write " + path + ": " + ec.message());
}

void Services::start_all() {
  for (const auto& s : ws_.config.services) {
    bool up = false;
    for (const auto& r : running_) up = up || r.config == &s;
    if (!up) start(s);
  }
}

void Services::start(const ServiceConfig& s) {
  std::error_code ec;
  fs::create_directories(ws_.run_dir(), ec);
  fs::create_directories(ws_.logs_dir(), ec);
  auto as = account(s.user);
  if (as) {
    // The server creates its sockets here.
    if (::chown(ws_.run_dir().c_str(), as->uid, as->gid) != 0 && ::geteuid() == 0) {
      throw ServiceError("cannot hand " + ws_.run_dir() + " to user " + as->name + ": " +
                         std::strerror(errno));
    }
  }
  if (progress_) progress_->note("starting service " + s.name);
  log_line(ws_, s.name, "starting (rehearse pid " + std::to_string(::getpid()) + ")");
  const auto deadline = Clock::now() + s.start_timeout;
  // Daemons that the start command leaves behind become our children, so
  // we know their pids (see the header).
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const std::set<pid_t> before = my_children();
  pid_t start_pid = -1;
  auto fail = [&](const std::string& why) -> ServiceError {
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    // What the service said up to now, not what stopping it adds.
    const std::string tail = log_tail(ws_, s.name);
    // Whatever it left running must not outlive us.
    std::vector<std::pair<pid_t, unsigned long long>> pids;
    for (pid_t p : my_children()) {
      if (!before.count(p)) pids.emplace_back(p, start_of(p));
    }
    if (!pids.empty()) {
      try {
        stop_service(ws_, s, data_root_, pids);
      } catch (const ServiceError&) {
      }
    }
    if (start_pid > 0) ::waitpid(start_pid, nullptr, WNOHANG);
    return ServiceError("service " + s.name + " " + why + ": " + tail);
  };
  {
    LogFd log(log_path(ws_, s.name));
    start_pid = spawn({expand_placeholders(s.start, data_root_, ws_.run_dir()), as, data_root_,
                       service_env(ws_, data_root_, as), log.get()});
  }
  bool start_done = false;
  for (;;) {
    if (!start_done) {
      int status = 0;
      pid_t r = ::waitpid(start_pid, &status, WNOHANG);
      if (r == start_pid) {
        start_done = true;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          throw fail("failed to start (" + describe_status(status) + ")");
        }
      }
    }
    bool ready = false;
    if (s.ready.empty()) {
      ready = true;  // start returned 0, or stays in the foreground
    } else {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() > 0) {
        auto r = run_command(ws_, s, s.ready, data_root_, left);
        ready = r && WIFEXITED(*r) && WEXITSTATUS(*r) == 0;
      }
    }
    if (ready) break;
    if (Clock::now() >= deadline) {
      throw fail("did not become ready within " + format_duration(s.start_timeout) +
                 " (start_timeout)");
    }
    std::this_thread::sleep_for(kPoll);
  }
  // A start command that daemonizes returns right after its server is ready
  // (pg_ctl -w); one that is still running is the service itself.
  if (!start_done) {
    if (auto st = wait_child(start_pid, Clock::now() + kStartSettles)) {
      start_done = true;
      if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
        throw fail("failed to start (" + describe_status(*st) + ")");
      }
    }
  }
  Running run;
  run.config = &s;
  for (pid_t p : my_children()) {
    if (!before.count(p)) run.pids.push_back(p);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  if (run.pids.empty()) {
    throw fail("left no process running after its start command (it must start the server)");
  }
  running_.push_back(run);
  write_pid_file(run);
  log_line(ws_, s.name, "ready, pid " + join_pids(run.pids));
}

void Services::stop_all() {
  while (!running_.empty()) {
    Running r = running_.back();
    std::vector<std::pair<pid_t, unsigned long long>> pids;
    for (pid_t p : r.pids) pids.emplace_back(p, start_of(p));
    if (progress_) progress_->note("stopping service " + r.config->name);
    stop_service(ws_, *r.config, data_root_, pids);
    running_.pop_back();
    std::error_code ec;
    fs::remove(ws_.services_dir() + "/" + r.config->name, ec);
  }
}

void Services::flush_all() {
  for (const auto& r : running_) {
    if (r.config->flush.empty()) continue;
    auto st = run_command(ws_, *r.config, r.config->flush, data_root_, kStopWait);
    if (!st || !WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
      throw ServiceError("service " + r.config->name + ": flush before the checkpoint failed (" +
                         (st ? describe_status(*st) : std::string("timed out")) +
                         "): " + log_tail(ws_, r.config->name));
    }
  }
}

std::optional<std::string> Services::dead() {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    bool any = false;
    std::string how;
    for (pid_t p : it->pids) {
      int status = 0;
      pid_t w = ::waitpid(p, &status, WNOHANG);
      if (w == p) {
        how = describe_status(status);
        continue;
      }
      if (::kill(p, 0) == 0) any = true;
    }
    if (any) continue;
    std::string name = it->config->name;
    log_line(ws_, name, "died" + (how.empty() ? "" : " (" + how + ")"));
    running_.erase(it);
    std::error_code ec;
    fs::remove(ws_.services_dir() + "/" + name, ec);
    return "service " + name + " died" + (how.empty() ? "" : " (" + how + ")") + ": " +
           log_tail(ws_, name);
  }
  return std::nullopt;
}

void Services::stop_orphans(const Workspace& ws, Progress* progress) {
  for (const auto& s : ws.config.services) {
    const std::string path = ws.services_dir() + "/" + s.name;
    auto f = read_pid_file(path);
    if (!f) continue;
    auto pids = alive_pids(*f);
    std::error_code ec;
    if (pids.empty()) {
      fs::remove(path, ec);
      continue;
    }
    if (f->owner != ::getpid() && alive(f->owner, f->owner_start)) {
      throw ServiceError("service " + s.name + " (pid " + join_pids(pids) +
                         ") is running for rehearse pid " + std::to_string(f->owner) +
                         "; wait for that command or stop it first");
    }
    if (progress) {
      progress->note("stopping service " + s.name + " (pid " + join_pids(pids) +
                     "), left running by rehearse pid " + std::to_string(f->owner));
    }
    std::vector<std::pair<pid_t, unsigned long long>> live;
    for (const auto& [p, st] : f->pids) {
      if (alive(p, st)) live.emplace_back(p, st);
    }
    stop_service(ws, s, f->root.empty() ? ws.config.mountpoint : f->root, live);
    fs::remove(path, ec);
  }
}

std::vector<ServiceStatus> Services::status(const Workspace& ws) {
  std::vector<ServiceStatus> out;
  for (const auto& s : ws.config.services) {
    ServiceStatus st;
    st.name = s.name;
    if (auto f = read_pid_file(ws.services_dir() + "/" + s.name)) {
      st.pids = alive_pids(*f);
      st.running = !st.pids.empty();
      st.owner = f->owner;
      st.orphan = st.running && !alive(f->owner, f->owner_start);
    }
    out.push_back(st);
  }
  return out;
}

}  // namespace rehearse
