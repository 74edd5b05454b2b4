// rehearse mount: mount the workspace's copy-on-write view.
#include <iostream>

#include "harness/cli/cli.h"

namespace rehearse::cli {

CLI::App* setup_mount(CLI::App& app, MountOptions&) {
  return app.add_subcommand("mount", "Mount the copy-on-write view of the lowers");
}

int run_mount(const Globals& g, const MountOptions&) {
  return guarded([&] {
    Session s = open_session(g, true);
    start_file_log(s.ws);
    if (!ensure_mounted(s, nullptr)) {
      std::cout << s.ws.config.mountpoint << " is already mounted\n";
    } else {
      std::cout << "mounted " << s.ws.config.mountpoint << "\n";
    }
    return 0;
  });
}

}  // namespace rehearse::cli
