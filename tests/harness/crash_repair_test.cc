// Crash repair: rehearse is SIGKILLed (by the REHEARSE_FAULT test hook,
// harness/faults.h) at every point of the commit and store-operation
// orderings of harness/pipeline.h, and the next command repairs the state:
// nothing committed runs twice, no increment is recorded twice, and `status`
// shows what is pending meanwhile.
#include <signal.h>

#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

using Strings = std::vector<std::string>;
constexpr int kKilled = 128 + SIGKILL;

rehearse::json::Value parse(const std::string& s) {
  auto v = rehearse::json::parse(s);
  EXPECT_TRUE(v) << s;
  return v ? *v : rehearse::json::Value{};
}

Strings field_of(const Strings& lines, const std::string& field) {
  Strings out;
  for (const auto& l : lines) out.push_back(parse(l)[field].as_string());
  return out;
}

std::string point_name(const ::testing::TestParamInfo<const char*>& p) {
  std::string n = p.param;
  std::erase(n, '-');
  return n;
}

class CommitCrash : public RehearseE2E, public ::testing::WithParamInterface<const char*> {};

// Killed at each point of the commit of 1.1, the next run completes that
// commit without running a step of 1.1 again, then runs 1.2.
TEST_P(CommitCrash, NextRunCompletesTheCommitOnce) {
  const std::string point = GetParam();
  write_mini_steps();
  CliResult crashed = rehearse({"run", "--json"}, {"REHEARSE_FAULT=" + point + "@1.1"});
  ASSERT_EQ(crashed.exit_code, kKilled) << crashed.describe();
  ASSERT_EQ(field_of(events(crashed.out, "increment_committed"), "version"), Strings{"1.0"});

  auto st = parse(status_json());
  EXPECT_EQ(st["data_version"].as_string(), "1.1") << "commit step 1 was done";
  if (point == "after-data-version") {
    // The journal still has 1.1 in progress with every step done: the data
    // and the journal disagree until the next run commits it.
    EXPECT_EQ(st["version"].as_string(), "1.0");
    EXPECT_EQ(st["in_progress"].as_string(), "1.1");
    EXPECT_TRUE(st["version_disagreement"].as_bool());
    CliResult text = rehearse({"status"});
    EXPECT_NE(text.out.find("DISAGREES with the journal"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("`rehearse run` finishes it"), std::string::npos) << text.out;
  } else {
    EXPECT_EQ(st["version"].as_string(), "1.1");
    EXPECT_TRUE(st["needs_recovery"].as_bool()) << "1.1 is still 'committing'";
    EXPECT_FALSE(st["version_disagreement"].as_bool(true));
  }

  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  for (const auto& s : events(r.out, "step_started")) {
    EXPECT_NE(parse(s)["version"].as_string(), "1.1") << "a step of 1.1 ran again: " << s;
  }
  if (point == "after-data-version") {
    EXPECT_EQ(field_of(events(r.out, "step_skipped"), "step"),
              (Strings{"10-batch.sql", "20-count.sh"}));
    EXPECT_EQ(field_of(events(r.out, "increment_committed"), "version"), (Strings{"1.1", "1.2"}));
  } else {
    EXPECT_NE(r.out.find("repairing the commit of 1.1"), std::string::npos) << r.out;
    EXPECT_EQ(field_of(events(r.out, "increment_committed"), "version"), Strings{"1.2"});
  }
  expect_mini_done_exactly_once();
  st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.2");
  EXPECT_FALSE(st["needs_recovery"].as_bool(true));
  EXPECT_FALSE(st["version_disagreement"].as_bool(true));
  EXPECT_EQ(st["layers"].as_int(), 4) << "1.0, 1.1, 1.2 and the top";
}

INSTANTIATE_TEST_SUITE_P(Points, CommitCrash,
                         ::testing::Values("after-data-version", "after-committing",
                                           "after-checkpoint"),
                         point_name);

class StoreOpCrash : public RehearseE2E, public ::testing::WithParamInterface<const char*> {};

// Killed in the middle of `rewind 1.0`, the next run finishes the rewind
// first, then runs 1.1 and 1.2 again from the checkpoint of 1.0.
TEST_P(StoreOpCrash, RewindIsFinishedByTheNextRun) {
  const std::string point = GetParam();
  write_mini_steps();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  CliResult crashed = rehearse({"rewind", "1.0"}, {"REHEARSE_FAULT=" + point + "@1.0"});
  ASSERT_EQ(crashed.exit_code, kKilled) << crashed.describe();
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.0") << "step 1 dropped 1.1 and 1.2 from the journal";
  EXPECT_TRUE(st["needs_recovery"].as_bool());

  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("finishing an interrupted rewind to 1.0"), std::string::npos) << r.out;
  EXPECT_EQ(field_of(events(r.out, "increment_started"), "version"), (Strings{"1.1", "1.2"}));
  expect_mini_done_exactly_once(2);
}

// A failing step's rollback killed half way: the next run finishes the
// rollback, and the fixed increment runs from the checkpoint of 1.0, so its
// batches are there once, not twice.
TEST_P(StoreOpCrash, RollbackOfAFailedIncrementIsFinishedByTheNextRun) {
  const std::string point = GetParam();
  write_mini_steps();
  step("1.1/30-fail.sh", "#!/bin/sh\necho 'bad data' >&2\nexit 1\n", true);
  CliResult crashed = rehearse({"run"}, {"REHEARSE_FAULT=" + point + "@1.0"});
  ASSERT_EQ(crashed.exit_code, kKilled) << crashed.describe();
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.0");
  EXPECT_TRUE(st["needs_recovery"].as_bool());
  EXPECT_EQ(st["in_progress"].kind, rehearse::json::Value::kNull) << "partial rows were cleared";

  step("1.1/30-fail.sh", "#!/bin/sh\nexit 0\n", true);
  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(field_of(events(r.out, "increment_started"), "version"), (Strings{"1.1", "1.2"}));
  expect_mini_done_exactly_once();
}

INSTANTIATE_TEST_SUITE_P(Points, StoreOpCrash, ::testing::Values("after-intent", "after-store-op"),
                         point_name);

}  // namespace
}  // namespace rehearse_test
