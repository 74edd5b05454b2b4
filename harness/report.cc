#include "harness/report.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>

#include "harness/json.h"
#include "harness/progress.h"

namespace rehearse {

DiffSummary summarize(const StoreDiff& d) {
  DiffSummary s;
  s.added = static_cast<int64_t>(d.added.size());
  s.changed = static_cast<int64_t>(d.changed.size());
  s.deleted = static_cast<int64_t>(d.deleted.size());
  s.renamed = static_cast<int64_t>(d.renamed.size());
  for (const auto& e : d.added) s.added_bytes += e.bytes;
  for (const auto& e : d.changed) s.changed_bytes += e.bytes;
  s.bytes = d.bytes;
  return s;
}

std::string human_ms(int64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  return Progress::human_duration(static_cast<double>(ms) / 1000.0);
}

std::string local_time(double t) {
  std::time_t tt = static_cast<std::time_t>(t);
  char buf[32];
  std::tm tm{};
  ::localtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

namespace {

struct Segment {
  int64_t run_id = 0;
  std::string step, outcome;
  double started = 0;
};

// The step segments of `version` that ran in (after, until].
std::vector<Segment> segments(Journal& journal, const std::string& version, double after,
                              double until) {
  auto s = journal.db().prepare(
      "SELECT run_id, step, outcome, started FROM step_runs WHERE version=? AND started>? AND "
      "started<=? ORDER BY id");
  s.bind(1, version).bind(2, after).bind(3, until);
  std::vector<Segment> out;
  while (s.step()) out.push_back({s.int64(0), s.text(1), s.text(2), s.real(3)});
  return out;
}

// "#2 rsync://prod/app, 2026-12-01 10:00:00" for the snapshot a run that
// started at `t` used: the latest one taken before it.
std::string snapshot_at(const std::vector<SnapshotRecord>& snaps, double t) {
  const SnapshotRecord* best = nullptr;
  for (const auto& s : snaps) {
    if (s.taken <= t) best = &s;
  }
  if (!best) return "";
  return "#" + std::to_string(best->id) + " " + best->source + ", " + local_time(best->taken);
}

}  // namespace

Report build_report(Journal& journal, const std::vector<Increment>& plan,
                    std::optional<int64_t> upto_run) {
  auto commits = journal.commits();
  std::map<std::string, CommitRecord> last;
  std::map<int64_t, double> previous_commit_of;  // commit id -> the earlier commit's time
  {
    std::map<std::string, double> seen;
    for (auto& c : commits) {
      if (upto_run && c.run_id > *upto_run) continue;
      previous_commit_of[c.id] = seen.count(c.version) ? seen[c.version] : 0.0;
      seen[c.version] = c.committed;
      last[c.version] = c;  // later commits win
    }
  }
  std::map<int64_t, double> run_started;
  Report r;
  r.history = journal.runs();
  for (const auto& run : r.history) run_started[run.id] = run.started;
  auto snaps = journal.snapshots();
  std::map<std::string, std::string> current;  // step file -> checksum, per version
  for (const auto& inc : plan) {
    auto it = last.find(inc.label());
    if (it == last.end()) {
      r.never_run.push_back(inc.label());
      continue;
    }
    const CommitRecord& c = it->second;
    IncrementReport ir;
    ir.version = inc.label();
    ir.duration_ms = c.duration_ms;
    ir.committed = c.committed;
    ir.commit_id = c.id;
    ir.run_id = c.run_id;
    ir.layer = c.layer;
    ir.offset_ms = r.total_ms;
    auto segs = segments(journal, ir.version, previous_commit_of[c.id], c.committed);
    double last_failure = 0;
    std::set<int64_t> runs;
    std::map<std::string, std::set<int64_t>> step_runs;
    std::map<std::string, int> step_failed, step_interrupted;
    for (const auto& sg : segs) {
      if (sg.outcome == "failed") {
        ++ir.failed_attempts;
        ++step_failed[sg.step];
        last_failure = std::max(last_failure, sg.started);
      }
    }
    for (const auto& sg : segs) {
      if (sg.started <= last_failure) continue;  // the attempts before the last failure
      runs.insert(sg.run_id);
      step_runs[sg.step].insert(sg.run_id);
      if (sg.outcome == "interrupted" || sg.outcome == "running") ++step_interrupted[sg.step];
      if (ir.started == 0 || sg.started < ir.started) ir.started = sg.started;
    }
    ir.resumed = runs.size() > 1;
    double used_at = ir.started > 0 ? ir.started : run_started[c.run_id];
    ir.snapshot = snapshot_at(snaps, used_at);
    int64_t offset = 0;
    for (const auto& s : c.steps) {
      StepReport sr;
      sr.step = s.step;
      sr.kind = s.kind;
      sr.duration_ms = s.duration_ms;
      sr.items = s.items;
      if (s.items > 0 && s.duration_ms > 0) {
        sr.per_second = static_cast<double>(s.items) * 1000.0 / static_cast<double>(s.duration_ms);
      }
      sr.checksum = s.checksum;
      for (const auto& st : inc.steps) {
        if (st.name == s.step) sr.checksum_changed = st.checksum != s.checksum;
      }
      sr.calls = s.calls;
      sr.offset_ms = offset;
      offset += s.duration_ms;
      sr.resumed = step_runs[s.step].size() > 1 || step_interrupted[s.step] > 0;
      if (sr.resumed) ir.resumed = true;
      sr.failed_attempts = step_failed[s.step];
      ir.steps.push_back(sr);
    }
    r.total_ms += ir.duration_ms;
    r.increments.push_back(ir);
  }
  if (!snaps.empty()) {
    r.env.refreshed = snaps.back().taken;
    r.env.snapshot = snapshot_at(snaps, snaps.back().taken);
  }
  return r;
}

Comparison compare_reports(Journal& journal, const std::vector<Increment>& plan, const Report& r,
                           int64_t run_id) {
  bool found = false;
  for (const auto& run : r.history) found = found || run.id == run_id;
  if (!found) {
    throw std::invalid_argument("--compare " + std::to_string(run_id) +
                                ": no such run; pick an id from `rehearse history`");
  }
  Report other = build_report(journal, plan, run_id);
  Comparison c;
  c.run_id = run_id;
  c.total_ms = r.total_ms;
  c.other_total_ms = other.total_ms;
  for (const auto& inc : plan) {
    CompareRow row;
    row.version = inc.label();
    for (const auto& i : r.increments) {
      if (i.version == row.version) {
        row.ms = i.duration_ms;
        row.snapshot = i.snapshot;
      }
    }
    for (const auto& i : other.increments) {
      if (i.version == row.version) {
        row.other_ms = i.duration_ms;
        row.other_snapshot = i.snapshot;
      }
    }
    if (row.ms || row.other_ms) c.rows.push_back(row);
  }
  return c;
}

namespace {
std::string secs(int64_t ms) { return Progress::human_duration(static_cast<double>(ms) / 1000.0); }

std::string signed_ms(int64_t ms) { return (ms < 0 ? "-" : "+") + secs(ms < 0 ? -ms : ms); }
}  // namespace

std::string report_text(const Report& r) {
  std::string out;
  char buf[512];
  for (const auto& inc : r.increments) {
    std::string marks;
    if (inc.resumed) marks += ", resumed";
    if (inc.failed_attempts > 0)
      marks += ", " + std::to_string(inc.failed_attempts) + " failed before";
    std::snprintf(buf, sizeof buf, "%-12s %10s   (last successful run %s%s)\n", inc.version.c_str(),
                  secs(inc.duration_ms).c_str(), local_time(inc.committed).c_str(), marks.c_str());
    out += buf;
    if (!inc.snapshot.empty()) out += "  on snapshot " + inc.snapshot + "\n";
    for (const auto& s : inc.steps) {
      std::string rate;
      if (s.per_second > 0) {
        char rb[64];
        std::snprintf(rb, sizeof rb, "%lld %s, %.0f/s", static_cast<long long>(s.items),
                      s.kind == "batch" ? "rows" : "items", s.per_second);
        rate = rb;
      }
      std::snprintf(buf, sizeof buf, "  %-30s %-5s %10s  %s\n", s.step.c_str(), s.kind.c_str(),
                    secs(s.duration_ms).c_str(), rate.c_str());
      out += buf;
    }
    if (inc.diff) {
      std::snprintf(
          buf, sizeof buf,
          "  changes: %lld added, %lld changed, %lld deleted, %lld renamed; %lld bytes\n",
          static_cast<long long>(inc.diff->added), static_cast<long long>(inc.diff->changed),
          static_cast<long long>(inc.diff->deleted), static_cast<long long>(inc.diff->renamed),
          static_cast<long long>(inc.diff->bytes));
      out += buf;
    }
  }
  for (const auto& v : r.never_run) out += v + "            (no successful run yet)\n";
  out += "total " + secs(r.total_ms) + ": the estimated production downtime";
  if (!r.never_run.empty()) out += " (without the increments never run)";
  out += "\n";
  if (r.compare) {
    out += "compared with run #" + std::to_string(r.compare->run_id) + ":\n";
    for (const auto& row : r.compare->rows) {
      std::string a = row.ms ? secs(*row.ms) : "-";
      std::string b = row.other_ms ? secs(*row.other_ms) : "-";
      std::string d = row.ms && row.other_ms ? signed_ms(*row.ms - *row.other_ms) : "";
      std::snprintf(buf, sizeof buf, "  %-12s %10s  (run #%lld: %s)  %s\n", row.version.c_str(),
                    a.c_str(), static_cast<long long>(r.compare->run_id), b.c_str(), d.c_str());
      out += buf;
      // Rehearsals on different snapshots of production: say which.
      if (row.snapshot != row.other_snapshot) {
        out += "    on snapshot " + (row.snapshot.empty() ? "(none recorded)" : row.snapshot) +
               " vs " + (row.other_snapshot.empty() ? "(none recorded)" : row.other_snapshot) +
               "\n";
      }
    }
    out += "  total " + secs(r.compare->total_ms) + " vs " + secs(r.compare->other_total_ms) +
           " (" + signed_ms(r.compare->total_ms - r.compare->other_total_ms) + ")\n";
  }
  return out;
}

namespace {
std::string opt_int(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("null");
}
}  // namespace

std::string report_json(const Report& r) {
  std::vector<std::string> incs;
  for (const auto& inc : r.increments) {
    std::vector<std::string> steps;
    for (const auto& s : inc.steps) {
      steps.push_back(json::Object()
                          .add("step", s.step)
                          .add("kind", s.kind)
                          .add("duration_ms", s.duration_ms)
                          .add("items", s.items)
                          .add("per_second", s.per_second)
                          .add("rate_unit", s.rate_unit())
                          .add("checksum", s.checksum)
                          .add("checksum_changed", s.checksum_changed)
                          .add("calls", s.calls)
                          .add("offset_ms", s.offset_ms)
                          .add("resumed", s.resumed)
                          .add("failed_attempts", s.failed_attempts)
                          .str());
    }
    json::Object o;
    o.add("version", inc.version)
        .add("duration_ms", inc.duration_ms)
        .add("committed", inc.committed)
        .add_raw("steps", json::array(steps))
        .add("commit_id", inc.commit_id)
        .add("run_id", inc.run_id)
        .add("layer", inc.layer)
        .add("started", inc.started)
        .add("offset_ms", inc.offset_ms)
        .add("resumed", inc.resumed)
        .add("failed_attempts", inc.failed_attempts)
        .add("snapshot", inc.snapshot);
    if (inc.diff) {
      o.add_raw("diff", json::Object()
                            .add("added", inc.diff->added)
                            .add("changed", inc.diff->changed)
                            .add("deleted", inc.diff->deleted)
                            .add("renamed", inc.diff->renamed)
                            .add("added_bytes", inc.diff->added_bytes)
                            .add("changed_bytes", inc.diff->changed_bytes)
                            .add("bytes", inc.diff->bytes)
                            .str());
    } else {
      o.add_null("diff");
    }
    incs.push_back(o.str());
  }
  std::vector<std::string> never;
  for (const auto& v : r.never_run) never.push_back(json::quote(v));
  std::vector<std::string> history;
  for (const auto& run : r.history) history.push_back(run_json(run));
  json::Object top;
  top.add_raw("increments", json::array(incs))
      .add_raw("never_run", json::array(never))
      .add("total_ms", r.total_ms)
      .add("downtime_ms", r.total_ms)
      .add_raw("history", json::array(history));
  if (r.compare) {
    std::vector<std::string> rows;
    for (const auto& row : r.compare->rows) {
      std::string delta =
          row.ms && row.other_ms ? std::to_string(*row.ms - *row.other_ms) : std::string("null");
      rows.push_back(json::Object()
                         .add("version", row.version)
                         .add_raw("duration_ms", opt_int(row.ms))
                         .add_raw("other_duration_ms", opt_int(row.other_ms))
                         .add_raw("difference_ms", delta)
                         .add("snapshot", row.snapshot)
                         .add("other_snapshot", row.other_snapshot)
                         .str());
    }
    top.add_raw("compare",
                json::Object()
                    .add("run_id", r.compare->run_id)
                    .add_raw("increments", json::array(rows))
                    .add("total_ms", r.compare->total_ms)
                    .add("other_total_ms", r.compare->other_total_ms)
                    .add("difference_ms", r.compare->total_ms - r.compare->other_total_ms)
                    .str());
  } else {
    top.add_null("compare");
  }
  std::vector<std::string> lowers;
  for (const auto& l : r.env.lowers) lowers.push_back(json::quote(l));
  json::Object env;
  env.add("host", r.env.host)
      .add("rehearse_version", r.env.rehearse_version)
      .add("workspace", r.env.workspace)
      .add("mountpoint", r.env.mountpoint)
      .add("steps", r.env.steps)
      .add_raw("lowers", json::array(lowers))
      .add("mirror", r.env.lowers.empty() ? std::string() : r.env.lowers.front());
  if (r.env.refreshed) {
    env.add("refreshed", *r.env.refreshed);
  } else {
    env.add_null("refreshed");
  }
  env.add("snapshot", r.env.snapshot).add("generated", r.env.generated);
  top.add_raw("environment", env.str());
  return top.str();
}

std::string history_text(const std::vector<RunRecord>& runs) {
  std::string out;
  char buf[512];
  for (const auto& r : runs) {
    std::string dur = r.finished ? secs(static_cast<int64_t>((*r.finished - r.started) * 1000))
                                 : std::string("-");
    std::snprintf(buf, sizeof buf, "#%-4lld %s  %-24s %-11s %8s%s%s\n",
                  static_cast<long long>(r.id), local_time(r.started).c_str(), r.command.c_str(),
                  r.outcome.c_str(), dur.c_str(), r.in_place ? "  in place" : "",
                  r.error.empty() ? "" : ("  " + r.error).c_str());
    out += buf;
  }
  if (runs.empty()) out = "no runs yet\n";
  return out;
}

std::string run_json(const RunRecord& r) {
  json::Object o;
  o.add("id", r.id).add("command", r.command).add("started", r.started);
  if (r.finished) {
    o.add("finished", *r.finished);
    o.add("duration_ms", static_cast<int64_t>((*r.finished - r.started) * 1000));
  } else {
    o.add_null("finished");
  }
  o.add("outcome", r.outcome).add("error", r.error).add("in_place", r.in_place);
  return o.str();
}

std::string history_json(const std::vector<RunRecord>& runs) {
  std::vector<std::string> items;
  for (const auto& r : runs) items.push_back(run_json(r));
  return json::Object().add_raw("runs", json::array(items)).str();
}

}  // namespace rehearse
