// rehearse refresh --from SRC [options of refresh-prod.sh]: refreshes the
// mirror with scripts/refresh-prod.sh (which swaps the new snapshot in and
// resets the rehearsal) and records the snapshot (time, source, size) in the
// journal, so `report` can say which snapshot each run used and `--compare`
// can set rehearsals on different snapshots side by side.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <set>

#include "harness/cli/cli.h"
#include "harness/process.h"

namespace rehearse::cli {

namespace fs = std::filesystem;

CLI::App* setup_refresh(CLI::App& app, RefreshOptions& o) {
  auto* cmd = app.add_subcommand(
      "refresh",
      "Refresh the mirror from production (scripts/refresh-prod.sh) and record the snapshot");
  cmd->add_option("--from", o.from, "Production: a directory, HOST:PATH or rsync://HOST/MODULE")
      ->required();
  cmd->add_option("--to", o.to, "The mirror to refresh (default: the workspace's top lower)");
  cmd->add_flag("--umount", o.umount, "Unmount the workspace first instead of refusing");
  cmd->add_flag("--blobs-existing-only", o.blobs_existing_only,
                "In the blob directory, refresh only the files the mirror already has");
  cmd->add_option("--blob-dir", o.blob_dir, "The blob directory inside the mirror");
  cmd->add_flag("-z,--compress", o.compress, "Compress over the network");
  cmd->add_option("-e,--rsh", o.rsh, "Remote shell for HOST:PATH");
  cmd->add_flag("--no-reset", o.no_reset, "Leave the rehearsal as it is (not recommended)");
  return cmd;
}

namespace {

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

// Files and bytes under dir (not following symlinks; hard links counted once).
void measure(const std::string& dir, int64_t* files, int64_t* bytes) {
  std::error_code ec;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ++*files;
    if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
    *bytes += st.st_size;
  }
}

}  // namespace

std::string find_refresh_script() {
  if (const char* env = std::getenv("REHEARSE_REFRESH_SCRIPT"); env && *env) return env;
  std::vector<fs::path> cands;
  if (std::string exe = self_exe(); !exe.empty()) {
    fs::path dir = fs::path(exe).parent_path();
    cands.push_back(dir / "refresh-prod.sh");                               // installed beside
    cands.push_back(dir.parent_path() / "share/rehearse/refresh-prod.sh");  // prefix install
  }
#ifdef REHEARSE_SOURCE_DIR
  cands.push_back(fs::path(REHEARSE_SOURCE_DIR) / "scripts/refresh-prod.sh");  // the build tree
#endif
  for (const auto& c : cands) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec) && ::access(c.c_str(), X_OK) == 0) return c.string();
  }
  return "refresh-prod.sh";  // from $PATH
}

int run_refresh(const Globals& g, const RefreshOptions& o) {
  return guarded([&] {
    // The workspace and journal must be there before production is copied:
    // a snapshot that cannot be recorded would make the report lie.
    Session s = open_session(g, false);
    const std::string mirror =
        o.to.empty() ? s.ws.config.lowers.front() : fs::absolute(o.to).lexically_normal().string();
    const std::string script = find_refresh_script();
    std::vector<std::string> argv = {script, "-C", s.ws.root, "--from", o.from};
    if (!o.to.empty()) argv.insert(argv.end(), {"--to", o.to});
    if (o.umount) argv.push_back("--umount");
    if (o.blobs_existing_only) argv.push_back("--blobs-existing-only");
    if (!o.blob_dir.empty()) argv.insert(argv.end(), {"--blob-dir", o.blob_dir});
    if (o.compress) argv.push_back("--compress");
    if (!o.rsh.empty()) argv.insert(argv.end(), {"--rsh", o.rsh});
    if (o.no_reset) argv.push_back("--no-reset");
    // The script resets the rehearsal with this very rehearse (it takes the
    // workspace lock itself, so none is held here).
    std::vector<std::string> extra;
    if (std::string exe = self_exe(); !exe.empty()) extra.push_back("REHEARSE=" + exe);
    StreamOptions so;
    so.argv = argv;
    so.cwd = s.ws.root;
    so.env = environment_with(extra);
    so.inherit_stdio = true;
    so.die_with_parent = false;
    const auto& stop = install_stop_handlers();
    (void)stop;  // Ctrl-C reaches the script, which cleans up and says so
    ProcResult r;
    try {
      r = run_streaming(so);
    } catch (const std::exception& e) {
      return fail("cannot run " + script + ": " + e.what() +
                      " (set REHEARSE_REFRESH_SCRIPT to scripts/refresh-prod.sh)",
                  1);
    }
    if (r.exit_code == 127) {
      return fail(
          "cannot run " + script + " (set REHEARSE_REFRESH_SCRIPT to scripts/refresh-prod.sh)", 1);
    }
    // The script said what went wrong, in one line; the mirror is unchanged.
    if (!r.ok()) return r.signal ? 128 + r.signal : r.exit_code;
    SnapshotRecord snap;
    snap.taken = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()) /
                 1000.0;
    snap.source = o.from;
    snap.mirror = mirror;
    measure(mirror, &snap.files, &snap.bytes);
    int64_t id = s.journal->add_snapshot(snap);
    std::cout << "rehearse: snapshot #" << id << " of " << o.from << " recorded (" << snap.files
              << " files, " << snap.bytes << " bytes in " << mirror << ")\n";
    return 0;
  });
}

}  // namespace rehearse::cli
