#include "cowfs/core/mount_checks.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace cowfs {
namespace {

class MountChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cowfs-checks-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    for (auto d : {"lower", "mnt", "other"}) std::filesystem::create_directories(root_ + "/" + d);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::optional<std::string> check(const std::string& store, const std::string& lower,
                                   const std::string& mnt) {
    return check_mount_request({root_ + "/" + store, {root_ + "/" + lower}, root_ + "/" + mnt});
  }
  std::string root_;
};

TEST_F(MountChecksTest, SoundRequestPasses) {
  EXPECT_EQ(check("store", "lower", "mnt"), std::nullopt);
}

TEST_F(MountChecksTest, RefusesOverlaps) {
  EXPECT_NE(check("lower/store", "lower", "mnt")->find("inside lower"), std::string::npos);
  std::filesystem::create_directories(root_ + "/store/l");
  EXPECT_NE(check("store", "store/l", "mnt")->find("inside store"), std::string::npos);
  std::filesystem::create_directories(root_ + "/store/m");
  EXPECT_NE(check("store", "lower", "store/m")->find("inside store"), std::string::npos);
  std::filesystem::create_directories(root_ + "/lower/m");
  EXPECT_NE(check("store", "lower", "lower/m")->find("inside lower"), std::string::npos);
}

TEST_F(MountChecksTest, RefusesMissingOrFileLower) {
  EXPECT_NE(check("store", "missing", "mnt")->find("lower"), std::string::npos);
  std::ofstream(root_ + "/file") << "x";
  EXPECT_NE(check("store", "file", "mnt")->find("not a directory"), std::string::npos);
}

TEST_F(MountChecksTest, RefusesNonEmptyMountpointUnlessAllowed) {
  std::ofstream(root_ + "/mnt/x") << "x";
  EXPECT_NE(check("store", "lower", "mnt")->find("not empty"), std::string::npos);
  MountRequest req{root_ + "/store", {root_ + "/lower"}, root_ + "/mnt", true};
  EXPECT_EQ(check_mount_request(req), std::nullopt);
}

TEST_F(MountChecksTest, ResolvesSymlinksAndDots) {
  std::filesystem::create_directory_symlink(root_ + "/lower", root_ + "/link");
  EXPECT_NE(check("link/../lower/s", "lower", "mnt"), std::nullopt);
  EXPECT_TRUE(path_within("/a/b", "/a"));
  EXPECT_FALSE(path_within("/ab", "/a"));
}

}  // namespace
}  // namespace cowfs
