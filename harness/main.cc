// rehearse: the upgrade harness. Only the skeleton exists yet; the commands
// arrive with the harness issue.
#include <CLI/CLI.hpp>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"rehearse: rehearse an upgrade against a copy-on-write snapshot"};
  app.set_version_flag("--version", std::string("rehearse ") + REHEARSE_VERSION);
  app.require_subcommand(0);
  CLI11_PARSE(app, argc, argv);
  std::cout << app.help();
  return 0;
}
