#include "harness/journal.h"

#include <gtest/gtest.h>

#include "tests/harness/test_util.h"

namespace rehearse {
namespace {

using rehearse_test::TempDir;

TEST(JournalSchema, MigrationsAreOrderedAndReachTheCurrentSchema) {
  const auto& m = journal_migrations();
  ASSERT_EQ(static_cast<int>(m.size()), kJournalSchema);
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i].version, static_cast<int>(i) + 1);
  TempDir tmp;
  Journal j = Journal::open(tmp.sub("j.db"));
  EXPECT_EQ(j.schema_version(), kJournalSchema);
  EXPECT_TRUE(j.db().has_table("events"));
}

TEST(JournalSchema, UpgradesAnOldJournalKeepingItsData) {
  TempDir tmp;
  {
    Journal j = Journal::open_at(tmp.sub("j.db"), 1);
    EXPECT_EQ(j.schema_version(), 1);
    EXPECT_FALSE(j.db().has_table("events"));
    int64_t run = j.begin_run("run", false);
    j.end_run(run, "ok");
  }
  Journal j = Journal::open(tmp.sub("j.db"));
  EXPECT_EQ(j.schema_version(), kJournalSchema);
  EXPECT_TRUE(j.db().has_table("events"));
  EXPECT_TRUE(j.db().has_table("snapshots"));
  EXPECT_TRUE(j.snapshots().empty());
  ASSERT_EQ(j.runs().size(), 1u);
  EXPECT_EQ(j.runs()[0].outcome, "ok");
  j.event(1, "test", "works after the upgrade");
}

TEST(JournalSchema, RefusesANewerJournal) {
  TempDir tmp;
  { Journal::open(tmp.sub("j.db")).db().exec("PRAGMA user_version = 99"); }
  try {
    Journal::open(tmp.sub("j.db"));
    FAIL() << "a newer journal was accepted";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Journal, PartialStepsAccumulateAndBecomeACommit) {
  TempDir tmp;
  Journal j = Journal::open(tmp.sub("j.db"));
  int64_t run = j.begin_run("run", false);
  j.add_partial("1.2", {"10-a.sql", "sql", "c1", 100, 0, 0, true});
  j.add_partial("1.2", {"20-b.sh", "exec", "c2", 50, 10, 1, false});
  j.add_partial("1.2", {"20-b.sh", "exec", "c2", 70, 25, 2, true});
  EXPECT_EQ(j.partial_version(), "1.2");
  EXPECT_THROW(j.add_partial("1.3", {"x", "sql", "c", 0, 0, 0, false}), DbError);
  auto steps = j.partial_steps();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[1].duration_ms, 120);
  EXPECT_EQ(steps[1].items, 25);
  EXPECT_EQ(steps[1].calls, 3);
  int64_t id = j.mark_committing("1.2", run, "1.2");
  EXPECT_FALSE(j.partial_version());
  ASSERT_EQ(j.applied().size(), 1u);
  EXPECT_EQ(j.applied()[0].state, "committing");
  j.mark_applied("1.2");
  EXPECT_EQ(j.applied()[0].state, "applied");
  auto c = j.commit(id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->duration_ms, 220);
  EXPECT_EQ(c->steps.size(), 2u);
}

TEST(Journal, AppliedIsSortedNumericallyAndStoreOpsRecordIntent) {
  TempDir tmp;
  Journal j = Journal::open(tmp.sub("j.db"));
  for (const char* v : {"1.10", "1.9", "2"}) {
    j.add_partial(v, {"a", "sql", "c", 1, 0, 0, true});
    j.mark_committing(v, 1, v);
    j.mark_applied(v);
  }
  auto a = j.applied();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].version, "1.9");
  EXPECT_EQ(a[1].version, "1.10");
  EXPECT_EQ(a[2].version, "2");
  j.add_partial("3", {"a", "sql", "c", 1, 0, 0, false});
  j.decide_store_op({"2"}, {"rewind", "1.10"});
  EXPECT_EQ(j.applied().size(), 2u);
  EXPECT_FALSE(j.partial_version());
  ASSERT_TRUE(j.intent());
  EXPECT_EQ(j.intent()->label, "1.10");
  j.clear_intent();
  EXPECT_FALSE(j.intent());
  j.stamp("5", "5", 1);
  ASSERT_EQ(j.applied().size(), 1u);
  EXPECT_EQ(j.applied()[0].state, "stamped");
}

TEST(Journal, StaleRunsBecomeInterrupted) {
  TempDir tmp;
  Journal j = Journal::open(tmp.sub("j.db"));
  j.begin_run("run", false);
  EXPECT_EQ(j.close_stale_runs(), 1);
  EXPECT_EQ(j.runs()[0].outcome, "interrupted");
}

}  // namespace
}  // namespace rehearse
