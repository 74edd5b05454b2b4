// rehearse bisect [--good V] [--bad V] -- CMD [ARGS]: the first increment
// after which CMD (a QA check) fails, found by binary search over the
// checkpoints. No step runs: each probe mounts the state right after one
// checkpoint (a LayerHold view, bisect.h), runs CMD in the mount, and puts
// every layer back. The workspace is left as it was: the same layers, the
// same top, mounted, services stopped (as they were: a busy workspace is
// refused).
#include "harness/bisect.h"

#include <iostream>
#include <map>

#include "harness/cli/cli.h"
#include "harness/process.h"
#include "harness/service.h"

namespace rehearse::cli {

CLI::App* setup_bisect(CLI::App& app, BisectOptions& o) {
  auto* cmd = app.add_subcommand(
      "bisect", "Find the first increment after which a check fails: rehearse bisect -- CMD ARGS");
  cmd->add_option("--good", o.good,
                  "An increment after which CMD passes (default: before the first increment)");
  cmd->add_option("--bad", o.bad,
                  "An increment after which CMD fails (default: the last applied one)");
  cmd->add_option("COMMAND", o.command, "The check and its arguments (after --)")->required();
  return cmd;
}

namespace {

// One point of the search: the state right after `version` (its checkpoint
// and the ones below), or before the first increment (frozen == 0).
struct Point {
  std::string version;  // "" before the first increment
  size_t frozen = 0;    // checkpoints in the view, bottom first
  std::optional<int64_t> commit_id;
  std::string name() const { return version.empty() ? "before the first increment" : version; }
};

struct Outcome {
  bool pass = false;
  std::string first_error;
};

std::string first_nonempty_line(const std::string& text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
    pos = end + 1;
  }
  return "";
}

class Bisector {
 public:
  Bisector(Session& s, const std::vector<std::string>& command, const std::atomic<bool>& stop)
      : s_(s), hold_(s.ws.store()), command_(command), stop_(stop) {}

  // Probes run from the unmounted, restored store and return to it.
  Outcome probe(const Point& p) {
    if (stop_.load()) throw Interrupted();
    hold_.hold(p.frozen);
    Outcome o;
    try {
      s_.cowfs->mount(s_.ws.config.lowers, s_.ws.config.mountpoint);
      o = run_check(p);
      s_.cowfs->umount(s_.ws.config.mountpoint);
    } catch (...) {
      put_back();
      throw;
    }
    hold_.restore();
    std::cerr << "rehearse: after " << p.name() << ": "
              << (o.pass ? "passes" : "fails: " + o.first_error) << "\n";
    return o;
  }

  // Back to the workspace as it was (best effort after a failure).
  void put_back() {
    try {
      if (s_.cowfs->is_mounted(s_.ws.config.mountpoint) && hold_.held()) {
        s_.cowfs->umount(s_.ws.config.mountpoint);
      }
      hold_.restore();
    } catch (const std::exception& e) {
      std::cerr << "rehearse: could not put the layers back yet (" << e.what()
                << "); the next `rehearse mount` does\n";
    }
  }

  struct Interrupted {};

 private:
  Outcome run_check(const Point& p) {
    Services services(s_.ws, s_.ws.config.mountpoint, nullptr);
    if (!services.empty()) services.start_all();
    std::vector<std::string> extra = {"REHEARSE_ROOT=" + s_.ws.config.mountpoint};
    if (auto db = s_.ws.sqlite_under(s_.ws.config.mountpoint))
      extra.push_back("REHEARSE_SQLITE=" + *db);
    if (auto url = s_.ws.database_url(s_.ws.config.mountpoint))
      extra.push_back("REHEARSE_DATABASE=" + *url);
    if (!services.empty()) extra.push_back("REHEARSE_RUN=" + s_.ws.run_dir());
    if (!p.version.empty()) extra.push_back("REHEARSE_VERSION=" + p.version);
    StreamOptions so;
    so.argv = command_;
    so.cwd = s_.ws.config.mountpoint;
    so.env = environment_with(extra);
    so.own_group = true;
    so.stop = &stop_;
    std::string out, err;
    so.on_stdout = [&](const std::string& l) { out += l + "\n"; };
    so.on_stderr = [&](const std::string& l) { err += l + "\n"; };
    ProcResult r;
    try {
      r = run_streaming(so);
    } catch (const std::exception& e) {
      services.stop_all();
      throw std::runtime_error("cannot run " + command_.front() + ": " + e.what());
    }
    services.stop_all();
    if (stop_.load()) throw Interrupted();
    Outcome o;
    o.pass = r.ok();
    if (!o.pass) {
      o.first_error = first_nonempty_line(err);
      if (o.first_error.empty()) o.first_error = first_nonempty_line(out);
      if (o.first_error.empty()) {
        o.first_error = r.signal ? "killed by signal " + std::to_string(r.signal)
                                 : "exit " + std::to_string(r.exit_code);
      }
    }
    return o;
  }

  Session& s_;
  LayerHold hold_;
  std::vector<std::string> command_;
  const std::atomic<bool>& stop_;
};

}  // namespace

int run_bisect(const Globals& g, const BisectOptions& o) {
  for (const auto* v : {&o.good, &o.bad}) {
    if (!v->empty() && !Version::parse(*v)) {
      return fail("'" + *v + "' is not a version (dotted numbers like 1.2)", 2);
    }
  }
  return guarded([&] {
    // The lock (a busy workspace is refused with its holder) is held to the
    // end: nothing may change the layers while they are set aside.
    Session s = open_session(g, true);
    if (!s.cowfs->is_mounted(s.ws.config.mountpoint)) {
      return fail("the workspace is not mounted; bisect runs the check in the mount: run " +
                      std::string("`rehearse mount` first"),
                  1);
    }
    // The points: before the first increment, then after each checkpoint.
    std::vector<std::string> labels = LayerHold(s.ws.store()).frozen_labels();
    std::vector<Point> points = {Point{}};
    for (const auto& a : s.journal->applied()) {
      // A stamped version has a checkpoint too (its steps are not known).
      if (a.state == "committing") {
        return fail("the commit of " + a.version +
                        " was interrupted; run `rehearse run` to finish it, then bisect",
                    1);
      }
      if (a.layer.empty()) {
        return fail("increment " + a.version +
                        " was applied in place and has no checkpoint; bisect needs checkpoints",
                    1);
      }
      size_t i = 0;
      while (i < labels.size() && labels[i] != a.layer) ++i;
      if (i == labels.size()) {
        return fail("the checkpoint " + a.layer + " of increment " + a.version +
                        " is not in the store; see `rehearse status`",
                    1);
      }
      points.push_back(Point{a.version, i + 1, a.commit_id});
    }
    if (points.size() < 2) return fail("no increment is applied: nothing to bisect", 1);
    auto index_of = [&](const std::string& v, size_t fallback) -> std::optional<size_t> {
      if (v.empty()) return fallback;
      auto want = Version::parse(v);
      for (size_t i = 1; i < points.size(); ++i) {
        if (Version::parse(points[i].version) == want) return i;
      }
      return std::nullopt;
    };
    auto good = index_of(o.good, 0);
    auto bad = index_of(o.bad, points.size() - 1);
    if (!good)
      return fail("--good " + o.good + " is not an applied increment; see `rehearse status`", 2);
    if (!bad)
      return fail("--bad " + o.bad + " is not an applied increment; see `rehearse status`", 2);
    if (*good >= *bad) {
      return fail(
          "--good " + points[*good].name() + " must come before --bad " + points[*bad].name(), 2);
    }

    const auto& stop = install_stop_handlers();
    Progress progress(Progress::Mode::kLog, g.verbose, std::cerr, std::cerr);
    Services::stop_orphans(s.ws, &progress);
    // Unmounting first is the busy check: a process using the mount makes it
    // fail, and nothing has changed yet.
    try {
      s.cowfs->umount(s.ws.config.mountpoint);
    } catch (const StoreError& e) {
      return fail(std::string("the mount is in use (") + e.what() +
                      "); stop what uses it (fuser -vm " + s.ws.config.mountpoint + ") and retry",
                  1);
    }
    Bisector b(s, o.command, stop);
    int rc = 0;
    try {
      Outcome at_bad = b.probe(points[*bad]);
      Outcome at_good = at_bad.pass ? Outcome{} : b.probe(points[*good]);
      if (at_bad.pass) {
        rc = fail("the check passes after " + points[*bad].name() + " (--bad): nothing to bisect",
                  1);
      } else if (!at_good.pass) {
        rc = fail("the check fails already " + std::string(*good == 0 ? "" : "after ") +
                      points[*good].name() + " (--good): " + at_good.first_error +
                      "; pass an earlier --good",
                  1);
      } else {
        std::map<size_t, Outcome> seen = {{*bad, at_bad}};
        size_t first = first_bad_point(*good, *bad, [&](size_t i) {
          Outcome r = b.probe(points[i]);
          seen[i] = r;
          return r.pass;
        });
        const Point& p = points[first];
        std::cout << "first bad increment: " << p.version << " (the check passes after "
                  << points[first - 1].name() << " and fails after " << p.version << ")\n";
        std::cout << "first error: " << seen[first].first_error << "\n";
        std::string steps;
        if (p.commit_id) {
          if (auto c = s.journal->commit(*p.commit_id)) {
            for (const auto& st : c->steps) steps += " " + st.step;
          }
        }
        std::cout << "steps of " << p.version << ":"
                  << (steps.empty() ? " none recorded (a stamped version)" : steps) << "\n";
      }
    } catch (const Bisector::Interrupted&) {
      rc = 130;
    } catch (...) {
      b.put_back();
      s.cowfs->mount(s.ws.config.lowers, s.ws.config.mountpoint);
      throw;
    }
    // Mounted again, as it was.
    s.cowfs->mount(s.ws.config.lowers, s.ws.config.mountpoint);
    if (rc == 130) return fail("interrupted; the workspace is as it was", 130);
    return rc;
  });
}

}  // namespace rehearse::cli
