// Pipeline: runs increments in order, commits each one, resumes interrupted
// ones, rolls failed ones back, and rewinds when applied steps changed.
//
// Crash ordering (each numbered write is durable before the next starts):
//
//   Commit of increment V (all steps finished):
//     1. data: _rehearse_version := V (and V's cursors dropped), one SQLite
//        transaction in the target database, i.e. in the top layer;
//     2. journal: applied[V] = committing (+ the commit record, partial rows
//        cleared), one transaction;
//     3. store: checkpoint with V's label (freezes the top layer);
//     4. journal: applied[V] = applied.
//   Store operation (rewind, reset, failure rollback, discarding a stale
//   partial increment):
//     1. journal: drop the applied rows above the target, clear partial rows,
//        record the intent (op + label), one transaction;
//     2. store: rewind/reset;
//     3. journal: clear the intent.
//
// Invariants, restored by recover() at the start of every mutating command
// (under the workspace lock):
//   I1. A crash between commit steps 2 and 4 leaves V `committing`: if the
//       store has V's label the checkpoint happened (mark applied), else the
//       top layer still holds exactly V's work (checkpoint it now).
//   I2. A crash after step 1 of a store operation leaves the intent: it is
//       carried out again (rewinding to a label twice is the same as once).
//   I3. The store is the truth for which checkpoints exist: an applied row
//       whose label the store no longer has is dropped (with a warning).
//   I4. At most one increment is partial, and it is the first pending one;
//       anything else is discarded (its layer rewound away) before running.
//   I5. The layers above the last applied checkpoint hold only the partial
//       increment's work.
//   Crash between commit steps 1 and 2: the journal still has V partial with
//   every step done; the next run skips them all and commits again (step 1
//   is idempotent).
//
// Each numbered step above is followed by a crash_point() (faults.h), so the
// crash tests can stop the process exactly there.
//
// A failed step's message names a full disk when that is the cause
// (disk.h), checked before the rollback frees the space.
//
// Services (service.h), when set: started before the first step that runs,
// stopped before every store operation, flushed before the checkpoint of a
// commit, which then syncs the mount (syncfs) so the frozen layer holds
// everything the servers wrote; a service that dies during a step fails it.
//
// In-place mode (no overlay): steps 3 and store operations do not exist;
// a failed increment keeps the work of its finished steps (only the failing
// step's own transaction is rolled back), and rewinds are refused.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "harness/config.h"
#include "harness/journal.h"
#include "harness/progress.h"
#include "harness/service.h"
#include "harness/step.h"
#include "harness/store.h"

namespace rehearse {

struct ChangedIncrement {
  std::string version;
  std::vector<std::string> reasons;  // "step 20-x.sql changed", "step y added", ...
};

// What the journal and the steps folder say together (no store access).
struct WorkspaceState {
  std::vector<Increment> plan;
  std::vector<AppliedIncrement> applied;  // sorted by version
  std::optional<Version> current;         // the data's version per the journal
  std::optional<Version> stamped;         // the stamped version, if any
  std::vector<ChangedIncrement> changed;  // earliest first
  std::vector<const Increment*> pending;  // plan increments above current
  std::optional<std::string> partial;     // increment in progress
  std::vector<StepRecord> partial_steps;
};
WorkspaceState analyze(std::vector<Increment> plan, Journal& journal);

struct RunRequest {
  std::optional<Version> to;    // run --to V
  std::optional<Version> only;  // rerun V
  bool rewind_changed = true;
  bool in_place = false;
  std::optional<std::chrono::milliseconds> step_timeout;  // --step-timeout
};

struct PipelineResult {
  int exit_code = 0;  // 0 ok, 1 failed/refused, 130 interrupted
  std::string error;  // one line when not ok
};

class Pipeline {
 public:
  // store is null in place. data_root is where steps run (the mountpoint).
  Pipeline(const Workspace& ws, Journal& journal, LayerStore* store, Progress& progress,
           const std::atomic<bool>& stop, std::string data_root, int64_t run_id);

  void set_services(Services* services) { services_ = services; }
  void recover();
  PipelineResult run(std::vector<Increment> plan, const RunRequest& req);
  PipelineResult rewind_to(const std::string& version);      // the state right after version
  PipelineResult rewind_before(const std::string& version);  // the state before version
  PipelineResult reset();
  PipelineResult stamp(const std::string& version);

 private:
  enum class IncResult { kCommitted, kFailed, kInterrupted };
  IncResult run_increment(const Increment& inc, int index, std::string* error);
  void commit(const Increment& inc);
  // Store operation with the intent protocol (see above).
  void store_op(const std::vector<std::string>& drop, const Intent& intent);
  // Back to the last applied checkpoint (or production): discards the top.
  void discard_top(const std::string& why);
  std::string unique_label(const std::string& version);
  void clear_step_states();
  std::optional<std::string> sqlite() const;
  std::optional<std::string> database() const;  // a server's URL, placeholders expanded
  // The data's version in the target database (SQLite or server).
  void write_version(const std::string& version);
  // Before a checkpoint while services run: flush them, syncfs the mount.
  void make_durable();

  const Workspace& ws_;
  Journal& journal_;
  LayerStore* store_;
  Progress& progress_;
  const std::atomic<bool>& stop_;
  std::string data_root_;
  int64_t run_id_;
  std::optional<std::chrono::milliseconds> step_timeout_;
  Services* services_ = nullptr;
};

}  // namespace rehearse
