// A store that cannot make an increment durable fails the commit, loudly:
// `rehearse run` exits non-zero naming the cause, the journal does not
// record the increment as applied, `rehearse umount` refuses to drop the
// unsaved data, and the next run (on a healthy store) completes the commit.
// The daemon's syncfs is failed with the test-only COWFS_TEST_FAULTS
// variable (cowfs/sys/fault_env.h), which reaches it through `rehearse run`,
// which mounts.
#include <sys/mount.h>

#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

TEST_F(RehearseE2E, ACheckpointThatCannotBeMadeDurableFailsTheCommit) {
  write_mini_steps();
  CliResult r = rehearse({"run", "--to", "1.0"}, {"COWFS_TEST_FAULTS=syncfs=EIO"});
  ASSERT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("cannot checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  EXPECT_EQ(journal_query("SELECT count(*) FROM applied WHERE state='applied'"), "0");

  // The unsaved data is not given up silently either.
  CliResult u = rehearse({"umount"});
  EXPECT_NE(u.exit_code, 0) << u.describe();
  EXPECT_NE(u.err.find("Input/output error"), std::string::npos) << u.err;
  ASSERT_TRUE(mounted());
  ::umount2(mnt().c_str(), MNT_DETACH);

  CliResult again = rehearse({"run", "--to", "1.0"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(journal_query("SELECT count(*) FROM applied WHERE state='applied'"), "1");
}

}  // namespace
}  // namespace rehearse_test
