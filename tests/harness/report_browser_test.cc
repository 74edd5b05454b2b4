// The report page in a real browser: headless Chromium (Debian's `chromium`,
// listed in scripts/install-deps.sh) loads `rehearse report --html`, the
// test checks the DOM it built (one bar per increment, the downtime) and
// that a screenshot of the page is not blank.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "harness/json.h"
#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

namespace fs = std::filesystem;

std::string in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = dir + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

uint32_t be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

class ReportBrowser : public RehearseE2E {
 protected:
  void SetUp() override {
    chromium_ = in_path("chromium");
    if (chromium_.empty()) {
      GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs Debian's "
                      "`chromium`): the report page is not checked in a browser";
    }
    RehearseE2E::SetUp();
  }
  // chromium --headless ... ARGS file://PAGE, with a deadline.
  CliResult chromium(const std::vector<std::string>& args, const std::string& page) {
    std::vector<std::string> argv = {in_path("timeout"),
                                     "120",
                                     chromium_,
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--user-data-dir=" + ws() + "/chromium-profile",
                                     "--window-size=1200,900"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("file://" + page);
    return Background(argv).wait();
  }
  std::string chromium_;
};

TEST_F(ReportBrowser, PageHasOneBarPerIncrementTheDowntimeAndIsNotBlank) {
  write_mini_steps();
  CliResult r = rehearse({"run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto rep = rehearse::json::parse(rehearse({"report", "--json"}).out);
  ASSERT_TRUE(rep);
  const int64_t total = (*rep)["total_ms"].as_int();
  const std::string page = ws() + "/report.html";
  ASSERT_EQ(rehearse({"report", "--html", page}).exit_code, 0);

  // The DOM as the browser built it (not the file as written).
  CliResult dom = chromium({"--dump-dom"}, page);
  ASSERT_EQ(dom.exit_code, 0) << dom.describe();
  EXPECT_EQ(count(dom.out, "<g class=\"increment\""), 3u) << dom.out.substr(0, 2000);
  for (const char* v : {"1.0", "1.1", "1.2"}) {
    EXPECT_NE(dom.out.find("<g class=\"increment\" data-version=\"" + std::string(v) + "\""),
              std::string::npos)
        << v;
  }
  EXPECT_EQ(count(dom.out, "<rect class=\"step "), 5u);  // the five steps of the mini plan
  EXPECT_NE(dom.out.find("id=\"downtime\" data-ms=\"" + std::to_string(total) + "\""),
            std::string::npos)
      << dom.out.substr(0, 2000);

  // Screenshots of the page and of an empty page at the same size: a PNG of
  // the right size, and far more to encode than the blank one.
  const std::string shot = ws() + "/report.png", blank_page = ws() + "/blank.html",
                    blank_shot = ws() + "/blank.png";
  write_file(blank_page, "<!DOCTYPE html><html><body></body></html>\n");
  ASSERT_EQ(chromium({"--screenshot=" + shot}, page).exit_code, 0);
  ASSERT_EQ(chromium({"--screenshot=" + blank_shot}, blank_page).exit_code, 0);
  std::string png = read_file(shot);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_GE(be32(png, 16), 1000u);  // width
  EXPECT_GE(be32(png, 20), 700u);   // height
  const auto blank_size = fs::file_size(blank_shot);
  EXPECT_GT(png.size(), 4 * blank_size)
      << "the screenshot (" << png.size() << " bytes) is hardly more than a blank page's ("
      << blank_size << " bytes)";
}

// scripts/report-screenshot.sh, which makes the README's docs/report.png:
// a PNG of the asked size from the page; bad input is one line.
TEST_F(ReportBrowser, ScreenshotScriptMakesAPngOfThePage) {
  write_mini_steps();
  ASSERT_EQ(rehearse({"run"}).exit_code, 0);
  const std::string page = ws() + "/report.html", png_path = ws() + "/out/shot.png";
  ASSERT_EQ(rehearse({"report", "--html", page}).exit_code, 0);
  const std::string script = std::string(REPO_ROOT) + "/scripts/report-screenshot.sh";
  CliResult r =
      Background({script, "--page", page, "--out", png_path, "--width", "1000", "--height", "800"})
          .wait();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.out, png_path + "\n");
  std::string png = read_file(png_path);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(be32(png, 16), 1000u);
  EXPECT_EQ(be32(png, 20), 800u);

  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{script, "--page", ws() + "/none.html", "--out", png_path},
        {script, "--width", "wide"},
        {script, "--bogus"}}) {
    CliResult b = Background(bad).wait();
    EXPECT_NE(b.exit_code, 0) << b.describe();
    EXPECT_EQ(count(b.err, "\n"), 1u) << b.describe();
  }
}

}  // namespace
}  // namespace rehearse_test
