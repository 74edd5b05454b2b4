// Helpers shared by the reliability tests (on top of the integration
// fixture): an ordinary user to run mounts as, /dev/fuse access for that
// user, re-running one test of this binary as that user, and small store
// helpers.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/integration/fixture.h"

namespace cowfs_rel {

// The ordinary user the unprivileged variants run as (created if missing).
struct TestUser {
  uid_t uid = 0;
  gid_t gid = 0;
  // setpriv prefix that runs a command as the user.
  std::vector<std::string> as_user() const;
};
// nullopt (with *why set) if it cannot be had (not root, no useradd...).
std::optional<TestUser> test_user(std::string* why);

// Makes /dev/fuse usable by everyone (its usual mode, 0666) for the guard's
// lifetime; libfuse opens it itself before falling back to fusermount3.
class DevFuseOpen {
 public:
  DevFuseOpen();
  ~DevFuseOpen();
  DevFuseOpen(const DevFuseOpen&) = delete;
  DevFuseOpen& operator=(const DevFuseOpen&) = delete;

 private:
  mode_t old_mode_ = 0;
  bool changed_ = false;
};

// Runs this test binary again as `user` with only `filter` selected and the
// given environment additions; returns its result.
cowfs_it::RunResult run_self_as(const TestUser& user, const std::string& filter,
                                const std::vector<std::pair<std::string, std::string>>& env,
                                std::chrono::milliseconds timeout);

// Environment variable as a number, or def.
long env_long(const char* name, long def);
bool env_flag(const char* name);

// `cowfs <args...>` with a deadline.
cowfs_it::RunResult cowfs(const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Asserts the shape of a user-facing error: non-zero exit, exactly one
// line on stderr starting "cowfs: ", containing every needle. "" if fine.
std::string check_one_line_error(const cowfs_it::RunResult& r,
                                 const std::vector<std::string>& needles);

// Content of a small file ("" if missing).
std::string slurp(const std::string& path);

// A list of every file under dir with its content hash, mode and mtime
// (for "nothing changed" checks on a store's frozen layers).
cowfs_it::Manifest layer_manifest(const std::string& layer_dir);

}  // namespace cowfs_rel
