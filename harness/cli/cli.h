// The `rehearse` command line. One subcommand per file (cli/<command>.cc),
// each with its options struct, setup_X (declares the options on the
// CLI11 app) and run_X (does the work, returns the exit code); main.cc only
// wires them. Shared pieces (opening a workspace, the lock, mounting,
// signals) are in common.cc.
//
// Exit codes: 0 success, 1 a failure (failed step, refused operation),
// 2 bad input (usage, config, steps), 130 interrupted. Errors are one line
// on stderr, "rehearse: <problem>; <fix>".
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/config.h"
#include "harness/journal.h"
#include "harness/lock.h"
#include "harness/pipeline.h"
#include "harness/progress.h"
#include "harness/step.h"
#include "harness/store.h"

namespace rehearse::cli {

struct Globals {
  std::string dir = ".";
  bool verbose = false;
};

// ---- shared ----------------------------------------------------------------

// Prints "rehearse: MSG" as exactly one line (control characters, e.g. a
// newline in a file name, are shown escaped) and returns code.
int fail(const std::string& msg, int code = 1);
// --step-timeout TEXT → the duration, or an error line (exit 2) in *error.
std::optional<std::chrono::milliseconds> step_timeout_option(const std::string& text,
                                                             std::string* error);

// A loaded workspace with its journal; `lock` is held for mutating commands.
struct Session {
  Workspace ws;
  std::unique_ptr<WorkspaceLock> lock;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<CowfsCli> cowfs;
};
// Throws ConfigError, LockBusy, DbError. Without with_journal (umount) the
// journal is not opened, so a damaged journal never keeps a mount up.
Session open_session(const Globals& g, bool lock, bool with_journal = true);
// Mounts the workspace if it is not mounted; returns whether it mounted it.
bool ensure_mounted(Session& s, Progress* progress);
// Runs body and turns the harness's exceptions into one-line errors.
int guarded(const std::function<int()>& body);
// Ctrl-C / SIGTERM / SIGHUP set the flag instead of killing the process,
// so steps stop at a safe point.
const std::atomic<bool>& install_stop_handlers();
// Sends log lines of mutating commands to .rehearse/logs/rehearse.log.
void start_file_log(const Workspace& ws);
std::string command_line(int argc, char** argv);
void set_command_line(std::string line);
const std::string& command_text();

// ---- commands --------------------------------------------------------------

struct InitOptions {
  std::vector<std::string> lowers;
  std::string mountpoint, steps, sqlite;
};
CLI::App* setup_init(CLI::App& app, InitOptions& o);
int run_init(const Globals& g, const InitOptions& o);

struct MountOptions {};
CLI::App* setup_mount(CLI::App& app, MountOptions& o);
int run_mount(const Globals& g, const MountOptions& o);

struct UmountOptions {};
CLI::App* setup_umount(CLI::App& app, UmountOptions& o);
int run_umount(const Globals& g, const UmountOptions& o);

struct StatusOptions {
  bool json = false;
};
CLI::App* setup_status(CLI::App& app, StatusOptions& o);
int run_status(const Globals& g, const StatusOptions& o);

struct PlanOptions {
  bool json = false;
};
CLI::App* setup_plan(CLI::App& app, PlanOptions& o);
int run_plan(const Globals& g, const PlanOptions& o);

struct RunOptions {
  std::string to;
  bool no_rewind_changed = false;
  bool in_place = false;
  bool yes = false;
  bool json = false;
  std::string progress = "terminal";  // --progress terminal|json
  std::string step_timeout;
};
CLI::App* setup_run(CLI::App& app, RunOptions& o);
int run_run(const Globals& g, const RunOptions& o);

struct RerunOptions {
  std::string version;
  bool json = false;
  std::string step_timeout;
};
CLI::App* setup_rerun(CLI::App& app, RerunOptions& o);
int run_rerun(const Globals& g, const RerunOptions& o);

struct RewindOptions {
  std::string version;
  bool json = false;
};
CLI::App* setup_rewind(CLI::App& app, RewindOptions& o);
int run_rewind(const Globals& g, const RewindOptions& o);

struct ResetOptions {
  bool json = false;
};
CLI::App* setup_reset(CLI::App& app, ResetOptions& o);
int run_reset(const Globals& g, const ResetOptions& o);

struct DiffOptions {
  std::string version;
  bool json = false;
};
CLI::App* setup_diff(CLI::App& app, DiffOptions& o);
int run_diff(const Globals& g, const DiffOptions& o);

struct HistoryOptions {
  bool json = false;
};
CLI::App* setup_history(CLI::App& app, HistoryOptions& o);
int run_history(const Globals& g, const HistoryOptions& o);

struct ReportOptions {
  bool json = false;
  std::optional<std::string> html;  // --html FILE
  std::string compare;              // --compare RUN
};
CLI::App* setup_report(CLI::App& app, ReportOptions& o);
int run_report(const Globals& g, const ReportOptions& o);

struct StampOptions {
  std::string version;
  bool json = false;
};
CLI::App* setup_stamp(CLI::App& app, StampOptions& o);
int run_stamp(const Globals& g, const StampOptions& o);

struct ExecOptions {
  std::vector<std::string> command;
};
CLI::App* setup_exec(CLI::App& app, ExecOptions& o);
int run_exec(const Globals& g, const ExecOptions& o);

struct BisectOptions {
  std::string good, bad;
  std::vector<std::string> command;
};
CLI::App* setup_bisect(CLI::App& app, BisectOptions& o);
int run_bisect(const Globals& g, const BisectOptions& o);

struct RefreshOptions {
  std::string from, to, blob_dir, rsh;
  bool umount = false, blobs_existing_only = false, compress = false, no_reset = false;
};
CLI::App* setup_refresh(CLI::App& app, RefreshOptions& o);
int run_refresh(const Globals& g, const RefreshOptions& o);
// Where scripts/refresh-prod.sh is: $REHEARSE_REFRESH_SCRIPT, else beside
// the executable, else PREFIX/share/rehearse, else the source tree it was
// built from, else refresh-prod.sh from $PATH.
std::string find_refresh_script();

// How a data-changing command reaches the data.
enum class DataAccess {
  kMount,    // through the cowfs mount (mounted first if needed)
  kStore,    // the store only (rewind, reset work on an unmounted store)
  kInPlace,  // the real data, no overlay (run --in-place)
};

// Shared by the commands that change the data (run, rerun, rewind, reset,
// stamp): takes the lock, mounts (unless in place), opens a journal run
// record, recovers, calls body, records and prints its outcome.
int run_pipeline(const Globals& g, const std::string& command, bool json, DataAccess access,
                 const std::function<PipelineResult(Session&, Pipeline&, Progress&)>& body);

}  // namespace rehearse::cli
