// Reliability of `rehearse run` (the harness half of the reliability issue):
// kill -9 during each step kind, Ctrl-C, executable steps resuming from
// their saved state, step timeouts, steps that print megabytes, a full top
// layer, the "a log line at least every 5 s" rule, in-place runs, and
// `status` naming a disagreement between the data and the journal.
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>

#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

rehearse::json::Value parse(const std::string& s) {
  auto v = rehearse::json::parse(s);
  EXPECT_TRUE(v) << s;
  return v ? *v : rehearse::json::Value{};
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t.substr(t.rfind('\n') == std::string::npos ? 0 : t.rfind('\n') + 1);
}

// An executable step that processes items 0..9, one per call (exit 75 until
// done), keeping its position in REHEARSE_STATE. Before item 4 it reports
// "waiting", creates `release`.waiting and blocks until `release` exists, so
// a test can kill or interrupt it at a known point. Each item appends one line to items.txt in
// the data, so a repeated item shows.
std::string items_step(const std::string& release) {
  return "#!/bin/sh\n"
         "n=$(cat \"$REHEARSE_STATE\"); n=${n:-0}\n"
         "[ \"$n\" -ge 10 ] && exit 0\n"
         "if [ \"$n\" -eq 4 ] && [ ! -e " +
         release +
         " ]; then\n"
         "  echo \"4 10 waiting\" >&$REHEARSE_PROGRESS_FD\n"
         "  touch " +
         release +
         ".waiting\n"
         "  i=0; while [ ! -e " +
         release +
         " ]; do sleep 0.05; i=$((i+1)); [ $i -gt 1200 ] && exit 9; done\n"
         "fi\n"
         "echo \"item $n\" >> items.txt\n"
         "echo $((n+1)) > \"$REHEARSE_STATE.tmp\" && mv \"$REHEARSE_STATE.tmp\" "
         "\"$REHEARSE_STATE\"\n"
         "echo \"$((n+1)) 10\" >&$REHEARSE_PROGRESS_FD\n"
         "exit 75\n";
}

const char* kTenItems =
    "item 0\nitem 1\nitem 2\nitem 3\nitem 4\nitem 5\nitem 6\nitem 7\nitem 8\nitem 9\n";

// The items step blocks (its marker file exists); keeps reading the run's
// output meanwhile so its pipes never fill.
bool waiting(Background& run, const std::string& release) {
  run.out();
  return fs::exists(release + ".waiting");
}

// Unmounts what a test mounted by hand (a small tmpfs as the store), after
// the workspace's own cowfs mount on top of it.
struct TmpfsGuard {
  std::function<void()> before;
  std::string path;
  ~TmpfsGuard() {
    if (before) before();
    if (!path.empty()) ::umount2(path.c_str(), MNT_DETACH);
  }
};

using Rel = RehearseE2E;

// kill -9 in the middle of a SQL step's transaction: its work is rolled back
// by SQLite, and the resumed run does it exactly once.
TEST_F(Rel, KillDuringASqlStepRunsItOnceOnResume) {
  step("1.0/10-slow.sql",
       "CREATE TABLE once(x UNIQUE);\nINSERT INTO once VALUES(1);\n"
       "UPDATE content SET title = title || '!' WHERE id <= 50000;\n"
       "SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n "
       "WHERE i < 3000000) SELECT i FROM n);\n");
  {
    Background run(argv({"run", "--json"}));
    // The rollback journal exists only inside the step's write transaction.
    ASSERT_TRUE(wait_until([&] { return fs::exists(mnt("data/app.db-journal")); }, 60s))
        << run.out();
    run.kill9();
  }
  auto st = parse(status_json());
  EXPECT_EQ(st["in_progress"].as_string(), "1.0");
  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(query("SELECT count(*) FROM once"), "1");
  EXPECT_EQ(query("SELECT count(*) FROM content WHERE title LIKE '%!'"), "50000");
  EXPECT_EQ(query("SELECT count(*) FROM content WHERE title LIKE '%!!'"), "0");
  EXPECT_EQ(journal_query("SELECT count(*) FROM commits"), "1");
}

// kill -9 while an executable step is between calls of its batch model: the
// next run calls it again with its saved state; every item is processed
// exactly once.
TEST_F(Rel, KillDuringAnExecutableStepResumesFromItsSavedState) {
  const std::string release = ws() + "/release";
  step("1.0/10-items.sh", items_step(release), true);
  {
    Background run(argv({"run", "--json"}));
    ASSERT_TRUE(wait_until([&] { return waiting(run, release); }, 60s)) << run.out();
    run.kill9();
  }
  EXPECT_EQ(read_file(ws() + "/.rehearse/state/1.0/10-items.sh.state"), "4\n")
      << "the state file persists across the kill";
  EXPECT_EQ(read_file(mnt("items.txt")), "item 0\nitem 1\nitem 2\nitem 3\n");
  write_file(release, "");
  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto first = parse(events(r.out, "progress").at(0));
  EXPECT_EQ(first["done"].as_int(), 5) << "resumed at item 4, not from the start";
  EXPECT_EQ(read_file(mnt("items.txt")), kTenItems);
  // The journal counts the calls of finished segments: after the kill, items
  // 4..9 and the call that says "finished" (the killed segment never ended).
  EXPECT_EQ(journal_query("SELECT items || '/' || calls FROM commit_steps"), "10/7");
}

// Ctrl-C: the step is stopped, partial state is kept, exit 130, and the next
// run resumes.
TEST_F(Rel, CtrlCKeepsPartialStateAndTheNextRunResumes) {
  const std::string release = ws() + "/release";
  write_mini_steps();
  step("1.1/15-items.sh", items_step(release), true);
  {
    Background run(argv({"run", "--json"}));
    ASSERT_TRUE(wait_until([&] { return waiting(run, release); }, 60s)) << run.out();
    run.signal(SIGINT);
    CliResult r = run.wait();
    EXPECT_EQ(r.exit_code, 130) << r.describe();
    EXPECT_NE(last_line(r.err).find("interrupted in increment 1.1"), std::string::npos) << r.err;
  }
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.0");
  EXPECT_EQ(st["in_progress"].as_string(), "1.1");
  EXPECT_EQ(st["last_run"]["outcome"].as_string(), "interrupted");
  EXPECT_EQ(query("SELECT count(*) FROM batch_log"), "4") << "the finished batch step is kept";
  write_file(release, "");
  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(mnt("items.txt")), kTenItems);
  expect_mini_done_exactly_once();
}

// Without a terminal (stderr is a pipe here), a running step shows a status
// line at least every 5 s.
TEST_F(Rel, WithoutATerminalALogLineAtLeastEveryFiveSeconds) {
  step("1.0/10-slow.sh",
       "#!/bin/sh\ni=0\nwhile [ $i -lt 14 ]; do echo \"$i 14\" >&$REHEARSE_PROGRESS_FD; "
       "sleep 0.5; i=$((i+1)); done\n",
       true);
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto started = r.err.find("10-slow.sh (exec) started");
  auto finished = r.err.find("10-slow.sh ok in");
  ASSERT_NE(started, std::string::npos) << r.err;
  ASSERT_NE(finished, std::string::npos) << r.err;
  std::string during = r.err.substr(started, finished - started);
  std::regex status_line(R"(rehearse: \[1\.0 step 1/1, increment 1/1\] 10-slow\.sh \d+/14 )");
  EXPECT_TRUE(std::regex_search(during, status_line)) << "no status line during a 7 s step:\n"
                                                      << r.err;
}

// --step-timeout: a step that never exits fails, is rolled back, the journal
// keeps its output tail, and the message names the step and the timeout.
TEST_F(Rel, StepTimeoutFailsAndRollsBackTheStep) {
  step("1.0/10-table.sql", "CREATE TABLE made_by_10(x);\n");
  step("1.0/20-hang.sh", "#!/bin/sh\necho 'about to hang'\nsleep 1000\n", true);
  auto t0 = std::chrono::steady_clock::now();
  CliResult r = rehearse({"run", "--step-timeout", "1s"});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "the hung step was not stopped";
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::string line = last_line(r.err);
  EXPECT_NE(line.find("20-hang.sh"), std::string::npos) << r.err;
  EXPECT_NE(line.find("timed out after 1s"), std::string::npos) << r.err;
  EXPECT_NE(line.find("rolled back"), std::string::npos) << r.err;
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE name='made_by_10'"), "0");
  EXPECT_EQ(journal_query("SELECT outcome FROM step_runs WHERE step='20-hang.sh'"), "failed");
  EXPECT_NE(journal_query("SELECT output_tail FROM step_runs WHERE step='20-hang.sh'")
                .find("about to hang"),
            std::string::npos);

  // A SQL statement that would run for hours is interrupted inside SQLite.
  fs::remove_all(steps() + "/1.0");
  step("1.0/10-spin.sql",
       "CREATE TABLE spun(x);\nINSERT INTO spun SELECT count(*) FROM (WITH RECURSIVE n(i) AS "
       "(SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000000000000) SELECT i FROM n);\n");
  CliResult s = rehearse({"rerun", "1.0", "--step-timeout", "500ms"});
  EXPECT_EQ(s.exit_code, 1) << s.describe();
  EXPECT_NE(last_line(s.err).find("10-spin.sql: timed out after 500ms"), std::string::npos)
      << s.err;
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE name='spun'"), "0");
}

// A step printing megabytes (lines, and one 32 MB line without a newline):
// the log file has it all, the journal a bounded tail, rehearse's memory
// stays small, and -v still streams the lines.
TEST_F(Rel, MegabytesOfOutputStayBounded) {
  const std::string hwm = ws() + "/hwm";
  step("1.0/10-loud.sh",
       "#!/bin/sh\nseq 1 200000 | sed 's/^/line of output number /'\n"
       "head -c 33554432 /dev/zero | tr '\\0' x\n"
       "echo\ngrep VmHWM /proc/$PPID/status | tr -s ' ' | cut -d' ' -f2 > " +
           hwm + "\n",
       true);
  CliResult r = rehearse({"-v", "run"});
  ASSERT_EQ(r.exit_code, 0) << r.exit_code << r.err.substr(0, 2000);
  EXPECT_NE(r.err.find("10-loud.sh: line of output number 199999\n"), std::string::npos)
      << "-v streams the output";
  const auto log = ws() + "/.rehearse/logs/1.0/10-loud.sh.log";
  EXPECT_GT(fs::file_size(log), 33554432u + 200000u * 20u) << "the log has all the output";
  const std::string tail =
      journal_query("SELECT output_tail FROM step_runs WHERE step='10-loud.sh'");
  EXPECT_LT(tail.size(), 16u * 1024) << "the journal keeps a bounded tail";
  EXPECT_NE(tail.find("x... (65536 bytes)"), std::string::npos)
      << "the 32 MB line comes in 64 KiB pieces, each cut in the tail";
  const long kib = std::atol(read_file(hwm).c_str());
  EXPECT_GT(kib, 0);
  EXPECT_LT(kib, 32 * 1024) << "rehearse's peak memory (KiB) grew with the output";
}

// The top layer on a small filesystem: a step filling it fails with ENOSPC,
// rehearse names the full disk, the rollback frees the space, nothing
// committed is lost, the mount stays usable, and the next run works.
TEST_F(Rel, FullDiskFailsTheStepNamingTheCauseAndRecovers) {
  const std::string store = ws() + "/.rehearse/store";
  mkdirs(store);
  ASSERT_EQ(::mount("tmpfs", store.c_str(), "tmpfs", 0, "size=24m"), 0) << strerror(errno);
  TmpfsGuard guard{[&] {
                     if (mounted()) rehearse({"umount"});
                   },
                   store};
  step("1.0/10-keep.sh",
       "#!/bin/sh\nset -e\nhead -c 1048576 /dev/urandom > keep.bin\nsync keep.bin\n", true);
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  const std::string keep = read_file(mnt("keep.bin"));
  ASSERT_EQ(keep.size(), 1048576u);

  step("1.1/10-fill.sh", "#!/bin/sh\nset -e\nhead -c 100000000 /dev/zero > big.bin\n", true);
  CliResult r = rehearse({"run"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  std::string line = last_line(r.err);
  EXPECT_NE(line.find("failed at step 10-fill.sh"), std::string::npos) << r.err;
  EXPECT_NE(line.find("the disk holding " + store + " is full"), std::string::npos) << r.err;
  EXPECT_NE(journal_query("SELECT error FROM step_runs WHERE step='10-fill.sh'").find("is full"),
            std::string::npos);
  ASSERT_TRUE(mounted());
  EXPECT_EQ(read_file(mnt("keep.bin")), keep) << "committed data is intact and readable";
  if (line.find("rolled back to 1.0") == std::string::npos) {
    // cowfs cannot rewind a store whose disk is 100% full (it writes its
    // layer list before dropping layers; reported to the cowfs owner): the
    // rollback stays pending, the message says so, and freeing space by hand
    // (here: deleting the new file through the mount) lets the next run
    // finish it.
    EXPECT_NE(line.find("the rollback to 1.0 did not finish"), std::string::npos) << r.err;
    EXPECT_TRUE(parse(status_json())["needs_recovery"].as_bool());
    ASSERT_TRUE(fs::remove(mnt("big.bin")));
  }
  {
    // Space comes back asynchronously: a rolled-back layer goes to the
    // store's trash, which cowfs purges in the background, and a file
    // deleted through the mount is freed once the kernel forgets it.
    ASSERT_TRUE(wait_until(
        [&] {
          struct statvfs sv {};
          return ::statvfs(store.c_str(), &sv) == 0 && sv.f_bavail * sv.f_frsize > (8u << 20);
        },
        30s))
        << "the space of the rolled-back or deleted file never came back";
  }
  write_file(mnt("after.txt"), "the mount still works");
  EXPECT_EQ(read_file(mnt("after.txt")), "the mount still works");

  step("1.1/10-fill.sh", "#!/bin/sh\nset -e\nhead -c 2000000 /dev/zero > big.bin\n", true);
  CliResult again = rehearse({"run"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(fs::file_size(mnt("big.bin")), 2000000u);
  EXPECT_FALSE(fs::exists(mnt("after.txt"))) << "the top of the failed 1.1 was rolled back";
  EXPECT_EQ(read_file(mnt("keep.bin")), keep);
}

// `status` says when the data's own version table and the journal disagree.
TEST_F(Rel, StatusReportsADisagreementBetweenDataAndJournal) {
  write_mini_steps();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(mnt("data/app.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE _rehearse_version SET version='0.9'", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.2");
  EXPECT_EQ(st["data_version"].as_string(), "0.9");
  EXPECT_TRUE(st["version_disagreement"].as_bool());
  CliResult text = rehearse({"status"});
  EXPECT_NE(text.out.find("0.9  <- DISAGREES with the journal"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rehearse stamp V"), std::string::npos) << text.out;
}

// --in-place on a plain copy of the data: a kill -9 mid-increment, then the
// next --in-place run resumes; nothing is mounted, every item runs once.
TEST_F(Rel, InPlaceRunResumesAfterKill) {
  TempDir place("rehearse-inplace");
  const std::string data = place.sub("data-copy");
  ASSERT_EQ(std::system(("cp -a " + lower() + " " + data).c_str()), 0);
  const std::string release = place.sub("release");
  const std::string s = place.sub("steps");
  mkdirs(s + "/1.0");
  mkdirs(s + "/1.1");
  write_file(s + "/1.0/10-schema.sql",
             "CREATE TABLE batch_log(step TEXT, lo INTEGER, hi INTEGER, UNIQUE(step, lo));\n");
  write_file(s + "/1.0/20-items.sh", items_step(release), 0755);
  write_file(s + "/1.1/10-batch.sql",
             "-- rehearse:batch table=content key=id size=25000\n"
             "INSERT INTO batch_log(step, lo, hi) VALUES('b', :lo, :hi);\n");
  auto cli = [&](const Strings& args) {
    Strings a = {REHEARSE_BIN, "-C", place.path()};
    a.insert(a.end(), args.begin(), args.end());
    return a;
  };
  {
    Background init(cli({"init", "--lower", data, "--mountpoint", "mnt", "--steps", "steps",
                         "--sqlite", "data/app.db"}));
    ASSERT_EQ(init.wait().exit_code, 0);
  }
  {
    Background run(cli({"run", "--in-place", "--yes", "--json"}));
    ASSERT_TRUE(wait_until([&] { return waiting(run, release); }, 60s)) << run.out();
    run.kill9();
  }
  EXPECT_EQ(read_file(data + "/items.txt"), "item 0\nitem 1\nitem 2\nitem 3\n");
  write_file(release, "");
  Background resume(cli({"run", "--in-place", "--yes", "--json"}));
  CliResult r = resume.wait();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("resuming increment 1.0"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(data + "/items.txt"), kTenItems);
  const std::string db = data + "/data/app.db";
  EXPECT_EQ(sqlite_query(db, "SELECT count(*) || '/' || count(DISTINCT lo) FROM batch_log"), "4/4");
  EXPECT_EQ(sqlite_query(db, "SELECT version FROM _rehearse_version"), "1.1");
  const std::string journal = place.sub(".rehearse/journal.db");
  EXPECT_EQ(sqlite_query(journal,
                         "SELECT group_concat(version || ':' || state || ':' || layer) "
                         "FROM (SELECT * FROM applied ORDER BY version)"),
            "1.0:applied:,1.1:applied:");
  EXPECT_FALSE(fs::exists(place.sub(".rehearse/store/layers"))) << "no overlay in place";
}

}  // namespace
}  // namespace rehearse_test
