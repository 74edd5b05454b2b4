// rehearse rewind V: go back to the state right after increment V.
#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_rewind(CLI::App& app, RewindOptions& o) {
  auto* cmd = app.add_subcommand("rewind", "Go back to the state right after increment V");
  cmd->add_option("VERSION", o.version, "An applied increment")->required();
  cmd->add_flag("--json", o.json, "Events as JSON on stdout");
  return cmd;
}

int run_rewind(const Globals& g, const RewindOptions& o) {
  if (!Version::parse(o.version)) {
    return fail("'" + o.version + "' is not a version (dotted numbers like 1.2)", 2);
  }
  return run_pipeline(g, "rewind " + o.version, o.json, DataAccess::kStore,
                      [&](Session&, Pipeline& p, Progress&) { return p.rewind_to(o.version); });
}

}  // namespace rehearse::cli
