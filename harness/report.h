// Reports from the journal: `report` (the production downtime estimate) and
// `history` (runs with outcome and duration). Text for people, JSON for
// tools, an HTML page for sharing (report_html.h); all built from the same
// Report.
//
// JSON (`report --json`), compatible with earlier versions: `increments`
// (version, duration_ms, committed, steps[step, kind, duration_ms, items,
// per_second]), `never_run`, `total_ms` are unchanged; later additions are
// extra members: per increment run_id, layer, started, offset_ms, resumed,
// failed_attempts, diff, snapshot; per step checksum, calls, offset_ms,
// resumed, failed_attempts, rate_unit; at the top downtime_ms, history,
// compare, environment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "harness/journal.h"
#include "harness/step.h"
#include "harness/store.h"

namespace rehearse {

struct StepReport {
  std::string step, kind;
  int64_t duration_ms = 0;
  int64_t items = 0;
  double per_second = 0;          // items / s, 0 when unknown
  std::string checksum;           // of the step file the commit ran
  bool checksum_changed = false;  // the file in the steps folder differs now
  int64_t calls = 0;
  int64_t offset_ms = 0;    // where it starts inside its increment's bar
  bool resumed = false;     // ran in more than one segment (killed or stopped, then resumed)
  int failed_attempts = 0;  // failed runs of this step before the successful one
  std::string rate_unit() const { return kind == "batch" ? "rows/s" : "items/s"; }
};

// What an increment changed in the store (`rehearse diff V`).
struct DiffSummary {
  int64_t added = 0, changed = 0, deleted = 0, renamed = 0;
  int64_t added_bytes = 0, changed_bytes = 0;
  int64_t bytes = 0;  // what the changes hold in the store
};
DiffSummary summarize(const StoreDiff& d);

struct IncrementReport {
  std::string version;
  int64_t duration_ms = 0;  // step time of its last successful run
  double committed = 0;     // unix time
  int64_t commit_id = 0;
  int64_t run_id = 0;     // the run that committed it
  std::string layer;      // its checkpoint label
  double started = 0;     // unix time of its first step segment, 0 when unknown
  int64_t offset_ms = 0;  // where its bar starts on the timeline (sum of the ones before)
  bool resumed = false;   // its steps ran in more than one run
  int failed_attempts = 0;
  std::optional<DiffSummary> diff;  // only while its checkpoint is applied
  std::string snapshot;             // the production snapshot it ran on ("" unknown)
  std::vector<StepReport> steps;
};

struct CompareRow {
  std::string version;
  std::optional<int64_t> ms, other_ms;  // this report, the compared run
  std::string snapshot, other_snapshot;
};

struct Comparison {
  int64_t run_id = 0;
  std::vector<CompareRow> rows;
  int64_t total_ms = 0, other_total_ms = 0;
};

struct Environment {
  std::string host;
  std::string rehearse_version;
  std::string workspace, mountpoint, steps;
  std::vector<std::string> lowers;  // top first: the mirror is the first
  std::optional<double> refreshed;  // when the mirror was last refreshed
  std::string snapshot;             // the latest snapshot's description
  double generated = 0;
};

struct Report {
  std::vector<IncrementReport> increments;  // version order
  std::vector<std::string> never_run;       // plan increments without a successful run
  int64_t total_ms = 0;                     // the estimated downtime
  std::vector<RunRecord> history;           // oldest first
  std::optional<Comparison> compare;
  Environment env;
};

// For each increment of the plan, its last successful run (commit); with
// upto_run, only the commits of runs up to that one (the report as it was
// after that run). Fills the timeline offsets, the failed/resumed marks and
// the history; diff and environment are the caller's (they need the store
// and the host).
Report build_report(Journal& journal, const std::vector<Increment>& plan,
                    std::optional<int64_t> upto_run = std::nullopt);
// Compares r with the report as of run `run_id`; throws std::invalid_argument
// (one line) when there is no such run.
Comparison compare_reports(Journal& journal, const std::vector<Increment>& plan, const Report& r,
                           int64_t run_id);

std::string report_text(const Report& r);
std::string report_json(const Report& r);

std::string history_text(const std::vector<RunRecord>& runs);
std::string history_json(const std::vector<RunRecord>& runs);
std::string run_json(const RunRecord& r);

// "1h02m", "5.2s", "120 ms".
std::string human_ms(int64_t ms);
// "2026-12-04 01:02:03" in local time.
std::string local_time(double unix_time);

}  // namespace rehearse
