// Child processes: run a command and capture its output (cowfs), or run it
// with its stdout, stderr and a progress pipe streamed line by line to
// callbacks (executable steps, `rehearse exec`).
//
// Output lines longer than kMaxLineBytes are handed over in pieces of that
// size, so a child printing megabytes without a newline never makes us hold
// more than that per stream.
//
// Children get fds 0-2 (+ the progress fd when asked) and nothing else, so a
// daemon started through here (cowfs mount) never holds the workspace lock.
// Not thread-safe; the caller's thread runs the callbacks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rehearse {

struct ProcResult {
  int exit_code = -1;  // exit status, or -1 when killed by a signal
  int signal = 0;      // the signal that killed it, 0 if it exited
  std::string out;
  std::string err;
  bool timed_out = false;  // stopped because the deadline passed
  bool ok() const { return signal == 0 && exit_code == 0; }
};

// Runs argv (searching $PATH) and waits. Throws std::runtime_error when it
// cannot be started.
ProcResult run_capture(const std::vector<std::string>& argv);

inline constexpr size_t kMaxLineBytes = 64 * 1024;

using LineFn = std::function<void(const std::string&)>;

struct StreamOptions {
  std::vector<std::string> argv;
  std::string cwd;
  std::vector<std::string> env;    // full environment (KEY=VALUE)
  bool inherit_stdio = false;      // exec: pass the terminal through instead
  std::optional<int> progress_fd;  // number the child sees its progress pipe as
  bool die_with_parent = true;     // PR_SET_PDEATHSIG: a kill -9 of rehearse stops the step
  LineFn on_stdout, on_stderr, on_progress;
  std::function<void()> on_tick;  // about once a second while waiting
  // Polled on every tick; when true the child gets SIGTERM (then SIGKILL
  // after kKillGrace).
  const std::atomic<bool>* stop = nullptr;
  // When it passes, the child is stopped the same way and the result says
  // timed_out.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Put the child in its own process group and signal the whole group, so
  // a step's own children (a `sleep` in a shell script) stop with it. Not
  // for interactive commands (they would lose the terminal).
  bool own_group = false;
  // Hand stdout and stderr over as read, not split into lines: for machine
  // output (a JSON document may be one line of megabytes).
  bool whole_output = false;
};

inline constexpr std::chrono::seconds kKillGrace{5};

// Throws std::runtime_error when it cannot be started.
ProcResult run_streaming(const StreamOptions& o);

// The current environment plus/overriding `extra` (KEY=VALUE).
std::vector<std::string> environment_with(const std::vector<std::string>& extra);

}  // namespace rehearse
