// The lower cache from rehearse.toml: `cache`, `cache_size` and lowers given
// as { path, remote = true } reach `cowfs mount`, and `rehearse status`
// shows the cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/harness/e2e_fixture.h"

namespace rehearse_test {
namespace {

class LowerCacheE2E : public RehearseE2E {
 protected:
  void write_toml(const std::string& lowers, const std::string& extra) {
    std::ofstream(ws() + "/rehearse.toml", std::ios::trunc)
        << "lowers = " << lowers << "\nmountpoint = \"mnt\"\nsteps = \"steps\"\n"
        << "sqlite = \"data/app.db\"\n"
        << extra;
  }
  // A number of status --json's lower_cache (-1 when absent).
  int64_t status_cache(const std::string& key) {
    const std::string s = status_json();
    std::smatch m;
    if (!std::regex_search(s, m, std::regex("\"lower_cache\":\\{[^}]*\"" + key + "\":([0-9]+)"))) {
      return -1;
    }
    return std::stoll(m[1]);
  }
  // Reads every blob through the mount; their total size.
  int64_t read_blobs() {
    int64_t total = 0;
    for (int i = 0; i < 50; ++i) {
      std::ifstream in(mnt("blobs/blob-" + std::to_string(i) + ".bin"), std::ios::binary);
      std::ostringstream s;
      s << in.rdbuf();
      total += static_cast<int64_t>(s.str().size());
    }
    return total;
  }
};

TEST_F(LowerCacheE2E, TheCacheOfRehearseTomlReachesTheMountAndStatusShowsIt) {
  write_toml("[{ path = \"" + lower() + "\", remote = true }]",
             "cache = \"cache\"\ncache_size = \"1G\"\n");
  CliResult m = rehearse({"mount"});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  const int64_t bytes = read_blobs();
  ASSERT_GT(bytes, 0);
  // The blobs, and what rehearse itself read (the database's version).
  const int64_t fetched = status_cache("fetched_bytes");
  EXPECT_GE(fetched, bytes);
  EXPECT_EQ(status_cache("max_bytes"), int64_t{1} << 30);
  CliResult text = rehearse({"status"});
  EXPECT_NE(text.out.find("lower cache: " + ws() + "/cache: "), std::string::npos) << text.out;

  // A reset keeps the cache (it holds production, not the rehearsal).
  ASSERT_EQ(rehearse({"reset"}).exit_code, 0);
  EXPECT_EQ(read_blobs(), bytes);
  EXPECT_EQ(status_cache("fetched_bytes"), fetched);
  ASSERT_EQ(rehearse({"umount"}).exit_code, 0);
  EXPECT_NE(status_json().find("\"mounted\":false"), std::string::npos);

  // And so does a new mount: nothing is read from the lower again.
  ASSERT_EQ(rehearse({"mount"}).exit_code, 0);
  EXPECT_EQ(read_blobs(), bytes);
  EXPECT_EQ(status_cache("fetched_bytes"), 0);
  EXPECT_GT(status_cache("hits"), 0);
  ASSERT_EQ(rehearse({"umount"}).exit_code, 0);
}

TEST_F(LowerCacheE2E, WithoutACacheNothingChanges) {
  CliResult m = rehearse({"mount"});
  ASSERT_EQ(m.exit_code, 0) << m.describe();
  EXPECT_GT(read_blobs(), 0);
  EXPECT_NE(status_json().find("\"lower_cache\":null"), std::string::npos) << status_json();
  ASSERT_EQ(rehearse({"umount"}).exit_code, 0);
}

TEST_F(LowerCacheE2E, BadCacheSettingsGetOneLine) {
  const std::string remote = "[{ path = \"" + lower() + "\", remote = true }]";
  const std::vector<std::pair<std::pair<std::string, std::string>, std::string>> cases = {
      {{remote, ""}, "a lower is marked remote but there is no cache"},
      {{remote, "cache = \"cache\"\ncache_size = \"lots\"\n"}, "cache_size 'lots' is not a size"},
      {{"[\"" + lower() + "\"]", "cache_size = \"1G\"\n"}, "'cache_size' without 'cache'"},
      {{"[{ path = \"" + lower() + "\", remote = 1 }]", "cache = \"cache\"\n"},
       "a table in 'lowers' must be"},
      {{"[{ path = \"" + lower() + "\", fast = true }]", "cache = \"cache\"\n"},
       "unknown key 'fast' in a lower"},
      {{"[\"" + lower() + "\"]", "cache = \"" + lower() + "/c\"\n"}, "overlaps lower"},
      {{"[\"" + lower() + "\"]", "cache = \"mnt/c\"\n"}, "overlaps the mountpoint"},
  };
  for (const auto& [toml, message] : cases) {
    write_toml(toml.first, toml.second);
    CliResult r = rehearse({"status"});
    EXPECT_NE(r.exit_code, 0) << toml.first << toml.second;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(mounted());
}

}  // namespace
}  // namespace rehearse_test
