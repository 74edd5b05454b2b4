// The demo upgrade (steps/) on the demo production, through the mount:
// every increment commits, the verification step passes on 100,000 objects,
// and it fails loudly (rolling the increment back) when a step loses data.
#include <filesystem>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string tail(const std::string& s, size_t n = 3000) {
  return s.size() > n ? s.substr(s.size() - n) : s;
}

int flat_blobs(const std::string& root) {
  int n = 0;
  for (const auto& name : list_dir(root + "/var/blobstorage")) {
    if (name.size() > 5 && name.substr(name.size() - 5) == ".blob") ++n;
  }
  return n;
}

// What the finished upgrade must look like, on `root` (a mount or the data).
void expect_upgraded(const std::string& root, int objects) {
  const std::string db = demo_db(root), n = std::to_string(objects);
  EXPECT_EQ(query(db, "SELECT value FROM site WHERE key = 'schema'"), "3");
  EXPECT_EQ(query(db, "SELECT count(*) FROM content"), n);
  EXPECT_EQ(query(db, "SELECT count(*) FROM content_text"), n);
  EXPECT_EQ(query(db, "SELECT count(*) FROM catalog"), n);
  EXPECT_EQ(query(db, "SELECT count(*) FROM content WHERE language = 'en'"), n);
  EXPECT_EQ(query(db, "SELECT count(*) FROM sqlite_master WHERE name = 'split_fingerprint'"), "0");
  EXPECT_EQ(query(db, "SELECT count(*) FROM content WHERE blob LIKE '__/__/%.blob'"),
            std::to_string(objects / 20));
  EXPECT_EQ(query(db, "SELECT version FROM _rehearse_version"), "2.1");
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(read_file(root + "/var/blobstorage/.layout"), "sha256-2x2\n");
  EXPECT_EQ(flat_blobs(root), 0);
}

TEST(DemoUpgrade, HundredThousandObjectsPassTheirVerificationThroughTheMount) {
  const std::string& prod = demo_prod(100000);
  Manifest before = Manifest::take(prod);
  TempDir tmp("wf-upgrade");
  ReadOnlyBind lower(prod, tmp.mkdir("lower"));
  const std::string ws = tmp.mkdir("ws");
  init_demo_workspace(ws, {lower.path()});

  RunResult r = rehearse(ws, {"-v", "run"}, 900s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string all = r.out + r.err;
  EXPECT_TRUE(
      contains(all, "verified: 100000 objects and 5000 blobs came through the upgrade intact"))
      << tail(all);
  for (const char* v : {"1.0", "1.1", "2.0", "2.1"}) {
    EXPECT_TRUE(contains(all, std::string("increment ") + v + " committed")) << v;
  }
  expect_upgraded(ws + "/mnt", 100000);

  RunResult report = rehearse(ws, {"report"});
  EXPECT_EQ(report.exit_code, 0) << report.describe();
  EXPECT_TRUE(contains(report.out, "20-reindex.sql")) << report.out;
  // 10,000 entries: more than 64 KiB of `cowfs diff --json`.
  RunResult d = rehearse(ws, {"diff", "2.0"});
  EXPECT_EQ(d.exit_code, 0) << d.describe();
  EXPECT_TRUE(contains(d.out, "5000 renamed")) << tail(d.out);

  RunResult um = rehearse(ws, {"umount"});
  EXPECT_EQ(um.exit_code, 0) << um.describe();
  EXPECT_EQ(diff(before, Manifest::take(prod)), "") << "production changed";
}

// The everyday loop: a step loses data, the verification step says so and
// the increment rolls back; the step is fixed and `run` carries on.
TEST(DemoUpgrade, VerificationFailsLoudlyWhenAStepLosesDataAndTheFixedStepPasses) {
  const std::string& prod = demo_prod(2000);
  Manifest before = Manifest::take(prod);
  TempDir tmp("wf-verify");
  ReadOnlyBind lower(prod, tmp.mkdir("lower"));
  const std::string steps = tmp.sub("steps");
  copy_dir(repo("steps"), steps);
  const std::string split = steps + "/2.1/20-split-content.sql";
  const std::string good = read_file(split);
  const std::string from = "SELECT id, title, body FROM content;";
  ASSERT_TRUE(contains(good, from));
  std::string bad = good;
  bad.replace(bad.find(from), from.size(),
              "SELECT id, title, body FROM content WHERE id % 500 <> 0;");
  write_file(split, bad);
  const std::string ws = tmp.mkdir("ws");
  init_demo_workspace(ws, {lower.path()}, steps);

  RunResult r = rehearse(ws, {"run"}, 300s);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "30-verify.py")) << r.describe();
  EXPECT_TRUE(contains(r.err, "VERIFICATION FAILED")) << r.describe();
  EXPECT_TRUE(contains(r.err, "objects missing from content_text: [500, 1000, 1500, 2000]"))
      << r.describe();
  // 2.1 rolled back: the data is at 2.0, before the split.
  const std::string db = demo_db(ws + "/mnt");
  EXPECT_EQ(query(db, "SELECT version FROM _rehearse_version"), "2.0");
  EXPECT_EQ(query(db, "SELECT count(*) FROM sqlite_master WHERE name = 'content_text'"), "0");

  write_file(split, good);
  RunResult fixed = rehearse(ws, {"run"}, 300s);
  ASSERT_EQ(fixed.exit_code, 0) << fixed.describe();
  EXPECT_FALSE(contains(fixed.err, "increment 1.0 committed")) << "earlier increments replayed";
  expect_upgraded(ws + "/mnt", 2000);
  EXPECT_EQ(rehearse(ws, {"umount"}).exit_code, 0);
  EXPECT_EQ(diff(before, Manifest::take(prod)), "") << "production changed";
}

// --in-place on a copy (the benchmark's reference run and a last rehearsal
// on a disposable copy): a kill -9 in the middle of the blob move resumes
// from the step's saved state and the verification passes.
TEST(DemoUpgrade, InPlaceOnACopyResumesAfterKill9) {
  TempDir tmp("wf-inplace");
  const std::string data = tmp.sub("data");
  copy_dir(demo_prod(20000), data);
  const std::string ws = tmp.mkdir("ws");
  init_demo_workspace(ws, {data});

  ::setenv("DEMO_BLOB_BATCH", "20", 1);
  ::setenv("DEMO_BLOB_SLEEP_MS", "40", 1);
  const std::string state = ws + "/.rehearse/state/2.0/10-move-blobs.py.state";
  int moved_before_kill = 0;
  {
    Process p({rehearse_bin(), "-C", ws, "run", "--in-place", "--yes"});
    ::unsetenv("DEMO_BLOB_BATCH");
    ::unsetenv("DEMO_BLOB_SLEEP_MS");
    bool mid_move = wait_until(
        [&] {
          if (p.exited()) return true;
          std::error_code ec;
          if (!std::filesystem::exists(state, ec)) return false;
          std::string s = read_file(state);
          auto at = s.find("\"done\": ");
          return at != std::string::npos && std::stoi(s.substr(at + 8)) >= 200;
        },
        240s);
    ASSERT_TRUE(mid_move);
    ASSERT_FALSE(p.exited()) << "the run finished before it could be killed: "
                             << p.wait(1s).describe();
    ASSERT_EQ(::kill(p.pid(), SIGKILL), 0);
    RunResult killed = p.wait(30s);
    EXPECT_EQ(killed.exit_code, 128 + SIGKILL);
  }
  // The step dies with rehearse (its parent-death signal); wait for it.
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : std::filesystem::directory_iterator("/proc")) {
          std::string cmd;
          try {
            cmd = read_file(e.path().string() + "/cmdline");
          } catch (const std::exception&) {
            continue;
          }
          if (contains(cmd, "10-move-blobs.py")) return false;
        }
        return true;
      },
      30s));
  // The kill may have left the database with a hot journal (a batch's
  // transaction in flight). status says so, and why a read-only reader fails.
  std::error_code ec;
  if (std::filesystem::file_size(demo_db(data) + "-journal", ec) > 0 && !ec) {
    RunResult st = rehearse(ws, {"status"}, 60s);
    EXPECT_TRUE(contains(st.out, "is a hot journal")) << st.describe();
  }
  // Read-write, as the resumed run will: SQLite rolls a hot journal back
  // first (a read-only open fails on one with "attempt to write a readonly
  // database"). The data is a copy, not production.
  moved_before_kill =
      std::stoi(query_rw(demo_db(data), "SELECT count(*) FROM content WHERE instr(blob, '/') > 0"));
  EXPECT_GE(moved_before_kill, 200);
  EXPECT_LT(moved_before_kill, 1000);

  RunResult resumed = rehearse(ws, {"-v", "run", "--in-place", "--yes"}, 300s);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  const std::string all = resumed.out + resumed.err;
  EXPECT_FALSE(contains(all, "increment 1.1 committed")) << "1.1 ran again";
  EXPECT_TRUE(contains(all, "verified: 20000 objects and 1000 blobs")) << all;
  expect_upgraded(data, 20000);
}

}  // namespace
}  // namespace workflow
