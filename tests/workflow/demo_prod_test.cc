// scripts/make-demo-prod.sh: the demo production is a function of N only,
// and bad input leaves nothing behind.
#include <sys/stat.h>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

TEST(MakeDemoProd, SameObjectsGiveByteIdenticalSnapshots) {
  TempDir tmp("wf-prod");
  for (const char* name : {"a", "b"}) {
    RunResult r = run({repo("scripts/make-demo-prod.sh"), tmp.sub(name), "--objects", "3000"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }
  Manifest a = Manifest::take(tmp.sub("a")), b = Manifest::take(tmp.sub("b"));
  EXPECT_EQ(diff(a, b, kShape), "");
  EXPECT_EQ(query(demo_db(tmp.sub("a")), "SELECT count(*) FROM content"), "3000");
  EXPECT_EQ(query(demo_db(tmp.sub("a")), "SELECT count(*) FROM content WHERE blob IS NOT NULL"),
            "150");
  EXPECT_EQ(query(demo_db(tmp.sub("a")), "SELECT count(DISTINCT state) FROM content"), "4");
  EXPECT_EQ(read_file(tmp.sub("a/var/blobstorage/.layout")), "flat\n");
  // One blob per 20 objects, each 1 KiB to 1 MiB.
  int blobs = 0;
  for (const auto& [path, info] : a.entries) {
    if (path.size() > 5 && path.substr(path.size() - 5) == ".blob") {
      ++blobs;
      EXPECT_GE(info.size, 1024) << path;
      EXPECT_LE(info.size, 1024 * 1024) << path;
    }
  }
  EXPECT_EQ(blobs, 150);

  RunResult r = run({repo("scripts/make-demo-prod.sh"), tmp.sub("c"), "--objects", "3020"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(diff(a, Manifest::take(tmp.sub("c")), kShape), "");
}

TEST(MakeDemoProd, BadInputIsOneClearLineAndNoPartialState) {
  TempDir tmp("wf-prod-bad");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  ::mkdir(tmp.sub("full").c_str(), 0755);
  write_file(tmp.sub("full/x"), "x");
  for (const Case& c : std::vector<Case>{
           {{tmp.sub("p"), "--objects", "many"}, "is not a number"},
           {{tmp.sub("p"), "--objects", "3"}, "is not a number from 20"},
           {{}, "missing DIR"},
           {{tmp.sub("full")}, "not empty"},
           {{tmp.sub("p"), "--color"}, "unknown option"},
       }) {
    std::vector<std::string> argv = {repo("scripts/make-demo-prod.sh")};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = run(argv);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    ASSERT_EQ(r.err_lines().size(), 1u) << r.describe();
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.describe();
  }
  EXPECT_EQ(sorted(list_dir(tmp.path())), std::vector<std::string>{"full"});
}

}  // namespace
}  // namespace workflow
