#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "harness/bisect.h"
#include "harness/cli/cli.h"
#include "harness/db.h"
#include "harness/duration.h"
#include "harness/pipeline.h"
#include "harness/service.h"

namespace rehearse::cli {

namespace fs = std::filesystem;

namespace {
// One line whatever the message quotes: control characters are escaped.
std::string one_line(const std::string& msg) {
  std::string out;
  for (unsigned char c : msg) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}
}  // namespace

int fail(const std::string& msg, int code) {
  const std::string line = one_line(msg);
  std::cerr << "rehearse: " << line << "\n";
  if (auto l = spdlog::get("rehearse")) l->error("{}", line);
  return code;
}

std::optional<std::chrono::milliseconds> step_timeout_option(const std::string& text,
                                                             std::string* error) {
  if (text.empty()) return std::nullopt;
  auto d = parse_duration(text);
  if (!d) {
    *error = "--step-timeout '" + text + "' is not a duration; use e.g. 30s, 5m, 1h or 500ms";
  }
  return d;
}

// What rehearse.toml asks of `cowfs mount` beyond the lowers: the cache.
static std::vector<std::string> cowfs_mount_args(const Config& c) {
  std::vector<std::string> args;
  if (!c.cache) return args;
  args = {"--lower-cache", *c.cache, "--lower-cache-size", c.cache_size};
  for (const auto& r : c.remote_lowers) {
    args.push_back("--remote-lower");
    args.push_back(r);
  }
  return args;
}

Session open_session(const Globals& g, bool lock, bool with_journal) {
  Session s;
  s.ws = Workspace::load(g.dir);
  if (!fs::is_directory(s.ws.state_dir())) {
    throw ConfigError("the workspace " + s.ws.root + " has no .rehearse/ state; run `rehearse " +
                      "init` again in a fresh directory");
  }
  if (lock) s.lock = std::make_unique<WorkspaceLock>(s.ws.lock_path());
  // Layers a killed `bisect` set aside go back before anything else.
  if (lock && LayerHold(s.ws.store()).held()) {
    if (cowfs_mounted_at(s.ws.config.mountpoint)) {
      CowfsCli(find_cowfs_binary(), s.ws.store()).umount(s.ws.config.mountpoint);
    }
    LayerHold(s.ws.store()).restore();
    std::cerr << "rehearse: put back the layers an interrupted bisect had set aside\n";
  }
  // Never created here: a missing journal would otherwise become an empty
  // one, and the next run would replay every increment over upgraded data.
  if (!with_journal) {
    s.cowfs = std::make_unique<CowfsCli>(find_cowfs_binary(), s.ws.store());
    s.cowfs->set_mount_args(cowfs_mount_args(s.ws.config));
    return s;
  }
  if (!fs::exists(s.ws.journal_path())) {
    throw DbError(
        "the journal " + s.ws.journal_path() +
        " is missing; restore it from a backup, or start over with `rehearse init` in a " +
        "new workspace (an empty journal would replay every increment)");
  }
  s.journal = std::make_unique<Journal>(Journal::open(s.ws.journal_path()));
  s.cowfs = std::make_unique<CowfsCli>(find_cowfs_binary(), s.ws.store());
  s.cowfs->set_mount_args(cowfs_mount_args(s.ws.config));
  return s;
}

bool ensure_mounted(Session& s, Progress* progress) {
  if (s.cowfs->is_mounted(s.ws.config.mountpoint)) return false;
  std::error_code ec;
  fs::create_directories(s.ws.config.mountpoint, ec);
  if (progress) progress->note("mounting " + s.ws.config.mountpoint);
  s.cowfs->mount(s.ws.config.lowers, s.ws.config.mountpoint);
  return true;
}

int guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    return fail(e.what(), 2);
  } catch (const DiscoveryError& e) {
    return fail(e.what(), 2);
  } catch (const LockBusy& e) {
    return fail(e.what(), 1);
  } catch (const StoreError& e) {
    return fail(e.what(), 1);
  } catch (const DbError& e) {
    return fail(std::string("journal or database error: ") + e.what(), 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}

namespace {
std::atomic<bool> g_stop{false};
std::string g_command;
extern "C" void on_stop_signal(int) { g_stop.store(true); }
}  // namespace

const std::atomic<bool>& install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  return g_stop;
}

void start_file_log(const Workspace& ws) {
  try {
    std::error_code ec;
    fs::create_directories(ws.logs_dir(), ec);
    auto logger = spdlog::basic_logger_mt("rehearse", ws.logs_dir() + "/rehearse.log");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    logger->info("{} (pid {})", g_command, ::getpid());
  } catch (const std::exception&) {
    // The log is a convenience; a read-only state dir is reported elsewhere.
  }
}

std::string command_line(int argc, char** argv) {
  std::string s;
  for (int i = 1; i < argc; ++i) s += (i > 1 ? " " : "") + std::string(argv[i]);
  return s;
}
void set_command_line(std::string line) { g_command = std::move(line); }
const std::string& command_text() { return g_command; }

int run_pipeline(const Globals& g, const std::string& command, bool json, DataAccess access,
                 const std::function<PipelineResult(Session&, Pipeline&, Progress&)>& body) {
  return guarded([&] {
    Session s = open_session(g, true);
    start_file_log(s.ws);
    Progress progress(Progress::detect(json), g.verbose, std::cout, std::cerr);
    const auto& stop = install_stop_handlers();
    std::string data_root = s.ws.config.mountpoint;
    LayerStore* store = s.cowfs.get();
    const bool in_place = access == DataAccess::kInPlace;
    if (in_place) {
      data_root = s.ws.config.lowers.front();
      store = nullptr;
    } else if (access == DataAccess::kMount) {
      ensure_mounted(s, &progress);
    }
    // Before anything changes the layers: a server a killed rehearse left
    // running must not see them change under it.
    Services::stop_orphans(s.ws, &progress);
    int64_t run_id = s.journal->begin_run(command, in_place);
    Pipeline p(s.ws, *s.journal, store, progress, stop, data_root, run_id);
    // Stopped (destroyed) before the session, whatever happens in body.
    Services services(s.ws, data_root, &progress);
    p.set_services(&services);
    PipelineResult r;
    try {
      p.recover();
      r = body(s, p, progress);
    } catch (const std::exception& e) {
      s.journal->end_run(run_id, "failed", e.what());
      progress.run_finished("failed", 1, e.what());
      throw;
    }
    try {
      services.stop_all();
    } catch (const std::exception& e) {
      if (r.exit_code == 0) r = {1, e.what()};
    }
    const char* outcome = r.exit_code == 0 ? "ok" : r.exit_code == 130 ? "interrupted" : "failed";
    s.journal->end_run(run_id, outcome, r.error);
    progress.run_finished(outcome, r.exit_code, r.error);
    spdlog::info("{}: exit {} {}", command, r.exit_code, r.error);
    if (r.exit_code != 0) return fail(r.error, r.exit_code);
    return 0;
  });
}

}  // namespace rehearse::cli
