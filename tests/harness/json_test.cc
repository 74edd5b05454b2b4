// The harness's JSON writer and reader, on what they exchange: numbers must
// survive the trip exactly (a commit time in unix seconds, a rate).
#include "harness/json.h"

#include <gtest/gtest.h>

#include <limits>

namespace rehearse::json {
namespace {

TEST(Json, NumbersReadBackExactly) {
  const double when = 1795992634.388760;  // a commit time with its fraction
  const double rate = 4392.59;
  const std::string text = Object().add("committed", when).add("per_second", rate).str();
  auto v = parse(text);
  ASSERT_TRUE(v) << text;
  EXPECT_EQ((*v)["committed"].number, when) << text;
  EXPECT_EQ((*v)["per_second"].number, rate) << text;
  EXPECT_EQ(text, R"({"committed":1795992634.38876,"per_second":4392.59})");
}

TEST(Json, NonFiniteNumbersAreNull) {
  EXPECT_EQ(Object().add("x", std::numeric_limits<double>::quiet_NaN()).str(), R"({"x":null})");
}

}  // namespace
}  // namespace rehearse::json
