// scripts/demo.sh, the README's first command, end to end (on a smaller
// production than its default), and its cleanup when interrupted.
#include <signal.h>

#include <filesystem>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

// demo.sh builds into BUILD_DIR: the build tree of the binaries under test,
// so it finds them up to date.
std::string build_dir() {
  return std::filesystem::path(rehearse_bin()).parent_path().parent_path().string();
}

std::vector<std::string> demo_argv(const std::string& dir, int objects) {
  return {
      "env",       "BUILD_DIR=" + build_dir(), "JOBS=1", "setsid", "bash", repo("scripts/demo.sh"),
      "--objects", std::to_string(objects),    "--dir",  dir};
}

TEST(DemoScript, RunsTheWholeRehearsalAndProvesProductionUntouched) {
  TempDir tmp("wf-demo");
  // Production is made here, so that the test holds its own record of it
  // and need not trust the demo's verdict: the demo finds it and reuses it.
  const std::string prod = tmp.sub("demo/prod");
  RunResult made = run({"bash", repo("scripts/make-demo-prod.sh"), prod, "--objects", "3000"},
                       {.cwd = "", .timeout = 300s});
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  const cowfs_it::Manifest before = cowfs_it::Manifest::take(prod);
  RunResult r = run(demo_argv(tmp.sub("demo"), 3000), {.cwd = "", .timeout = 600s});
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\n" << r.out;
  EXPECT_NE(r.out.find("generated earlier"), std::string::npos) << r.out;
  // Every field, ctimes and inode numbers included.
  EXPECT_EQ(cowfs_it::diff(before, cowfs_it::Manifest::take(prod), cowfs_it::kEverything), "");
  for (const char* part :
       {"run the whole upgrade", "report:", "diff:", "rerun the last increment",
        "increment 2.1 committed", "reset:", "checksums before and after match"}) {
    EXPECT_NE((r.out + r.err).find(part), std::string::npos) << "missing '" << part << "' in\n"
                                                             << r.out << r.err;
  }
  // It ends with the report page's path.
  const std::string page = tmp.sub("demo/report.html");
  EXPECT_TRUE(r.out.ends_with("report page: " + page + "\n")) << r.out;
  EXPECT_NE(read_file(page).find("<g class=\"increment\" data-version=\"2.1\""),
            std::string::npos);
  EXPECT_TRUE(mounts_under(tmp.path()).empty());
  // Production is generated once: a second run reuses it.
  EXPECT_TRUE(std::filesystem::exists(tmp.sub("demo/prod/var/filestorage/Data.sqlite")));
}

TEST(DemoScript, InterruptedItRemovesItsMounts) {
  TempDir tmp("wf-demo-int");
  const std::string mnt = tmp.sub("demo/ws/mnt");
  Process p(demo_argv(tmp.sub("demo"), 20000), {.cwd = "", .timeout = 600s});
  // Interrupt once the workspace is mounted (the upgrade starts right after).
  ASSERT_TRUE(wait_until([&] { return p.exited() || is_mounted(mnt); }, 300s));
  ASSERT_FALSE(p.exited()) << p.wait(1s).describe();
  ASSERT_EQ(::kill(-p.pid(), SIGINT), 0);  // Ctrl-C: the whole process group
  RunResult r = p.wait(180s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("mounts removed"), std::string::npos) << r.describe();
  EXPECT_FALSE(is_mounted(mnt));
  EXPECT_TRUE(mounts_under(tmp.path()).empty());
  EXPECT_TRUE(cowfs_daemons(mnt).empty());
}

}  // namespace
}  // namespace workflow
