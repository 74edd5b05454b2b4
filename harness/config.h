// Workspace and its configuration.
//
// A workspace is a directory holding
//   rehearse.toml        lowers (top first; a string or { path, remote }), mountpoint,
//                        steps, optional sqlite or database (a server URL), optional
//                        [[service]] tables, optional cache and cache_size
//   .rehearse/store/     the cowfs store (layers, control socket)
//   .rehearse/journal.db the journal (see journal.h)
//   .rehearse/logs/      rehearse.log and one log per step call
//   .rehearse/state/     REHEARSE_STATE files of executable steps
//   .rehearse/lock       flock()ed by the one command that changes the workspace
//   .rehearse/run/       {run} of the services: their sockets (service.h)
//   .rehearse/services/  one pid file per running service (service.h)
//
// Relative paths in rehearse.toml are relative to the workspace directory;
// `sqlite` is a path inside the mount (never absolute, never "..").
// load() validates everything and throws ConfigError with one line that names
// the problem and the fix; nothing is created by load().
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rehearse {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A process that serves the data from the mount (a database server, an
// application server): see service.h. Commands are run by /bin/sh -c with
// {root} and {run} replaced.
struct ServiceConfig {
  std::string name;   // [A-Za-z0-9_-]+, unique
  std::string start;  // required; may daemonize (pg_ctl start) or stay in front
  std::string stop;   // "" = SIGTERM to its processes
  std::string ready;  // "" = ready when start returns; else polled until it exits 0
  std::string user;   // "" = as rehearse itself
  std::string flush;  // "" = nothing to do before a checkpoint
  std::chrono::milliseconds start_timeout{std::chrono::seconds(60)};
};

struct Config {
  std::vector<std::string> lowers;      // absolute, top first
  std::string mountpoint;               // absolute
  std::string steps;                    // absolute
  std::optional<std::string> sqlite;    // relative to the mountpoint
  std::optional<std::string> database;  // postgresql://... or mysql://... (engine.h)
  std::vector<ServiceConfig> services;
  // The lower cache of cowfs (cowfs mount --lower-cache): `cache` and
  // `cache_size`, and the lowers given as { path = "...", remote = true }
  // (lowers on network filesystems are remote to cowfs anyway).
  std::optional<std::string> cache;  // absolute
  std::string cache_size = "50G";
  std::vector<std::string> remote_lowers;  // absolute, each one of lowers
  // Do .sql steps have a database to run against?
  bool has_database() const { return sqlite.has_value() || database.has_value(); }
};

struct Workspace {
  std::string root;  // absolute
  Config config;

  std::string config_path() const { return root + "/rehearse.toml"; }
  std::string state_dir() const { return root + "/.rehearse"; }
  std::string store() const { return state_dir() + "/store"; }
  std::string journal_path() const { return state_dir() + "/journal.db"; }
  std::string logs_dir() const { return state_dir() + "/logs"; }
  std::string step_state_dir() const { return state_dir() + "/state"; }
  std::string lock_path() const { return state_dir() + "/lock"; }
  std::string run_dir() const { return state_dir() + "/run"; }
  std::string services_dir() const { return state_dir() + "/services"; }
  // The database URL with {root} (data_root) and {run} replaced.
  std::optional<std::string> database_url(const std::string& data_root) const;
  // Absolute path of the configured SQLite database under `data_root`
  // (the mountpoint, or the real data in --in-place mode).
  std::optional<std::string> sqlite_under(const std::string& data_root) const;

  // Reads DIR/rehearse.toml. Throws ConfigError.
  static Workspace load(const std::string& dir);
};

struct InitRequest {
  std::string dir;  // the workspace
  std::vector<std::string> lowers;
  std::string mountpoint;
  std::string steps;
  std::optional<std::string> sqlite;
};

// Checks the request (lowers exist, no overlapping paths, no existing
// workspace), then writes rehearse.toml and .rehearse/ and creates the
// mountpoint and steps folders if missing. On any error throws ConfigError
// before anything was written.
Workspace init_workspace(const InitRequest& req);

// Absolute, lexically normal form of path (relative to base when relative),
// symlinks of existing ancestors resolved.
std::string absolute_path(const std::string& path, const std::string& base);
// True when inner is outer or lies below it (both absolute_path()s).
bool path_within(const std::string& inner, const std::string& outer);

// text with every {root} and {run} replaced (service commands, database URL).
std::string expand_placeholders(std::string text, const std::string& root, const std::string& run);

// Checks a validated Config against the workspace (shared by init and load).
void check_config(const std::string& root, const Config& c);

}  // namespace rehearse
