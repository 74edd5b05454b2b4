// rehearse rerun V: rewind to the checkpoint before V and run V alone.
#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_rerun(CLI::App& app, RerunOptions& o) {
  auto* cmd = app.add_subcommand("rerun", "Rewind to the checkpoint before V and run V alone");
  cmd->add_option("VERSION", o.version, "The increment to run again")->required();
  cmd->add_flag("--json", o.json, "One JSON object per event on stdout");
  cmd->add_option("--step-timeout", o.step_timeout,
                  "Fail (and roll back) a step still running after this long, e.g. 30s, 5m "
                  "(default: no limit)");
  return cmd;
}

int run_rerun(const Globals& g, const RerunOptions& o) {
  auto v = Version::parse(o.version);
  if (!v) return fail("'" + o.version + "' is not a version (dotted numbers like 1.2)", 2);
  std::string bad;
  auto timeout = step_timeout_option(o.step_timeout, &bad);
  if (!bad.empty()) return fail(bad, 2);
  std::vector<Increment> plan;
  int rc = guarded([&] {
    Workspace ws = Workspace::load(g.dir);
    plan = discover_steps(ws.config.steps, ws.config.has_database());
    for (const auto& inc : plan) {
      if (inc.version == *v) return 0;
    }
    // Refused before the lock or the mount: nothing changes.
    return fail("no increment " + v->str() + " in " + ws.config.steps + "; see `rehearse plan`", 2);
  });
  if (rc != 0) return rc;
  RunRequest req;
  req.only = v;
  req.step_timeout = timeout;
  return run_pipeline(g, "rerun " + o.version, o.json, DataAccess::kMount,
                      [&](Session&, Pipeline& p, Progress&) { return p.run(plan, req); });
}

}  // namespace rehearse::cli
