#include "harness/step.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

namespace rehearse {

namespace fs = std::filesystem;

const char* kind_name(StepKind k) {
  switch (k) {
    case StepKind::kSql:
      return "sql";
    case StepKind::kBatchSql:
      return "batch";
    case StepKind::kExec:
      return "exec";
  }
  return "?";
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string checksum_text(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string checksum_file(const std::string& path) {
  try {
    return checksum_text(read_text_file(path));
  } catch (const std::exception& e) {
    throw DiscoveryError(std::string(e.what()) + "; check its permissions");
  }
}

namespace {

// Control characters (a newline above all) in a name would split log lines,
// the one-line errors and `ls` output; such names are refused.
bool has_control_char(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

void check_name(const std::string& name, const std::string& path) {
  if (has_control_char(name)) {
    throw DiscoveryError(path + ": the name contains a control character (newline, tab...); " +
                         "rename it");
  }
}

bool is_identifier(const std::string& s) {
  static const std::regex re("[A-Za-z_][A-Za-z0-9_]*");
  return std::regex_match(s, re);
}

// Does the SQL text use the named parameter (outside of comments, roughly)?
bool uses_param(const std::string& sql, const std::string& name) {
  static const std::regex comment("--[^\n]*");
  std::string stripped = std::regex_replace(sql, comment, "");
  std::regex re(":" + name + "(?![A-Za-z0-9_])");
  return std::regex_search(stripped, re);
}

}  // namespace

std::optional<BatchSpec> parse_batch_header(const std::string& sql, const std::string& path) {
  std::istringstream in(sql);
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    if (line.compare(first, 2, "--") != 0) break;  // end of the leading comment block
    std::string c = line.substr(first + 2);
    auto p = c.find_first_not_of(" \t");
    if (p == std::string::npos || c.compare(p, 9, "rehearse:") != 0) continue;
    std::istringstream words(c.substr(p));
    std::string directive;
    words >> directive;
    if (directive != "rehearse:batch") {
      throw DiscoveryError(path + ": unknown header '" + directive +
                           "'; the only one is `-- rehearse:batch table=T key=K size=N`");
    }
    BatchSpec b;
    std::string kv;
    while (words >> kv) {
      auto eq = kv.find('=');
      std::string k = kv.substr(0, eq);
      std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1);
      if (k == "table") {
        b.table = v;
      } else if (k == "key") {
        b.key = v;
      } else if (k == "size") {
        try {
          size_t used = 0;
          b.size = std::stoll(v, &used);
          if (used != v.size()) b.size = 0;
        } catch (const std::exception&) {
          b.size = 0;
        }
        if (b.size <= 0) {
          throw DiscoveryError(path + ": batch size '" + v + "' must be a positive integer");
        }
      } else {
        throw DiscoveryError(path + ": unknown batch setting '" + k +
                             "'; use table=T key=K size=N");
      }
    }
    if (!is_identifier(b.table) || !is_identifier(b.key) || b.size <= 0) {
      throw DiscoveryError(path +
                           ": batch header needs table=NAME key=COLUMN size=N (plain identifiers)");
    }
    return b;
  }
  return std::nullopt;
}

std::vector<Increment> discover_steps(const std::string& steps_dir, bool have_sqlite) {
  std::error_code ec;
  if (!fs::is_directory(steps_dir, ec)) {
    throw DiscoveryError("steps folder " + steps_dir + " does not exist; create it or fix " +
                         "'steps' in rehearse.toml");
  }
  std::vector<Increment> out;
  std::map<Version, std::string> seen;
  std::vector<fs::directory_entry> entries;
  for (const auto& e : fs::directory_iterator(steps_dir)) entries.push_back(e);
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  for (const auto& e : entries) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (!e.is_directory()) continue;
    check_name(name, e.path().string());
    auto v = Version::parse(name);
    if (!v) {
      throw DiscoveryError(e.path().string() +
                           ": not a version (dotted numbers like 1.2 or 3); rename it");
    }
    if (auto it = seen.find(*v); it != seen.end()) {
      throw DiscoveryError(e.path().string() + ": duplicate of version " + it->second +
                           " (same number); remove or renumber one");
    }
    seen[*v] = e.path().string();
    Increment inc;
    inc.version = *v;
    inc.dir = e.path().string();
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(e.path())) {
      std::string fname = f.path().filename().string();
      if (fname.empty() || fname[0] == '.') continue;
      files.push_back(fname);
    }
    std::sort(files.begin(), files.end());
    for (const auto& fname : files) {
      const std::string path = inc.dir + "/" + fname;
      check_name(fname, path);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) {
        throw DiscoveryError(path + ": cannot stat (dangling symlink?); fix or remove it");
      }
      if (S_ISDIR(st.st_mode)) {
        throw DiscoveryError(path + ": a directory inside an increment is not a step; move it");
      }
      if (!S_ISREG(st.st_mode)) {
        throw DiscoveryError(path + ": not a regular file; steps are .sql or executable files");
      }
      Step s;
      s.name = fname;
      s.path = path;
      s.checksum = checksum_file(path);
      if (fname.size() > 4 && fname.compare(fname.size() - 4, 4, ".sql") == 0) {
        if (!have_sqlite) {
          throw DiscoveryError(path +
                               ": a .sql step needs a database; set `sqlite` or `database` in " +
                               "rehearse.toml (rehearse init --sqlite PATH-IN-MOUNT)");
        }
        std::string text = read_text_file(path);
        s.batch = parse_batch_header(text, path);
        s.kind = s.batch ? StepKind::kBatchSql : StepKind::kSql;
        bool lo = uses_param(text, "lo"), hi = uses_param(text, "hi");
        if (s.batch && !lo && !hi) {
          throw DiscoveryError(path + ": batched step uses neither :lo nor :hi; restrict its " +
                               "statements to the batch (WHERE key BETWEEN :lo AND :hi)");
        }
        if (!s.batch && (lo || hi)) {
          throw DiscoveryError(path + ": uses :lo/:hi but has no batch header; add " +
                               "`-- rehearse:batch table=T key=K size=N` at the top");
        }
      } else if (st.st_mode & 0111) {
        s.kind = StepKind::kExec;
      } else {
        throw DiscoveryError(path + ": unknown step kind; name it *.sql or make it " +
                             "executable (chmod +x)");
      }
      inc.steps.push_back(std::move(s));
    }
    if (inc.steps.empty()) {
      throw DiscoveryError(inc.dir + ": empty increment (no steps); add a step or remove it");
    }
    out.push_back(std::move(inc));
  }
  std::sort(out.begin(), out.end(),
            [](const Increment& a, const Increment& b) { return a.version < b.version; });
  return out;
}

}  // namespace rehearse
