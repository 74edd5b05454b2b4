// cowfs checkpoint | rewind | reset | layers | compact | diff: sent to the
// running cowfs over the store's control socket, or, when nothing serves
// the store, carried out on the store directly with the same meaning.
#include <iostream>

#include "cowfs/cli/commands.h"
#include "cowfs/core/control.h"
#include "cowfs/core/layer_service.h"
#include "cowfs/core/mount_checks.h"
#include "cowfs/core/store.h"

namespace cowfs::cli {

void setup_layer_commands(CLI::App& app, LayerOptions& o) {
  auto add = [&](const char* name, const char* help) {
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("--store", o.store, "The store (mounted or not)")->required();
    cmd->callback([&o, name] { o.command = name; });
    return cmd;
  };
  add("checkpoint", "Freeze the top layer under LABEL and start a new one")
      ->add_option("LABEL", o.label, "Name of the checkpoint")
      ->required();
  add("rewind", "Drop every layer above checkpoint LABEL")
      ->add_option("LABEL", o.label, "The checkpoint to go back to")
      ->required();
  add("reset", "Drop all layers: show the lowers alone");
  add("layers", "List the layers, top first")->add_flag("--json", o.json, "JSON output");
  add("compact", "Merge frozen layers whose labels are not kept")
      ->add_option("--keep", o.keep, "Labels to keep (comma-separated)")
      ->delimiter(',');
  auto* diff = add("diff", "Files added, changed and deleted between two checkpoints");
  diff->add_option("--from", o.from, "Checkpoint to compare from (default: the lowers)");
  diff->add_option("--to", o.to, "Checkpoint to compare to (default: now)");
  diff->add_flag("--json", o.json, "JSON output");
}

namespace {

// A label as it can be shown on one line.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string run_offline(Store& store, const LayerOptions& o) {
  Whiteouts whiteouts;
  if (auto s = whiteouts.init(store.whiteouts_fd(), store.dev()); !s.ok()) {
    throw StoreError("cannot read the store's whiteouts");
  }
  LayerService svc(store, whiteouts, nullptr, nullptr);
  const std::string& c = o.command;
  if (c == "checkpoint") return svc.checkpoint(o.label);
  if (c == "rewind") return svc.rewind(o.label);
  if (c == "reset") return svc.reset();
  if (c == "layers") return svc.layers(o.json);
  if (c == "compact") return svc.compact(o.keep);
  return svc.diff(o.from, o.to, o.json);
}

}  // namespace

int run_layer_command(const LayerOptions& o) {
  const std::string store_path = canonical_path(o.store);
  std::vector<std::string> words{o.command};
  auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  if (o.command == "checkpoint" || o.command == "rewind") words.push_back(o.label);
  if (o.command == "layers") words.push_back(o.json ? "json" : "-");
  if (o.command == "compact") words.push_back(dash(join(o.keep)));
  if (o.command == "diff") {
    words.push_back(o.json ? "json" : "-");
    words.push_back(dash(o.from));
    words.push_back(dash(o.to));
  }
  // Checked here too: the control protocol is words on one line.
  for (const auto* label : {&o.label, &o.from, &o.to}) {
    if (!label->empty() && !label_is_wellformed(*label)) {
      return fail("label '" + printable(*label) +
                      "' is malformed; use 1 to 64 letters, digits, '.', '_' or '-'",
                  2);
    }
  }
  for (const auto& k : o.keep) {
    if (!label_is_wellformed(k)) return fail("label '" + printable(k) + "' is malformed", 2);
  }
  if (auto reply = control_request(store_path, words)) {
    if (!reply->ok) {
      std::string msg = reply->text;
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      return fail(msg);
    }
    std::cout << reply->text;
    return 0;
  }
  try {
    Store store = Store::open(store_path, false);
    if (store.locked_by_other()) {
      return fail("the cowfs serving " + o.store +
                  " does not answer on its control socket; is it hung? (see cowfs.log)");
    }
    store.lock_exclusive();
    std::cout << run_offline(store, o);
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

}  // namespace cowfs::cli
