#include "harness/report.h"

#include <cstdio>
#include <ctime>
#include <map>

#include "harness/json.h"
#include "harness/progress.h"

namespace rehearse {

Report build_report(Journal& journal, const std::vector<Increment>& plan) {
  std::map<std::string, CommitRecord> last;
  for (auto& c : journal.commits()) last[c.version] = c;  // later commits win
  Report r;
  for (const auto& inc : plan) {
    auto it = last.find(inc.label());
    if (it == last.end()) {
      r.never_run.push_back(inc.label());
      continue;
    }
    IncrementReport ir;
    ir.version = inc.label();
    ir.duration_ms = it->second.duration_ms;
    ir.committed = it->second.committed;
    for (const auto& s : it->second.steps) {
      StepReport sr{s.step, s.kind, s.duration_ms, s.items, 0};
      if (s.items > 0 && s.duration_ms > 0) {
        sr.per_second = static_cast<double>(s.items) * 1000.0 / static_cast<double>(s.duration_ms);
      }
      ir.steps.push_back(sr);
    }
    r.total_ms += ir.duration_ms;
    r.increments.push_back(ir);
  }
  return r;
}

namespace {
std::string secs(int64_t ms) { return Progress::human_duration(static_cast<double>(ms) / 1000.0); }

std::string when(double t) {
  std::time_t tt = static_cast<std::time_t>(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&tt));
  return buf;
}
}  // namespace

std::string report_text(const Report& r) {
  std::string out;
  char buf[256];
  for (const auto& inc : r.increments) {
    std::snprintf(buf, sizeof buf, "%-12s %10s   (last successful run %s)\n", inc.version.c_str(),
                  secs(inc.duration_ms).c_str(), when(inc.committed).c_str());
    out += buf;
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
  }
  for (const auto& v : r.never_run) out += v + "            (no successful run yet)\n";
  out += "total " + secs(r.total_ms) + ": the estimated production downtime";
  if (!r.never_run.empty()) out += " (without the increments never run)";
  return out + "\n";
}

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
                          .str());
    }
    incs.push_back(json::Object()
                       .add("version", inc.version)
                       .add("duration_ms", inc.duration_ms)
                       .add("committed", inc.committed)
                       .add_raw("steps", json::array(steps))
                       .str());
  }
  std::vector<std::string> never;
  for (const auto& v : r.never_run) never.push_back(json::quote(v));
  return json::Object()
      .add_raw("increments", json::array(incs))
      .add_raw("never_run", json::array(never))
      .add("total_ms", r.total_ms)
      .str();
}

std::string history_text(const std::vector<RunRecord>& runs) {
  std::string out;
  char buf[512];
  for (const auto& r : runs) {
    std::string dur = r.finished ? secs(static_cast<int64_t>((*r.finished - r.started) * 1000))
                                 : std::string("-");
    std::snprintf(buf, sizeof buf, "#%-4lld %s  %-24s %-11s %8s%s%s\n",
                  static_cast<long long>(r.id), when(r.started).c_str(), r.command.c_str(),
                  r.outcome.c_str(), dur.c_str(), r.in_place ? "  in place" : "",
                  r.error.empty() ? "" : ("  " + r.error).c_str());
    out += buf;
  }
  if (runs.empty()) out = "no runs yet\n";
  return out;
}

std::string history_json(const std::vector<RunRecord>& runs) {
  std::vector<std::string> items;
  for (const auto& r : runs) {
    json::Object o;
    o.add("id", r.id).add("command", r.command).add("started", r.started);
    if (r.finished) {
      o.add("finished", *r.finished);
      o.add("duration_ms", static_cast<int64_t>((*r.finished - r.started) * 1000));
    } else {
      o.add_null("finished");
    }
    o.add("outcome", r.outcome).add("error", r.error).add("in_place", r.in_place);
    items.push_back(o.str());
  }
  return json::Object().add_raw("runs", json::array(items)).str();
}

}  // namespace rehearse
