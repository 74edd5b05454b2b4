// Runners: execute one step of one increment.
//
//  * SQL (runner_sql.cc): the whole file in one transaction (BEGIN IMMEDIATE;
//    the file must not open or close transactions itself). The same
//    transaction marks the step finished in `_rehearse_cursor`, so a kill
//    between the database commit and the journal's record never runs it twice.
//  * Batched SQL (runner_batch.cc): walks the key range of table.key in
//    windows of `size` rows ([:lo, :hi], inclusive, by key order), one
//    transaction per window that also advances the step's cursor row. The
//    key range and total rows are fixed when the step first starts, so the
//    walk terminates and shows a total even if the step inserts rows.
//  * Executable (runner_exec.cc): called with cwd = data root and the
//    REHEARSE_* environment; exit 0 = finished, exit 75 (EX_TEMPFAIL) = call
//    me again with my state, anything else = failure. Output goes to the
//    step's log file; the last lines become the journal's tail.
//
// Tables the harness keeps inside the target database (so they rewind with
// the data they describe):
//   _rehearse_version(id=1, version, updated)   the data's version
//   _rehearse_cursor(version, step, checksum, next_lo, max_key, total,
//                    done_rows, batches, finished)
//
// Runners never throw for a step's own failure; they return kFailed with the
// first error line. Ctrl-C (the stop flag) yields kInterrupted. A step still
// running when its timeout (--step-timeout, the wall time of the step within
// this run) passes is stopped and fails with "timed out after T": SQL steps
// are interrupted inside SQLite (their transaction rolls back), executables
// get SIGTERM, then SIGKILL after kKillGrace, with their process group.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "harness/db.h"
#include "harness/progress.h"
#include "harness/step.h"

namespace rehearse {

inline constexpr int kExitMoreToDo = 75;  // EX_TEMPFAIL from <sysexits.h>

struct StepEnv {
  std::string data_root;                // the mountpoint (or the real data in place)
  std::optional<std::string> sqlite;    // absolute path of the target database
  std::optional<std::string> database;  // or a server's URL (engine.h)
  std::string run_dir;                  // REHEARSE_RUN: the services' {run}
  std::string version;                  // the increment's label
  std::string state_file;               // REHEARSE_STATE
  std::string log_path;                 // appended to
  Progress* progress = nullptr;
  const std::atomic<bool>* stop = nullptr;
  std::optional<std::chrono::milliseconds> timeout;  // none = wait forever
};

// Installed as SQLite's progress handler while a SQL or batched step runs:
// interrupts the statement on Ctrl-C or when the deadline passes, and keeps
// Progress ticking (the "a log line at least every 5 s" rule holds during a
// long statement too).
class SqlWatch {
 public:
  SqlWatch(Db& db, const StepEnv& env);
  ~SqlWatch();
  SqlWatch(const SqlWatch&) = delete;
  SqlWatch& operator=(const SqlWatch&) = delete;
  bool timed_out() const { return timed_out_; }
  bool stopped() const { return env_.stop && env_.stop->load(); }
  // Checks between statements/batches too; true when the step must end.
  bool should_end();
  // The failure text of a timed-out step.
  std::string timeout_error() const;

 private:
  static int handler(void* self);
  Db& db_;
  const StepEnv& env_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::chrono::steady_clock::time_point last_tick_;
  bool timed_out_ = false;
};

// "timed out after 30s (--step-timeout 30s)".
std::string timeout_message(std::chrono::milliseconds limit);

enum class Outcome { kDone, kFailed, kInterrupted };
const char* outcome_name(Outcome o);  // "ok", "failed", "interrupted"

struct StepResult {
  Outcome outcome = Outcome::kDone;
  std::string error;  // first error line when failed
  std::string tail;   // last lines of output
  int64_t items = 0;  // rows (batched) or DONE (executable) so far
  int64_t calls = 0;  // executable calls in this segment
  int exit_code = 0;
};

StepResult run_step(const Step& step, const StepEnv& env);
StepResult run_sql_step(const Step& step, const StepEnv& env);
StepResult run_batch_step(const Step& step, const StepEnv& env);
StepResult run_exec_step(const Step& step, const StepEnv& env);
// Against env.database (runner_server.cc).
StepResult run_server_sql_step(const Step& step, const StepEnv& env);
StepResult run_server_batch_step(const Step& step, const StepEnv& env);

// ---- target-database bookkeeping --------------------------------------------

void ensure_data_tables(Db& db);
// Was this step marked finished inside the data (checksum must match)?
bool step_finished_in_data(const std::string& sqlite, const std::string& version,
                           const std::string& step);
// Sets the data's version and forgets the increment's cursors, in one
// transaction.
void write_data_version(const std::string& sqlite, const std::string& version);
// nullopt when the database or the table is missing.
std::optional<std::string> read_data_version(const std::string& sqlite);
// The same three for a server database (URL); the server must be running.
bool server_step_finished(const std::string& url, const std::string& version,
                          const std::string& step);
void server_write_data_version(const std::string& url, const std::string& version);
std::optional<std::string> server_read_data_version(const std::string& url);

struct Window {
  int64_t lo = 0, hi = 0;
  int64_t rows = 0;  // rows of the table inside [lo, hi] when computed
};
// The next window starting at lo: up to `size` rows with key in [lo, max].
// nullopt when no row is left in [lo, max].
std::optional<Window> next_window(Db& db, const BatchSpec& spec, int64_t lo, int64_t max);

// Appends text to a step's log file (best effort: a full log disk must not
// fail the step).
void append_log(const std::string& path, const std::string& text);

// Runs every statement of sql, binding :lo/:hi where a statement names them
// (other parameters are an error). Throws DbError.
void exec_statements(Db& db, const std::string& sql, const std::optional<Window>& w);

}  // namespace rehearse
