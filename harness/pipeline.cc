#include "harness/pipeline.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "harness/disk.h"
#include "harness/faults.h"
#include "harness/runner.h"

namespace rehearse {

namespace fs = std::filesystem;

namespace {

std::optional<Version> parse_v(const std::string& s) { return Version::parse(s); }

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

}  // namespace

WorkspaceState analyze(std::vector<Increment> plan, Journal& journal) {
  WorkspaceState st;
  st.plan = std::move(plan);
  st.applied = journal.applied();
  std::map<std::string, const Increment*> by_label;
  for (const auto& inc : st.plan) by_label[inc.label()] = &inc;
  for (const auto& a : st.applied) {
    auto v = parse_v(a.version);
    if (!v) continue;
    if (!st.current || *v > *st.current) st.current = v;
    if (a.state == "stamped") st.stamped = v;
  }
  for (const auto& a : st.applied) {
    if (a.state == "stamped" || !a.commit_id) continue;
    ChangedIncrement ch{a.version, {}};
    auto it = by_label.find(a.version);
    if (it == by_label.end()) {
      ch.reasons.push_back("removed from the steps folder");
    } else {
      auto c = journal.commit(*a.commit_id);
      std::map<std::string, std::string> ran;
      if (c) {
        for (const auto& s : c->steps) ran[s.step] = s.checksum;
      }
      for (const auto& s : it->second->steps) {
        auto r = ran.find(s.name);
        if (r == ran.end()) {
          ch.reasons.push_back("step " + s.name + " added");
        } else if (r->second != s.checksum) {
          ch.reasons.push_back("step " + s.name + " changed");
        }
        ran.erase(s.name);
      }
      for (const auto& [name, sum] : ran) ch.reasons.push_back("step " + name + " removed");
    }
    if (!ch.reasons.empty()) st.changed.push_back(ch);
  }
  // An increment inserted below the current version was never applied.
  std::set<std::string> applied_labels;
  for (const auto& a : st.applied) applied_labels.insert(a.version);
  for (const auto& inc : st.plan) {
    if (!st.current || inc.version >= *st.current) break;
    if (st.stamped && inc.version <= *st.stamped) continue;
    if (!applied_labels.count(inc.label())) {
      st.changed.push_back(
          {inc.label(), {"new increment below the current version " + st.current->str()}});
    }
  }
  std::sort(st.changed.begin(), st.changed.end(),
            [](const auto& a, const auto& b) { return *parse_v(a.version) < *parse_v(b.version); });
  for (const auto& inc : st.plan) {
    if (!st.current || inc.version > *st.current) st.pending.push_back(&inc);
  }
  st.partial = journal.partial_version();
  st.partial_steps = journal.partial_steps();
  return st;
}

Pipeline::Pipeline(const Workspace& ws, Journal& journal, LayerStore* store, Progress& progress,
                   const std::atomic<bool>& stop, std::string data_root, int64_t run_id)
    : ws_(ws),
      journal_(journal),
      store_(store),
      progress_(progress),
      stop_(stop),
      data_root_(std::move(data_root)),
      run_id_(run_id) {}

std::optional<std::string> Pipeline::sqlite() const { return ws_.sqlite_under(data_root_); }
std::optional<std::string> Pipeline::database() const { return ws_.database_url(data_root_); }

void Pipeline::write_version(const std::string& version) {
  if (auto db = sqlite()) write_data_version(*db, version);
  if (auto url = database()) {
    if (services_) services_->start_all();
    server_write_data_version(*url, version);
  }
}

void Pipeline::make_durable() {
  if (!store_ || !services_ || !services_->running()) return;
  // The servers' own checkpoint first (shorter recovery after a rewind),
  // then everything they wrote out of the kernel's cache into the layer.
  services_->flush_all();
  int fd = ::open(data_root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = fd < 0 ? -1 : ::syncfs(fd);
  int saved = errno;
  if (fd >= 0) ::close(fd);
  if (rc != 0) {
    throw StoreError("cannot sync the mount " + data_root_ +
                     " before the checkpoint: " + std::strerror(saved));
  }
}

void Pipeline::clear_step_states() {
  std::error_code ec;
  fs::remove_all(ws_.step_state_dir(), ec);
  fs::create_directories(ws_.step_state_dir(), ec);
}

void Pipeline::recover() {
  if (int n = journal_.close_stale_runs(); n > 0) {
    journal_.event(run_id_, "recover", std::to_string(n) + " interrupted run(s) closed");
  }
  if (!store_) return;
  if (auto intent = journal_.intent()) {
    progress_.note("finishing an interrupted " + intent->op +
                   (intent->label.empty() ? "" : " to " + intent->label));
    if (intent->op == "rewind") {
      store_->rewind(intent->label);
    } else {
      store_->reset();
    }
    journal_.clear_intent();
    clear_step_states();
    journal_.event(run_id_, "recover", "redid " + intent->op + " " + intent->label);
  }
  std::set<std::string> labels;
  for (const auto& l : store_->layers()) {
    if (!l.top) labels.insert(l.label);
  }
  for (const auto& a : journal_.applied()) {
    if (a.layer.empty()) continue;  // applied in place
    if (a.state == "committing") {
      if (!labels.count(a.layer)) {
        progress_.note("repairing the commit of " + a.version + ": checkpointing its layer");
        store_->checkpoint(a.layer);
      } else {
        progress_.note("repairing the commit of " + a.version + ": recording it");
      }
      journal_.mark_applied(a.version);
      journal_.event(run_id_, "recover", "completed the commit of " + a.version);
    } else if (!labels.count(a.layer)) {
      progress_.note("warning: the store has no checkpoint '" + a.layer + "' for increment " +
                     a.version + " (changed outside rehearse?); forgetting it");
      journal_.drop_applied(a.version);
      journal_.event(run_id_, "recover", "dropped " + a.version + ": checkpoint missing");
    }
  }
}

void Pipeline::store_op(const std::vector<std::string>& drop, const Intent& intent) {
  // A server left running would write what it holds in memory over the
  // rewound files.
  if (services_) services_->stop_all();
  journal_.decide_store_op(drop, intent);  // 1
  crash_point("after-intent", intent.label);
  if (intent.op == "rewind") {  // 2
    store_->rewind(intent.label);
  } else {
    store_->reset();
  }
  crash_point("after-store-op", intent.label);
  journal_.clear_intent();  // 3
  clear_step_states();
}

void Pipeline::discard_top(const std::string& why) {
  auto applied = journal_.applied();
  progress_.note(why);
  if (applied.empty()) {
    store_op({}, {"reset", ""});
  } else {
    store_op({}, {"rewind", applied.back().layer});
  }
}

std::string Pipeline::unique_label(const std::string& version) {
  if (!store_) return "";
  std::set<std::string> used;
  for (const auto& l : store_->layers()) used.insert(l.label);
  if (!used.count(version)) return version;
  for (int i = 2;; ++i) {
    std::string l = version + "-r" + std::to_string(i);
    if (!used.count(l)) return l;
  }
}

PipelineResult Pipeline::run(std::vector<Increment> plan, const RunRequest& req) {
  step_timeout_ = req.step_timeout;
  WorkspaceState st = analyze(std::move(plan), journal_);
  if (!st.changed.empty() && !req.only) {
    for (const auto& c : st.changed) {
      progress_.note("applied increment " + c.version + " changed: " + join(c.reasons, ", "));
    }
    const std::string earliest = st.changed.front().version;
    if (req.in_place) {
      return {1, "steps of increment " + earliest + " changed after it was applied in place; " +
                     "in-place runs cannot rewind (restore the data, then `rehearse stamp`)"};
    }
    if (!req.rewind_changed) {
      return {1, "steps of applied increment " + earliest + " changed; run without " +
                     "--no-rewind-changed to rewind and rerun from there, or restore the steps"};
    }
    if (auto r = rewind_before(earliest); r.exit_code != 0) return r;
    st = analyze(std::move(st.plan), journal_);
  }
  if (req.only) {
    const std::string v = req.only->str();
    bool known = false;
    for (const auto& inc : st.plan) known = known || inc.version == *req.only;
    if (!known) return {1, "no increment " + v + " in " + ws_.config.steps};
    if (req.in_place) return {1, "rerun needs a rewind, which in-place runs cannot do"};
    if (auto r = rewind_before(v); r.exit_code != 0) return r;
    st = analyze(std::move(st.plan), journal_);
  }
  std::vector<const Increment*> targets;
  for (const auto* inc : st.pending) {
    if (req.to && inc->version > *req.to) break;
    targets.push_back(inc);
    if (req.only) break;
  }
  if (st.partial && !targets.empty()) {
    if (*st.partial != targets.front()->label()) {
      if (req.in_place) {
        return {1, "increment " + *st.partial + " was left half done in place; finish it first"};
      }
      discard_top("discarding the unfinished increment " + *st.partial +
                  " (it is no longer the next one)");
    } else {
      std::vector<std::string> edited;
      std::map<std::string, std::string> now;
      for (const auto& s : targets.front()->steps) now[s.name] = s.checksum;
      for (const auto& p : st.partial_steps) {
        auto it = now.find(p.step);
        if (it == now.end() || it->second != p.checksum) edited.push_back(p.step);
      }
      if (!edited.empty()) {
        if (req.in_place) {
          return {1, "steps of the half-done increment " + *st.partial + " changed (" +
                         join(edited, ", ") + "); in place this cannot be undone"};
        }
        discard_top("steps of the interrupted increment " + *st.partial + " changed (" +
                    join(edited, ", ") + "); restarting it from its checkpoint");
      } else {
        progress_.note("resuming increment " + *st.partial);
      }
    }
  }
  if (targets.empty()) {
    progress_.note(st.current ? "nothing to do: the data is at " + st.current->str()
                              : "nothing to do: no increments in " + ws_.config.steps);
    return {};
  }
  progress_.plan(static_cast<int>(targets.size()));
  int index = 0;
  for (const auto* inc : targets) {
    std::string error;
    IncResult r = run_increment(*inc, ++index, &error);
    if (r == IncResult::kFailed) return {1, error};
    if (r == IncResult::kInterrupted) {
      return {130, "interrupted in increment " + inc->label() + "; `rehearse run` resumes it"};
    }
  }
  return {};
}

Pipeline::IncResult Pipeline::run_increment(const Increment& inc, int index, std::string* error) {
  using clock = std::chrono::steady_clock;
  const std::string v = inc.label();
  progress_.increment_started(v, index);
  std::map<std::string, bool> done;
  for (const auto& p : journal_.partial_steps()) done[p.step] = p.done;
  std::error_code ec;
  fs::create_directories(ws_.logs_dir() + "/" + v, ec);
  int si = 0;
  for (const auto& step : inc.steps) {
    ++si;
    const std::string kind = kind_name(step.kind);
    if (done[step.name]) {
      progress_.step_skipped(v, step.name, "already done");
      continue;
    }
    if (stop_.load()) return IncResult::kInterrupted;
    if (services_ && !services_->empty()) {
      if (auto died = services_->dead()) progress_.note(*died + "; starting it again");
      services_->start_all();  // a service that is not ready fails the run
    }
    if (step.kind != StepKind::kExec &&
        ((sqlite() && step_finished_in_data(*sqlite(), v, step.name)) ||
         (database() && server_step_finished(*database(), v, step.name)))) {
      // Its transaction committed but the journal never heard: record it.
      journal_.add_partial(v, {step.name, kind, step.checksum, 0, 0, 0, true});
      progress_.step_skipped(v, step.name, "already done (found in the data)");
      continue;
    }
    // Registers the checksum before any work, so an edit made while this
    // increment is interrupted is noticed on resume.
    journal_.add_partial(v, {step.name, kind, step.checksum, 0, 0, 0, false});
    StepEnv env;
    env.data_root = data_root_;
    env.sqlite = sqlite();
    env.database = database();
    if (!ws_.config.services.empty()) env.run_dir = ws_.run_dir();
    env.version = v;
    env.state_file = ws_.step_state_dir() + "/" + v + "/" + step.name + ".state";
    env.log_path = ws_.logs_dir() + "/" + v + "/" + step.name + ".log";
    env.progress = &progress_;
    env.stop = &stop_;
    env.timeout = step_timeout_;
    int64_t sr = journal_.begin_step_run(run_id_, v, step.name, kind, step.checksum, env.log_path);
    progress_.step_started(v, step.name, kind, si, static_cast<int>(inc.steps.size()));
    auto t0 = clock::now();
    StepResult res = run_step(step, env);
    if (services_ && res.outcome != Outcome::kInterrupted) {
      if (auto died = services_->dead()) {
        std::string was = res.error.substr(0, res.error.find('\n'));
        res.outcome = Outcome::kFailed;
        res.error = *died + (was.empty() ? "" : " (the step said: " + was + ")");
        res.tail += (res.tail.empty() ? "" : "\n") + *died;
      }
    }
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0).count();
    if (res.outcome == Outcome::kFailed) {
      // Named before the rollback, which frees the space again.
      std::vector<std::string> dirs = {store_ ? ws_.store() : data_root_, ws_.state_dir()};
      if (auto full = full_disk_cause(dirs, res.error + "\n" + res.tail)) {
        res.error = res.error.substr(0, res.error.find('\n')) + " (" + *full + ")";
      }
    }
    journal_.add_partial(v, {step.name, kind, step.checksum, ms, res.items, res.calls,
                             res.outcome == Outcome::kDone});
    journal_.end_step_run(sr, outcome_name(res.outcome), ms, res.items, res.exit_code, res.error,
                          res.tail);
    progress_.step_finished(outcome_name(res.outcome), ms, res.items);
    if (res.outcome == Outcome::kInterrupted) return IncResult::kInterrupted;
    if (res.outcome == Outcome::kFailed) {
      std::string first = res.error.substr(0, res.error.find('\n'));
      progress_.failure(v, step.name, first);
      *error = "increment " + v + " failed at step " + step.name + ": " + first;
      if (!store_) {
        *error +=
            " (in place: only this step's own transaction was rolled back; the finished "
            "steps of " +
            v + " stay applied)";
        return IncResult::kFailed;
      }
      auto applied = journal_.applied();
      std::string back = applied.empty() ? "production" : applied.back().version;
      try {
        if (applied.empty()) {
          store_op({}, {"reset", ""});
        } else {
          store_op({}, {"rewind", applied.back().layer});
        }
      } catch (const StoreError& e) {
        // The intent stays recorded (I2): the next command finishes the
        // rollback. The step's failure stays the headline (a full disk can
        // make the rollback fail too).
        *error += "; the rollback to " + back + " did not finish (" + e.what() +
                  "); `rehearse run` finishes it once the cause is fixed";
        return IncResult::kFailed;
      }
      *error += " (rolled back to " + back + ")";
      return IncResult::kFailed;
    }
  }
  commit(inc);
  return IncResult::kCommitted;
}

void Pipeline::commit(const Increment& inc) {
  const std::string v = inc.label();
  write_version(v);  // 1
  crash_point("after-data-version", v);
  const std::string label = unique_label(v);
  int64_t id = journal_.mark_committing(v, run_id_, label);  // 2
  crash_point("after-committing", v);
  make_durable();
  if (store_) store_->checkpoint(label);  // 3
  crash_point("after-checkpoint", v);
  journal_.mark_applied(v);  // 4
  std::error_code ec;
  fs::remove_all(ws_.step_state_dir() + "/" + v, ec);
  auto c = journal_.commit(id);
  progress_.increment_committed(v, c ? c->duration_ms : 0, label);
}

PipelineResult Pipeline::rewind_to(const std::string& version) {
  if (!store_) return {1, "in-place data cannot be rewound"};
  auto applied = journal_.applied();
  auto v = parse_v(version);
  if (!v) return {1, "'" + version + "' is not a version (dotted numbers like 1.2)"};
  const AppliedIncrement* target = nullptr;
  std::vector<std::string> drop;
  for (const auto& a : applied) {
    auto av = parse_v(a.version);
    if (av && *av == *v) target = &a;
    if (av && *av > *v) drop.push_back(a.version);
  }
  if (!target) {
    std::vector<std::string> have;
    for (const auto& a : applied) have.push_back(a.version);
    return {1, "increment " + version + " is not applied (applied: " +
                   (have.empty() ? "none" : join(have, ", ")) + "); nothing to rewind to"};
  }
  if (target->layer.empty()) return {1, "increment " + version + " has no checkpoint"};
  store_op(drop, {"rewind", target->layer});
  progress_.note("rewound to the state after " + version);
  return {};
}

PipelineResult Pipeline::rewind_before(const std::string& version) {
  if (!store_) return {1, "in-place data cannot be rewound"};
  auto v = parse_v(version);
  if (!v) return {1, "'" + version + "' is not a version (dotted numbers like 1.2)"};
  auto applied = journal_.applied();
  const AppliedIncrement* prev = nullptr;
  std::vector<std::string> drop;
  for (const auto& a : applied) {
    auto av = parse_v(a.version);
    if (!av) continue;
    if (*av < *v) {
      prev = &a;
    } else {
      if (a.state == "stamped") {
        return {1, version + " is at or below the stamped version " + a.version +
                       "; there is no checkpoint before it (use `rehearse reset`)"};
      }
      drop.push_back(a.version);
    }
  }
  if (prev && prev->layer.empty()) return {1, "increment " + prev->version + " has no checkpoint"};
  if (prev) {
    store_op(drop, {"rewind", prev->layer});
    progress_.note("rewound to " + prev->version + " (before " + version + ")");
  } else {
    store_op(drop, {"reset", ""});
    progress_.note("reset to production (before " + version + ")");
  }
  return {};
}

PipelineResult Pipeline::reset() {
  if (!store_) return {1, "in-place data cannot be reset"};
  std::vector<std::string> drop;
  for (const auto& a : journal_.applied()) drop.push_back(a.version);
  store_op(drop, {"reset", ""});
  progress_.note("reset: the mount shows production again");
  return {};
}

PipelineResult Pipeline::stamp(const std::string& version) {
  auto v = parse_v(version);
  if (!v) return {1, "'" + version + "' is not a version (dotted numbers like 1.2)"};
  const std::string label = v->str();
  write_version(label);
  std::string layer = unique_label(label);
  make_durable();
  if (store_) store_->checkpoint(layer);
  journal_.stamp(label, layer, run_id_);
  clear_step_states();
  return {};
}

}  // namespace rehearse
