// rehearse status: data version, pending and changed increments, the
// increment in progress, store size, and whether the journal and the data
// agree about the version.
#include <filesystem>
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/json.h"
#include "harness/runner.h"
#include "harness/service.h"

namespace rehearse::cli {

CLI::App* setup_status(CLI::App& app, StatusOptions& o) {
  auto* cmd = app.add_subcommand("status", "Data version, pending and changed increments");
  cmd->add_flag("--json", o.json, "Print JSON");
  return cmd;
}

int run_status(const Globals& g, const StatusOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    std::string steps_error;
    std::vector<Increment> plan;
    try {
      plan = discover_steps(s.ws.config.steps, s.ws.config.has_database());
    } catch (const DiscoveryError& e) {
      steps_error = e.what();
    }
    WorkspaceState st = analyze(plan, *s.journal);
    const bool mounted = s.cowfs->is_mounted(s.ws.config.mountpoint);
    std::optional<std::string> data_version;
    if (mounted && s.ws.config.sqlite) {
      data_version = read_data_version(*s.ws.sqlite_under(s.ws.config.mountpoint));
    }
    // A database left with a hot rollback journal (a writer killed mid-
    // transaction, e.g. an interrupted `run --in-place`) cannot be read by a
    // read-only reader until a writer rolls it back: SQLite then says
    // "attempt to write a readonly database", which names no cause.
    std::string hot_journal;
    if (s.ws.config.sqlite) {
      std::optional<std::string> db;
      if (mounted) {
        db = s.ws.sqlite_under(s.ws.config.mountpoint);
      } else if (s.ws.config.lowers.size() == 1) {
        db = s.ws.sqlite_under(s.ws.config.lowers.front());
      }
      std::error_code ec;
      if (db && std::filesystem::file_size(*db + "-journal", ec) > 0 && !ec) {
        hot_journal = *db + "-journal";
      }
    }
    const std::string journal_version = st.current ? st.current->str() : "";
    bool disagree = mounted && s.ws.config.sqlite && data_version.value_or("") != journal_version;
    std::string busy;
    try {
      WorkspaceLock probe(s.ws.lock_path());
    } catch (const LockBusy& e) {
      busy = e.what();
    }
    // A run in progress writes its journal right now: not an interrupted one.
    if (!busy.empty()) hot_journal.clear();
    std::string store_error;
    int64_t store_bytes = 0, layers = 0;
    try {
      for (const auto& l : s.cowfs->layers()) {
        store_bytes += l.bytes;
        ++layers;
      }
    } catch (const StoreError& e) {
      store_error = e.what();
    }
    auto intent = s.journal->intent();
    bool committing = false;
    for (const auto& a : st.applied) committing = committing || a.state == "committing";
    auto last = s.journal->last_run();
    auto services = Services::status(s.ws);
    auto service_state = [](const ServiceStatus& sv) -> std::string {
      if (!sv.running) return "stopped";
      std::string pids;
      for (pid_t p : sv.pids) pids += (pids.empty() ? "" : ",") + std::to_string(p);
      return std::string(sv.orphan ? "orphaned" : "running") + " (pid " + pids +
             (sv.orphan ? "; left by rehearse pid " : ", for rehearse pid ") +
             std::to_string(sv.owner) + ")";
    };

    if (o.json) {
      std::vector<std::string> pending, changed;
      for (const auto* p : st.pending) pending.push_back(json::quote(p->label()));
      for (const auto& c : st.changed) {
        std::vector<std::string> reasons;
        for (const auto& r : c.reasons) reasons.push_back(json::quote(r));
        changed.push_back(json::Object()
                              .add("version", c.version)
                              .add_raw("reasons", json::array(reasons))
                              .str());
      }
      json::Object out;
      out.add("workspace", s.ws.root).add("mountpoint", s.ws.config.mountpoint);
      out.add("mounted", mounted);
      if (st.current)
        out.add("version", journal_version);
      else
        out.add_null("version");
      out.add("stamped", st.stamped.has_value());
      if (data_version)
        out.add("data_version", *data_version);
      else
        out.add_null("data_version");
      out.add("version_disagreement", disagree);
      out.add_raw("pending", json::array(pending)).add_raw("changed", json::array(changed));
      if (st.partial)
        out.add("in_progress", *st.partial);
      else
        out.add_null("in_progress");
      out.add("needs_recovery", intent.has_value() || committing);
      out.add("layers", layers).add("store_bytes", store_bytes);
      if (const auto& lc = s.cowfs->lower_cache()) {
        out.add_raw("lower_cache", json::Object()
                                       .add("dir", lc->dir)
                                       .add("bytes", lc->bytes)
                                       .add("max_bytes", lc->max_bytes)
                                       .add("hits", lc->hits)
                                       .add("misses", lc->misses)
                                       .add("fetched_bytes", lc->fetched_bytes)
                                       .str());
      } else if (s.ws.config.cache) {
        out.add_raw("lower_cache",
                    json::Object().add("dir", *s.ws.config.cache).add("mounted", false).str());
      } else {
        out.add_null("lower_cache");
      }
      if (!store_error.empty()) out.add("store_error", store_error);
      if (!steps_error.empty()) out.add("steps_error", steps_error);
      if (!busy.empty()) out.add("busy", busy);
      std::vector<std::string> svc;
      for (const auto& sv : services) {
        std::vector<std::string> pids;
        for (pid_t p : sv.pids) pids.push_back(std::to_string(p));
        svc.push_back(json::Object()
                          .add("name", sv.name)
                          .add("running", sv.running)
                          .add("orphan", sv.orphan)
                          .add_raw("pids", json::array(pids))
                          .str());
      }
      out.add_raw("services", json::array(svc));
      if (!hot_journal.empty()) out.add("hot_journal", hot_journal);
      if (last) {
        out.add_raw("last_run", json::Object()
                                    .add("id", last->id)
                                    .add("command", last->command)
                                    .add("outcome", last->outcome)
                                    .add("error", last->error)
                                    .str());
      }
      std::cout << out.str() << "\n";
      return 0;
    }
    std::cout << "workspace:   " << s.ws.root << "\n";
    std::cout << "mount:       " << s.ws.config.mountpoint
              << (mounted ? " (mounted)" : " (not mounted)") << "\n";
    std::cout << "version:     " << (st.current ? journal_version : "production (none applied)")
              << (st.stamped ? " (stamped)" : "") << "\n";
    if (s.ws.config.sqlite) {
      std::cout << "data says:   "
                << (!mounted       ? "unknown (not mounted)"
                    : data_version ? *data_version
                                   : std::string("no version table"));
      if (disagree) {
        std::cout << "  <- DISAGREES with the journal";
        if (st.partial && data_version == st.partial) {
          std::cout << " (increment " << *st.partial << " was interrupted while committing; "
                    << "`rehearse run` finishes it)";
        } else {
          std::cout << " (use `rehearse stamp V` if the data's version is known)";
        }
      }
      std::cout << "\n";
    }
    std::string pend;
    for (const auto* p : st.pending) pend += (pend.empty() ? "" : ", ") + p->label();
    std::cout << "pending:     " << (pend.empty() ? "none" : pend) << "\n";
    if (st.partial) {
      int done = 0;
      for (const auto& p : st.partial_steps) done += p.done ? 1 : 0;
      std::cout << "in progress: " << *st.partial << " (" << done
                << " step(s) done; `rehearse run` "
                << "resumes it)\n";
    }
    for (const auto& c : st.changed) {
      std::cout << "changed:     " << c.version << ":";
      for (size_t i = 0; i < c.reasons.size(); ++i) std::cout << (i ? ", " : " ") << c.reasons[i];
      std::cout << "\n";
    }
    if (intent || committing) {
      std::cout << "recovery:    an operation was interrupted; the next run/rewind/reset completes "
                << "it\n";
    }
    if (store_error.empty()) {
      std::cout << "store:       " << layers << " layer(s), " << store_bytes << " bytes\n";
    } else {
      std::cout << "store:       unknown (" << store_error << ")\n";
    }
    if (const auto& lc = s.cowfs->lower_cache()) {
      const int64_t reads = lc->hits + lc->misses;
      std::cout << "lower cache: " << lc->dir << ": " << lc->bytes << " of " << lc->max_bytes
                << " bytes; this mount: " << lc->hits << " hits, " << lc->misses << " misses"
                << (reads ? " (" + std::to_string(lc->hits * 100 / reads) + "% hits)" : "") << ", "
                << lc->fetched_bytes << " bytes fetched from the lowers\n";
    } else if (s.ws.config.cache) {
      std::cout << "lower cache: " << *s.ws.config.cache << " (" << s.ws.config.cache_size
                << "; figures while mounted)\n";
    }
    if (!steps_error.empty()) std::cout << "steps:       ERROR " << steps_error << "\n";
    if (last) {
      std::cout << "last run:    #" << last->id << " " << last->command << ": " << last->outcome
                << (last->error.empty() ? "" : " - " + last->error) << "\n";
    }
    for (const auto& sv : services) {
      std::cout << "service:     " << sv.name << ": " << service_state(sv) << "\n";
    }
    if (!busy.empty()) std::cout << "busy:        " << busy << "\n";
    if (!hot_journal.empty()) {
      std::cout << "database:    " << hot_journal
                << " is a hot journal: a write to the database was interrupted (a killed "
                << (mounted ? "run" : "`run --in-place`")
                << "?). Read-only readers fail with 'attempt to write a readonly database' "
                   "until a read-write open rolls it back ("
                << (mounted ? "`rehearse run` does" : "`rehearse run --in-place` does") << ")\n";
    }
    return 0;
  });
}

}  // namespace rehearse::cli
