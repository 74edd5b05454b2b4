// End-to-end: `rehearse bisect -- CMD` on a workspace of five increments
// where the third (1.2) breaks a check. It names 1.2, runs no step, and
// leaves the workspace as it was (the same layers, the same files, mounted).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;

class Bisect : public RehearseE2E {
 protected:
  // 1.0 a table, 1.1..1.4 an append to calls.txt each; 1.2 also empties
  // the titles of every 1000th row, which the check finds.
  void write_five_increments() {
    step("1.0/10-schema.sql", "CREATE TABLE notes(v TEXT);\n");
    for (const char* v : {"1.1", "1.2", "1.3", "1.4"}) {
      step(std::string(v) + "/20-count.sh", "#!/bin/sh\necho \"$REHEARSE_VERSION\" >> calls.txt\n",
           true);
    }
    step("1.2/10-titles.sql", "UPDATE content SET title = '' WHERE id % 1000 = 0;\n");
    check_ = ws() + "/check.sh";
    write_file(check_,
               "#!/bin/sh\n"
               "echo \"checking $REHEARSE_VERSION\"\n"
               "n=$(sqlite3 \"$REHEARSE_SQLITE\" \"SELECT count(*) FROM content WHERE title = ''\")"
               " || exit 2\n"
               "echo \"$REHEARSE_VERSION\" >> checked.txt\n"  // a write the probe must not keep
               "[ \"$n\" = 0 ] || { echo \"$n rows have an empty title\" >&2; exit 1; }\n",
               0755);
  }

  // Everything that says what the workspace is: the store's layers (ids and
  // labels), the files in the mount, and the journal's runs and steps.
  std::string layers() {
    std::string out;
    for (const auto& line : split_lines(read_file(ws() + "/.rehearse/store/stack"))) {
      out += line.substr(0, line.find(' ')) + line.substr(line.rfind(' ')) + "\n";
    }
    return out;
  }
  std::map<std::string, std::string> files() { return manifest(mnt()); }
  std::string journal_counts() {
    return journal_query(
        "SELECT (SELECT count(*) FROM step_runs) || '/' || (SELECT count(*) FROM runs) || '/' || "
        "(SELECT count(*) FROM commits) || '/' || (SELECT group_concat(version) FROM applied)");
  }

  static std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t end = s.find('\n', pos);
      if (end == std::string::npos) end = s.size();
      if (end > pos) out.push_back(s.substr(pos, end - pos));
      pos = end + 1;
    }
    return out;
  }

  std::string check_;
};

TEST_F(Bisect, NamesTheIncrementThatBrokeTheCheckWithoutRunningAStep) {
  write_five_increments();
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  // Something uncheckpointed in the top, which must survive.
  write_file(mnt("scratch.txt"), "top layer\n");
  const std::string layers_before = layers();
  const auto files_before = files();
  const std::string journal_before = journal_counts();
  ASSERT_EQ(split_lines(layers_before).size(), 6u) << layers_before;

  CliResult b = rehearse({"bisect", "--", check_});
  ASSERT_EQ(b.exit_code, 0) << b.describe();
  EXPECT_NE(b.out.find("first bad increment: 1.2 (the check passes after 1.1 and fails after "
                       "1.2)"),
            std::string::npos)
      << b.describe();
  EXPECT_NE(b.out.find("first error: 100 rows have an empty title"), std::string::npos)
      << b.describe();
  EXPECT_NE(b.out.find("steps of 1.2: 10-titles.sql 20-count.sh"), std::string::npos)
      << b.describe();
  // Probes: the bad end, the good end, then at most 3 more for 6 points.
  const size_t probes = std::count(b.err.begin(), b.err.end(), '\n');
  EXPECT_GE(probes, 3u) << b.err;
  EXPECT_LE(probes, 5u) << b.err;
  EXPECT_NE(b.err.find("after before the first increment: passes"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("after 1.4: fails: 100 rows have an empty title"), std::string::npos)
      << b.err;

  // No step ran, nothing was recorded as applied or committed.
  EXPECT_EQ(journal_counts(), journal_before);
  // The same layers, the same top, the same files, mounted.
  EXPECT_TRUE(mounted());
  EXPECT_EQ(layers(), layers_before);
  EXPECT_EQ(files(), files_before);
  EXPECT_FALSE(fs::exists(mnt("checked.txt")));
  EXPECT_EQ(read_file(mnt("calls.txt")), "1.1\n1.2\n1.3\n1.4\n");
  EXPECT_FALSE(fs::exists(ws() + "/.rehearse/store/bisect"));

  // --good/--bad narrow the range: after 1.2 and 1.3 it fails already.
  CliResult narrow = rehearse({"bisect", "--good", "1.0", "--bad", "1.2", "--", check_});
  EXPECT_EQ(narrow.exit_code, 0) << narrow.describe();
  EXPECT_NE(narrow.out.find("first bad increment: 1.2"), std::string::npos) << narrow.describe();
  CliResult too_late = rehearse({"bisect", "--good", "1.3", "--", check_});
  EXPECT_EQ(too_late.exit_code, 1) << too_late.describe();
  EXPECT_NE(too_late.err.find("the check fails already after 1.3"), std::string::npos)
      << too_late.describe();
  CliResult passes = rehearse({"bisect", "--", "true"});
  EXPECT_EQ(passes.exit_code, 1) << passes.describe();
  EXPECT_NE(passes.err.find("passes after 1.4"), std::string::npos) << passes.describe();
  EXPECT_EQ(journal_counts(), journal_before);
  EXPECT_EQ(layers(), layers_before);
  EXPECT_EQ(files(), files_before);
  EXPECT_TRUE(mounted());
}

TEST_F(Bisect, RefusesAnUnmountedOrBusyWorkspaceAndBadInputWithOneLine) {
  write_five_increments();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  const std::string layers_before = layers();
  auto one_line = [](const CliResult& r) { return std::count(r.err.begin(), r.err.end(), '\n'); };

  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"bisect", "--good", "x", "--", "true"},
        {"bisect", "--bad", "9.9", "--", "true"},
        {"bisect", "--good", "1.3", "--bad", "1.1", "--", "true"}}) {
    CliResult r = rehearse(bad);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_EQ(one_line(r), 1) << r.describe();
  }

  // A process using the mount: refused, nothing changed.
  {
    int fd = ::open(mnt("calls.txt").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    CliResult busy = rehearse({"bisect", "--", check_});
    ::close(fd);
    EXPECT_EQ(busy.exit_code, 1) << busy.describe();
    EXPECT_EQ(one_line(busy), 1) << busy.describe();
    EXPECT_NE(busy.err.find("in use"), std::string::npos) << busy.describe();
    EXPECT_TRUE(mounted());
    EXPECT_EQ(layers(), layers_before);
  }

  // Another rehearse holding the workspace: refused, nothing changed.
  {
    int fd = ::open((ws() + "/.rehearse/lock").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    CliResult busy = rehearse({"bisect", "--", check_});
    ::close(fd);
    EXPECT_EQ(busy.exit_code, 1) << busy.describe();
    EXPECT_EQ(one_line(busy), 1) << busy.describe();
    EXPECT_NE(busy.err.find("the workspace is busy"), std::string::npos) << busy.describe();
    EXPECT_TRUE(mounted());
    EXPECT_EQ(layers(), layers_before);
  }

  ASSERT_EQ(rehearse({"umount"}).exit_code, 0);
  CliResult unmounted = rehearse({"bisect", "--", check_});
  EXPECT_EQ(unmounted.exit_code, 1) << unmounted.describe();
  EXPECT_EQ(one_line(unmounted), 1) << unmounted.describe();
  EXPECT_NE(unmounted.err.find("not mounted"), std::string::npos) << unmounted.describe();
  EXPECT_FALSE(mounted());
  EXPECT_EQ(layers(), layers_before);
}

TEST_F(Bisect, AKilledBisectIsPutBackByTheNextCommand) {
  write_five_increments();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  const std::string layers_before = layers();
  const auto files_before = files();
  // The check hangs at its first probe (1.4, the bad end); kill -9 then.
  const std::string hang = ws() + "/hang.sh";
  const std::string marker = ws() + "/hanging";
  write_file(hang,
             "#!/bin/sh\necho $$ > " + marker + ".new && mv " + marker + ".new " + marker +
                 "\nexec sleep 600\n",
             0755);
  {
    Background bg(argv({"bisect", "--", hang}));
    ASSERT_TRUE(wait_until([&] { return fs::exists(marker); }, std::chrono::seconds(60)))
        << bg.err();
    const std::string pid = read_file(marker);
    bg.kill9();
    bg.wait();
    // The check dies with it (its parent-death signal); until it has exited
    // it keeps its working directory in the mount.
    const std::string cwd = "/proc/" + pid.substr(0, pid.find('\n')) + "/cwd";
    ASSERT_TRUE(wait_until(
        [&] {
          std::error_code ec;
          (void)fs::read_symlink(cwd, ec);
          return static_cast<bool>(ec);
        },
        std::chrono::seconds(30)));
  }
  EXPECT_TRUE(fs::exists(ws() + "/.rehearse/store/bisect"));
  EXPECT_NE(layers(), layers_before);  // the probe's view is what is mounted
  CliResult m = rehearse({"mount"});
  EXPECT_EQ(m.exit_code, 0) << m.describe();
  EXPECT_NE(m.err.find("put back the layers an interrupted bisect had set aside"),
            std::string::npos)
      << m.describe();
  EXPECT_FALSE(fs::exists(ws() + "/.rehearse/store/bisect"));
  EXPECT_EQ(layers(), layers_before);
  EXPECT_TRUE(mounted());
  EXPECT_EQ(files(), files_before);
}

TEST_F(Bisect, CtrlCStopsTheCheckAndLeavesTheWorkspaceAsItWas) {
  write_five_increments();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  const std::string layers_before = layers();
  const auto files_before = files();
  const std::string hang = ws() + "/hang.sh";
  const std::string marker = ws() + "/hanging";
  write_file(hang, "#!/bin/sh\ntouch " + marker + "\nsleep 600\n", 0755);
  Background bg(argv({"bisect", "--", hang}));
  ASSERT_TRUE(wait_until([&] { return fs::exists(marker); }, std::chrono::seconds(60))) << bg.err();
  bg.signal(SIGINT);
  CliResult r = bg.wait();
  EXPECT_EQ(r.exit_code, 130) << r.describe();
  EXPECT_NE(r.err.find("interrupted; the workspace is as it was"), std::string::npos)
      << r.describe();
  EXPECT_FALSE(fs::exists(ws() + "/.rehearse/store/bisect"));
  EXPECT_EQ(layers(), layers_before);
  EXPECT_TRUE(mounted());
  EXPECT_EQ(files(), files_before);
}

TEST_F(Bisect, AStampedVersionIsACheckpointWithoutSteps) {
  write_five_increments();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  CliResult st = rehearse({"stamp", "1.4"});
  ASSERT_EQ(st.exit_code, 0) << st.describe();
  CliResult b = rehearse({"bisect", "--", check_});
  EXPECT_EQ(b.exit_code, 0) << b.describe();
  EXPECT_NE(b.out.find("first bad increment: 1.4"), std::string::npos) << b.describe();
  EXPECT_NE(b.out.find("steps of 1.4: none recorded (a stamped version)"), std::string::npos)
      << b.describe();
}

}  // namespace
}  // namespace rehearse_test
