// GoogleTest driver of the differential tester (fsdiff.h).
//
//   CI (default): FSDIFF_SEEDS (default 120, about two minutes; every seed
//     that found a bug so far is among them) sequences of FSDIFF_LENGTH
//     (default 50) operations, seeds FSDIFF_BASE (default 1) onwards, so CI
//     is reproducible; the shrinker gets 30 s.
//   Soak: FSDIFF_SOAK=1 — default 500 sequences of 200 operations from a
//     random base seed (printed), shrinker 300 s.
//   Replay one seed: FSDIFF_SEED=s (with FSDIFF_LENGTH if it was not the
//     default); FSDIFF_VERBOSE=1 prints every operation.
//   Memory pressure: FSDIFF_DROP_CACHES=1 (root) drops the kernel's dentries and
//     inodes before every operation, so cowfs sees forgets between them.
//
//   Soak sequences that found bugs: Fsdiff.SoakSequencesThatFoundBugs (CI).
//
//   reliability_tests --gtest_filter='Fsdiff*'
//   FSDIFF_SOAK=1 reliability_tests --gtest_filter='Fsdiff.RandomSequences'
#include "tests/reliability/fsdiff.h"

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <random>

#include "tests/reliability/rel_util.h"

namespace fsdiff {
namespace {

using namespace cowfs_it;
using cowfs_rel::env_flag;
using cowfs_rel::env_long;

struct Plan {
  std::vector<uint64_t> seeds;
  Settings settings;
  std::chrono::seconds shrink_budget{60};
  int max_failures = 2;
  std::string test_name = "Fsdiff.RandomSequences";
};

Plan plan_from_env() {
  Plan p;
  const bool soak = env_flag("FSDIFF_SOAK");
  p.settings.length = static_cast<int>(env_long("FSDIFF_LENGTH", soak ? 200 : 50));
  p.settings.verbose = env_flag("FSDIFF_VERBOSE");
  p.settings.drop_caches = env_flag("FSDIFF_DROP_CACHES") && ::geteuid() == 0;
  if (const char* ign = std::getenv("FSDIFF_IGNORE")) {
    std::string i = ign;
    p.settings.ignore_nlink = i.find("nlink") != std::string::npos;
    p.settings.ignore_rewinddir = i.find("rewinddir") != std::string::npos;
    p.settings.ignore_cowfs_xattrs = i.find("cowfs-xattr") != std::string::npos;
  }
  if (std::getenv("FSDIFF_SEED") != nullptr) {
    p.seeds.push_back(static_cast<uint64_t>(env_long("FSDIFF_SEED", 1)));
    p.shrink_budget = std::chrono::seconds(env_long("FSDIFF_SHRINK_SECONDS", 300));
    return p;
  }
  long n = env_long("FSDIFF_SEEDS", soak ? 500 : 120);
  uint64_t base = static_cast<uint64_t>(env_long(
      "FSDIFF_BASE", soak ? static_cast<long>(std::random_device{}() % 1000000) * 1000 : 1));
  if (soak) std::cerr << "fsdiff soak: " << n << " sequences from seed " << base << "\n";
  for (long i = 0; i < n; ++i) p.seeds.push_back(base + static_cast<uint64_t>(i));
  p.shrink_budget = std::chrono::seconds(env_long("FSDIFF_SHRINK_SECONDS", soak ? 300 : 30));
  p.max_failures = static_cast<int>(env_long("FSDIFF_MAX_FAILURES", soak ? 5 : 2));
  return p;
}

// Runs the plan's seeds; returns the failure reports.
std::vector<std::string> run_plan(World& world, const Plan& plan) {
  std::vector<std::string> failures;
  for (uint64_t seed : plan.seeds) {
    Outcome o = run_seed(world, seed, plan.settings);
    if (!o.mismatch) continue;
    std::ostringstream r;
    r << "fsdiff: seed " << seed << " (length " << plan.settings.length
      << "): cowfs and the plain directory differ after operation #" << o.mismatch->index << " ("
      << op_name(o.mismatch->kind) << "):\n"
      << o.mismatch->what;
    if (!o.ops.empty()) {
      int replays = 0;
      std::vector<Op> shortest =
          shrink(world, o.ops, *o.mismatch, plan.settings, plan.shrink_budget, &replays);
      Outcome again = replay(world, shortest, plan.settings);
      r << "shortest failing sequence found (" << shortest.size() << " of " << o.ops.size()
        << " operations, " << replays << " replays):\n"
        << format_sequence(shortest);
      if (again.mismatch) {
        r << "which fails after #" << again.mismatch->index << " with:\n" << again.mismatch->what;
      } else {
        r << "(it did not fail when replayed once more: the failure is intermittent)\n";
      }
    }
    r << "replay: FSDIFF_SEED=" << seed << " FSDIFF_LENGTH=" << plan.settings.length
      << " reliability_tests --gtest_filter=" << plan.test_name << "\n";
    std::cerr << r.str();
    failures.push_back(r.str());
    if (static_cast<int>(failures.size()) >= plan.max_failures) break;
  }
  return failures;
}

TEST(Fsdiff, RandomSequences) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount of the lower";
  Plan plan = plan_from_env();
  World world;
  auto failures = run_plan(world, plan);
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(world.lower_changes(), "") << "the lower changed";
}

// The soak's long sequences that found a bug, replayed in CI (about 2.5 s
// each). 9100015 (and, more rarely, 3300018 and 5000022) showed a stale
// st_nlink after a rewind now and then: a dropped layer's .base link counted
// until a thread purged trash/ (link_count.h). 3300081 lost a directory's
// content: a redirect recorded a path a layer in between had renamed away.
// Left out: 3300031, fixed but failing only in some replays.
TEST(Fsdiff, SoakSequencesThatFoundBugs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount of the lower";
  Plan plan;
  plan.settings.length = 200;
  plan.seeds = {708762000, 708762003, 5000000, 7000027, 7000060, 9100012,
                9100081,   9100015,   3300018, 5000022, 3300081};
  plan.shrink_budget = std::chrono::seconds(30);
  World world;
  auto failures = run_plan(world, plan);
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(world.lower_changes(), "") << "the lower changed";
}

// The same, with cowfs and every operation run by an ordinary user (mounting
// through fusermount3). The child half below does the work.
TEST(Fsdiff, RandomSequencesAsOrdinaryUser) {
  std::string why;
  auto user = cowfs_rel::test_user(&why);
  if (!user) GTEST_SKIP() << why;
  cowfs_rel::DevFuseOpen dev_fuse;
  World world(user->uid, user->gid);
  long seeds = env_long("FSDIFF_USER_SEEDS", env_flag("FSDIFF_SOAK") ? 100 : 3);
  RunResult r = cowfs_rel::run_self_as(
      *user, "FsdiffChild.RunAsGivenUser",
      {{"FSDIFF_CHILD_WORLD", world.directory()},
       {"FSDIFF_SEEDS", std::to_string(seeds)},
       {"FSDIFF_BASE", std::to_string(env_long("FSDIFF_BASE", 1001))},
       {"FSDIFF_LENGTH", std::to_string(env_long("FSDIFF_LENGTH", 40))},
       {"FSDIFF_MAX_FAILURES", std::to_string(env_long("FSDIFF_MAX_FAILURES", 1))},
       {"FSDIFF_SHRINK_SECONDS", std::to_string(env_long("FSDIFF_SHRINK_SECONDS", 20))},
       {"FSDIFF_IGNORE", std::getenv("FSDIFF_IGNORE") ? std::getenv("FSDIFF_IGNORE") : ""}},
      std::chrono::minutes(30));
  EXPECT_EQ(r.exit_code, 0) << "the unprivileged fsdiff run failed:\n" << r.out << r.err;
  EXPECT_NE(r.out.find("[  PASSED  ] 1 test"), std::string::npos) << "the child test did not run:\n"
                                                                  << r.out << r.err;
  EXPECT_EQ(world.lower_changes(), "") << "the lower changed";
}

TEST(FsdiffChild, RunAsGivenUser) {
  const char* dir = std::getenv("FSDIFF_CHILD_WORLD");
  if (dir == nullptr) GTEST_SKIP() << "only run by Fsdiff.RandomSequencesAsOrdinaryUser";
  ASSERT_NE(::geteuid(), 0u) << "the child must run as an ordinary user";
  auto world = World::attach(dir);
  Plan plan = plan_from_env();
  plan.test_name = "Fsdiff.RandomSequencesAsOrdinaryUser";
  auto failures = run_plan(*world, plan);
  for (const auto& f : failures) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace fsdiff
