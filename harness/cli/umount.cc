// rehearse umount: unmount the workspace's view (the layers stay).
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/service.h"

namespace rehearse::cli {

CLI::App* setup_umount(CLI::App& app, UmountOptions&) {
  return app.add_subcommand("umount", "Unmount the view (the store and its layers stay)");
}

int run_umount(const Globals& g, const UmountOptions&) {
  return guarded([&] {
    Session s = open_session(g, true, false);
    start_file_log(s.ws);
    Services::stop_orphans(s.ws, nullptr);  // a server on the mount keeps it busy
    if (!s.cowfs->is_mounted(s.ws.config.mountpoint)) {
      std::cout << s.ws.config.mountpoint << " is not mounted\n";
      return 0;
    }
    s.cowfs->umount(s.ws.config.mountpoint);
    std::cout << "unmounted " << s.ws.config.mountpoint << "\n";
    return 0;
  });
}

}  // namespace rehearse::cli
