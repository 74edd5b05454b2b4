#include "harness/config.h"

#include <fcntl.h>
#include <pwd.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "cowfs/core/lower_cache.h"
#include "harness/duration.h"

namespace rehearse {

namespace fs = std::filesystem;

std::string absolute_path(const std::string& path, const std::string& base) {
  fs::path p(path);
  if (p.is_relative()) p = fs::path(base) / p;
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  if (ec) c = p.lexically_normal();
  std::string s = c.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool path_within(const std::string& inner, const std::string& outer) {
  if (outer == "/") return true;
  return inner == outer ||
         (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
          inner[outer.size()] == '/');
}

std::optional<std::string> Workspace::sqlite_under(const std::string& data_root) const {
  if (!config.sqlite) return std::nullopt;
  return data_root + "/" + *config.sqlite;
}

std::string expand_placeholders(std::string text, const std::string& root, const std::string& run) {
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"{root}", root},
                                   std::pair<std::string, std::string>{"{run}", run}}) {
    for (size_t at = text.find(key); at != std::string::npos;
         at = text.find(key, at + value.size())) {
      text.replace(at, key.size(), value);
    }
  }
  return text;
}

std::optional<std::string> Workspace::database_url(const std::string& data_root) const {
  if (!config.database) return std::nullopt;
  return expand_placeholders(*config.database, data_root, run_dir());
}

namespace {

bool is_server_url(const std::string& url) {
  for (const char* scheme : {"postgresql://", "postgres://", "mysql://", "mariadb://"}) {
    if (url.rfind(scheme, 0) == 0) return true;
  }
  return false;
}

ServiceConfig parse_service(const std::string& path, const toml::table& t, size_t index) {
  ServiceConfig s;
  const std::string where = path + ": [[service]] #" + std::to_string(index + 1);
  auto str = [&](const char* key, bool required) -> std::string {
    auto node = t[key];
    if (!node) {
      if (required) throw ConfigError(where + " needs '" + key + "'; add " + key + " = \"...\"");
      return "";
    }
    auto v = node.value<std::string>();
    if (!v) throw ConfigError(where + ": '" + key + "' must be a string");
    return *v;
  };
  s.name = str("name", true);
  static const std::regex name_re("[A-Za-z0-9_-]{1,32}");
  if (!std::regex_match(s.name, name_re)) {
    throw ConfigError(where + ": name '" + s.name +
                      "' must be 1-32 characters of letters, digits, '_' and '-'");
  }
  s.start = str("start", true);
  s.stop = str("stop", false);
  s.ready = str("ready", false);
  s.user = str("user", false);
  s.flush = str("flush", false);
  if (auto node = t["start_timeout"]) {
    std::optional<std::chrono::milliseconds> d;
    if (auto i = node.value<int64_t>()) {
      if (*i > 0) d = std::chrono::seconds(*i);
    } else if (auto txt = node.value<std::string>()) {
      d = parse_duration(*txt);
    }
    if (!d) {
      throw ConfigError(where +
                        ": start_timeout must be a positive duration (seconds, or \"90s\", "
                        "\"5m\")");
    }
    s.start_timeout = *d;
  }
  if (!s.user.empty() && ::getpwnam(s.user.c_str()) == nullptr) {
    throw ConfigError(where + ": user '" + s.user + "' does not exist on this machine");
  }
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    static const char* known[] = {"name", "start", "stop",         "ready",
                                  "user", "flush", "start_timeout"};
    if (std::find(std::begin(known), std::end(known), key) == std::end(known)) {
      throw ConfigError(where + ": unknown key '" + key +
                        "'; the keys are name, start, stop, ready, user, flush, start_timeout");
    }
  }
  return s;
}

void check_sqlite_path(const std::string& p) {
  fs::path sp(p);
  if (p.empty() || sp.is_absolute()) {
    throw ConfigError("sqlite path '" + p +
                      "' must be relative to the mountpoint (e.g. data/app.db)");
  }
  for (const auto& part : sp) {
    if (part == "..") {
      throw ConfigError("sqlite path '" + p + "' must stay inside the mount (no '..')");
    }
  }
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

}  // namespace

void check_config(const std::string& root, const Config& c) {
  const std::string state = root + "/.rehearse";
  if (c.lowers.empty()) throw ConfigError("no lower given; name at least one with --lower DIR");
  for (size_t i = 0; i < c.lowers.size(); ++i) {
    const auto& l = c.lowers[i];
    if (!is_dir(l)) {
      throw ConfigError("lower " + l + " is not a directory; fix the path (or mount it) first");
    }
    for (size_t j = 0; j < c.lowers.size(); ++j) {
      if (i != j && path_within(l, c.lowers[j])) {
        throw ConfigError("lower " + l + " lies inside lower " + c.lowers[j] +
                          "; lowers must not overlap");
      }
    }
    if (path_within(state, l)) {
      throw ConfigError("the workspace state " + state + " lies inside lower " + l +
                        "; put the workspace outside the production data");
    }
    if (path_within(l, state)) {
      throw ConfigError("lower " + l + " lies inside the workspace state " + state);
    }
    if (path_within(c.mountpoint, l) || path_within(l, c.mountpoint)) {
      throw ConfigError("mountpoint " + c.mountpoint + " overlaps lower " + l +
                        "; choose a mountpoint outside the lowers");
    }
    if (path_within(c.steps, l)) {
      // Allowed would be harmless for reading, but a steps folder in
      // production is almost always a mistake in the paths.
      throw ConfigError("steps folder " + c.steps + " lies inside lower " + l +
                        "; keep the steps outside the production data");
    }
  }
  if (path_within(c.mountpoint, state) || path_within(state, c.mountpoint)) {
    throw ConfigError("mountpoint " + c.mountpoint + " overlaps the workspace state " + state +
                      "; choose another mountpoint");
  }
  if (path_within(c.steps, c.mountpoint)) {
    throw ConfigError("steps folder " + c.steps +
                      " lies inside the mountpoint; a rewind would change the steps");
  }
  if (path_within(c.mountpoint, c.steps)) {
    throw ConfigError("mountpoint " + c.mountpoint + " lies inside the steps folder " + c.steps +
                      "; choose a mountpoint outside it");
  }
  if (path_within(c.steps, state)) {
    throw ConfigError("steps folder " + c.steps + " lies inside the workspace state " + state);
  }
  if (c.sqlite) check_sqlite_path(*c.sqlite);
  if (c.cache) {
    // The cache is written: never in production, the view or the state.
    for (const auto& l : c.lowers) {
      if (path_within(*c.cache, l) || path_within(l, *c.cache)) {
        throw ConfigError("cache " + *c.cache + " overlaps lower " + l +
                          "; put the cache on a local disk outside the lowers");
      }
    }
    if (path_within(*c.cache, c.mountpoint) || path_within(c.mountpoint, *c.cache)) {
      throw ConfigError("cache " + *c.cache + " overlaps the mountpoint " + c.mountpoint +
                        "; choose a cache directory outside it");
    }
    if (path_within(*c.cache, state) || path_within(state, *c.cache)) {
      throw ConfigError("cache " + *c.cache + " overlaps the workspace state " + state +
                        "; choose a cache directory outside it");
    }
  }
}

Workspace Workspace::load(const std::string& dir) {
  Workspace w;
  w.root = absolute_path(dir, fs::current_path().string());
  const std::string path = w.config_path();
  if (!fs::exists(path)) {
    throw ConfigError("no workspace at " + w.root + " (no rehearse.toml); run `rehearse init` " +
                      "there or pass -C DIR");
  }
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << path << ":" << e.source().begin.line << ": " << e.description() << "; fix the TOML syntax";
    throw ConfigError(s.str());
  }
  const auto* lowers = t["lowers"].as_array();
  if (!lowers || lowers->empty()) {
    throw ConfigError(path + ": 'lowers' must be a non-empty array of directories (top first)");
  }
  for (const auto& e : *lowers) {
    // "DIR", or { path = "DIR", remote = true } for a lower whose reads go
    // through the cache.
    if (const auto* tbl = e.as_table()) {
      auto p = (*tbl)["path"].value<std::string>();
      auto remote = (*tbl)["remote"];
      if (!p || (remote && !remote.is_boolean())) {
        throw ConfigError(path + ": a table in 'lowers' must be { path = \"DIR\", remote = true }");
      }
      for (const auto& [k, v] : *tbl) {
        if (k.str() != "path" && k.str() != "remote") {
          throw ConfigError(path + ": unknown key '" + std::string(k.str()) +
                            "' in a lower; the keys are path and remote");
        }
      }
      w.config.lowers.push_back(absolute_path(*p, w.root));
      if (remote.value_or(false)) w.config.remote_lowers.push_back(w.config.lowers.back());
      continue;
    }
    auto s = e.value<std::string>();
    if (!s) {
      throw ConfigError(path + ": every entry of 'lowers' must be a string or " +
                        "{ path = \"DIR\", remote = true }");
    }
    w.config.lowers.push_back(absolute_path(*s, w.root));
  }
  auto get = [&](const char* key, bool required) -> std::optional<std::string> {
    auto node = t[key];
    if (!node) {
      if (required) throw ConfigError(path + ": missing '" + key + "'; add " + key + " = \"...\"");
      return std::nullopt;
    }
    auto s = node.value<std::string>();
    if (!s) throw ConfigError(path + ": '" + key + "' must be a string");
    return s;
  };
  w.config.mountpoint = absolute_path(*get("mountpoint", true), w.root);
  w.config.steps = absolute_path(*get("steps", true), w.root);
  w.config.sqlite = get("sqlite", false);
  w.config.database = get("database", false);
  if (auto cache = get("cache", false)) w.config.cache = absolute_path(*cache, w.root);
  if (auto size = get("cache_size", false)) {
    if (!w.config.cache) {
      throw ConfigError(path + ": 'cache_size' without 'cache'; add cache = \"DIR\"");
    }
    if (!cowfs::parse_byte_size(*size)) {
      throw ConfigError(path + ": cache_size '" + *size + "' is not a size; use e.g. 50G or 512M");
    }
    w.config.cache_size = *size;
  }
  if (!w.config.remote_lowers.empty() && !w.config.cache) {
    throw ConfigError(path + ": a lower is marked remote but there is no cache; add cache = " +
                      "\"DIR\" (a local directory for the lower cache)");
  }
  if (w.config.database) {
    if (w.config.sqlite) {
      throw ConfigError(path +
                        ": 'sqlite' and 'database' both given; .sql steps run against one "
                        "database, keep one of them");
    }
    if (!is_server_url(*w.config.database)) {
      throw ConfigError(path + ": database '" + *w.config.database +
                        "' must be a postgresql://... or mysql://... URL (SQLite: use 'sqlite')");
    }
  }
  if (auto node = t["service"]) {
    const auto* arr = node.as_array();
    if (!arr) throw ConfigError(path + ": 'service' must be [[service]] tables");
    for (size_t i = 0; i < arr->size(); ++i) {
      const auto* tbl = (*arr)[i].as_table();
      if (!tbl) throw ConfigError(path + ": 'service' must be [[service]] tables");
      ServiceConfig sc = parse_service(path, *tbl, i);
      for (const auto& other : w.config.services) {
        if (other.name == sc.name) {
          throw ConfigError(path + ": two services are named '" + sc.name + "'; rename one");
        }
      }
      w.config.services.push_back(std::move(sc));
    }
  }
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    if (key != "lowers" && key != "mountpoint" && key != "steps" && key != "sqlite" &&
        key != "database" && key != "service" && key != "cache" && key != "cache_size") {
      throw ConfigError(path + ": unknown key '" + key +
                        "'; the keys are lowers, mountpoint, steps, sqlite, database, service, " +
                        "cache, cache_size");
    }
  }
  check_config(w.root, w.config);
  return w;
}

Workspace init_workspace(const InitRequest& req) {
  Workspace w;
  w.root = absolute_path(req.dir, fs::current_path().string());
  if (!is_dir(w.root)) {
    throw ConfigError("workspace directory " + w.root + " does not exist; create it first");
  }
  if (fs::exists(w.config_path()) || fs::exists(w.state_dir())) {
    throw ConfigError("a workspace already exists in " + w.root +
                      " (rehearse.toml or .rehearse/); remove it or choose another directory");
  }
  for (const auto& l : req.lowers) w.config.lowers.push_back(absolute_path(l, w.root));
  w.config.mountpoint = absolute_path(req.mountpoint, w.root);
  w.config.steps = absolute_path(req.steps, w.root);
  w.config.sqlite = req.sqlite;
  check_config(w.root, w.config);
  if (fs::exists(w.config.mountpoint) && !is_dir(w.config.mountpoint)) {
    throw ConfigError("mountpoint " + w.config.mountpoint + " exists and is not a directory");
  }
  if (fs::exists(w.config.steps) && !is_dir(w.config.steps)) {
    throw ConfigError("steps " + w.config.steps + " exists and is not a directory");
  }

  // Checks done: write. The TOML goes in last, atomically, because its
  // presence is what makes the directory a workspace.
  std::error_code ec;
  fs::create_directories(w.config.mountpoint, ec);
  if (!ec) fs::create_directories(w.config.steps, ec);
  if (!ec) fs::create_directories(w.logs_dir(), ec);
  if (!ec) fs::create_directories(w.step_state_dir(), ec);
  if (ec) {
    fs::remove_all(w.state_dir());
    throw ConfigError("cannot create the workspace folders: " + ec.message());
  }
  toml::array lowers;
  for (const auto& l : req.lowers) lowers.push_back(l);
  toml::table t;
  t.insert("lowers", lowers);
  t.insert("mountpoint", req.mountpoint);
  t.insert("steps", req.steps);
  if (req.sqlite) t.insert("sqlite", *req.sqlite);
  std::ostringstream body;
  body << "# rehearse workspace: lowers are top first; relative paths are relative to this\n"
       << "# file's directory; sqlite is a path inside the mount.\n"
       << t << "\n";
  const std::string tmp = w.config_path() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << body.str();
    out.flush();
    if (!out) {
      fs::remove(tmp, ec);
      fs::remove_all(w.state_dir(), ec);
      throw ConfigError("cannot write " + tmp);
    }
  }
  // The config is durable before it is the workspace's: init either made
  // a whole workspace or none.
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  const int synced = fd < 0 ? errno : (::fsync(fd) < 0 ? errno : 0);
  if (fd >= 0) ::close(fd);
  if (synced != 0) {
    fs::remove(tmp, ec);
    fs::remove_all(w.state_dir(), ec);
    throw ConfigError("cannot write " + tmp + ": " + std::strerror(synced));
  }
  fs::rename(tmp, w.config_path(), ec);
  if (ec) {
    fs::remove_all(w.state_dir(), ec);
    throw ConfigError("cannot write " + w.config_path() + ": " + ec.message());
  }
  return w;
}

}  // namespace rehearse
