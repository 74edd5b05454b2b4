// Progress: what the user sees while a pipeline runs, in one of three modes.
//
//  * kTerminal (stderr is a tty): one live bar per step with done/total,
//    rate and ETA, plus the increment and overall position; notes and -v
//    output are printed above the bar.
//  * kLog (no terminal): plain lines on stderr at step start/end and at
//    least every 5 s while a step runs (tick() is called about once a second).
//  * kJson (--json, run --progress json): one JSON object per line per event
//    on stdout (step_started, progress with done/total/rate/eta_s,
//    step_output, step_finished, increment_started, increment_committed,
//    failure, note, run_finished); nothing else goes to stdout.
//
// The pipeline calls these from one thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace rehearse {

class Progress {
 public:
  enum class Mode { kTerminal, kLog, kJson, kQuiet };
  Progress(Mode mode, bool verbose, std::ostream& out, std::ostream& err);
  // kTerminal when stderr is a terminal, else kLog; kJson when json.
  static Mode detect(bool json);

  Mode mode() const { return mode_; }
  bool verbose() const { return verbose_; }

  void plan(int increments);  // how many increments this run will try
  void increment_started(const std::string& version, int index);
  void step_started(const std::string& version, const std::string& step, const std::string& kind,
                    int index, int count);
  void step_skipped(const std::string& version, const std::string& step, const std::string& why);
  // The current step's position; total 0 = unknown.
  void progress(int64_t done, int64_t total, const std::string& message = "");
  void output(const std::string& stream, const std::string& line);
  void tick();
  void step_finished(const std::string& outcome, int64_t duration_ms, int64_t items);
  void increment_committed(const std::string& version, int64_t duration_ms,
                           const std::string& layer);
  void failure(const std::string& version, const std::string& step, const std::string& error);
  void note(const std::string& text);
  // The command's outcome (ok | failed | interrupted); JSON mode only.
  void run_finished(const std::string& outcome, int exit_code, const std::string& error);

  // "1h02m", "5.2s": durations for people.
  static std::string human_duration(double seconds);

 private:
  using clock = std::chrono::steady_clock;
  std::string position() const;
  std::string status_line() const;
  double rate() const;  // items/s of the current step since its first report; 0 unknown
  void draw(bool force);
  void clear_bar();
  void log_line(const std::string& text);

  Mode mode_;
  bool verbose_;
  std::ostream& out_;
  std::ostream& err_;
  int increments_ = 0;
  int increment_index_ = 0;
  std::string version_;
  std::string step_;
  int step_index_ = 0;
  int step_count_ = 0;
  bool in_step_ = false;
  int64_t done_ = 0;
  int64_t total_ = 0;
  int64_t first_done_ = -1;  // done at the first report of this segment (rate base)
  std::string message_;
  clock::time_point step_start_{};
  clock::time_point first_done_at_{};
  clock::time_point last_draw_{};
  clock::time_point last_log_{};
  bool bar_visible_ = false;
};

}  // namespace rehearse
