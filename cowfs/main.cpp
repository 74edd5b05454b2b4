// cowfs: a copy-on-write view of read-only production data. main only wires
// the subcommands (cowfs/cli/) to CLI11.
#include <CLI/CLI.hpp>

#include "cowfs/cli/commands.h"

int main(int argc, char** argv) {
  using namespace cowfs::cli;
  CLI::App app{"cowfs: a copy-on-write view of read-only production data"};
  app.set_version_flag("--version", std::string("cowfs ") + COWFS_VERSION);
  app.require_subcommand(1);
  MountOptions mount_opts;
  UmountOptions umount_opts;
  LayerOptions layer_opts;
  setup_mount(app, mount_opts);
  setup_umount(app, umount_opts);
  setup_layer_commands(app, layer_opts);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + " (see cowfs --help)", 2);
  }
  if (app.got_subcommand("mount")) return run_mount(mount_opts);
  if (app.got_subcommand("umount")) return run_umount(umount_opts);
  return run_layer_command(layer_opts);
}
