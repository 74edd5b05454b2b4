// Fixture for the tests of services and server databases: a real
// PostgreSQL 15 cluster (pgdata/) and a MariaDB 10.11 data directory
// (mysql/, with a database `app`), made once per test binary and copied per
// test, as production, behind a read-only bind mount, and a workspace whose
// [[service]] runs the server on the cowfs mount, with its socket in the
// workspace's {run} directory and no TCP listener (so tests never collide on
// a port with each other or with a system server).
//
// TearDown stops whatever is left (rehearse umount stops orphaned services;
// then any process whose command line or cwd lies under the test's
// directory is killed), unmounts, and checks that production is
// byte-identical to what it was.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/harness/e2e_fixture.h"
#include "tests/harness/test_util.h"

namespace rehearse_test {

inline constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";

class ServerE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  CliResult rehearse(const std::vector<std::string>& args,
                     const std::vector<std::string>& extra_env = {});
  std::vector<std::string> argv(const std::vector<std::string>& args) const;
  void step(const std::string& rel, const std::string& body, bool exec = false);
  // Appends to rehearse.toml.
  void append_config(const std::string& text);
  // The standard PostgreSQL service ([[service]] db), with overrides.
  std::string pg_service(const std::string& extra = "") const;
  // `psql -Atc sql` through `rehearse exec` (starts and stops the service);
  // its stdout, trailing newline removed, or "ERROR: ..." on failure.
  std::string psql(const std::string& sql);
  // The MariaDB service ([[service]] mariadb, as user mysql), InnoDB's
  // flush method given (empty: the server's default).
  std::string mariadb_service(const std::string& flush_method = "fsync") const;
  // database = "mysql://root@localhost/app?socket=..." for it.
  std::string mariadb_database() const;
  // `mariadb -N -B -e sql app` through `rehearse exec`, or "ERROR: ...".
  std::string mariadb(const std::string& sql);
  // A mariadb command line for steps (database app).
  std::string mariadb_cmd() const;
  // psql -Atc sql straight to the server a running rehearse started.
  std::string psql_direct(const std::string& sql) const;
  // database = "postgresql://..." for the standard service.
  std::string pg_database() const;
  // A psql command line for steps (-v ON_ERROR_STOP=1 -At).
  std::string psql_cmd() const;
  // Pids of live processes whose cmdline or cwd mentions the test directory.
  std::vector<pid_t> leftovers() const;
  std::string journal_query(const std::string& sql);
  // The pid of the cowfs daemon serving this workspace's mount (0: none).
  pid_t cowfs_pid() const;

  std::string ws() const { return tmp_->sub("ws"); }
  std::string mnt(const std::string& rel = "") const {
    return rel.empty() ? ws() + "/mnt" : ws() + "/mnt/" + rel;
  }
  std::string run_dir() const { return ws() + "/.rehearse/run"; }
  std::string steps() const { return tmp_->sub("steps"); }
  std::string prod() const { return tmp_->sub("prod"); }
  std::string scratch(const std::string& rel) const { return tmp_->sub(rel); }
  int port() const { return port_; }

 private:
  static std::unique_ptr<TempDir> suite_tmp_;
  std::unique_ptr<TempDir> tmp_;
  std::map<std::string, std::string> manifest_;
  int port_ = 0;
};

}  // namespace rehearse_test
