// `rehearse refresh --from SRC`: refreshes the mirror through
// scripts/refresh-prod.sh, records the snapshot in the journal, and `report`
// names the snapshot each run used, also across `--compare`.
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class RehearseRefresh : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>("wf-rrefresh");
    src_ = tmp_->sub("prod");
    copy_dir(demo_prod(2000), src_);
    mirror_ = tmp_->sub("mirror");
    copy_dir(src_, mirror_);
    ws_ = tmp_->mkdir("ws");
    init_demo_workspace(ws_, {mirror_});
    setenv("REHEARSE", rehearse_bin().c_str(), 1);
  }
  std::string journal(const std::string& sql) { return query(ws_ + "/.rehearse/journal.db", sql); }
  // The value of a Python expression over the JSON document `doc` (as d).
  std::string json_get(const std::string& doc, const std::string& expr) {
    write_file(tmp_->sub("doc.json"), doc);
    RunResult r = run({"python3", "-c",
                       "import json,sys; d=json.load(open(sys.argv[1])); print(" + expr + ")",
                       tmp_->sub("doc.json")});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return r.out.empty() ? r.out : r.out.substr(0, r.out.size() - 1);
  }

  std::unique_ptr<TempDir> tmp_;
  std::string src_, mirror_, ws_;
};

TEST_F(RehearseRefresh, RecordsTheSnapshotAndReportNamesItPerRun) {
  RunResult first = rehearse(ws_, {"run", "--to", "1.0"});
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  // Production moves on.
  RunResult edit =
      run({"sqlite3", demo_db(src_), "UPDATE content SET title = 'Refreshed' WHERE id = 7;"});
  ASSERT_EQ(edit.exit_code, 0) << edit.describe();

  RunResult r = rehearse(ws_, {"refresh", "--from", src_, "--umount"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "snapshot #1 of " + src_ + " recorded")) << r.describe();
  EXPECT_TRUE(contains(r.err, "resetting the rehearsal")) << r.describe();
  EXPECT_EQ(query(demo_db(mirror_), "SELECT title FROM content WHERE id = 7"), "Refreshed");
  EXPECT_EQ(journal("SELECT count(*) FROM snapshots"), "1");
  EXPECT_EQ(journal("SELECT source FROM snapshots"), src_);
  EXPECT_EQ(journal("SELECT mirror FROM snapshots"), mirror_);
  // The mirror's size: regular files, a hard-linked file's bytes once.
  int64_t files = 0, bytes = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& e : std::filesystem::recursive_directory_iterator(mirror_)) {
    struct stat st {};
    ASSERT_EQ(::lstat(e.path().c_str(), &st), 0);
    if (!S_ISREG(st.st_mode)) continue;
    ++files;
    if (seen.insert({st.st_dev, st.st_ino}).second) bytes += st.st_size;
  }
  EXPECT_GT(files, 10);
  EXPECT_EQ(journal("SELECT files FROM snapshots"), std::to_string(files));
  EXPECT_EQ(journal("SELECT bytes FROM snapshots"), std::to_string(bytes));

  RunResult second = rehearse(ws_, {"run", "--to", "1.0"});
  ASSERT_EQ(second.exit_code, 0) << second.describe();
  const std::string first_run = journal("SELECT min(id) FROM runs WHERE command LIKE 'run%'");
  RunResult rep = rehearse(ws_, {"report", "--json", "--compare", first_run});
  ASSERT_EQ(rep.exit_code, 0) << rep.describe();
  EXPECT_EQ(json_get(rep.out, "d['increments'][0]['version']"), "1.0");
  EXPECT_TRUE(json_get(rep.out, "d['increments'][0]['snapshot']").starts_with("#1 " + src_ + ", "))
      << rep.out;
  EXPECT_TRUE(json_get(rep.out, "d['environment']['snapshot']").starts_with("#1 ")) << rep.out;
  EXPECT_TRUE(json_get(rep.out, "d['compare']['increments'][0]['snapshot']").starts_with("#1 "))
      << rep.out;
  // The first run was before any refresh.
  EXPECT_EQ(json_get(rep.out, "repr(d['compare']['increments'][0]['other_snapshot'])"), "''")
      << rep.out;
  // The text report says it too, beside the earlier run on no recorded snapshot.
  RunResult text = rehearse(ws_, {"report", "--compare", first_run});
  ASSERT_EQ(text.exit_code, 0) << text.describe();
  EXPECT_TRUE(contains(text.out, "  on snapshot #1 " + src_ + ", ")) << text.out;
  EXPECT_TRUE(contains(text.out, "    on snapshot #1 " + src_)) << text.out;
  EXPECT_TRUE(contains(text.out, " vs (none recorded)\n")) << text.out;
  RunResult html = rehearse(ws_, {"report", "--html", ws_ + "/r.html", "--compare", first_run});
  ASSERT_EQ(html.exit_code, 0) << html.describe();
  EXPECT_TRUE(contains(read_file(ws_ + "/r.html"), "#1 " + src_)) << "snapshot not on the page";
}

TEST_F(RehearseRefresh, BadSourcesAreOneLineAndRecordNothing) {
  RunResult missing = rehearse(ws_, {"refresh"});
  EXPECT_EQ(missing.exit_code, 2) << missing.describe();
  EXPECT_EQ(missing.err_lines().size(), 1u) << missing.describe();

  RunResult nowhere = rehearse(ws_, {"refresh", "--from", tmp_->sub("no-such-prod")});
  EXPECT_NE(nowhere.exit_code, 0) << nowhere.describe();
  EXPECT_EQ(nowhere.err_lines().size(), 1u) << nowhere.describe();
  EXPECT_EQ(journal("SELECT count(*) FROM snapshots"), "0");
}

}  // namespace
}  // namespace workflow
