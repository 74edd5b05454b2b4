#include "harness/duration.h"

#include <gtest/gtest.h>

#include "harness/disk.h"

namespace rehearse {
namespace {

using std::chrono::milliseconds;

TEST(Duration, ParsesUnitsAndPlainSeconds) {
  EXPECT_EQ(parse_duration("30"), milliseconds(30000));
  EXPECT_EQ(parse_duration("30s"), milliseconds(30000));
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("1.5m"), milliseconds(90000));
  EXPECT_EQ(parse_duration("2h"), milliseconds(7200000));
}

TEST(Duration, RefusesWhatIsNotAPositiveDuration) {
  for (const char* bad :
       {"", "s", "-1s", "0", "0s", "0.0001ms", "10 s", "10sec", "abc", "1e400", "9999999h"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(Duration, FormatsForPeople) {
  EXPECT_EQ(format_duration(milliseconds(30000)), "30s");
  EXPECT_EQ(format_duration(milliseconds(90000)), "1m30s");
  EXPECT_EQ(format_duration(milliseconds(3600000)), "1h");
  EXPECT_EQ(format_duration(milliseconds(500)), "500ms");
}

TEST(Disk, RecognisesFullDiskErrors) {
  EXPECT_TRUE(error_says_disk_full("dd: error writing 'x': No space left on device"));
  EXPECT_TRUE(error_says_disk_full("database or disk is full"));
  EXPECT_FALSE(error_says_disk_full("exit 1"));
  EXPECT_EQ(full_disk_cause({"/"}, "database or disk is full").has_value(), true);
  EXPECT_TRUE(free_bytes("/").has_value());
  EXPECT_FALSE(free_bytes("/nonexistent/dir").has_value());
}

}  // namespace
}  // namespace rehearse
