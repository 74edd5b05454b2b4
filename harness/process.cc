#include "harness/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>

extern char** environ;

namespace rehearse {

namespace {

std::vector<char*> cstrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Splits complete lines out of buf, calling fn for each; a line that grows
// past kMaxLineBytes is passed on in pieces (bounded memory).
void drain_lines(std::string& buf, const LineFn& fn, bool flush) {
  size_t start = 0, pos;
  while ((pos = buf.find('\n', start)) != std::string::npos) {
    // A long line whose end arrived in the same read as much of it.
    for (; pos - start > kMaxLineBytes; start += kMaxLineBytes) {
      if (fn) fn(buf.substr(start, kMaxLineBytes));
    }
    if (fn) fn(buf.substr(start, pos - start));
    start = pos + 1;
  }
  while (buf.size() - start >= kMaxLineBytes) {
    if (fn) fn(buf.substr(start, kMaxLineBytes));
    start += kMaxLineBytes;
  }
  buf.erase(0, start);
  if (flush && !buf.empty()) {
    if (fn) fn(buf);
    buf.clear();
  }
}

// Where execvp would find argv0 (it searches PATH in the parent's
// environment), resolved before fork: execvp is not async-signal-safe, and
// it is the child of a threaded process that runs it. A name that is not
// found is returned as it is, so that execve reports ENOENT.
std::string resolve_command(const std::string& argv0) {
  if (argv0.empty() || argv0.find('/') != std::string::npos) return argv0;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/bin:/usr/bin";
  size_t start = 0;
  while (true) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? colon : colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + argv0;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string::npos) return argv0;
    start = colon + 1;
  }
}

// strerror is not async-signal-safe: the child names the usual reasons an
// exec fails from this table, and any other by its number.
void write_exec_error(int fd, int err) {
  const char* what = nullptr;
  switch (err) {
    case ENOENT:
      what = "No such file or directory";
      break;
    case EACCES:
      what = "Permission denied";
      break;
    case ENOEXEC:
      what = "Exec format error";
      break;
    case ENOTDIR:
      what = "Not a directory";
      break;
    case ELOOP:
      what = "Too many levels of symbolic links";
      break;
    case ENAMETOOLONG:
      what = "File name too long";
      break;
    case E2BIG:
      what = "Argument list too long";
      break;
    case ENOMEM:
      what = "Cannot allocate memory";
      break;
    case ETXTBSY:
      what = "Text file busy";
      break;
    default:
      break;
  }
  if (what != nullptr) {
    (void)!::write(fd, what, std::strlen(what));
    return;
  }
  char digits[16];
  int n = 0;
  unsigned v = static_cast<unsigned>(err);
  do {
    digits[sizeof digits - 1 - n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < static_cast<int>(sizeof digits));
  const char prefix[] = "error ";
  (void)!::write(fd, prefix, sizeof prefix - 1);
  (void)!::write(fd, digits + sizeof digits - n, static_cast<size_t>(n));
}

ProcResult status_to_result(int status) {
  ProcResult r;
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  return r;
}

}  // namespace

std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> env;
  std::vector<std::string> order;
  auto put = [&](const std::string& kv) {
    auto eq = kv.find('=');
    std::string k = kv.substr(0, eq);
    if (!env.count(k)) order.push_back(k);
    env[k] = kv;
  };
  for (char** e = environ; e && *e; ++e) put(*e);
  for (const auto& kv : extra) put(kv);
  std::vector<std::string> out;
  for (const auto& k : order) out.push_back(env[k]);
  return out;
}

ProcResult run_capture(const std::vector<std::string>& argv) {
  StreamOptions o;
  o.argv = argv;
  o.env = environment_with({});
  o.die_with_parent = false;  // `cowfs mount` forks a daemon that must outlive us
  o.whole_output = true;
  std::string out, err;
  o.on_stdout = [&](const std::string& chunk) { out += chunk; };
  o.on_stderr = [&](const std::string& chunk) { err += chunk; };
  ProcResult r = run_streaming(o);
  r.out = out;
  r.err = err;
  return r;
}

ProcResult run_streaming(const StreamOptions& o) {
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, prog_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {out_pipe, err_pipe, prog_pipe}) {
      for (int i = 0; i < 2; ++i) {
        if (p[i] >= 0) ::close(p[i]);
        p[i] = -1;
      }
    }
  };
  if (!o.inherit_stdio && (::pipe2(out_pipe, O_CLOEXEC) < 0 || ::pipe2(err_pipe, O_CLOEXEC) < 0)) {
    close_all();
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  if (o.progress_fd && ::pipe2(prog_pipe, O_CLOEXEC) < 0) {
    close_all();
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  // Prepared before fork: only async-signal-safe calls in the child.
  auto argv = cstrings(o.argv);
  auto envp = cstrings(o.env);
  const std::string command = resolve_command(o.argv.empty() ? "" : o.argv[0]);
  // A file without a #! line is run by the shell, as execvp does.
  std::vector<std::string> sh_args{"/bin/sh", command};
  if (!o.argv.empty()) sh_args.insert(sh_args.end(), o.argv.begin() + 1, o.argv.end());
  auto sh_argv = cstrings(sh_args);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    close_all();
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  // Set on both sides of the fork so a signal sent right away finds the group.
  if (pid > 0 && o.own_group) ::setpgid(pid, pid);
  if (pid == 0) {
    if (o.own_group) ::setpgid(0, 0);
    if (o.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) _exit(127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (!o.inherit_stdio) {
      ::dup2(devnull, 0);
      ::dup2(out_pipe[1], 1);
      ::dup2(err_pipe[1], 2);
    }
    int first_free = 3;
    if (o.progress_fd) {
      ::dup2(prog_pipe[1], *o.progress_fd);
      first_free = *o.progress_fd + 1;
      // Everything between 3 and the progress fd must go too.
      for (int fd = 3; fd < *o.progress_fd; ++fd) ::close(fd);
    }
    ::close_range(static_cast<unsigned>(first_free), ~0U, 0);
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) < 0) {
      const char msg[] = "rehearse: cannot enter the working directory\n";
      (void)!::write(2, msg, sizeof msg - 1);
      _exit(127);
    }
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(command.c_str(), argv.data(), envp.data());
    if (errno == ENOEXEC) ::execve(sh_argv[0], sh_argv.data(), envp.data());
    const int err = errno;
    const char msg[] = "rehearse: cannot execute the command: ";
    (void)!::write(2, msg, sizeof msg - 1);
    write_exec_error(2, err);
    (void)!::write(2, "\n", 1);
    _exit(127);
  }
  for (int* p : {out_pipe, err_pipe, prog_pipe}) {
    if (p[1] >= 0) ::close(p[1]);
    p[1] = -1;
  }

  struct Stream {
    int fd;
    std::string buf;
    const LineFn* fn;
  };
  std::vector<Stream> streams;
  if (out_pipe[0] >= 0) streams.push_back({out_pipe[0], "", &o.on_stdout});
  if (err_pipe[0] >= 0) streams.push_back({err_pipe[0], "", &o.on_stderr});
  if (prog_pipe[0] >= 0) streams.push_back({prog_pipe[0], "", &o.on_progress});

  using clock = std::chrono::steady_clock;
  auto last_tick = clock::now();
  std::optional<clock::time_point> term_sent;
  bool timed_out = false;
  auto signal_child = [&](int sig) { ::kill(o.own_group ? -pid : pid, sig); };
  int status = 0;
  bool reaped = false;
  size_t open_streams = streams.size();
  char buf[65536];
  while (!reaped || open_streams > 0) {
    if (!timed_out && o.deadline && clock::now() >= *o.deadline && !reaped) timed_out = true;
    if (((o.stop && o.stop->load()) || timed_out) && !reaped) {
      if (!term_sent) {
        signal_child(SIGTERM);
        term_sent = clock::now();
      } else if (clock::now() - *term_sent > kKillGrace) {
        signal_child(SIGKILL);
      }
    }
    std::vector<pollfd> pfds;
    for (auto& s : streams) {
      if (s.fd >= 0) pfds.push_back({s.fd, POLLIN, 0});
    }
    int timeout = reaped ? 1000 : 200;
    if (!pfds.empty()) {
      int n = ::poll(pfds.data(), pfds.size(), timeout);
      if (n < 0 && errno != EINTR) break;
      for (auto& p : pfds) {
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        for (auto& s : streams) {
          if (s.fd != p.fd) continue;
          ssize_t r = ::read(s.fd, buf, sizeof buf);
          if (r > 0 && o.whole_output) {
            if (*s.fn) (*s.fn)(std::string(buf, static_cast<size_t>(r)));
          } else if (r > 0) {
            s.buf.append(buf, static_cast<size_t>(r));
            drain_lines(s.buf, *s.fn, false);
          } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
            drain_lines(s.buf, *s.fn, true);
            ::close(s.fd);
            s.fd = -1;
            --open_streams;
          }
        }
      }
    } else if (!reaped) {
      ::poll(nullptr, 0, timeout);
    }
    if (!reaped) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) reaped = true;
    }
    // A grandchild (e.g. a daemon) may hold our pipes after the child exited:
    // stop reading once the child is gone and nothing is pending.
    if (reaped && open_streams > 0) {
      bool any = false;
      for (auto& s : streams) {
        if (s.fd < 0) continue;
        pollfd p{s.fd, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0 && (p.revents & POLLIN)) any = true;
      }
      if (!any) {
        for (auto& s : streams) {
          if (s.fd < 0) continue;
          drain_lines(s.buf, *s.fn, true);
          ::close(s.fd);
          s.fd = -1;
        }
        open_streams = 0;
      }
    }
    if (o.on_tick && clock::now() - last_tick >= std::chrono::seconds(1)) {
      last_tick = clock::now();
      o.on_tick();
    }
  }
  if (!reaped) ::waitpid(pid, &status, 0);
  // The step's own children may outlive it; with a group, they go too.
  if (o.own_group && (term_sent || timed_out)) ::kill(-pid, SIGKILL);
  ProcResult r = status_to_result(status);
  r.timed_out = timed_out;
  return r;
}

}  // namespace rehearse
