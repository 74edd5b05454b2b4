// Unit tests of the report's data (timeline offsets, failed/resumed marks,
// comparison with an earlier run) and of the HTML page's escaping.
#include "harness/report.h"

#include <gtest/gtest.h>

#include "harness/json.h"
#include "harness/report_html.h"
#include "tests/harness/test_util.h"

namespace rehearse_test {
namespace {

using namespace rehearse;

Increment inc(const std::string& v, std::vector<std::pair<std::string, std::string>> steps) {
  Increment i;
  i.version = *Version::parse(v);
  i.dir = "/steps/" + v;
  for (auto& [name, sum] : steps) {
    Step s;
    s.name = name;
    s.path = i.dir + "/" + name;
    s.kind = name.ends_with(".sql") ? StepKind::kSql : StepKind::kExec;
    s.checksum = sum;
    i.steps.push_back(s);
  }
  return i;
}

void segment(Journal& j, int64_t run, const std::string& v, const std::string& step,
             const std::string& outcome, int64_t ms, int64_t items) {
  int64_t id = j.begin_step_run(run, v, step, step.ends_with(".sql") ? "sql" : "exec", "c", "");
  j.end_step_run(id, outcome, ms, items, outcome == "failed" ? 1 : 0, "", "");
}

// Three runs: run 1 is killed in 1.0's second step, run 2 resumes and
// commits 1.0 then fails 1.1, run 3 commits 1.1.
struct Fixture {
  TempDir tmp;
  Journal j = Journal::open(tmp.sub("j.db"));
  std::vector<Increment> plan = {inc("1.0", {{"10-a.sql", "ca"}, {"20-b.sh", "cb"}}),
                                 inc("1.1", {{"10-c.sql", "c-edited"}}),
                                 inc("1.2", {{"x.sh", "x"}})};
  int64_t r1, r2, r3;
  Fixture() {
    r1 = j.begin_run("run", false);
    segment(j, r1, "1.0", "10-a.sql", "ok", 300, 0);
    j.add_partial("1.0", {"10-a.sql", "sql", "ca", 300, 0, 1, true});
    segment(j, r1, "1.0", "20-b.sh", "interrupted", 400, 40);
    j.add_partial("1.0", {"20-b.sh", "exec", "cb", 400, 40, 1, false});
    j.end_run(r1, "interrupted");
    r2 = j.begin_run("run", false);
    segment(j, r2, "1.0", "20-b.sh", "ok", 600, 60);
    j.add_partial("1.0", {"20-b.sh", "exec", "cb", 600, 60, 1, true});
    j.mark_committing("1.0", r2, "1.0");
    j.mark_applied("1.0");
    segment(j, r2, "1.1", "10-c.sql", "failed", 50, 0);
    j.end_run(r2, "failed", "increment 1.1 failed");
    r3 = j.begin_run("run", false);
    segment(j, r3, "1.1", "10-c.sql", "ok", 2000, 0);
    j.add_partial("1.1", {"10-c.sql", "sql", "cc", 2000, 0, 1, true});
    j.mark_committing("1.1", r3, "1.1");
    j.mark_applied("1.1");
    j.end_run(r3, "ok");
  }
};

TEST(ReportData, TimelineOffsetsAndMarks) {
  Fixture f;
  Report r = build_report(f.j, f.plan);
  ASSERT_EQ(r.increments.size(), 2u);
  EXPECT_EQ(r.never_run, std::vector<std::string>{"1.2"});
  EXPECT_EQ(r.total_ms, 3300);
  const auto& a = r.increments[0];
  EXPECT_EQ(a.version, "1.0");
  EXPECT_EQ(a.duration_ms, 1300);  // both segments of 20-b.sh
  EXPECT_EQ(a.offset_ms, 0);
  EXPECT_EQ(a.run_id, f.r2);
  EXPECT_TRUE(a.resumed);
  EXPECT_EQ(a.failed_attempts, 0);
  ASSERT_EQ(a.steps.size(), 2u);
  EXPECT_EQ(a.steps[0].offset_ms, 0);
  EXPECT_FALSE(a.steps[0].resumed);
  EXPECT_EQ(a.steps[1].offset_ms, 300);
  EXPECT_TRUE(a.steps[1].resumed);
  EXPECT_EQ(a.steps[1].items, 60);  // items are a position, not a sum
  EXPECT_DOUBLE_EQ(a.steps[1].per_second, 60.0);
  EXPECT_EQ(a.steps[1].checksum, "cb");
  EXPECT_FALSE(a.steps[1].checksum_changed);
  const auto& b = r.increments[1];
  EXPECT_EQ(b.offset_ms, 1300);
  EXPECT_FALSE(b.resumed);
  EXPECT_EQ(b.failed_attempts, 1);
  ASSERT_EQ(b.steps.size(), 1u);
  EXPECT_EQ(b.steps[0].failed_attempts, 1);
  EXPECT_TRUE(b.steps[0].checksum_changed);
  EXPECT_GT(b.started, 0);
  EXPECT_EQ(r.history.size(), 3u);
}

TEST(ReportData, CompareWithAnEarlierRun) {
  Fixture f;
  Report r = build_report(f.j, f.plan);
  Comparison c = compare_reports(f.j, f.plan, r, f.r2);
  ASSERT_EQ(c.rows.size(), 2u);
  EXPECT_EQ(c.rows[0].version, "1.0");
  EXPECT_EQ(c.rows[0].ms, 1300);
  EXPECT_EQ(c.rows[0].other_ms, 1300);
  EXPECT_EQ(c.rows[1].ms, 2000);
  EXPECT_FALSE(c.rows[1].other_ms);  // 1.1 was not committed by run 2
  EXPECT_EQ(c.total_ms, 3300);
  EXPECT_EQ(c.other_total_ms, 1300);
  EXPECT_THROW(compare_reports(f.j, f.plan, r, 99), std::invalid_argument);
}

TEST(ReportData, JsonKeepsTheOldMembersAndAddsTheNewOnes) {
  Fixture f;
  Report r = build_report(f.j, f.plan);
  r.compare = compare_reports(f.j, f.plan, r, f.r2);
  r.increments[0].diff = DiffSummary{1, 2, 3, 4, 10, 20, 30};
  r.env.lowers = {"/mirror", "/nfs"};
  r.env.host = "h";
  auto v = json::parse(report_json(r));
  ASSERT_TRUE(v);
  // What bench W8 and earlier tools read.
  EXPECT_EQ((*v)["total_ms"].as_int(), 3300);
  EXPECT_EQ((*v)["never_run"].items.size(), 1u);
  const auto& i0 = (*v)["increments"].items.at(0);
  EXPECT_EQ(i0["version"].as_string(), "1.0");
  EXPECT_EQ(i0["duration_ms"].as_int(), 1300);
  EXPECT_GT(i0["committed"].number, 0);
  EXPECT_EQ(i0["steps"].items.at(1)["per_second"].number, 60.0);
  // Added.
  EXPECT_EQ((*v)["downtime_ms"].as_int(), 3300);
  EXPECT_TRUE(i0["resumed"].as_bool());
  EXPECT_EQ(i0["diff"]["renamed"].as_int(), 4);
  EXPECT_EQ(i0["diff"]["added_bytes"].as_int(), 10);
  EXPECT_EQ((*v)["increments"].items.at(1)["diff"].kind, json::Value::kNull);
  EXPECT_EQ((*v)["increments"].items.at(1)["offset_ms"].as_int(), 1300);
  EXPECT_EQ((*v)["increments"].items.at(1)["failed_attempts"].as_int(), 1);
  EXPECT_EQ((*v)["history"].items.size(), 3u);
  EXPECT_EQ((*v)["compare"]["run_id"].as_int(), f.r2);
  EXPECT_EQ((*v)["compare"]["increments"].items.at(1)["other_duration_ms"].kind,
            json::Value::kNull);
  EXPECT_EQ((*v)["compare"]["difference_ms"].as_int(), 2000);
  EXPECT_EQ((*v)["environment"]["mirror"].as_string(), "/mirror");
  EXPECT_EQ((*v)["environment"]["host"].as_string(), "h");
}

TEST(ReportHtml, EscapesEveryCharacterThatMatters) {
  EXPECT_EQ(html_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(html_escape("x\x01y\x7fz\tq"), "x&#xFFFD;y&#xFFFD;z\tq");
  EXPECT_EQ(html_escape("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 passes
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

TEST(ReportHtml, HostileNamesStayText) {
  Fixture f;
  Report r = build_report(f.j, f.plan);
  r.increments[0].steps[0].step = "<script>alert(1)</script>";
  r.history[0].command = "run \"--to\" '<img src=x onerror=alert(1)>'";
  r.env.host = "<b>host</b>";
  r.env.lowers = {"/m&m"};
  std::string h = report_html(r);
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_EQ(h.find("<img"), std::string::npos);
  EXPECT_EQ(h.find("<b>host"), std::string::npos);
  EXPECT_NE(h.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(h.find("/m&amp;m"), std::string::npos);
}

TEST(ReportHtml, OneBarPerIncrementAndTheTotal) {
  Fixture f;
  Report r = build_report(f.j, f.plan);
  std::string h = report_html(r);
  EXPECT_EQ(count(h, "<g class=\"increment\""), 2u);
  EXPECT_NE(h.find("data-version=\"1.0\""), std::string::npos);
  EXPECT_EQ(count(h, "<rect class=\"step"), 3u);
  EXPECT_NE(h.find("id=\"downtime\" data-ms=\"3300\""), std::string::npos);
  // Self-contained: nothing is fetched.
  EXPECT_EQ(h.find("src="), std::string::npos);
  EXPECT_EQ(h.find("href="), std::string::npos);
  EXPECT_EQ(h.find("@import"), std::string::npos);
  EXPECT_EQ(h.find("url("), std::string::npos);
}

}  // namespace
}  // namespace rehearse_test
