// rehearse history: every run with its outcome and duration.
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/report.h"

namespace rehearse::cli {

CLI::App* setup_history(CLI::App& app, HistoryOptions& o) {
  auto* cmd = app.add_subcommand("history", "Runs with outcome and duration");
  cmd->add_flag("--json", o.json, "Print JSON");
  return cmd;
}

int run_history(const Globals& g, const HistoryOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    auto runs = s.journal->runs();
    std::cout << (o.json ? history_json(runs) + "\n" : history_text(runs));
    return 0;
  });
}

}  // namespace rehearse::cli
