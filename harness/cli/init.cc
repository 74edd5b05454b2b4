// rehearse init: create a workspace (rehearse.toml + .rehearse/).
#include <filesystem>
#include <iostream>

#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_init(CLI::App& app, InitOptions& o) {
  auto* cmd = app.add_subcommand("init", "Create a workspace: rehearse.toml and .rehearse/");
  cmd->add_option("--lower", o.lowers, "Production data directory, top first (repeatable)")
      ->required();
  cmd->add_option("--mountpoint", o.mountpoint, "Where the copy-on-write view is mounted")
      ->required();
  cmd->add_option("--steps", o.steps, "Folder of the upgrade steps (steps/<VERSION>/...)")
      ->required();
  cmd->add_option("--sqlite", o.sqlite,
                  "SQLite database that .sql steps run against, as a path inside the mount");
  return cmd;
}

int run_init(const Globals& g, const InitOptions& o) {
  return guarded([&] {
    InitRequest req{g.dir, o.lowers, o.mountpoint, o.steps, std::nullopt};
    if (!o.sqlite.empty()) req.sqlite = o.sqlite;
    Workspace ws = init_workspace(req);
    try {
      Journal::open(ws.journal_path());
    } catch (const std::exception&) {
      std::error_code ec;
      std::filesystem::remove(ws.config_path(), ec);
      std::filesystem::remove_all(ws.state_dir(), ec);
      throw;
    }
    std::cout << "initialised workspace " << ws.root << "\n";
    return 0;
  });
}

}  // namespace rehearse::cli
