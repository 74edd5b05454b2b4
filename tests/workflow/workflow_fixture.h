// End-to-end workflow tests: the demo production (scripts/make-demo-prod.sh),
// the demo upgrade (steps/), scripts/refresh-prod.sh, scripts/demo.sh and
// network lowers, all driven through the real rehearse and cowfs binaries.
//
// What is here (on top of tests/integration/fixture.h):
//  * demo_prod(n): a production snapshot of n objects, generated once per
//    test binary and shared read-only (tests bind-mount it read-only or copy
//    it before changing anything).
//  * rehearse(ws, args): `rehearse -C ws args...` (REHEARSE_COWFS points at
//    the cowfs under test).
//  * query(db, sql): the first column of the first row, read-only.
//  * free_port(), wait_for_port(): loopback ports for the servers tests run.
//  * SshServer, RsyncDaemon: an sshd / rsync daemon on 127.0.0.1 with their
//    own config, keys and logs in a test directory; killed in the destructor.
//
// Everything a test starts lives under its TempDir, whose destructor
// unmounts whatever is mounted inside; servers are killed by their guards,
// declared before the mounts that use them so they outlive those mounts.
#pragma once

#include <string>
#include <vector>

#include "tests/integration/fixture.h"

namespace workflow {

using namespace cowfs_it;

std::string repo(const std::string& rel = "");
std::string rehearse_bin();
std::string cowfs_bin_path();

// The production snapshot of `objects` objects, made once per process by
// scripts/make-demo-prod.sh. Do not write into it.
const std::string& demo_prod(int objects);

// `rehearse -C ws args...`.
RunResult rehearse(const std::string& ws, const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout = 300s);
// `rehearse -C ws init` for the demo application: lowers (top first),
// mountpoint ws/mnt, the repository's steps (or `steps`), its database.
void init_demo_workspace(const std::string& ws, const std::vector<std::string>& lowers,
                         const std::string& steps = "");

// First column of the first row of `sql` on the database at `db`
// (opened read-only); "" when there is no row. Throws on SQL errors.
std::string query(const std::string& db, const std::string& sql);
// The same, opened read-write: a database a killed writer left with a hot
// journal is rolled back first (a read-only open fails on it with "attempt
// to write a readonly database").
std::string query_rw(const std::string& db, const std::string& sql);
inline std::string demo_db(const std::string& root) {
  return root + "/var/filestorage/Data.sqlite";
}

// `cp -a src dst` (dst must not exist).
void copy_dir(const std::string& src, const std::string& dst);

// A TCP port on 127.0.0.1 that nothing listens on right now.
int free_port();
// Polls until something accepts connections on 127.0.0.1:port.
bool wait_for_port(int port, std::chrono::milliseconds timeout);

// An OpenSSH server on 127.0.0.1:port() accepting only a key generated for
// the test, for root. Its files live in `dir`.
class SshServer {
 public:
  explicit SshServer(const std::string& dir);
  ~SshServer();
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  int port() const { return port_; }
  // The ssh command line (as one string, for rsync -e / refresh-prod --rsh)
  // and its options (for sshfs -o).
  std::string ssh_command() const;
  std::vector<std::string> ssh_options() const;  // "-o", "K=V", ...
  std::string log() const;

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
};

// `rsync --daemon --no-detach` on 127.0.0.1:port() serving `modules`
// (name -> path, read-only, uid/gid `user`).
class RsyncDaemon {
 public:
  RsyncDaemon(const std::string& dir,
              const std::vector<std::pair<std::string, std::string>>& modules,
              const std::string& user = "root");
  ~RsyncDaemon();
  RsyncDaemon(const RsyncDaemon&) = delete;
  RsyncDaemon& operator=(const RsyncDaemon&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& module) const {
    return "rsync://127.0.0.1:" + std::to_string(port_) + "/" + module;
  }
  std::string log() const;

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
};

}  // namespace workflow
