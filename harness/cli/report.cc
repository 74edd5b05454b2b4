// rehearse report: per-increment durations of the last successful runs and
// their total, the estimate of production downtime; with the changes each
// increment made, the history, a comparison with an earlier run and the
// environment. Text, --json, or --html FILE (one self-contained page).
#include "harness/report.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/report_html.h"

namespace rehearse::cli {

namespace fs = std::filesystem;

CLI::App* setup_report(CLI::App& app, ReportOptions& o) {
  auto* cmd = app.add_subcommand("report", "Per-increment durations: the downtime estimate");
  cmd->add_flag("--json", o.json, "Print JSON");
  cmd->add_option("--html", o.html, "Write the report as one self-contained HTML page to FILE");
  cmd->add_option("--compare", o.compare,
                  "Compare each increment's duration with the same increment as of run RUN "
                  "(an id from `rehearse history`)");
  return cmd;
}

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// The changes of each increment whose checkpoint is still applied: from the
// checkpoint before it (or production) to its own, as `rehearse diff V`.
void add_diffs(Session& s, Report& r) {
  auto applied = s.journal->applied();
  if (!fs::exists(s.ws.store())) return;
  for (auto& inc : r.increments) {
    const AppliedIncrement* prev = nullptr;
    const AppliedIncrement* target = nullptr;
    for (const auto& a : applied) {
      if (a.layer.empty()) continue;
      if (a.commit_id && *a.commit_id == inc.commit_id) {
        target = &a;
        break;
      }
      prev = &a;
    }
    if (!target) continue;
    try {
      std::optional<std::string> from;
      if (prev) from = prev->layer;
      inc.diff = summarize(s.cowfs->diff(from, target->layer));
    } catch (const StoreError&) {
      // No diff for this one (the store cannot say); the rest of the report stands.
    }
  }
}

bool write_file(const std::string& path, const std::string& text, std::string* error) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) {
      *error = "cannot write " + tmp + ": " + std::strerror(errno);
      return false;
    }
    f << text;
    f.flush();
    if (!f) {
      *error = "cannot write " + tmp + ": " + std::strerror(errno);
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    *error = "cannot write " + path + ": " + ec.message();
    return false;
  }
  return true;
}

}  // namespace

int run_report(const Globals& g, const ReportOptions& o) {
  std::optional<int64_t> compare;
  if (!o.compare.empty()) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(o.compare.c_str(), &end, 10);
    if (errno != 0 || end == o.compare.c_str() || *end != '\0' || v <= 0) {
      return fail("--compare '" + o.compare + "' is not a run id; pick one from `rehearse history`",
                  2);
    }
    compare = v;
  }
  if (o.html && o.html->empty()) return fail("--html needs a file name", 2);
  return guarded([&] {
    Session s = open_session(g, false);
    auto plan = discover_steps(s.ws.config.steps, s.ws.config.has_database());
    Report r = build_report(*s.journal, plan);
    if (compare) {
      try {
        r.compare = compare_reports(*s.journal, plan, r, *compare);
      } catch (const std::invalid_argument& e) {
        return fail(e.what(), 2);
      }
    }
    add_diffs(s, r);
    r.env.host = host_name();
    r.env.rehearse_version = REHEARSE_VERSION;
    r.env.workspace = s.ws.root;
    r.env.mountpoint = s.ws.config.mountpoint;
    r.env.steps = s.ws.config.steps;
    r.env.lowers = s.ws.config.lowers;
    r.env.generated = now_seconds();
    if (o.html) {
      std::string error;
      if (!write_file(*o.html, report_html(r), &error)) return fail(error, 1);
      if (!o.json) std::cout << "wrote " << *o.html << "\n";
    }
    if (o.json) {
      std::cout << report_json(r) << "\n";
    } else if (!o.html) {
      std::cout << report_text(r);
    }
    return 0;
  });
}

}  // namespace rehearse::cli
