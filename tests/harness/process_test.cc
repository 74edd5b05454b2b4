// run_streaming: bounded lines, the deadline, and the process group.
#include "harness/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "tests/harness/test_util.h"

namespace rehearse {
namespace {

using clock_type = std::chrono::steady_clock;

TEST(Process, AnEndlessLineArrivesInBoundedPieces) {
  StreamOptions o;
  o.argv = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; echo; echo done"};
  o.env = environment_with({});
  size_t total = 0, longest = 0, lines = 0;
  std::string last;
  o.on_stdout = [&](const std::string& l) {
    total += l.size();
    longest = std::max(longest, l.size());
    ++lines;
    last = l;
  };
  ProcResult r = run_streaming(o);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(longest, kMaxLineBytes);
  EXPECT_EQ(total, 200000u + 4u);
  EXPECT_EQ(lines, 200000 / kMaxLineBytes + 2);  // 3 full pieces, the rest, "done"
  EXPECT_EQ(last, "done");
}

TEST(Process, TheDeadlineStopsTheChildAndItsGroup) {
  rehearse_test::TempDir tmp;
  const std::string pidfile = tmp.sub("grandchild");
  StreamOptions o;
  // The grandchild ignores nothing but would outlive a plain kill of `sh`.
  o.argv = {"sh", "-c", "sleep 100 & echo $! > " + pidfile + "; wait"};
  o.env = environment_with({});
  o.own_group = true;
  auto t0 = clock_type::now();
  o.deadline = t0 + std::chrono::milliseconds(300);
  ProcResult r = run_streaming(o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.ok());
  EXPECT_LT(clock_type::now() - t0, std::chrono::seconds(5));
  pid_t grandchild = std::stoi(rehearse_test::read_file(pidfile));
  EXPECT_TRUE(rehearse_test::wait_until([&] { return ::kill(grandchild, 0) != 0; },
                                        std::chrono::seconds(5)))
      << "the step's own child outlived the timeout";
}

TEST(Process, NoDeadlineNoTimeout) {
  StreamOptions o;
  o.argv = {"true"};
  o.env = environment_with({});
  ProcResult r = run_streaming(o);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.timed_out);
}

// The child names why a command cannot run, and runs a script without a #!
// line with the shell, as execvp would, though the command is looked up
// before fork and run with execve.
TEST(Process, ACommandThatCannotRunIsNamedAndAScriptWithoutAnInterpreterRuns) {
  StreamOptions o;
  o.argv = {"rehearse-no-such-command-here"};
  o.env = environment_with({});
  std::string err;
  o.on_stderr = [&](const std::string& l) { err += l + "\n"; };
  ProcResult r = run_streaming(o);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_EQ(err, "rehearse: cannot execute the command: No such file or directory\n");

  rehearse_test::TempDir tmp;
  rehearse_test::write_file(tmp.sub("plain"), "echo \"ran $1\"\n", 0755);
  o.argv = {tmp.sub("plain"), "with-arg"};
  std::string out;
  o.on_stdout = [&](const std::string& l) { out += l; };
  err.clear();
  r = run_streaming(o);
  EXPECT_TRUE(r.ok()) << err;
  EXPECT_EQ(out, "ran with-arg");

  o.argv = {tmp.sub("plain")};
  ::chmod(tmp.sub("plain").c_str(), 0644);
  err.clear();
  r = run_streaming(o);
  EXPECT_EQ(r.exit_code, 127);
  // Even root may not execute a file that has no execute bit.
  EXPECT_EQ(err, "rehearse: cannot execute the command: Permission denied\n");
}

}  // namespace
}  // namespace rehearse
