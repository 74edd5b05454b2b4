// [[service]]: a real PostgreSQL server on the cowfs mount, started and
// stopped by rehearse around steps, exec, rewinds and kills.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/harness/server_fixture.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;

class ServiceTest : public ServerE2E {
 protected:
  // 1.0 creates t with 1000 rows, 1.1 adds 1000 more and a table u, both
  // from executable steps that talk to the server with psql.
  void write_two_increments() {
    step("1.0/10-create.sh",
         "#!/bin/sh\nset -e\n" + psql_cmd() +
             " -c \"CREATE TABLE t(id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'a' "
             "FROM generate_series(1,1000) g\"\n",
         true);
    step("1.1/10-more.sh",
         "#!/bin/sh\nset -e\n" + psql_cmd() +
             " -c \"INSERT INTO t SELECT g, 'b' FROM generate_series(1001,2000) g; CREATE "
             "TABLE u(x int)\"\n",
         true);
  }
  bool pid_file_present() const { return fs::exists(ws() + "/.rehearse/services/db"); }
};

TEST_F(ServiceTest, RunStartsAndStopsTheServerAndEveryCheckpointIsCrashConsistent) {
  append_config(pg_service());
  write_two_increments();
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("starting service db"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopping service db"), std::string::npos) << r.err;
  EXPECT_TRUE(leftovers().empty()) << "the server outlived `rehearse run`";
  EXPECT_FALSE(pid_file_present());
  CliResult st = rehearse({"status"});
  EXPECT_NE(st.out.find("service:     db: stopped"), std::string::npos) << st.out;

  EXPECT_EQ(psql("SELECT count(*), count(DISTINCT v) FROM t"), "2000|2");
  // The 1.0 checkpoint was frozen while the server ran: after a rewind the
  // server starts from that image, recovers (it was not shut down) and
  // shows exactly what 1.0 committed.
  r = rehearse({"rewind", "1.0"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::ofstream(ws() + "/.rehearse/logs/service-db.log", std::ios::trunc).close();
  EXPECT_EQ(psql("SELECT count(*), max(v), to_regclass('u') IS NULL FROM t"), "1000|a|t");
  std::string log = read_file(ws() + "/.rehearse/logs/service-db.log");
  EXPECT_NE(log.find("not properly shut down"), std::string::npos)
      << "the checkpoint was not taken from a running server:\n"
      << log;
  EXPECT_NE(log.find("redo done"), std::string::npos) << log;
  // rerun: rewinds (server stopped), runs 1.1 again with the server.
  r = rehearse({"rerun", "1.1"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(psql("SELECT count(*) FROM t"), "2000");
  r = rehearse({"reset"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(psql("SELECT to_regclass('t') IS NULL"), "t");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(ServiceTest, AServiceThatIsNotReadyFailsTheRunWithItsLog) {
  const std::string p = std::to_string(port());
  append_config("[[service]]\nname = \"db\"\nstart = \"" + std::string(kPgBin) +
                "/pg_ctl -D {root}/pgdata -o \\\"-k {run} -p " + p +
                " -c listen_addresses=''\\\" start; echo the-start-said-this\"\n"
                "ready = \"false\"\nuser = \"postgres\"\nstart_timeout = \"2s\"\n");
  step("1.0/10-x.sh", "#!/bin/sh\ntouch ran\n", true);
  CliResult r = rehearse({"run"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::string last = r.err.substr(r.err.rfind("rehearse: "));
  EXPECT_NE(last.find("service db did not become ready within 2s"), std::string::npos) << r.err;
  EXPECT_NE(last.find("the-start-said-this"), std::string::npos) << "no log tail: " << r.err;
  EXPECT_EQ(std::count(last.begin(), last.end(), '\n'), 1) << "not one line: " << last;
  // The server that did start was stopped, and the step never ran.
  EXPECT_TRUE(leftovers().empty());
  EXPECT_FALSE(fs::exists(mnt("ran")));
}

TEST_F(ServiceTest, AServerKilledDuringAStepFailsItAndTheNextRunRecovers) {
  append_config(pg_service());
  write_two_increments();
  const std::string once = scratch("killed-once");
  // kill -9 of the postmaster in the middle of the step, the first time only.
  step("1.1/20-kill.sh",
       "#!/bin/sh\nset -e\n" + psql_cmd() +
           " -c \"CREATE TABLE half(x int)\"\n"
           "if [ ! -e " +
           once + " ]; then touch " + once +
           "; kill -9 $(head -1 pgdata/postmaster.pid); sleep 1; fi\n",
       true);
  CliResult r = rehearse({"run"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("increment 1.1 failed at step 20-kill.sh: service db died"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(leftovers().empty());
  // Rolled back to 1.0; the next run starts the server on that image
  // (recovery), runs 1.1 again and commits.
  r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(psql("SELECT count(*) FROM t"), "2000");
  EXPECT_EQ(psql("SELECT count(*) FROM half"), "0");
}

TEST_F(ServiceTest, AKilledRehearseLeavesAnOrphanThatTheNextCommandStops) {
  append_config(pg_service());
  write_two_increments();
  const std::string started = scratch("started");
  step("1.1/20-wait.sh",
       "#!/bin/sh\nif [ ! -e " + started + " ]; then touch " + started + "; exec sleep 60; fi\n",
       true);
  Background b(argv({"run"}));
  ASSERT_TRUE(wait_until([&] { return fs::exists(started); }, std::chrono::seconds(60))) << b.err();
  b.kill9();
  // The server runs on, owned by nobody: status says so.
  CliResult st = rehearse({"status"});
  EXPECT_NE(st.out.find("db: orphaned (pid "), std::string::npos) << st.out;
  EXPECT_TRUE(pid_file_present());
  EXPECT_FALSE(leftovers().empty());
  // The next command stops it before touching the layers, then resumes.
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("stopping service db (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("left running by rehearse pid " + std::to_string(b.pid())),
            std::string::npos)
      << r.err;
  EXPECT_EQ(psql("SELECT count(*) FROM t"), "2000");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(ServiceTest, BadServiceConfigIsOneLine) {
  append_config("[[service]]\nname = \"db x\"\nstart = \"true\"\n");
  CliResult r = rehearse({"status"});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("name 'db x' must be 1-32 characters"), std::string::npos) << r.err;
  std::string toml = read_file(ws() + "/rehearse.toml");
  write_file(ws() + "/rehearse.toml", toml.substr(0, toml.find("[[service]]")));
}

}  // namespace
}  // namespace rehearse_test
