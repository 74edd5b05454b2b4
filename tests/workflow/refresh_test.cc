// scripts/refresh-prod.sh: refresh the mirror from a local directory or an
// rsync daemon on 127.0.0.1, refuse while mounted, --blobs-existing-only,
// and never leave the previous mirror half-updated (failed rsync, full disk,
// unreachable or wrong source).
#include <sys/mount.h>
#include <sys/stat.h>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// What a mirror must share with its source (inode numbers and ctimes are
// the mirror's own).
constexpr unsigned kMirrored = kSemantic;
// What must not change at all in a mirror that a failed refresh left alone.
constexpr unsigned kUntouched = kSemantic | kIno;

class Refresh : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>("wf-refresh");
    src_ = tmp_->sub("prod");
    copy_dir(demo_prod(2000), src_);
    mirror_ = tmp_->sub("mirror");
    RunResult r = refresh({"--from", src_, "--to", mirror_});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(diff(Manifest::take(src_), Manifest::take(mirror_), kMirrored), "");
    ws_ = tmp_->mkdir("ws");
    init_demo_workspace(ws_, {mirror_});
  }

  RunResult refresh(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {repo("scripts/refresh-prod.sh")};
    argv.insert(argv.end(), args.begin(), args.end());
    setenv("REHEARSE", rehearse_bin().c_str(), 1);
    return run(argv, {.cwd = "", .timeout = 300s});
  }

  // Production moves on: an object edited, a blob rewritten, one removed,
  // one added.
  void change_production() {
    RunResult r = run({"sqlite3", demo_db(src_),
                       "UPDATE content SET title = 'Refreshed' WHERE id = 7;"
                       "INSERT INTO content(id, path, portal_type, title, body, state, created, "
                       "modified) VALUES(900001, '/site/new', 'Document', 'New', 'x', "
                       "'published', 1, 1);"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    write_file(src_ + "/var/blobstorage/0x00000028.blob", pattern(5000, 42));
    ASSERT_EQ(::unlink((src_ + "/var/blobstorage/0x0000003c.blob").c_str()), 0);
    write_file(src_ + "/var/blobstorage/0x99999999.blob", pattern(3000, 43));
  }

  // No staging or old copies beside the mirror.
  void expect_no_leftovers() {
    for (const auto& name : list_dir(tmp_->path())) {
      EXPECT_FALSE(name.rfind(".mirror", 0) == 0) << "leftover " << name;
    }
  }

  std::unique_ptr<TempDir> tmp_;
  std::string src_, mirror_, ws_;
};

TEST_F(Refresh, FromALocalDirectoryUpdatesTheMirrorAndResetsTheRehearsal) {
  RunResult run_to = rehearse(ws_, {"run", "--to", "1.0"});
  ASSERT_EQ(run_to.exit_code, 0) << run_to.describe();
  ASSERT_EQ(rehearse(ws_, {"umount"}).exit_code, 0);
  change_production();

  RunResult r = refresh({"-C", ws_, "--from", src_});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "resetting the rehearsal")) << r.describe();
  EXPECT_TRUE(contains(r.out, "to-chk") || contains(r.out, "100%")) << "no rsync progress: " << r.out;
  EXPECT_EQ(diff(Manifest::take(src_), Manifest::take(mirror_), kMirrored), "");
  expect_no_leftovers();

  RunResult st = rehearse(ws_, {"status"});
  EXPECT_TRUE(contains(st.out, "none applied")) << st.out;
  // The rehearsal sees the new production.
  RunResult m = rehearse(ws_, {"mount"});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  EXPECT_EQ(query(demo_db(ws_ + "/mnt"), "SELECT title FROM content WHERE id = 7"), "Refreshed");
  EXPECT_EQ(rehearse(ws_, {"umount"}).exit_code, 0);
}

TEST_F(Refresh, RefusesWhileMountedAndUnmountsFirstWithUmount) {
  ASSERT_EQ(rehearse(ws_, {"mount"}).exit_code, 0);
  change_production();
  Manifest old_mirror = Manifest::take(mirror_);

  RunResult refused = refresh({"-C", ws_, "--from", src_});
  EXPECT_EQ(refused.exit_code, 1) << refused.describe();
  EXPECT_EQ(refused.err_lines().size(), 1u) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "is mounted")) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "--umount")) << refused.describe();
  EXPECT_TRUE(is_mounted(ws_ + "/mnt"));
  EXPECT_EQ(diff(old_mirror, Manifest::take(mirror_), kUntouched), "");

  RunResult r = refresh({"-C", ws_, "--from", src_, "--umount"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_FALSE(is_mounted(ws_ + "/mnt"));
  EXPECT_EQ(diff(Manifest::take(src_), Manifest::take(mirror_), kMirrored), "");
}

TEST_F(Refresh, FromAnRsyncDaemon) {
  RsyncDaemon daemon(tmp_->sub("rsyncd"), {{"prod", src_}});
  change_production();
  RunResult r = refresh({"-C", ws_, "--from", daemon.url("prod")});
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\ndaemon log:\n" << daemon.log();
  EXPECT_EQ(diff(Manifest::take(src_), Manifest::take(mirror_), kMirrored), "");
  expect_no_leftovers();

  // A sub-path of the module works too; a wrong module or path is named.
  Manifest before = Manifest::take(mirror_);
  RunResult wrong_module = refresh({"-C", ws_, "--from", daemon.url("nope")});
  EXPECT_NE(wrong_module.exit_code, 0);
  EXPECT_TRUE(contains(wrong_module.err, "module")) << wrong_module.describe();
  RunResult wrong_path = refresh({"-C", ws_, "--from", daemon.url("prod/no/such/dir")});
  EXPECT_NE(wrong_path.exit_code, 0);
  EXPECT_TRUE(contains(wrong_path.err, "does not exist")) << wrong_path.describe();
  EXPECT_EQ(diff(before, Manifest::take(mirror_), kUntouched), "");
}

TEST_F(Refresh, UnreachableOrWrongSourcesAreOneClearLine) {
  Manifest before = Manifest::take(mirror_);
  const std::string closed = "rsync://127.0.0.1:" + std::to_string(free_port()) + "/prod";
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"--from", closed}, "cannot reach the rsync daemon"},
           {{"--from", tmp_->sub("no-such-dir")}, "does not exist"},
           {{"--from", "nosuchhost.invalid:/srv/prod"}, "cannot reach nosuchhost.invalid"},
           {{"--from", mirror_}, "overlap"},
           {{}, "missing --from"},
       }) {
    std::vector<std::string> args = {"-C", ws_};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult r = refresh(args);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.err_lines().size(), 1u) << r.describe();
    EXPECT_TRUE(contains(r.err, c.says)) << r.describe();
  }
  EXPECT_EQ(diff(before, Manifest::take(mirror_), kUntouched), "");
  expect_no_leftovers();
}

TEST_F(Refresh, BlobsExistingOnlyRefreshesJustTheBlobsTheMirrorHas) {
  // This mirror keeps the database and a few blobs; the rest of the blob
  // store would come from a network mount below it.
  std::vector<std::string> kept = {".layout", "0x00000014.blob", "0x00000028.blob",
                                   "0x0000003c.blob"};
  for (const auto& name : list_dir(mirror_ + "/var/blobstorage")) {
    if (std::find(kept.begin(), kept.end(), name) == kept.end()) {
      ASSERT_EQ(::unlink((mirror_ + "/var/blobstorage/" + name).c_str()), 0);
    }
  }
  change_production();  // rewrites 0x28 (kept), removes 0x3c (kept), adds 0x99999999
  write_file(src_ + "/var/blobstorage/0x00000050.blob", "not in the mirror: stays out");

  RunResult r = refresh({"-C", ws_, "--from", src_, "--blobs-existing-only"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(demo_db(mirror_)), read_file(demo_db(src_)));
  EXPECT_EQ(sorted(list_dir(mirror_ + "/var/blobstorage")),
            (std::vector<std::string>{".layout", "0x00000014.blob", "0x00000028.blob"}));
  EXPECT_EQ(read_file(mirror_ + "/var/blobstorage/0x00000028.blob"), pattern(5000, 42));
  expect_no_leftovers();
}

TEST_F(Refresh, AFailingRsyncLeavesTheOldMirrorIntact) {
  // The daemon reads as `nobody`: a file it cannot read fails the transfer
  // in the middle, after other files were already copied.
  ASSERT_EQ(::chmod(tmp_->path().c_str(), 0755), 0);
  RsyncDaemon daemon(tmp_->sub("rsyncd"), {{"prod", src_}}, "nobody");
  change_production();
  ASSERT_EQ(::chmod((src_ + "/var/blobstorage/0x00000028.blob").c_str(), 0), 0);  // rewritten
  Manifest before = Manifest::take(mirror_);

  RunResult r = refresh({"-C", ws_, "--from", daemon.url("prod")});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "rsync failed")) << r.describe();
  EXPECT_TRUE(contains(r.err, "previous mirror")) << r.describe();
  EXPECT_EQ(diff(before, Manifest::take(mirror_), kUntouched), "");
  expect_no_leftovers();
}

TEST_F(Refresh, AFullDiskIsNamedAndLeavesTheOldMirrorIntact) {
  const std::string small = tmp_->mkdir("small");
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=12m"), 0) << errno_name(errno);
  const std::string mirror = small + "/mirror";
  RunResult first = refresh({"--from", src_, "--to", mirror});
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  write_file(src_ + "/var/blobstorage/0x77777777.blob", pattern(9 << 20, 7));
  Manifest before = Manifest::take(mirror);

  RunResult r = refresh({"--from", src_, "--to", mirror});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "free")) << r.describe();
  EXPECT_TRUE(contains(r.err, "unchanged")) << r.describe();
  EXPECT_EQ(diff(before, Manifest::take(mirror), kUntouched), "");
  EXPECT_EQ(sorted(list_dir(small)), std::vector<std::string>{"mirror"});
}

}  // namespace
}  // namespace workflow
