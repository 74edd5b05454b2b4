// rehearse diff [V]: files added, changed, deleted and renamed by increment
// V, or by the whole rehearsal.
#include <iostream>

#include "harness/cli/cli.h"
#include "harness/json.h"

namespace rehearse::cli {

CLI::App* setup_diff(CLI::App& app, DiffOptions& o) {
  auto* cmd = app.add_subcommand("diff", "Files changed by increment V, or by the whole rehearsal");
  cmd->add_option("VERSION", o.version, "An applied increment (default: everything)");
  cmd->add_flag("--json", o.json, "Print JSON");
  return cmd;
}

int run_diff(const Globals& g, const DiffOptions& o) {
  return guarded([&] {
    Session s = open_session(g, false);
    std::optional<std::string> from, to;
    if (!o.version.empty()) {
      auto v = Version::parse(o.version);
      if (!v) return fail("'" + o.version + "' is not a version (dotted numbers like 1.2)", 2);
      const AppliedIncrement* prev = nullptr;
      const AppliedIncrement* target = nullptr;
      for (const auto& a : s.journal->applied()) {
        auto av = Version::parse(a.version);
        if (!av) continue;
        if (*av < *v) prev = &a;
        if (*av == *v) target = &a;
      }
      if (!target || target->layer.empty()) {
        return fail("increment " + o.version + " is not applied with a checkpoint; see " +
                        "`rehearse status`",
                    1);
      }
      to = target->layer;
      if (prev) from = prev->layer;
    }
    StoreDiff d = s.cowfs->diff(from, to);
    if (o.json) {
      auto list = [](const std::vector<DiffEntry>& v, bool bytes) {
        std::vector<std::string> items;
        for (const auto& e : v) {
          json::Object obj;
          obj.add("path", e.path);
          if (bytes) obj.add("bytes", e.bytes);
          items.push_back(obj.str());
        }
        return json::array(items);
      };
      auto renamed = [&] {
        std::vector<std::string> items;
        for (const auto& [f, t] : d.renamed)
          items.push_back(json::Object().add("from", f).add("to", t).str());
        return json::array(items);
      };
      std::cout << json::Object()
                       .add("from", from.value_or(""))
                       .add("to", to.value_or(""))
                       .add_raw("added", list(d.added, true))
                       .add_raw("changed", list(d.changed, true))
                       .add_raw("deleted", list(d.deleted, false))
                       .add_raw("renamed", renamed())
                       .str()
                << "\n";
      return 0;
    }
    for (const auto& e : d.added) std::cout << "+ " << e.path << " (" << e.bytes << " bytes)\n";
    for (const auto& e : d.changed) std::cout << "~ " << e.path << " (" << e.bytes << " bytes)\n";
    for (const auto& e : d.deleted) std::cout << "- " << e.path << "\n";
    for (const auto& [f, t] : d.renamed) std::cout << "R " << f << " -> " << t << "\n";
    std::cout << d.added.size() << " added, " << d.changed.size() << " changed, "
              << d.deleted.size() << " deleted, " << d.renamed.size() << " renamed; " << d.bytes
              << " bytes written "
              << (to ? "by " + o.version : std::string("by the whole rehearsal")) << "\n";
    return 0;
  });
}

}  // namespace rehearse::cli
