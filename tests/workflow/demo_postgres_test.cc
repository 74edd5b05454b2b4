// scripts/demo-postgres.sh end to end, on a smaller production than its
// default: a PostgreSQL cluster on the mount, every step kind, rerun, reset,
// production's checksums unchanged, nothing left mounted or running.
#include <sys/stat.h>

#include <filesystem>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

std::string build_dir() {
  return std::filesystem::path(rehearse_bin()).parent_path().parent_path().string();
}

TEST(DemoPostgres, RehearsesAServerBackedUpgradeAndProvesProductionUntouched) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (the server runs as postgres)";
  TempDir tmp("wf-demo-pg");
  ::chmod(tmp.path().c_str(), 0755);  // the postgres user must reach the cluster
  RunResult r =
      run({"env", "BUILD_DIR=" + build_dir(), "JOBS=1", "PGPORT_DEMO=5448", "setsid", "bash",
           repo("scripts/demo-postgres.sh"), "--rows", "20000", "--dir", tmp.sub("demo")},
          {.cwd = "", .timeout = 600s});
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << r.out;
  for (const char* part : {"starting service db", "10-backfill-total.sql ok", "10-move-blobs.py ok",
                           "increment 2.1 committed", "rerun one increment",
                           "increment 1.1 committed", "reset: back to production",
                           "checksums of production (pgdata and blobs) before and "
                           "after match"}) {
    EXPECT_NE((r.out + r.err).find(part), std::string::npos) << "missing '" << part << "' in\n"
                                                             << r.out << r.err;
  }
  EXPECT_TRUE(mounts_under(tmp.path()).empty());
  // "[p]" keeps the pattern from matching the shell that runs pgrep.
  int rc = std::system(("! pgrep -f '[p]ostgres -D " + tmp.path() + "' >/dev/null").c_str());
  EXPECT_EQ(rc, 0) << "a process of the demo is still running";
}

}  // namespace
}  // namespace workflow
