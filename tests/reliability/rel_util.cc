#include "tests/reliability/rel_util.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace cowfs_rel {

using namespace cowfs_it;

namespace {
constexpr const char* kUser = "cowfs-test";
}

std::vector<std::string> TestUser::as_user() const {
  return {"setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(gid),
          "--clear-groups", "--"};
}

std::optional<TestUser> test_user(std::string* why) {
  if (::geteuid() != 0) {
    *why = "needs root to create the test user";
    return std::nullopt;
  }
  struct passwd* pw = ::getpwnam(kUser);
  if (pw == nullptr) {
    RunResult r = run({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                       "--user-group", kUser});
    pw = ::getpwnam(kUser);
    if (pw == nullptr) {
      *why = "cannot create user " + std::string(kUser) + ": " + r.describe();
      return std::nullopt;
    }
  }
  return TestUser{pw->pw_uid, pw->pw_gid};
}

DevFuseOpen::DevFuseOpen() {
  struct stat st {};
  if (::stat("/dev/fuse", &st) != 0) throw std::runtime_error("no /dev/fuse");
  old_mode_ = st.st_mode & 07777;
  if ((old_mode_ & 0666) != 0666) {
    if (::chmod("/dev/fuse", 0666) != 0) throw std::runtime_error("chmod /dev/fuse");
    changed_ = true;
  }
}

DevFuseOpen::~DevFuseOpen() {
  if (changed_) ::chmod("/dev/fuse", old_mode_);
}

RunResult run_self_as(const TestUser& user, const std::string& filter,
                      const std::vector<std::pair<std::string, std::string>>& env,
                      std::chrono::milliseconds timeout) {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw std::runtime_error("readlink /proc/self/exe");
  std::vector<std::string> argv = user.as_user();
  argv.push_back("env");
  for (const auto& [k, v] : env) argv.push_back(k + "=" + v);
  argv.push_back(std::string(exe, static_cast<size_t>(n)));
  argv.push_back("--gtest_filter=" + filter);
  return run(argv, {.cwd = "/", .timeout = timeout});
}

long env_long(const char* name, long def) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  return std::strtol(v, nullptr, 0);
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

RunResult cowfs(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {cowfs_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {.cwd = "", .timeout = timeout});
}

std::string check_one_line_error(const RunResult& r, const std::vector<std::string>& needles) {
  std::string problems;
  if (r.timed_out) problems += "timed out; ";
  if (r.exit_code == 0) problems += "exit status 0 (expected a failure); ";
  auto lines = r.err_lines();
  if (lines.size() != 1) {
    problems += "expected exactly one line on stderr, got " + std::to_string(lines.size()) + "; ";
  }
  if (!lines.empty() && lines[0].rfind("cowfs: ", 0) != 0) {
    problems += "the error does not start with \"cowfs: \"; ";
  }
  for (const auto& n : needles) {
    if (r.err.find(n) == std::string::npos)
      problems += "the error does not mention \"" + n + "\"; ";
  }
  if (!problems.empty()) problems += "got: " + r.describe();
  return problems;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Manifest layer_manifest(const std::string& layer_dir) { return Manifest::take(layer_dir); }

}  // namespace cowfs_rel
