// kill -9 of cowfs while a database server on the mount commits: after a
// remount the server recovers, every transaction whose commit returned is
// there, and the server's own checks pass (pg_amcheck and pg_checksums for
// PostgreSQL, CHECK TABLE for MariaDB).
#include <signal.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "tests/harness/server_fixture.h"

namespace rehearse_test {
namespace {

using namespace std::chrono_literals;

std::set<long> numbers(const std::string& text) {
  std::set<long> out;
  std::istringstream in(text);
  long n;
  while (in >> n) out.insert(n);
  return out;
}

class ServerCrashTest : public ServerE2E {
 protected:
  // Runs `insert_cmd N` (which must exit 0 only once row N is committed) for
  // N = 1, 2, ... under `rehearse exec`, recording each acknowledged N; kills
  // cowfs once `acked_before_kill` are acknowledged. Returns the acked set.
  std::set<long> commit_until_cowfs_dies(const std::string& insert_cmd, int acked_before_kill) {
    const std::string acked = scratch("acked");
    write_file(scratch("writer.sh"),
               "#!/bin/sh\ni=0\nwhile [ $i -lt 1000000 ]; do i=$((i+1))\n  " + insert_cmd +
                   " $i >/dev/null 2>&1 || exit 0\n  echo $i >> " + acked + "\ndone\n",
               0755);
    write_file(acked, "");
    Background writer(argv({"exec", "--", scratch("writer.sh")}));
    bool enough = wait_until(
        [&] { return numbers(read_file(acked)).size() >= static_cast<size_t>(acked_before_kill); },
        120s);
    pid_t cowfs = cowfs_pid();
    EXPECT_TRUE(enough) << writer.err();
    EXPECT_GT(cowfs, 0);
    if (cowfs > 0) ::kill(cowfs, SIGKILL);
    CliResult r = writer.wait();  // its server dies or is stopped on the dead mount
    (void)r;
    EXPECT_TRUE(leftovers().empty()) << "exec left its server running: " << writer.err();
    CliResult u = rehearse({"umount"});
    EXPECT_EQ(u.exit_code, 0) << u.describe();
    return numbers(read_file(acked));
  }
};

TEST_F(ServerCrashTest, PostgresKeepsEveryCommittedTransactionThroughAKilledCowfs) {
  append_config(pg_database());
  append_config(pg_service());
  step("1.0/10-schema.sql", "CREATE TABLE commits(id int PRIMARY KEY, payload text);\n");
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  write_file(scratch("insert.sh"),
             "#!/bin/sh\nexec " + psql_cmd() +
                 " -c \"INSERT INTO commits VALUES ($1, repeat(md5($1::text), 40))\"\n",
             0755);
  std::set<long> acked = commit_until_cowfs_dies(scratch("insert.sh"), 150);
  ASSERT_GE(acked.size(), 150u);
  // Remounted by exec; the server replays its WAL.
  std::set<long> present = numbers(psql("SELECT id FROM commits ORDER BY id"));
  for (long id : acked) EXPECT_TRUE(present.count(id)) << "committed row " << id << " is lost";
  EXPECT_EQ(psql("SELECT count(*) FROM commits WHERE payload <> repeat(md5(id::text), 40)"), "0");
  CliResult check = rehearse({"exec", "--", "sh", "-c",
                              std::string(kPgBin) + "/pg_amcheck -h " + run_dir() + " -p " +
                                  std::to_string(port()) +
                                  " -U postgres --install-missing --heapallindexed "
                                  "--rootdescend postgres"});
  EXPECT_EQ(check.exit_code, 0) << check.describe();
  // pg_checksums needs the cluster shut down: exec stopped it cleanly.
  r = rehearse({"mount"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  int rc =
      std::system(("runuser -u postgres -- " + std::string(kPgBin) + "/pg_checksums --check -D " +
                   mnt("pgdata") + " >" + scratch("checksums.log") + " 2>&1")
                      .c_str());
  EXPECT_EQ(rc, 0) << read_file(scratch("checksums.log"));
}

TEST_F(ServerCrashTest, MariaDbKeepsEveryCommittedTransactionThroughAKilledCowfs) {
  append_config(mariadb_database());
  append_config(mariadb_service(""));
  step("1.0/10-schema.sql",
       "CREATE TABLE commits(id INT PRIMARY KEY, payload TEXT) ENGINE=InnoDB DEFAULT "
       "CHARSET=utf8mb4;\n");
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  write_file(scratch("insert.sh"),
             "#!/bin/sh\nexec " + mariadb_cmd() +
                 " -e \"INSERT INTO commits VALUES ($1, repeat(md5($1), 40))\"\n",
             0755);
  std::set<long> acked = commit_until_cowfs_dies(scratch("insert.sh"), 150);
  ASSERT_GE(acked.size(), 150u);
  std::set<long> present = numbers(mariadb("SELECT id FROM commits ORDER BY id"));
  for (long id : acked) EXPECT_TRUE(present.count(id)) << "committed row " << id << " is lost";
  EXPECT_EQ(mariadb("SELECT count(*) FROM commits WHERE payload <> repeat(md5(id), 40)"), "0");
  EXPECT_EQ(mariadb("CHECK TABLE commits EXTENDED"), "app.commits\tcheck\tstatus\tOK");
}

}  // namespace
}  // namespace rehearse_test
