#include "harness/step.h"

#include <gtest/gtest.h>

#include "tests/harness/test_util.h"

namespace rehearse {
namespace {

using rehearse_test::mkdirs;
using rehearse_test::TempDir;
using rehearse_test::write_file;

class StepDiscovery : public ::testing::Test {
 protected:
  std::string steps() const { return tmp_.sub("steps"); }
  void add(const std::string& rel, const std::string& body, mode_t mode = 0644) {
    std::string p = steps() + "/" + rel;
    mkdirs(p.substr(0, p.rfind('/')));
    write_file(p, body, mode);
  }
  // The refusal's message, "" when discovery succeeds.
  std::string refusal(bool have_sqlite = true) {
    try {
      discover_steps(steps(), have_sqlite);
      return "";
    } catch (const DiscoveryError& e) {
      return e.what();
    }
  }
  void SetUp() override { mkdirs(steps()); }
  TempDir tmp_;
};

TEST_F(StepDiscovery, OrdersVersionsNumericallyAndStepsByName) {
  add("1.10/10-a.sql", "select 1;");
  add("1.9/20-b.sh", "#!/bin/sh\n", 0755);
  add("1.9/10-a.sql", "select 1;");
  add("2/x.sql",
      "-- rehearse:batch table=t key=id size=10\nupdate t set a=1 where id "
      "between :lo and :hi;");
  add("README.md", "top-level files are ignored");
  add("1.9/.hidden", "ignored");
  auto incs = discover_steps(steps(), true);
  ASSERT_EQ(incs.size(), 3u);
  EXPECT_EQ(incs[0].label(), "1.9");
  EXPECT_EQ(incs[1].label(), "1.10");
  EXPECT_EQ(incs[2].label(), "2");
  ASSERT_EQ(incs[0].steps.size(), 2u);
  EXPECT_EQ(incs[0].steps[0].name, "10-a.sql");
  EXPECT_EQ(incs[0].steps[0].kind, StepKind::kSql);
  EXPECT_EQ(incs[0].steps[1].kind, StepKind::kExec);
  EXPECT_EQ(incs[2].steps[0].kind, StepKind::kBatchSql);
  EXPECT_EQ(incs[2].steps[0].batch->table, "t");
  EXPECT_EQ(incs[2].steps[0].batch->size, 10);
}

TEST_F(StepDiscovery, ChecksumFollowsContent) {
  add("1/a.sql", "select 1;");
  auto a = discover_steps(steps(), true)[0].steps[0].checksum;
  add("1/a.sql", "select 2;");
  auto b = discover_steps(steps(), true)[0].steps[0].checksum;
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 16u);
}

TEST_F(StepDiscovery, RefusesDuplicateVersions) {
  add("1.10/a.sql", "select 1;");
  add("1.010/a.sql", "select 1;");
  std::string e = refusal();
  EXPECT_NE(e.find("duplicate"), std::string::npos) << e;
  EXPECT_NE(e.find(steps() + "/1.10"), std::string::npos) << e;
}

TEST_F(StepDiscovery, RefusesNonNumericNames) {
  add("1.x/a.sql", "select 1;");
  std::string e = refusal();
  EXPECT_NE(e.find(steps() + "/1.x"), std::string::npos) << e;
  EXPECT_NE(e.find("not a version"), std::string::npos) << e;
}

TEST_F(StepDiscovery, RefusesEmptyIncrements) {
  mkdirs(steps() + "/3");
  std::string e = refusal();
  EXPECT_NE(e.find(steps() + "/3"), std::string::npos) << e;
  EXPECT_NE(e.find("empty increment"), std::string::npos) << e;
}

TEST_F(StepDiscovery, RefusesUnknownKinds) {
  add("1/notes.txt", "not a step");
  std::string e = refusal();
  EXPECT_NE(e.find(steps() + "/1/notes.txt"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown step kind"), std::string::npos) << e;
}

TEST_F(StepDiscovery, RefusesSqlWithoutDatabase) {
  add("1/a.sql", "select 1;");
  std::string e = refusal(false);
  EXPECT_NE(e.find("sqlite"), std::string::npos) << e;
}

TEST_F(StepDiscovery, RefusesDirectoriesInsideIncrements) {
  add("1/sub/a.sql", "select 1;");
  EXPECT_NE(refusal().find(steps() + "/1/sub"), std::string::npos);
}

TEST_F(StepDiscovery, RefusesBadBatchHeaders) {
  add("1/a.sql", "-- rehearse:batch table=t key=id size=0\nselect :lo;");
  EXPECT_NE(refusal().find("batch size"), std::string::npos);
  add("1/a.sql", "-- rehearse:batch table=t size=10\nselect :lo;");
  EXPECT_NE(refusal().find("needs table=NAME"), std::string::npos);
  add("1/a.sql", "-- rehearse:bacth table=t key=id size=10\nselect :lo;");
  EXPECT_NE(refusal().find("unknown header"), std::string::npos);
  add("1/a.sql", "-- rehearse:batch table=t key=id size=10\nselect 1;");
  EXPECT_NE(refusal().find("neither :lo nor :hi"), std::string::npos);
  add("1/a.sql", "update t set a=1 where id between :lo and :hi;");
  EXPECT_NE(refusal().find("no batch header"), std::string::npos);
  add("1/a.sql", "-- rehearse:batch table=t;drop key=id size=10\nselect :lo;");
  EXPECT_NE(refusal().find("plain identifiers"), std::string::npos);
}

TEST(BatchHeader, OnlyInTheLeadingCommentBlock) {
  EXPECT_FALSE(parse_batch_header("select 1;\n-- rehearse:batch table=t key=id size=5\n", "x"));
  auto b = parse_batch_header(
      "-- upgrade content\n-- rehearse:batch table=c key=id size=5\n"
      "update c set x=1 where id between :lo and :hi;",
      "x");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->table, "c");
  EXPECT_EQ(b->key, "id");
  EXPECT_EQ(b->size, 5);
}

}  // namespace
}  // namespace rehearse
