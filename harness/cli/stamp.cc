// rehearse stamp V: declare the data's version when it was lost.
#include <iostream>

#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_stamp(CLI::App& app, StampOptions& o) {
  auto* cmd = app.add_subcommand(
      "stamp", "Declare that the data is at version V (when its version was lost)");
  cmd->add_option("VERSION", o.version, "The version the data is at")->required();
  cmd->add_flag("--json", o.json, "Events as JSON on stdout");
  return cmd;
}

int run_stamp(const Globals& g, const StampOptions& o) {
  auto v = Version::parse(o.version);
  if (!v) return fail("'" + o.version + "' is not a version (dotted numbers like 1.2)", 2);
  return run_pipeline(
      g, "stamp " + o.version, o.json, DataAccess::kMount,
      [&](Session&, Pipeline& p, Progress& progress) {
        progress.note("warning: stamping declares the data to be at version " + v->str() +
                      " without running anything; increments up to " + v->str() +
                      " will be skipped. If that is not the data's real version, the "
                      "rehearsal is meaningless.");
        auto r = p.stamp(o.version);
        if (r.exit_code == 0) progress.note("stamped version " + v->str());
        return r;
      });
}

}  // namespace rehearse::cli
