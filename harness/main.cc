// rehearse: rehearse an upgrade against a copy-on-write view of production.
// main only wires the subcommands (harness/cli/<command>.cc) to CLI11.
#include <CLI/CLI.hpp>
#include <iostream>

#include "harness/cli/cli.h"

using namespace rehearse::cli;

int main(int argc, char** argv) {
  CLI::App app{"rehearse: rehearse an upgrade against a copy-on-write snapshot of production"};
  app.set_version_flag("--version", std::string("rehearse ") + REHEARSE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  app.add_option("-C", g.dir, "Use DIR as the workspace (like git -C)");
  app.add_flag("-v,--verbose", g.verbose, "Show the steps' output");

  InitOptions init;
  MountOptions mount;
  UmountOptions umount;
  StatusOptions status;
  PlanOptions plan;
  RunOptions run;
  RerunOptions rerun;
  RewindOptions rewind;
  ResetOptions reset;
  DiffOptions diff;
  HistoryOptions history;
  ReportOptions report;
  StampOptions stamp;
  ExecOptions exec;
  RefreshOptions refresh;
  BisectOptions bisect;
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands = {
      {setup_init(app, init), [&] { return run_init(g, init); }},
      {setup_mount(app, mount), [&] { return run_mount(g, mount); }},
      {setup_umount(app, umount), [&] { return run_umount(g, umount); }},
      {setup_status(app, status), [&] { return run_status(g, status); }},
      {setup_plan(app, plan), [&] { return run_plan(g, plan); }},
      {setup_run(app, run), [&] { return run_run(g, run); }},
      {setup_rerun(app, rerun), [&] { return run_rerun(g, rerun); }},
      {setup_rewind(app, rewind), [&] { return run_rewind(g, rewind); }},
      {setup_reset(app, reset), [&] { return run_reset(g, reset); }},
      {setup_diff(app, diff), [&] { return run_diff(g, diff); }},
      {setup_history(app, history), [&] { return run_history(g, history); }},
      {setup_report(app, report), [&] { return run_report(g, report); }},
      {setup_stamp(app, stamp), [&] { return run_stamp(g, stamp); }},
      {setup_exec(app, exec), [&] { return run_exec(g, exec); }},
      {setup_refresh(app, refresh), [&] { return run_refresh(g, refresh); }},
      {setup_bisect(app, bisect), [&] { return run_bisect(g, bisect); }},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "rehearse: " << e.what() << " (see rehearse --help)\n";
    return 2;
  }
  set_command_line(command_line(argc, argv));
  for (auto& [cmd, fn] : commands) {
    if (cmd->parsed()) return fn();
  }
  std::cout << app.help();
  return 2;
}
