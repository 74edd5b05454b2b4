// Hostile input: every bad config, path, step or journal is refused with a
// clear one-line error and a non-zero exit, and leaves no partial state
// (nothing mounted, no store created, the journal byte-identical).
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

class Hostile : public RehearseE2E {
 protected:
  // Runs args and checks the refusal: exit code, exactly one line on stderr
  // containing needle, and no trace in the workspace.
  void expect_refused(const Strings& args, const std::string& needle, int code) {
    const std::string journal_before = read_file(journal_path());
    CliResult r = rehearse(args);
    EXPECT_EQ(r.exit_code, code) << r.describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("rehearse: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "wanted: " << needle << "\n" << r.err;
    EXPECT_FALSE(mounted()) << r.err;
    EXPECT_FALSE(fs::exists(ws() + "/.rehearse/store")) << r.err;
    EXPECT_EQ(read_file(journal_path()), journal_before) << "the journal changed: " << r.err;
  }
  void config(const std::string& toml) { write_file(ws() + "/rehearse.toml", toml); }
};

TEST_F(Hostile, BadConfigIsRefused) {
  const std::string good = read_file(ws() + "/rehearse.toml");
  step("1.0/10-a.sql", "SELECT 1;\n");
  const std::string l = "lowers = ['" + lower() + "']\n";
  const std::string rest = "steps = 'steps'\nsqlite = 'data/app.db'\n";
  struct Case {
    std::string toml, needle;
  };
  const std::vector<Case> cases = {
      {"lowers = [\n", "fix the TOML syntax"},
      {good + "colour = 'red'\n", "unknown key 'colour'"},
      {l + "mountpoint = 3\n" + rest, "'mountpoint' must be a string"},
      {l + "mountpoint = 'mnt'\n", "missing 'steps'"},
      {"lowers = 'x'\nmountpoint = 'mnt'\n" + rest, "'lowers' must be a non-empty array"},
      {"lowers = ['nope']\nmountpoint = 'mnt'\n" + rest, ws() + "/nope is not a directory"},
      // Overlapping paths, relative ones resolved against the workspace.
      {l + "mountpoint = '" + lower() + "/data'\n" + rest, "overlaps lower"},
      {l + "mountpoint = '" + fs::path(lower()).parent_path().string() + "'\n" + rest,
       "overlaps lower"},
      {l + "mountpoint = '.rehearse/m'\n" + rest, "overlaps the workspace state"},
      {l + "mountpoint = '.'\n" + rest, "overlaps the workspace state"},
      {l + "mountpoint = '../" + fs::path(ws()).filename().string() + "/.rehearse'\n" + rest,
       "overlaps the workspace state"},
      {l + "mountpoint = 'mnt'\nsteps = 'mnt/steps'\n", "lies inside the mountpoint"},
      {l + "mountpoint = 'steps/mnt'\n" + rest, "lies inside the steps folder"},
      {l + "mountpoint = 'mnt'\nsteps = '" + lower() + "/blobs'\n", "inside lower"},
      {"lowers = ['" + lower() + "', '" + lower() + "/data']\nmountpoint = 'mnt'\n" + rest,
       "lowers must not overlap"},
      {l + "mountpoint = 'mnt'\nsteps = 'steps'\nsqlite = '/abs.db'\n", "must be relative"},
      {l + "mountpoint = 'mnt'\nsteps = 'steps'\nsqlite = '../x.db'\n", "no '..'"},
      {"lowers = ['.rehearse/logs']\nmountpoint = 'mnt'\n" + rest, "inside the workspace state"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    config(c.toml);
    expect_refused({"run"}, c.needle, 2);
  }
  // A symlink does not hide an overlap.
  fs::create_symlink(lower() + "/data", ws() + "/link");
  config(l + "mountpoint = 'link'\n" + rest);
  expect_refused({"mount"}, "overlaps lower", 2);
  config(good);
  expect_refused({"run", "--step-timeout", "soon"}, "--step-timeout 'soon' is not a duration", 2);
  expect_refused({"rerun", "1.0", "--step-timeout", "0s"}, "is not a duration", 2);
}

// The workspace state inside a lower: refused by init (nothing written) and
// by every later command if the config is edited that way.
TEST_F(Hostile, StateInsideALowerIsRefused) {
  TempDir prod("rehearse-hostile-prod");
  mkdirs(prod.sub("ws"));
  Background init({REHEARSE_BIN, "-C", prod.sub("ws"), "init", "--lower", "..", "--mountpoint",
                   "/tmp/rehearse-hostile-mnt", "--steps", "/tmp/rehearse-hostile-steps"});
  CliResult r = init.wait();
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("lies inside lower " + prod.path()), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(prod.sub("ws")));
  EXPECT_FALSE(fs::exists("/tmp/rehearse-hostile-mnt"));

  config("lowers = ['" + ws() + "/steps', '..']\nmountpoint = 'mnt'\nsteps = 'steps'\n");
  expect_refused({"run"}, "lies inside lower", 2);
}

TEST_F(Hostile, BadStepsAreRefused) {
  step("1.0/10-plain.sh", "#!/bin/sh\necho hi\n", false);
  expect_refused({"run"}, steps() + "/1.0/10-plain.sh: unknown step kind", 2);
  expect_refused({"rerun", "1.0"}, "make it executable", 2);
  fs::remove(steps() + "/1.0/10-plain.sh");
  step("1.0/10-two\nlines.sh", "#!/bin/sh\necho hi\n", true);
  expect_refused({"run"}, steps() + "/1.0/10-two\\nlines.sh: the name contains a control", 2);
  fs::remove_all(steps() + "/1.0");
  mkdirs(steps() + "/1.0\n");
  step("1.0\n/10-a.sql", "SELECT 1;\n");
  expect_refused({"run"}, "1.0\\n: the name contains a control character", 2);
  expect_refused({"plan"}, "control character", 2);
}

TEST_F(Hostile, DamagedJournalIsNamedAndLeftAlone) {
  step("1.0/10-a.sql", "SELECT 1;\n");
  // Garbage over the header.
  std::string j = read_file(journal_path());
  ASSERT_GT(j.size(), 8192u);
  std::string bad = j;
  bad.replace(0, 64, std::string(64, '\x5a'));
  write_file(journal_path(), bad);
  for (const Strings& cmd : {Strings{"run"}, Strings{"status"}, Strings{"history"}}) {
    expect_refused(cmd, journal_path() + " is damaged", 1);
  }
  // A page overwritten (the header is fine).
  bad = j;
  bad.replace(4096, 4096, std::string(4096, '\x01'));
  write_file(journal_path(), bad);
  expect_refused({"run"}, journal_path() + " is damaged", 1);
  expect_refused({"reset"}, "rehearse does not repair it", 1);

  // A journal from a newer rehearse.
  write_file(journal_path(), j);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(journal_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  expect_refused({"run"}, journal_path() + " has schema 99, newer than this rehearse", 1);
  expect_refused({"status"}, "has schema 99", 1);

  // No journal at all: never silently replaced by an empty one; `umount`
  // does not need it.
  ASSERT_EQ(rehearse({"mount"}).exit_code, 1) << "refused: the journal says schema 99";
  write_file(journal_path(), j);
  ASSERT_EQ(rehearse({"mount"}).exit_code, 0);
  fs::remove(journal_path());
  for (const Strings& cmd : {Strings{"run"}, Strings{"status"}}) {
    CliResult r = rehearse(cmd);
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(journal_path() + " is missing"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(journal_path()));
  }
  CliResult u = rehearse({"umount"});
  EXPECT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_FALSE(mounted());
}

}  // namespace
}  // namespace rehearse_test
