// End-to-end: `rehearse report --json/--html/--compare` after a small
// rehearsal with real cowfs mounts.
#include <filesystem>

#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST_F(RehearseE2E, ReportJsonHtmlAndCompare) {
  write_mini_steps();
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  CliResult rep = rehearse({"report", "--json"});
  ASSERT_EQ(rep.exit_code, 0) << rep.describe();
  auto v = rehearse::json::parse(rep.out);
  ASSERT_TRUE(v) << rep.out;
  const auto& incs = (*v)["increments"].items;
  ASSERT_EQ(incs.size(), 3u) << rep.out;
  int64_t sum = 0;
  for (const auto& i : incs) {
    sum += i["duration_ms"].as_int();
    // Every increment's checkpoint is applied: its changes are there.
    ASSERT_EQ(i["diff"].kind, rehearse::json::Value::kObject) << rep.out;
    EXPECT_EQ(i["run_id"].as_int(), 1);
    EXPECT_FALSE(i["resumed"].as_bool(true));
    for (const auto& s : i["steps"].items) EXPECT_EQ(s["checksum"].as_string().size(), 16u);
  }
  // 20-count.sh creates calls.txt in 1.0 and appends to it in 1.1.
  EXPECT_GE(incs[0]["diff"]["added"].as_int(), 1) << rep.out;  // calls.txt
  EXPECT_GE(incs[1]["diff"]["changed"].as_int(), 1) << rep.out;
  EXPECT_EQ((*v)["total_ms"].as_int(), sum);
  EXPECT_EQ((*v)["downtime_ms"].as_int(), sum);
  EXPECT_EQ((*v)["environment"]["mirror"].as_string(), lower());
  EXPECT_FALSE((*v)["environment"]["host"].as_string().empty());
  EXPECT_EQ((*v)["history"].items.size(), 1u);

  const std::string page = ws() + "/report.html";
  CliResult h = rehearse({"report", "--html", page});
  ASSERT_EQ(h.exit_code, 0) << h.describe();
  std::string html = read_file(page);
  EXPECT_EQ(count(html, "<g class=\"increment\""), 3u);
  EXPECT_NE(html.find("id=\"downtime\" data-ms=\"" + std::to_string(sum) + "\""),
            std::string::npos);
  for (const char* ver : {"1.0", "1.1", "1.2"}) {
    EXPECT_NE(html.find("data-version=\"" + std::string(ver) + "\""), std::string::npos) << ver;
  }
  EXPECT_FALSE(fs::exists(page + ".tmp"));

  // A second rehearsal of 1.2 alone, compared with the first run.
  CliResult rr = rehearse({"rerun", "1.2"});
  ASSERT_EQ(rr.exit_code, 0) << rr.describe();
  CliResult c = rehearse({"report", "--json", "--compare", "1"});
  ASSERT_EQ(c.exit_code, 0) << c.describe();
  auto cv = rehearse::json::parse(c.out);
  ASSERT_TRUE(cv);
  const auto& rows = (*cv)["compare"]["increments"].items;
  ASSERT_EQ(rows.size(), 3u) << c.out;
  EXPECT_EQ((*cv)["increments"].items[2]["run_id"].as_int(), 2) << c.out;
  EXPECT_EQ(rows[2]["difference_ms"].as_int(),
            rows[2]["duration_ms"].as_int() - rows[2]["other_duration_ms"].as_int());
  CliResult ct = rehearse({"report", "--compare", "1"});
  EXPECT_NE(ct.out.find("compared with run #1"), std::string::npos) << ct.out;

  // Bad input: one line, exit 2.
  for (const char* bad : {"99", "abc", "0"}) {
    CliResult b = rehearse({"report", "--compare", bad});
    EXPECT_EQ(b.exit_code, 2) << b.describe();
    EXPECT_EQ(count(b.err, "\n"), 1u) << b.err;
  }
  CliResult nowhere = rehearse({"report", "--html", ws() + "/no/such/dir/r.html"});
  EXPECT_EQ(nowhere.exit_code, 1) << nowhere.describe();
  EXPECT_EQ(count(nowhere.err, "\n"), 1u) << nowhere.err;
}

}  // namespace
}  // namespace rehearse_test
