// The cowfs subcommands: for each an options struct, setup_X (declares its
// options on the CLI11 app) and run_X (does it, returns the exit code).
// Errors are one line on stderr starting "cowfs: "; exit 2 for bad input,
// 1 for failures.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace cowfs::cli {

int fail(const std::string& msg, int code = 1);

struct MountOptions {
  std::string store;
  std::vector<std::string> lowers;
  std::string mountpoint;
  bool foreground = false;
  std::string log_level = "info";
  std::vector<std::string> fuse_opts;
  bool writeback_cache = true;  // -o no_writeback_cache turns it off
  uint64_t chunk_threshold = 1 << 20;
  uint64_t chunk_size = 64 << 10;
  std::string lower_cache;  // --lower-cache DIR: cache remote lowers' data there
  std::string lower_cache_size = "50G";
  std::vector<std::string> remote_lowers;  // --remote-lower: marked by hand
  // auto, uring or dev; empty: $COWFS_IO, else auto.
  std::string io;
};
void setup_mount(CLI::App& app, MountOptions& o);
int run_mount(MountOptions o);

struct UmountOptions {
  std::string mountpoint;
  double timeout = 30;
};
void setup_umount(CLI::App& app, UmountOptions& o);
int run_umount(const UmountOptions& o);

// checkpoint, rewind, reset, layers, compact, diff.
struct LayerOptions {
  std::string command;  // which one was given
  std::string store;
  std::string label;
  std::vector<std::string> keep;
  std::string from, to;
  bool json = false;
};
void setup_layer_commands(CLI::App& app, LayerOptions& o);
int run_layer_command(const LayerOptions& o);

}  // namespace cowfs::cli
