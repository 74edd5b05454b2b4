#include "harness/version.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace rehearse {
namespace {

Version v(const std::string& s) {
  auto p = Version::parse(s);
  EXPECT_TRUE(p) << s;
  return p ? *p : Version{};
}

TEST(Version, ParsesDottedNumbersAndIntegers) {
  EXPECT_EQ(v("1.2.3").parts(), (std::vector<unsigned long long>{1, 2, 3}));
  EXPECT_EQ(v("7").parts(), (std::vector<unsigned long long>{7}));
  EXPECT_EQ(v("1.010").str(), "1.10");
}

TEST(Version, RefusesNonNumeric) {
  for (const char* bad : {"", ".", "1.", ".1", "1..2", "a", "1.a", "v1", "1.2-beta", "-1", "+1",
                          " 1", "1 ", "1234567890123456789"}) {
    EXPECT_FALSE(Version::parse(bad)) << bad;
  }
}

TEST(Version, ComparesNumerically) {
  EXPECT_LT(v("1.9"), v("1.10"));
  EXPECT_LT(v("1.10"), v("2.0"));
  EXPECT_LT(v("2"), v("10"));
  EXPECT_LT(v("1"), v("1.0"));
  EXPECT_EQ(v("1.10"), v("1.010"));
  EXPECT_NE(v("1.0"), v("1"));
  std::vector<Version> vs = {v("2.0"), v("1.10"), v("1.9"), v("1.2.1"), v("1.2")};
  std::sort(vs.begin(), vs.end());
  std::vector<std::string> s;
  for (const auto& x : vs) s.push_back(x.str());
  EXPECT_EQ(s, (std::vector<std::string>{"1.2", "1.2.1", "1.9", "1.10", "2.0"}));
}

}  // namespace
}  // namespace rehearse
