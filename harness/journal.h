// Journal: the harness's own record of a workspace, a SQLite database
// (.rehearse/journal.db) whose schema is upgraded by ordered migrations
// (journal_schema.cc; PRAGMA user_version is the schema version).
//
// Tables (schema 2):
//   runs          one row per mutating command: outcome running | ok | failed |
//                 interrupted, error line, pid, in_place flag
//   step_runs     one row per step segment (a call of an executable, a stretch
//                 of batches): outcome, duration, items, exit code, output tail
//   partial       the steps of the increment in progress that are finished
//                 (or accumulated time/items of unfinished ones)
//   commits       every successful increment commit, never deleted (history,
//                 report): version, duration, layer label
//   commit_steps  per commit: step, kind, checksum, duration, items
//   applied       the increments the data currently holds: version,
//                 state committing | applied | stamped, commit id, layer label
//   intent        at most one store operation (rewind/reset) that was decided
//                 but may not have reached the store yet (see pipeline.h)
//   events        (schema 2) notable events: changed steps, repairs, stamps
//   snapshots     (schema 3) each refresh of the mirror (`rehearse refresh`):
//                 when, from where, into which mirror, its size; a run used
//                 the latest snapshot taken before it started
//
// Every mutation is one SQLite transaction. Not thread-safe; one process
// mutates a journal at a time (the workspace lock).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "harness/db.h"

namespace rehearse {

struct Migration {
  int version;  // the user_version after it
  const char* purpose;
  const char* sql;
};
// The ordered upgrades; migrations()[i].version == i + 1.
const std::vector<Migration>& journal_migrations();
inline constexpr int kJournalSchema = 3;

struct AppliedIncrement {
  std::string version;
  std::string state;  // committing | applied | stamped
  std::optional<int64_t> commit_id;
  std::string layer;  // cowfs label, "" when none (in place)
};

struct StepRecord {
  std::string step;
  std::string kind;
  std::string checksum;
  int64_t duration_ms = 0;
  int64_t items = 0;
  int64_t calls = 0;
  bool done = false;  // partial only
};

struct CommitRecord {
  int64_t id = 0;
  std::string version;
  int64_t run_id = 0;
  double committed = 0;
  int64_t duration_ms = 0;
  std::string layer;
  std::vector<StepRecord> steps;
};

struct RunRecord {
  int64_t id = 0;
  std::string command;
  int64_t pid = 0;
  double started = 0;
  std::optional<double> finished;
  std::string outcome;
  std::string error;
  bool in_place = false;
};

struct StepRunRecord {
  int64_t id = 0;
  int64_t run_id = 0;
  std::string version, step, kind, outcome, error, output_tail, log_path;
  double started = 0;
  int64_t duration_ms = 0, items = 0, exit_code = 0;
};

struct SnapshotRecord {
  int64_t id = 0;
  double taken = 0;  // unix time the refresh finished
  std::string source, mirror;
  int64_t bytes = 0, files = 0;
};

struct Intent {
  std::string op;     // "rewind" | "reset"
  std::string label;  // rewind target
};

class Journal {
 public:
  // Opens (creating it if missing: only `init` relies on that) and migrates
  // to kJournalSchema. Throws DbError naming the file when it is from a newer
  // rehearse, or damaged (not a database, PRAGMA quick_check fails, a table
  // is missing). A damaged journal is never repaired or recreated: guessing
  // could make the harness forget what the data holds and replay increments.
  static Journal open(const std::string& path);
  // Opens and migrates only up to `target` (tests of the migrations).
  static Journal open_at(const std::string& path, int target);
  int schema_version();
  Db& db() { return db_; }

  // Runs.
  int64_t begin_run(const std::string& command, bool in_place);
  void end_run(int64_t id, const std::string& outcome, const std::string& error = "");
  // Marks runs still 'running' as interrupted (called under the workspace
  // lock, so no such run is alive). Returns how many.
  int close_stale_runs();
  std::vector<RunRecord> runs(int limit = 1000);
  std::optional<RunRecord> last_run();

  // Step segments.
  int64_t begin_step_run(int64_t run_id, const std::string& version, const std::string& step,
                         const std::string& kind, const std::string& checksum,
                         const std::string& log_path);
  void end_step_run(int64_t id, const std::string& outcome, int64_t duration_ms, int64_t items,
                    int64_t exit_code, const std::string& error, const std::string& tail);
  std::vector<StepRunRecord> step_runs(int64_t run_id);
  std::optional<StepRunRecord> last_failure(const std::string& version);

  // The increment in progress.
  std::optional<std::string> partial_version();
  std::vector<StepRecord> partial_steps();
  // Adds time/items/calls of one segment of a step; done marks it finished.
  void add_partial(const std::string& version, const StepRecord& segment);
  void clear_partial();

  // Applied increments, sorted by version.
  std::vector<AppliedIncrement> applied();
  // Step 2 of the commit (pipeline.h): records V as committing with the
  // partial steps as its commit, and clears the partial rows; returns the
  // commit id.
  int64_t mark_committing(const std::string& version, int64_t run_id, const std::string& layer);
  void mark_applied(const std::string& version);
  void drop_applied(const std::string& version);
  // Removes applied rows whose version is in `versions`, clears the partial
  // rows and records the intent, all in one transaction.
  void decide_store_op(const std::vector<std::string>& drop_versions, const Intent& intent);
  std::optional<Intent> intent();
  void clear_intent();
  // Replaces every applied row by one stamped row.
  void stamp(const std::string& version, const std::string& layer, int64_t run_id);

  std::vector<CommitRecord> commits();  // oldest first, with steps
  std::optional<CommitRecord> commit(int64_t id);

  void event(int64_t run_id, const std::string& kind, const std::string& detail);

  // Snapshots of production (refreshes of the mirror).
  int64_t add_snapshot(const SnapshotRecord& s);
  std::vector<SnapshotRecord> snapshots();  // oldest first

 private:
  explicit Journal(Db db) : db_(std::move(db)) {}
  void migrate(int target);
  std::vector<StepRecord> commit_steps(int64_t commit_id);
  Db db_;
};

double now_seconds();

}  // namespace rehearse
