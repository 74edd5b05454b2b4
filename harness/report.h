// Reports from the journal: `report` (the production downtime estimate) and
// `history` (runs with outcome and duration). Text for people, JSON for
// tools; both built from the same rows.
#pragma once

#include <string>
#include <vector>

#include "harness/journal.h"
#include "harness/step.h"

namespace rehearse {

struct StepReport {
  std::string step, kind;
  int64_t duration_ms = 0;
  int64_t items = 0;
  double per_second = 0;  // items / s, 0 when unknown
};

struct IncrementReport {
  std::string version;
  int64_t duration_ms = 0;  // step time of its last successful run
  double committed = 0;     // unix time
  std::vector<StepReport> steps;
};

struct Report {
  std::vector<IncrementReport> increments;  // version order
  std::vector<std::string> never_run;       // plan increments without a successful run
  int64_t total_ms = 0;
};

// For each increment of the plan, its last successful run (commit).
Report build_report(Journal& journal, const std::vector<Increment>& plan);
std::string report_text(const Report& r);
std::string report_json(const Report& r);

std::string history_text(const std::vector<RunRecord>& runs);
std::string history_json(const std::vector<RunRecord>& runs);

}  // namespace rehearse
