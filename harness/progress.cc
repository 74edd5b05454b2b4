#include "harness/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ostream>

#include "harness/json.h"

namespace rehearse {

Progress::Progress(Mode mode, bool verbose, std::ostream& out, std::ostream& err)
    : mode_(mode), verbose_(verbose), out_(out), err_(err) {}

Progress::Mode Progress::detect(bool json) {
  if (json) return Mode::kJson;
  return ::isatty(2) ? Mode::kTerminal : Mode::kLog;
}

std::string Progress::human_duration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600,
                  (static_cast<int>(s) % 3600) / 60);
  }
  return buf;
}

std::string Progress::position() const {
  return "[" + version_ + " step " + std::to_string(step_index_) + "/" +
         std::to_string(step_count_) + ", increment " + std::to_string(increment_index_) + "/" +
         std::to_string(increments_) + "]";
}

double Progress::rate() const {
  if (first_done_ < 0) return 0;
  double secs = std::chrono::duration<double>(clock::now() - first_done_at_).count();
  return secs > 0.2 ? static_cast<double>(done_ - first_done_) / secs : 0;
}

std::string Progress::status_line() const {
  std::string line = position() + " " + step_;
  const double rate = this->rate();
  char buf[160];
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    std::string bar;
    if (mode_ == Mode::kTerminal) {
      const int width = 24;
      int full = static_cast<int>(frac * width);
      bar = " [" + std::string(static_cast<size_t>(full), '#') +
            std::string(static_cast<size_t>(width - full), '.') + "]";
    }
    std::snprintf(buf, sizeof buf, "%s %lld/%lld (%.0f%%)", bar.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), frac * 100);
    line += buf;
  } else if (done_ > 0) {
    line += " " + std::to_string(done_);
  }
  if (rate > 0) {
    std::snprintf(buf, sizeof buf, " %.0f/s", rate);
    line += buf;
    if (total_ > done_)
      line += " ETA " + human_duration(static_cast<double>(total_ - done_) / rate);
  }
  double elapsed = std::chrono::duration<double>(clock::now() - step_start_).count();
  line += " " + human_duration(elapsed);
  if (!message_.empty()) line += " " + message_;
  return line;
}

void Progress::clear_bar() {
  if (mode_ == Mode::kTerminal && bar_visible_) {
    err_ << "\r\033[K";
    bar_visible_ = false;
  }
}

void Progress::draw(bool force) {
  auto now = clock::now();
  if (mode_ == Mode::kTerminal) {
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    std::string line = status_line();
    if (line.size() > 200) line.resize(200);
    err_ << "\r\033[K" << line << std::flush;
    bar_visible_ = true;
  } else if (mode_ == Mode::kLog) {
    if (!force && now - last_log_ < std::chrono::seconds(5)) return;
    last_log_ = now;
    err_ << "rehearse: " << status_line() << "\n" << std::flush;
  }
}

void Progress::log_line(const std::string& text) {
  if (mode_ == Mode::kJson || mode_ == Mode::kQuiet) return;
  clear_bar();
  err_ << "rehearse: " << text << "\n";
  if (in_step_) {
    draw(true);
  } else {
    err_ << std::flush;
  }
}

void Progress::plan(int increments) {
  increments_ = increments;
  increment_index_ = 0;
}

void Progress::increment_started(const std::string& version, int index) {
  version_ = version;
  increment_index_ = index;
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "increment_started")
                .add("version", version)
                .add("index", index)
                .add("count", increments_)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  log_line("increment " + version + " (" + std::to_string(index) + "/" +
           std::to_string(increments_) + ")");
}

void Progress::step_started(const std::string& version, const std::string& step,
                            const std::string& kind, int index, int count) {
  version_ = version;
  step_ = step;
  step_index_ = index;
  step_count_ = count;
  done_ = total_ = 0;
  first_done_ = -1;
  message_.clear();
  step_start_ = last_log_ = clock::now();
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "step_started")
                .add("version", version)
                .add("step", step)
                .add("kind", kind)
                .add("index", index)
                .add("count", count)
                .str()
         << "\n"
         << std::flush;
    in_step_ = true;
    return;
  }
  in_step_ = false;
  log_line(position() + " " + step + " (" + kind + ") started");
  in_step_ = true;
  if (mode_ == Mode::kTerminal) draw(true);
}

void Progress::step_skipped(const std::string& version, const std::string& step,
                            const std::string& why) {
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "step_skipped")
                .add("version", version)
                .add("step", step)
                .add("reason", why)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  log_line(version + " " + step + ": " + why);
}

void Progress::progress(int64_t done, int64_t total, const std::string& message) {
  if (first_done_ < 0) {
    first_done_ = done;
    first_done_at_ = clock::now();
  }
  done_ = done;
  total_ = total;
  if (!message.empty()) message_ = message;
  if (mode_ == Mode::kJson) {
    auto now = clock::now();
    // Every report would flood a pipe reader; 10 per second is plenty.
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total) return;
    last_draw_ = now;
    json::Object o;
    o.add("event", "progress").add("version", version_).add("step", step_).add("done", done);
    o.add("total", total);
    const double r = rate();
    o.add("rate", r);
    if (r > 0 && total > done) {
      o.add("eta_s", static_cast<double>(total - done) / r);
    } else {
      o.add_null("eta_s");
    }
    if (!message.empty()) o.add("message", message);
    out_ << o.str() << "\n" << std::flush;
    return;
  }
  draw(false);
}

void Progress::output(const std::string& stream, const std::string& line) {
  if (!verbose_) return;
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "step_output")
                .add("version", version_)
                .add("step", step_)
                .add("stream", stream)
                .add("line", line)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  if (mode_ == Mode::kQuiet) return;
  clear_bar();
  err_ << "  " << step_ << ": " << line << "\n";
  if (in_step_) draw(true);
}

void Progress::tick() {
  if (in_step_ && mode_ != Mode::kJson) draw(false);
}

void Progress::step_finished(const std::string& outcome, int64_t duration_ms, int64_t items) {
  in_step_ = false;
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "step_finished")
                .add("version", version_)
                .add("step", step_)
                .add("outcome", outcome)
                .add("duration_ms", duration_ms)
                .add("items", items)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  clear_bar();
  log_line(position() + " " + step_ + " " + outcome + " in " +
           human_duration(static_cast<double>(duration_ms) / 1000.0) +
           (items > 0 ? " (" + std::to_string(items) + " items)" : ""));
}

void Progress::increment_committed(const std::string& version, int64_t duration_ms,
                                   const std::string& layer) {
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "increment_committed")
                .add("version", version)
                .add("duration_ms", duration_ms)
                .add("layer", layer)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  log_line("increment " + version + " committed (" +
           human_duration(static_cast<double>(duration_ms) / 1000.0) + " of step time)");
}

void Progress::failure(const std::string& version, const std::string& step,
                       const std::string& error) {
  in_step_ = false;
  if (mode_ == Mode::kJson) {
    out_ << json::Object()
                .add("event", "failure")
                .add("version", version)
                .add("step", step)
                .add("error", error)
                .str()
         << "\n"
         << std::flush;
    return;
  }
  clear_bar();
}

void Progress::note(const std::string& text) {
  if (mode_ == Mode::kJson) {
    out_ << json::Object().add("event", "note").add("message", text).str() << "\n" << std::flush;
    return;
  }
  log_line(text);
}

void Progress::run_finished(const std::string& outcome, int exit_code, const std::string& error) {
  if (mode_ != Mode::kJson) return;
  out_ << json::Object()
              .add("event", "run_finished")
              .add("outcome", outcome)
              .add("exit_code", exit_code)
              .add("error", error)
              .str()
       << "\n"
       << std::flush;
}

}  // namespace rehearse
