// rehearse report: per-increment durations of the last successful runs and
// their total, the estimate of production downtime.
#include "harness/report.h"

#include <iostream>

#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_report(CLI::App& app, ReportOptions& o) {
  auto* cmd = app.add_subcommand("report", "Per-increment durations: the downtime estimate");
  cmd->add_flag("--json", o.json, "Print JSON");
  return cmd;
}

int run_report(const Globals& g, const ReportOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    auto plan = discover_steps(s.ws.config.steps, s.ws.config.has_database());
    Report r = build_report(*s.journal, plan);
    std::cout << (o.json ? report_json(r) + "\n" : report_text(r));
    return 0;
  });
}

}  // namespace rehearse::cli
