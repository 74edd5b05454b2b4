// `rehearse run --progress json`: one JSON object per line per event on
// stdout, for CI dashboards; without it stdout carries no events.
#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

std::vector<rehearse::json::Value> lines(const std::string& out) {
  std::vector<rehearse::json::Value> v;
  size_t start = 0;
  while (start < out.size()) {
    size_t nl = out.find('\n', start);
    if (nl == std::string::npos) nl = out.size();
    std::string line = out.substr(start, nl - start);
    auto j = rehearse::json::parse(line);
    EXPECT_TRUE(j && j->kind == rehearse::json::Value::kObject) << "not one JSON object: " << line;
    if (j) v.push_back(*j);
    start = nl + 1;
  }
  return v;
}

std::vector<std::string> names(const std::vector<rehearse::json::Value>& ev) {
  std::vector<std::string> out;
  for (const auto& e : ev) out.push_back(e["event"].as_string());
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST_F(RehearseE2E, RunProgressJson) {
  write_mini_steps();
  CliResult r = rehearse({"run", "--progress", "json", "--to", "1.1"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto ev = lines(r.out);
  auto n = names(ev);
  for (const char* e : {"increment_started", "step_started", "progress", "step_finished",
                        "increment_committed", "run_finished"}) {
    EXPECT_TRUE(has(n, e)) << e << "\n" << r.out;
  }
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back()["event"].as_string(), "run_finished");
  EXPECT_EQ(ev.back()["outcome"].as_string(), "ok");
  for (const auto& e : ev) {
    if (e["event"].as_string() != "progress") continue;
    EXPECT_EQ(e["version"].as_string(), "1.1");
    EXPECT_EQ(e["total"].as_int(), kRows);
    EXPECT_GE(e["done"].as_int(), 0);
    EXPECT_EQ(e["rate"].kind, rehearse::json::Value::kNumber);
    // eta_s: a number while the rate is known and work is left, else null.
    EXPECT_TRUE(e["eta_s"].kind == rehearse::json::Value::kNumber ||
                e["eta_s"].kind == rehearse::json::Value::kNull);
  }

  // A failing step: a failure event and a failed run.
  step("1.2/20-fail.sh", "#!/bin/sh\necho broken >&2\nexit 3\n", true);
  CliResult f = rehearse({"run", "--progress", "json"});
  EXPECT_EQ(f.exit_code, 1) << f.describe();
  auto fev = lines(f.out);
  auto fn = names(fev);
  EXPECT_TRUE(has(fn, "failure")) << f.out;
  ASSERT_FALSE(fev.empty());
  EXPECT_EQ(fev.back()["event"].as_string(), "run_finished");
  EXPECT_EQ(fev.back()["outcome"].as_string(), "failed");

  // The default stays the terminal progress: nothing on stdout.
  CliResult plain = rehearse({"run", "--progress", "terminal"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_EQ(plain.out, "");
  CliResult bad = rehearse({"run", "--progress", "xml"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
}

}  // namespace
}  // namespace rehearse_test
