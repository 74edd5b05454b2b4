// rehearse reset: drop every layer; the mount shows production again.
#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_reset(CLI::App& app, ResetOptions& o) {
  auto* cmd = app.add_subcommand("reset", "Drop every layer: back to production");
  cmd->add_flag("--json", o.json, "Events as JSON on stdout");
  return cmd;
}

int run_reset(const Globals& g, const ResetOptions& o) {
  return run_pipeline(g, "reset", o.json, DataAccess::kStore,
                      [&](Session&, Pipeline& p, Progress&) { return p.reset(); });
}

}  // namespace rehearse::cli
