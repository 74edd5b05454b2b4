// rehearse plan: the increments and their steps, with what run would do.
#include <iostream>
#include <set>

#include "harness/cli/cli.h"
#include "harness/json.h"

namespace rehearse::cli {

CLI::App* setup_plan(CLI::App& app, PlanOptions& o) {
  auto* cmd = app.add_subcommand("plan", "List the increments and steps, and what run would do");
  cmd->add_flag("--json", o.json, "Print JSON");
  return cmd;
}

int run_plan(const Globals& g, const PlanOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    auto plan = discover_steps(s.ws.config.steps, s.ws.config.has_database());
    WorkspaceState st = analyze(plan, *s.journal);
    std::set<std::string> pending, changed;
    for (const auto* p : st.pending) pending.insert(p->label());
    for (const auto& c : st.changed) changed.insert(c.version);
    auto state_of = [&](const Increment& inc) -> std::string {
      if (changed.count(inc.label())) return "changed";
      if (st.partial == inc.label()) return "in progress";
      if (pending.count(inc.label())) return "pending";
      return "applied";
    };
    if (o.json) {
      std::vector<std::string> incs;
      for (const auto& inc : st.plan) {
        std::vector<std::string> steps;
        for (const auto& stp : inc.steps) {
          json::Object so;
          so.add("name", stp.name).add("kind", kind_name(stp.kind)).add("checksum", stp.checksum);
          if (stp.batch) {
            so.add("table", stp.batch->table).add("key", stp.batch->key);
            so.add("size", stp.batch->size);
          }
          steps.push_back(so.str());
        }
        incs.push_back(json::Object()
                           .add("version", inc.label())
                           .add("dir", inc.dir)
                           .add("state", state_of(inc))
                           .add_raw("steps", json::array(steps))
                           .str());
      }
      std::cout << json::Object().add_raw("increments", json::array(incs)).str() << "\n";
      return 0;
    }
    for (const auto& inc : st.plan) {
      std::cout << inc.label() << "  [" << state_of(inc) << "]\n";
      for (const auto& stp : inc.steps) {
        std::cout << "  " << stp.name << "  (" << kind_name(stp.kind);
        if (stp.batch) {
          std::cout << " " << stp.batch->table << "." << stp.batch->key << " by "
                    << stp.batch->size;
        }
        std::cout << ")\n";
      }
    }
    if (st.plan.empty()) std::cout << "no increments in " << s.ws.config.steps << "\n";
    if (!st.changed.empty()) {
      std::cout << "run would rewind to before " << st.changed.front().version << " and run from "
                << "there\n";
    }
    return 0;
  });
}

}  // namespace rehearse::cli
