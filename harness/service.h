// Services: the processes that serve a workspace's data from the mount (a
// PostgreSQL or MariaDB server, an application server), declared as
// [[service]] tables in rehearse.toml (config.h).
//
// Lifecycle (the CLI and the pipeline call these):
//   * A service runs only while a rehearse command needs it: `run` and
//     `rerun` start it before their first step, `exec` before its command;
//     every command stops the services it started before it exits.
//   * Anything that changes the layers under a server (rewind, reset, the
//     rollback of a failed increment, umount) stops it first: a server that
//     kept running would write its memory over the rewound files.
//   * A checkpoint taken while a service runs calls its `flush` first, then
//     the pipeline syncs the mount and freezes the layer: the frozen layer
//     is what a power cut at that moment would have left, which a database
//     server recovers from (its WAL/redo log), so every checkpoint is
//     crash-consistent.
//
// Commands run as `/bin/sh -c CMD` with {root} (the data root: the mount, or
// the real data in place) and {run} (.rehearse/run/, for sockets) replaced,
// cwd = the data root, REHEARSE_ROOT and REHEARSE_RUN set, stdin from
// /dev/null and output appended to .rehearse/logs/service-NAME.log, as
// `user` when one is given (rehearse must then be root). A start command may
// daemonize (pg_ctl start) or stay in the foreground: rehearse is a child
// subreaper while it starts a service, so a daemon that its start command
// leaves behind becomes rehearse's child and is tracked by pid.
//
// Orphans: the pids of a running service are recorded in
// .rehearse/services/NAME with the pid of the rehearse that owns them (each
// with its start time, so a reused pid is not mistaken for it). A rehearse
// killed with -9 leaves its services running; the next command that takes
// the workspace lock stops them (stop command, then SIGTERM, then SIGKILL)
// or, when one survives, refuses naming its pid.
//
// Not thread-safe: the pipeline's thread only.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/config.h"

namespace rehearse {

class Progress;

class ServiceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ServiceStatus {
  std::string name;
  bool running = false;
  std::vector<pid_t> pids;  // alive ones
  pid_t owner = 0;          // the rehearse that started them
  bool orphan = false;      // running, and its owner is gone
};

class Services {
 public:
  // data_root: what {root} means for this command.
  Services(const Workspace& ws, std::string data_root, Progress* progress);
  // Stops what this object started; never throws (a failure is logged).
  ~Services();
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;

  bool empty() const { return ws_.config.services.empty(); }
  // Starts each service that is not running, in order, and waits until it
  // is ready. Throws ServiceError: "service db did not become ready within
  // 60s: <last log lines>", or its start command's failure.
  void start_all();
  // Stops the running services, in reverse order. Throws ServiceError
  // naming the pid of a process that survives SIGKILL.
  void stop_all();
  // Runs the flush command of every running service. Throws ServiceError.
  void flush_all();
  // A service started by this object whose processes are gone:
  // "service db died (exit 137 / signal 9): <last log lines>"; nullopt when
  // all run (or none was started). The dead service is forgotten, so the
  // next start_all() starts it again.
  std::optional<std::string> dead();
  bool running() const;

  // Stops services left running by a rehearse that is gone (kill -9).
  // Throws ServiceError naming the service and pid when one cannot be
  // stopped, or when its owner is another rehearse that still runs.
  static void stop_orphans(const Workspace& ws, Progress* progress);
  static std::vector<ServiceStatus> status(const Workspace& ws);

  // The last `lines` lines of a service's log, joined with " | ".
  static std::string log_tail(const Workspace& ws, const std::string& name, int lines = 5);

 private:
  struct Running {
    const ServiceConfig* config = nullptr;
    std::vector<pid_t> pids;
  };
  void start(const ServiceConfig& s);
  void write_pid_file(const Running& r) const;

  const Workspace& ws_;
  std::string data_root_;
  Progress* progress_;
  std::vector<Running> running_;  // in start order
};

}  // namespace rehearse
