#include "harness/store.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/json.h"
#include "harness/process.h"

namespace rehearse {

namespace fs = std::filesystem;

namespace {

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  std::string l = s.substr(0, nl);
  // cowfs prefixes its messages; the harness adds its own context.
  if (l.rfind("cowfs: ", 0) == 0) l = l.substr(7);
  return l;
}

std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

bool valid_label(const std::string& label) {
  if (label.empty() || label.size() > 64) return false;
  for (char c : label) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool cowfs_mounted_at(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, point;
    ls >> id >> parent >> dev >> root >> point;
    if (unescape_mountinfo(point) != path) continue;
    std::string tok;
    while (ls >> tok && tok != "-") {
    }
    std::string fstype;
    ls >> fstype;
    found = fstype == "fuse.cowfs";  // the last mount at a path is the visible one
  }
  return found;
}

std::string find_cowfs_binary() {
  if (const char* env = std::getenv("REHEARSE_COWFS"); env && *env) return env;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    fs::path dir = fs::path(buf).parent_path();
    for (const auto& cand : {dir / "cowfs", dir.parent_path() / "cowfs"}) {
      std::error_code ec;
      if (fs::is_regular_file(cand, ec) && ::access(cand.c_str(), X_OK) == 0) return cand.string();
    }
  }
  return "cowfs";
}

std::string CowfsCli::run(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> argv{bin_};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcResult r;
  try {
    r = run_capture(argv);
  } catch (const std::exception& e) {
    throw StoreError(what + ": cannot run " + bin_ + ": " + e.what());
  }
  if (r.exit_code == 127 && r.err.find("cannot execute") != std::string::npos) {
    throw StoreError(what + ": cannot run " + bin_ + " (set REHEARSE_COWFS to the cowfs binary)");
  }
  if (!r.ok()) {
    std::string msg = first_line(r.err);
    if (msg.empty()) msg = first_line(r.out);
    if (msg.empty()) msg = "exit " + std::to_string(r.exit_code);
    throw StoreError(what + " failed: " + msg);
  }
  return r.out;
}

void CowfsCli::mount(const std::vector<std::string>& lowers, const std::string& mountpoint) {
  std::vector<std::string> args{"mount", "--store", store_};
  for (const auto& l : lowers) {
    args.push_back("--lower");
    args.push_back(l);
  }
  args.insert(args.end(), mount_args_.begin(), mount_args_.end());
  args.push_back(mountpoint);
  run(args, "mount");
}

void CowfsCli::umount(const std::string& mountpoint) { run({"umount", mountpoint}, "umount"); }

bool CowfsCli::is_mounted(const std::string& mountpoint) { return cowfs_mounted_at(mountpoint); }

void CowfsCli::checkpoint(const std::string& label) {
  run({"checkpoint", "--store", store_, label}, "checkpoint " + label);
}

void CowfsCli::rewind(const std::string& label) {
  run({"rewind", "--store", store_, label}, "rewind to " + label);
}

void CowfsCli::reset() { run({"reset", "--store", store_}, "reset"); }

std::vector<LayerInfo> CowfsCli::layers() {
  std::error_code ec;
  // A store cowfs has never opened has no layers yet; cowfs would create it.
  if (!fs::exists(store_, ec)) return {};
  std::string out = run({"layers", "--store", store_, "--json"}, "layers");
  std::string err;
  auto v = json::parse(out, &err);
  if (!v) throw StoreError("cowfs layers printed something that is not JSON: " + err);
  std::vector<LayerInfo> res;
  for (const auto& l : (*v)["layers"].items) {
    LayerInfo li;
    li.id = l["id"].as_string();
    li.label = l["label"].as_string();
    li.created = l["created"].as_int();
    li.files = l["files"].as_int();
    li.bytes = l["bytes"].as_int();
    li.chunked_bytes = l["chunked_bytes"].as_int();
    li.top = l["top"].as_bool();
    res.push_back(li);
  }
  lower_cache_.reset();
  const json::Value& c = (*v)["lower_cache"];
  if (c.kind == json::Value::kObject) {
    lower_cache_ =
        LowerCacheInfo{c["dir"].as_string(), c["bytes"].as_int(),  c["max_bytes"].as_int(),
                       c["hits"].as_int(),   c["misses"].as_int(), c["fetched_bytes"].as_int()};
  }
  return res;
}

StoreDiff CowfsCli::diff(const std::optional<std::string>& from,
                         const std::optional<std::string>& to) {
  std::vector<std::string> args{"diff", "--store", store_};
  if (from) {
    args.push_back("--from");
    args.push_back(*from);
  }
  if (to) {
    args.push_back("--to");
    args.push_back(*to);
  }
  args.push_back("--json");
  std::string out = run(args, "diff");
  std::string err;
  auto v = json::parse(out, &err);
  if (!v) throw StoreError("cowfs diff printed something that is not JSON: " + err);
  StoreDiff d;
  auto fill = [](const json::Value& arr, std::vector<DiffEntry>& into) {
    for (const auto& e : arr.items) into.push_back({e["path"].as_string(), e["bytes"].as_int()});
  };
  fill((*v)["added"], d.added);
  fill((*v)["changed"], d.changed);
  fill((*v)["deleted"], d.deleted);
  d.bytes = (*v)["bytes"].as_int();
  for (const auto& e : (*v)["renamed"].items) {
    d.renamed.emplace_back(e["from"].as_string(), e["to"].as_string());
  }
  return d;
}

}  // namespace rehearse
