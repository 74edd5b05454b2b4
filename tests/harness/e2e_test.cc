// End-to-end tests of the rehearse CLI on a generated snapshot (see
// e2e_fixture.h), with real cowfs mounts over a read-only lower.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::vector<std::string> versions_of(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back((*rehearse::json::parse(l))["version"].as_string());
  return out;
}

rehearse::json::Value parse(const std::string& s) {
  auto v = rehearse::json::parse(s);
  EXPECT_TRUE(v) << s;
  return v ? *v : rehearse::json::Value{};
}

using Strings = std::vector<std::string>;

TEST_F(RehearseE2E, FullRun) {
  write_standard_steps();
  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(versions_of(events(r.out, "increment_committed")), (Strings{"1.0", "1.1", "1.2"}));
  EXPECT_FALSE(events(r.out, "progress").empty());
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.2");
  EXPECT_EQ(st["data_version"].as_string(), "1.2");
  EXPECT_FALSE(st["version_disagreement"].as_bool(true));
  EXPECT_TRUE(st["pending"].items.empty());
  EXPECT_EQ(query("SELECT count(*) FROM content WHERE words = length(body)"),
            std::to_string(kRows));
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE name='content_words'"), "1");
  EXPECT_EQ(read_file(mnt("marker.txt")), "upgraded by 20-marker.sh\n");
  EXPECT_FALSE(fs::exists(mnt("blobs/blob-1.bin")));
  EXPECT_TRUE(fs::exists(mnt("blobs-v2/blob-1.bin")));
  EXPECT_TRUE(fs::exists(lower() + "/blobs/blob-1.bin"));

  CliResult rep = rehearse({"report", "--json"});
  ASSERT_EQ(rep.exit_code, 0) << rep.describe();
  auto report = parse(rep.out);
  ASSERT_EQ(report["increments"].items.size(), 3u);
  EXPECT_GT(report["total_ms"].as_int(), 0);
  bool batch_rate = false;
  for (const auto& s : report["increments"].items[1]["steps"].items) {
    if (s["kind"].as_string() == "batch") {
      EXPECT_EQ(s["items"].as_int(), kRows);
      batch_rate = s["per_second"].number > 0;
    }
  }
  EXPECT_TRUE(batch_rate) << rep.out;
  CliResult text = rehearse({"report"});
  std::cerr << text.out;  // the durations, for whoever reads the test log
  EXPECT_NE(text.out.find("estimated production downtime"), std::string::npos) << text.out;

  CliResult d = rehearse({"diff", "1.1", "--json"});
  ASSERT_EQ(d.exit_code, 0) << d.describe();
  auto diff = parse(d.out);
  // The step moves every blob: renamed, neither added nor deleted.
  EXPECT_EQ(diff["renamed"].items.size(), static_cast<size_t>(kBlobs)) << d.out.substr(0, 500);
  EXPECT_EQ(diff["added"].items.size(), 0u) << d.out.substr(0, 500);
  EXPECT_EQ(diff["deleted"].items.size(), 0u) << d.out.substr(0, 500);
  CliResult h = rehearse({"history", "--json"});
  auto hist = parse(h.out);
  ASSERT_EQ(hist["runs"].items.size(), 1u);
  EXPECT_EQ(hist["runs"].items[0]["outcome"].as_string(), "ok");
}

TEST_F(RehearseE2E, FailingStepRollsBackAndTheFixResumesThere) {
  write_standard_steps();
  step("1.2/15-fail.sh",
       "#!/bin/sh\necho 'some output'\necho 'boom: the data is wrong' >&2\n"
       "echo 'second line' >&2\nexit 3\n",
       true);
  CliResult r = rehearse({"run"});
  ASSERT_NE(r.exit_code, 0) << r.describe();
  std::string last = r.err.substr(r.err.rfind("rehearse: ", r.err.size() - 2));
  EXPECT_NE(last.find("1.2"), std::string::npos) << r.err;
  EXPECT_NE(last.find("15-fail.sh"), std::string::npos) << r.err;
  EXPECT_NE(last.find("boom: the data is wrong"), std::string::npos) << r.err;
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.1");
  EXPECT_EQ(st["data_version"].as_string(), "1.1");
  // 1.2's first step ran, and was rolled back with the increment.
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE name='content_words'"), "0");

  step("1.2/15-fail.sh", "#!/bin/sh\necho fixed\n", true);
  CliResult again = rehearse({"run", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(versions_of(events(again.out, "increment_started")), (Strings{"1.2"}));
  EXPECT_EQ(parse(status_json())["version"].as_string(), "1.2");
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE name='content_words'"), "1");
}

TEST_F(RehearseE2E, KillDuringABatchedStepResumesWithoutRedoingBatches) {
  // 5,000 windows: in WAL mode a window takes tens of microseconds, and the
  // kill must land between the first report after a window (progress is
  // reported ten times a second) and the last window.
  const int size = 20;
  write_standard_steps(size);
  int64_t killed_at = 0;
  {
    Background run(argv({"run", "--json"}));
    bool mid = wait_until(
        [&] {
          for (const auto& l : events(run.out(), "progress")) {
            auto v = parse(l);
            // The first report (0) comes before the step enters WAL mode.
            const int64_t done = v["done"].as_int();
            if (v["step"].as_string() == "10-words.sql" && done > 0 && done < kRows) {
              killed_at = done;
              return true;
            }
          }
          return false;
        },
        120s);
    ASSERT_TRUE(mid) << "never reached the middle of the batched step: " << run.out();
    run.kill9();
  }
  ASSERT_LT(killed_at, kRows);
  auto st = parse(status_json());
  EXPECT_EQ(st["in_progress"].as_string(), "1.1");
  EXPECT_EQ(st["version"].as_string(), "1.0");
  // Killed in the batched step's WAL mode, with the mode to return to.
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query("SELECT journal_mode FROM _rehearse_batch_mode"), "delete");

  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(versions_of(events(r.out, "increment_started")), (Strings{"1.1", "1.2"}));
  int64_t first_done = -1;
  for (const auto& l : events(r.out, "progress")) {
    auto v = parse(l);
    if (v["step"].as_string() == "10-words.sql") {
      first_done = v["done"].as_int();
      break;
    }
  }
  EXPECT_GE(first_done, killed_at) << "the batched step started over";
  const int windows = kRows / size;
  EXPECT_EQ(query("SELECT count(*) FROM batch_log WHERE step='words'"), std::to_string(windows));
  EXPECT_EQ(query("SELECT count(DISTINCT lo) FROM batch_log WHERE step='words'"),
            std::to_string(windows));
  EXPECT_EQ(query("SELECT count(*) FROM content WHERE words = length(body)"),
            std::to_string(kRows));
  // The resumed step switched the database back.
  EXPECT_EQ(query("PRAGMA journal_mode"), "delete");
  EXPECT_FALSE(std::filesystem::exists(mnt("data/app.db-wal")));
}

TEST_F(RehearseE2E, EditedStepRewindsAndRerunsFromItsIncrement) {
  write_standard_steps();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  step("1.1/20-move-blobs.sh",
       read_file(steps() + "/1.1/20-move-blobs.sh") + "# edited: same work\n", true);
  CliResult refused = rehearse({"run", "--no-rewind-changed"});
  EXPECT_EQ(refused.exit_code, 1) << refused.describe();
  EXPECT_NE(refused.err.find("1.1"), std::string::npos) << refused.err;
  auto plan = rehearse({"status", "--json"});
  EXPECT_NE(plan.out.find("step 20-move-blobs.sh changed"), std::string::npos) << plan.out;

  CliResult r = rehearse({"run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("20-move-blobs.sh changed"), std::string::npos) << r.out;
  EXPECT_EQ(versions_of(events(r.out, "increment_started")), (Strings{"1.1", "1.2"}));
  EXPECT_EQ(parse(status_json())["version"].as_string(), "1.2");
  // 1.1 ran again from the checkpoint of 1.0: each window exactly once.
  EXPECT_EQ(query("SELECT count(*) FROM batch_log"), std::to_string(kRows / 5000));
}

TEST_F(RehearseE2E, RerunRewindResetStamp) {
  write_standard_steps();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);

  CliResult rr = rehearse({"rerun", "1.1", "--json"});
  ASSERT_EQ(rr.exit_code, 0) << rr.describe();
  EXPECT_EQ(versions_of(events(rr.out, "increment_started")), (Strings{"1.1"}));
  auto st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.1");
  ASSERT_EQ(st["pending"].items.size(), 1u);
  EXPECT_EQ(st["pending"].items[0].as_string(), "1.2");

  CliResult rw = rehearse({"rewind", "1.0"});
  ASSERT_EQ(rw.exit_code, 0) << rw.describe();
  st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.0");
  EXPECT_EQ(st["data_version"].as_string(), "1.0");
  EXPECT_TRUE(fs::exists(mnt("marker.txt")));
  EXPECT_FALSE(fs::exists(mnt("blobs-v2")));
  EXPECT_TRUE(fs::exists(mnt("blobs/blob-1.bin")));

  CliResult rs = rehearse({"reset"});
  ASSERT_EQ(rs.exit_code, 0) << rs.describe();
  st = parse(status_json());
  EXPECT_EQ(st["version"].kind, rehearse::json::Value::kNull);
  EXPECT_EQ(st["data_version"].kind, rehearse::json::Value::kNull);
  EXPECT_EQ(query("SELECT count(*) FROM pragma_table_info('content') WHERE name='words'"), "0");
  EXPECT_FALSE(fs::exists(mnt("marker.txt")));

  CliResult sp = rehearse({"stamp", "1.1"});
  ASSERT_EQ(sp.exit_code, 0) << sp.describe();
  EXPECT_NE(sp.err.find("warning"), std::string::npos) << sp.err;
  st = parse(status_json());
  EXPECT_EQ(st["version"].as_string(), "1.1");
  EXPECT_TRUE(st["stamped"].as_bool());
  EXPECT_EQ(st["data_version"].as_string(), "1.1");
  CliResult below = rehearse({"rerun", "1.0"});
  EXPECT_EQ(below.exit_code, 1) << below.describe();
  EXPECT_NE(below.err.find("stamped"), std::string::npos) << below.err;
}

TEST_F(RehearseE2E, ConcurrentRunIsRefusedNamingThePid) {
  const std::string release = ws() + "/release";
  step("1.0/10-wait.sh",
       "#!/bin/sh\ni=0\nwhile [ ! -e " + release +
           " ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 1; done\nexit 0\n",
       true);
  Background first(argv({"run", "--json"}));
  ASSERT_TRUE(wait_until([&] { return !events(first.out(), "step_started").empty(); }, 60s))
      << first.out();
  for (const auto& cmd : std::vector<Strings>{{"run"}, {"reset"}, {"rewind", "1.0"}}) {
    CliResult second = rehearse(cmd);
    EXPECT_EQ(second.exit_code, 1) << second.describe();
    EXPECT_NE(second.err.find("pid " + std::to_string(first.pid())), std::string::npos)
        << second.err;
  }
  write_file(release, "");
  CliResult r = first.wait();
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// Every refusal: non-zero exit, one line naming the problem, and nothing
// happened (no run recorded, nothing mounted).
TEST_F(RehearseE2E, RefusalsChangeNothing) {
  auto expect_refused = [&](const Strings& args, const std::string& needle) {
    CliResult r = rehearse(args);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(mounted()) << "mounted by a refused command: " << args[0];
  };
  step("1.0/10-a.sql", "SELECT 1;");
  step("1.010/10-a.sql", "SELECT 1;");
  step("1.00/10-a.sql", "SELECT 1;");  // 1.00 has the value of 1.0
  expect_refused({"run"}, "duplicate");
  fs::remove_all(steps() + "/1.010");
  fs::remove_all(steps() + "/1.00");
  step("1.x/10-a.sql", "SELECT 1;");
  expect_refused({"run"}, steps() + "/1.x");
  fs::remove_all(steps() + "/1.x");
  fs::create_directories(steps() + "/2");
  expect_refused({"run"}, steps() + "/2");
  step("2/notes.txt", "hello");
  expect_refused({"run"}, steps() + "/2/notes.txt");
  step("2/notes.txt", "-- rehearse:batch table=content size=10\nSELECT :lo;");
  fs::rename(steps() + "/2/notes.txt", steps() + "/2/10-b.sql");
  expect_refused({"run"}, steps() + "/2/10-b.sql");
  fs::remove_all(steps() + "/2");
  expect_refused({"run", "--to", "one"}, "--to");
  expect_refused({"rerun", "9.9"}, "no increment 9.9");
  expect_refused({"rewind", "1.0"}, "not applied");
  expect_refused({"stamp", "x"}, "not a version");
  expect_refused({"run", "--in-place"}, "--in-place");
  expect_refused({"init", "--lower", lower(), "--mountpoint", "m2", "--steps", "steps"},
                 "already exists");
  auto h = parse(rehearse({"history", "--json"}).out);
  // rerun/rewind take the lock and record themselves; the step refusals do not.
  for (const auto& run : h["runs"].items) EXPECT_NE(run["command"].as_string(), "run");

  TempDir other("rehearse-e2e-init");
  auto init = [&](const Strings& extra) {
    Strings a = {REHEARSE_BIN, "-C", other.path(), "init", "--steps", "s"};
    a.insert(a.end(), extra.begin(), extra.end());
    Background b(a);
    return b.wait();
  };
  CliResult missing = init({"--lower", other.sub("nope"), "--mountpoint", "m"});
  EXPECT_EQ(missing.exit_code, 2) << missing.describe();
  EXPECT_NE(missing.err.find(other.sub("nope")), std::string::npos) << missing.err;
  CliResult inside = init({"--lower", lower(), "--mountpoint", lower() + "/data"});
  EXPECT_EQ(inside.exit_code, 2) << inside.describe();
  EXPECT_NE(inside.err.find("overlaps lower"), std::string::npos) << inside.err;
  CliResult abs = init({"--lower", lower(), "--mountpoint", "m", "--sqlite", "/abs.db"});
  EXPECT_EQ(abs.exit_code, 2) << abs.describe();
  EXPECT_FALSE(fs::exists(other.sub("rehearse.toml")));
  EXPECT_FALSE(fs::exists(other.sub(".rehearse")));
}

TEST_F(RehearseE2E, HelpForEveryCommand) {
  for (const char* c : {"init", "mount", "umount", "status", "plan", "run", "rerun", "rewind",
                        "reset", "diff", "history", "report", "stamp", "exec"}) {
    CliResult r = rehearse({c, "--help"});
    EXPECT_EQ(r.exit_code, 0) << c << ": " << r.describe();
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << c;
  }
}

TEST_F(RehearseE2E, ExecRunsInTheMount) {
  CliResult r = rehearse({"exec", "--", "sh", "-c", "pwd; echo $REHEARSE_SQLITE; ls data"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find(mnt() + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("app.db"), std::string::npos) << r.out;
  EXPECT_TRUE(mounted());
}

}  // namespace
}  // namespace rehearse_test
