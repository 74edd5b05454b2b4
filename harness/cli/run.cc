// rehearse run: run the pending increments (resuming an interrupted one,
// rewinding when applied steps changed).
#include <unistd.h>

#include <iostream>

#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_run(CLI::App& app, RunOptions& o) {
  auto* cmd = app.add_subcommand("run", "Run the pending increments (mounts if needed)");
  cmd->add_option("--to", o.to, "Stop after this version");
  cmd->add_flag("--no-rewind-changed", o.no_rewind_changed,
                "Stop instead of rewinding when an applied increment's steps changed");
  cmd->add_flag("--in-place", o.in_place,
                "Run on the real data (the only lower) without an overlay; no rollback");
  cmd->add_flag("--yes", o.yes, "Do not ask for confirmation (--in-place)");
  cmd->add_flag("--json", o.json, "One JSON object per event on stdout");
  cmd->add_option("--progress", o.progress,
                  "How progress is shown: terminal (the default: a live bar, or log lines "
                  "without a terminal) or json (one JSON object per event on stdout, as --json)")
      ->check(CLI::IsMember({"terminal", "json"}));
  cmd->add_option("--step-timeout", o.step_timeout,
                  "Fail (and roll back) a step still running after this long, e.g. 30s, 5m "
                  "(default: no limit)");
  return cmd;
}

namespace {

// In place there is no overlay: make sure the user means it.
std::optional<std::string> confirm_in_place(const Workspace& ws, bool yes) {
  if (ws.config.lowers.size() != 1) {
    return "--in-place needs exactly one lower (the data to upgrade); this workspace has " +
           std::to_string(ws.config.lowers.size());
  }
  if (cowfs_mounted_at(ws.config.mountpoint)) {
    return "--in-place refuses while the overlay is mounted; run `rehearse umount` first";
  }
  if (yes) return std::nullopt;
  if (!::isatty(0)) {
    return "--in-place changes the real data in " + ws.config.lowers.front() +
           " and cannot roll back a failed increment; confirm with --yes";
  }
  std::cerr << "This runs the steps directly on " << ws.config.lowers.front()
            << ", with no overlay:\na failed increment is NOT rolled back. Type 'yes' to go on: "
            << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "yes") return "not confirmed; nothing was changed";
  return std::nullopt;
}

}  // namespace

int run_run(const Globals& g, const RunOptions& o) {
  std::optional<Version> to;
  if (!o.to.empty()) {
    to = Version::parse(o.to);
    if (!to) return fail("--to '" + o.to + "' is not a version (dotted numbers like 1.2)", 2);
  }
  std::string bad;
  auto timeout = step_timeout_option(o.step_timeout, &bad);
  if (!bad.empty()) return fail(bad, 2);
  if (o.in_place) {
    int rc = guarded([&] {
      Workspace ws = Workspace::load(g.dir);
      if (auto why = confirm_in_place(ws, o.yes)) return fail(*why, 2);
      return 0;
    });
    if (rc != 0) return rc;
  }
  // Discovery before anything changes: bad steps are refused up front.
  std::vector<Increment> plan;
  int rc = guarded([&] {
    Workspace ws = Workspace::load(g.dir);
    plan = discover_steps(ws.config.steps, ws.config.has_database());
    return 0;
  });
  if (rc != 0) return rc;
  RunRequest req;
  req.to = to;
  req.rewind_changed = !o.no_rewind_changed;
  req.in_place = o.in_place;
  req.step_timeout = timeout;
  return run_pipeline(
      g,
      "run" + std::string(o.to.empty() ? "" : " --to " + o.to) + (o.in_place ? " --in-place" : ""),
      o.json || o.progress == "json", o.in_place ? DataAccess::kInPlace : DataAccess::kMount,
      [&](Session&, Pipeline& p, Progress&) { return p.run(plan, req); });
}

}  // namespace rehearse::cli
