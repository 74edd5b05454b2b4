// rehearse exec -- CMD...: run a command (an app server, a shell, a check)
// against the mount, with the REHEARSE_* variables a step would get.
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/process.h"
#include "harness/service.h"

namespace rehearse::cli {

CLI::App* setup_exec(CLI::App& app, ExecOptions& o) {
  auto* cmd = app.add_subcommand("exec", "Run a command in the mount: rehearse exec -- CMD ARGS");
  cmd->add_option("COMMAND", o.command, "The command and its arguments (after --)")->required();
  return cmd;
}

int run_exec(const Globals& g, const ExecOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    // Mounting changes the workspace: only under the lock. With services,
    // the lock is held until they are stopped again, so no rewind runs
    // under them.
    auto lock = std::make_unique<WorkspaceLock>(s.ws.lock_path());
    ensure_mounted(s, nullptr);
    Progress progress(Progress::Mode::kLog, g.verbose, std::cerr, std::cerr);
    Services::stop_orphans(s.ws, &progress);
    Services services(s.ws, s.ws.config.mountpoint, &progress);
    if (services.empty()) {
      lock.reset();
    } else {
      services.start_all();
    }
    std::vector<std::string> extra = {"REHEARSE_ROOT=" + s.ws.config.mountpoint};
    if (auto db = s.ws.sqlite_under(s.ws.config.mountpoint))
      extra.push_back("REHEARSE_SQLITE=" + *db);
    if (auto url = s.ws.database_url(s.ws.config.mountpoint))
      extra.push_back("REHEARSE_DATABASE=" + *url);
    if (!services.empty()) extra.push_back("REHEARSE_RUN=" + s.ws.run_dir());
    if (auto a = s.journal->applied(); !a.empty()) {
      extra.push_back("REHEARSE_VERSION=" + a.back().version);
    }
    StreamOptions so;
    so.argv = o.command;
    so.cwd = s.ws.config.mountpoint;
    so.env = environment_with(extra);
    so.inherit_stdio = true;
    so.die_with_parent = false;
    // The child gets the terminal's signals itself; rehearse only waits.
    const auto& stop = install_stop_handlers();
    (void)stop;
    ProcResult r = run_streaming(so);
    services.stop_all();
    return r.signal ? 128 + r.signal : r.exit_code;
  });
}

}  // namespace rehearse::cli
