// Executable steps: bounded calls, each with the step's saved state, until
// the step says it is finished (exit 0) or fails.
#include <sys/stat.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/journal.h"
#include "harness/process.h"
#include "harness/runner.h"

namespace rehearse {

namespace {

// The journal keeps the last kTailLines lines of output, each cut to
// kTailLineBytes: a step printing megabytes leaves at most ~10 KiB there (the
// whole output is in the step's log file).
constexpr size_t kTailLines = 20;
constexpr size_t kTailLineBytes = 500;
constexpr int kProgressFd = 3;

std::string cut(const std::string& line) {
  if (line.size() <= kTailLineBytes) return line;
  return line.substr(0, kTailLineBytes) + "... (" + std::to_string(line.size()) + " bytes)";
}

std::string join_tail(const std::deque<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Parses "DONE TOTAL [message]"; false when the line is not of that form.
bool parse_progress(const std::string& line, int64_t& done, int64_t& total, std::string& msg) {
  std::istringstream in(line);
  long long d = 0, t = 0;
  if (!(in >> d >> t)) return false;
  done = d;
  total = t;
  std::getline(in, msg);
  auto p = msg.find_first_not_of(' ');
  msg = p == std::string::npos ? "" : msg.substr(p);
  return true;
}

}  // namespace

StepResult run_exec_step(const Step& step, const StepEnv& env) {
  StepResult r;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(env.state_file).parent_path(), ec);
  if (!std::filesystem::exists(env.state_file)) std::ofstream(env.state_file).flush();
  std::ofstream log(env.log_path, std::ios::app);
  std::deque<std::string> tail;
  int64_t done = 0, total = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (env.timeout) deadline = std::chrono::steady_clock::now() + *env.timeout;
  while (true) {
    std::string first_stderr;
    auto keep = [&](const std::string& stream, const std::string& line) {
      log << "[" << stream << "] " << line << "\n";
      tail.push_back(cut(stream == "stderr" ? "! " + line : line));
      if (tail.size() > kTailLines) tail.pop_front();
      if (stream == "stderr" && first_stderr.empty() &&
          line.find_first_not_of(" \t") != std::string::npos) {
        first_stderr = cut(line);
      }
      if (env.progress) env.progress->output(stream, line);
    };
    StreamOptions o;
    o.argv = {step.path};
    o.cwd = env.data_root;
    std::vector<std::string> extra = {
        "REHEARSE_ROOT=" + env.data_root,
        "REHEARSE_VERSION=" + env.version,
        "REHEARSE_STEP=" + step.name,
        "REHEARSE_STATE=" + env.state_file,
        "REHEARSE_PROGRESS_FD=" + std::to_string(kProgressFd),
        "REHEARSE_MORE_EXIT=" + std::to_string(kExitMoreToDo),
    };
    if (env.sqlite) extra.push_back("REHEARSE_SQLITE=" + *env.sqlite);
    if (env.database) extra.push_back("REHEARSE_DATABASE=" + *env.database);
    if (!env.run_dir.empty()) extra.push_back("REHEARSE_RUN=" + env.run_dir);
    o.env = environment_with(extra);
    o.progress_fd = kProgressFd;
    o.on_stdout = [&](const std::string& l) { keep("stdout", l); };
    o.on_stderr = [&](const std::string& l) { keep("stderr", l); };
    o.on_progress = [&](const std::string& l) {
      std::string msg;
      if (parse_progress(l, done, total, msg)) {
        if (env.progress) env.progress->progress(done, total, msg);
      } else {
        log << "[progress] unparsable line: " << l << "\n";
      }
    };
    o.on_tick = [&] {
      if (env.progress) env.progress->tick();
    };
    o.stop = env.stop;
    o.deadline = deadline;
    o.own_group = true;
    log << "== call " << (r.calls + 1) << " at " << static_cast<int64_t>(now_seconds()) << "\n"
        << std::flush;
    ProcResult p;
    try {
      p = run_streaming(o);
    } catch (const std::exception& e) {
      r.outcome = Outcome::kFailed;
      r.error = e.what();
      break;
    }
    ++r.calls;
    log << "== exit "
        << (p.signal ? "signal " + std::to_string(p.signal) : std::to_string(p.exit_code)) << "\n"
        << std::flush;
    const bool stopping = env.stop && env.stop->load();
    if (p.timed_out && !stopping) {
      r.outcome = Outcome::kFailed;
      r.exit_code = p.signal ? 128 + p.signal : p.exit_code;
      r.error = timeout_message(*env.timeout);
      log << "== " << r.error << "\n" << std::flush;
      break;
    }
    if (p.signal == 0 && p.exit_code == 0) {
      r.outcome = Outcome::kDone;
      break;
    }
    if (p.signal == 0 && p.exit_code == kExitMoreToDo) {
      if (stopping) {
        r.outcome = Outcome::kInterrupted;
        break;
      }
      continue;
    }
    if (stopping) {  // killed by our SIGTERM, or exited because of it
      r.outcome = Outcome::kInterrupted;
      break;
    }
    r.outcome = Outcome::kFailed;
    r.exit_code = p.signal ? 128 + p.signal : p.exit_code;
    std::string why = p.signal ? "killed by signal " + std::to_string(p.signal)
                               : "exit " + std::to_string(p.exit_code);
    r.error = first_stderr.empty() ? why : first_stderr + " (" + why + ")";
    break;
  }
  r.items = done;
  r.tail = join_tail(tail);
  return r;
}

}  // namespace rehearse
