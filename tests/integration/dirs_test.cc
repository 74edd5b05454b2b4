// Directories through a cowfs mount: mkdir/rmdir, rm -rf of lower trees,
// opaque re-creation, readdir of merged directories (one and two lowers).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

using DirsTest = CowfsTest;

bool has_duplicates(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return std::adjacent_find(v.begin(), v.end()) != v.end();
}

// What the kernel may keep: a name it saw missing (the daemon answers a
// lookup of a missing name with ino 0 and the entry timeout) and a listing
// (opendir answers cache_readdir and keep_cache). Each repeat must cost no
// request; the margin allows for another process dropping the machine's
// caches in between (each drop costs one). Both caches must be dropped on
// every change through the mount: checked after the repeats.
TEST_F(DirsTest, RepeatedMissesAndListingsAreServedByTheKernel) {
  if (reference_mode()) GTEST_SKIP() << "counts the requests of a FUSE mount";
  FuseRequests requests(mnt());
  if (!requests.available()) GTEST_SKIP() << requests.why_not();
  constexpr int kRepeats = 20;
  for (int i = 0; i < kRepeats; ++i) {
    EXPECT_EQ(err(::access(mnt("dir/missing").c_str(), F_OK)), ENOENT);
    EXPECT_EQ(list_dir(mnt("dir")).size(), 3u);
  }
  EXPECT_LE(requests.count("FUSE_LOOKUP"), 4);
  EXPECT_LE(requests.count("FUSE_READDIR") + requests.count("FUSE_READDIRPLUS"), 8);
  write_file(mnt("dir/missing"), "now\n");
  EXPECT_EQ(read_file(mnt("dir/missing")), "now\n");
  EXPECT_EQ(sorted(list_dir(mnt("dir"))),
            (std::vector<std::string>{"a.txt", "hard2", "missing", "sub"}));
  ASSERT_EQ(::unlink(mnt("dir/missing").c_str()), 0);
  EXPECT_EQ(err(::access(mnt("dir/missing").c_str(), F_OK)), ENOENT);
  EXPECT_EQ(list_dir(mnt("dir")).size(), 3u);
}

TEST_F(DirsTest, MkdirAndRmdir) {
  ASSERT_EQ(err(::mkdir(mnt("newdir").c_str(), 0750)), 0);
  struct stat st = stat_or_throw(mnt("newdir"));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(list_dir(mnt("newdir")), std::vector<std::string>{});
  ASSERT_EQ(err(::mkdir(mnt("dir/sub/deep/newsub").c_str(), 0777)), 0);
  EXPECT_EQ(stat_or_throw(mnt("dir/sub/deep/newsub")).st_mode & 07777, 0755u);
  write_file(mnt("newdir/f"), "f");

  EXPECT_EQ(err(::mkdir(mnt("dir").c_str(), 0755)), EEXIST);
  EXPECT_EQ(err(::mkdir(mnt("small.txt").c_str(), 0755)), EEXIST);
  EXPECT_EQ(err(::mkdir(mnt("newdir").c_str(), 0755)), EEXIST);
  EXPECT_EQ(err(::mkdir(mnt("missing/x").c_str(), 0755)), ENOENT);
  EXPECT_EQ(err(::rmdir(mnt("dir").c_str())), ENOTEMPTY);
  EXPECT_EQ(err(::rmdir(mnt("newdir").c_str())), ENOTEMPTY);
  EXPECT_EQ(err(::rmdir(mnt("small.txt").c_str())), ENOTDIR);
  EXPECT_EQ(err(::rmdir(mnt("missing").c_str())), ENOENT);

  ASSERT_EQ(err(::rmdir(mnt("empty").c_str())), 0);  // a lower directory
  ASSERT_EQ(err(::unlink(mnt("newdir/f").c_str())), 0);
  ASSERT_EQ(err(::rmdir(mnt("newdir").c_str())), 0);
  ASSERT_EQ(err(::mkdir(mnt("made").c_str(), 0700)), 0);

  auto check = [&] {
    struct stat s {};
    EXPECT_EQ(err(::stat(mnt("empty").c_str(), &s)), ENOENT);
    EXPECT_EQ(err(::stat(mnt("newdir").c_str(), &s)), ENOENT);
    EXPECT_EQ(stat_or_throw(mnt("made")).st_mode & 07777, 0700u);
    EXPECT_TRUE(S_ISDIR(stat_or_throw(mnt("dir/sub/deep/newsub")).st_mode));
    auto root = list_dir(mnt());
    EXPECT_EQ(std::count(root.begin(), root.end(), "empty"), 0);
    EXPECT_EQ(std::count(root.begin(), root.end(), "newdir"), 0);
    EXPECT_EQ(std::count(root.begin(), root.end(), "made"), 1);
  };
  check();
  remount();
  check();
}

TEST_F(DirsTest, RmdirOfLowerDirEmptiedThroughTheMount) {
  // dir/sub/deep has lower content; once it is all deleted the directory is
  // empty and rmdir must succeed.
  ASSERT_EQ(err(::unlink(mnt("dir/sub/deep/c.txt").c_str())), 0);
  EXPECT_EQ(list_dir(mnt("dir/sub/deep")), std::vector<std::string>{});
  EXPECT_EQ(err(::rmdir(mnt("dir/sub/deep").c_str())), 0);
  EXPECT_EQ(sorted(list_dir(mnt("dir/sub"))), std::vector<std::string>{"b.txt"});
  remount();
  EXPECT_EQ(sorted(list_dir(mnt("dir/sub"))), std::vector<std::string>{"b.txt"});
}

TEST_F(DirsTest, RmRfOfLowerTree) {
  for (const std::string& root : {mnt(), ref()}) {
    RunResult r = run({"rm", "-rf", "--", root + "/dir", root + "/whnames", root + "/empty"});
    ASSERT_EQ(r.exit_code, 0) << root << ": " << r.describe();
  }
  auto check = [&] {
    struct stat st {};
    for (const char* gone : {"dir", "dir/a.txt", "dir/sub/deep/c.txt", "whnames", "empty"}) {
      EXPECT_EQ(err(::lstat(mnt(gone).c_str(), &st)), ENOENT) << gone;
    }
    EXPECT_EQ(err(::stat(mnt("dsym").c_str(), &st)), ENOENT) << "dsym -> dir now dangles";
    EXPECT_EQ(read_file(mnt("hard1")), kLinked);
    EXPECT_EQ(lstat_or_throw(mnt("hard1")).st_nlink, 1u) << "dir/hard2 was deleted";
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(DirsTest, DirectoryRecreatedAfterRmRfIsEmpty) {
  RunResult r = run({"rm", "-rf", "--", mnt("dir")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(err(::mkdir(mnt("dir").c_str(), 0755)), 0);
  EXPECT_EQ(list_dir(mnt("dir")), std::vector<std::string>{});
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("dir/a.txt").c_str(), &st)), ENOENT);
  EXPECT_EQ(err(::stat(mnt("dir/sub").c_str(), &st)), ENOENT);
  char buf[16];
  EXPECT_EQ(err(::getxattr(mnt("dir").c_str(), "user.dirattr", buf, sizeof buf)), ENODATA)
      << "the new directory must not show the old one's xattrs";
  write_file(mnt("dir/only.txt"), "only");
  // A name the deleted lower tree had, inside the new directory.
  ASSERT_EQ(err(::mkdir(mnt("dir/sub").c_str(), 0755)), 0);
  EXPECT_EQ(list_dir(mnt("dir/sub")), std::vector<std::string>{});
  remount();
  EXPECT_EQ(sorted(list_dir(mnt("dir"))), (std::vector<std::string>{"only.txt", "sub"}));
  EXPECT_EQ(list_dir(mnt("dir/sub")), std::vector<std::string>{});
  EXPECT_EQ(err(::getxattr(mnt("dir").c_str(), "user.dirattr", buf, sizeof buf)), ENODATA);
}

TEST_F(DirsTest, ReaddirListsEachNameOnceAndNoDeletedNames) {
  for (const std::string& root : {mnt(), ref()}) {
    write_file(root + "/dir/new.txt", "n");
    write_file(root + "/dir/a.txt", "rewritten");  // copied up: now in two layers
    ASSERT_EQ(err(::unlink((root + "/dir/hard2").c_str())), 0);
    ASSERT_EQ(err(::mkdir((root + "/dir/newsub").c_str(), 0755)), 0);
    ASSERT_EQ(err(::chmod((root + "/dir/sub").c_str(), 0700)), 0);  // dir in two layers
    ASSERT_EQ(err(::unlink((root + "/small.txt").c_str())), 0);
    write_file(root + "/small.txt", "again");  // deleted and recreated
    ASSERT_EQ(err(::unlink((root + "/sym").c_str())), 0);
  }
  auto check = [&] {
    for (const std::string d : {"", "dir", "dir/sub"}) {
      SCOPED_TRACE("directory '" + d + "'");
      auto got = list_dir(d.empty() ? mnt() : mnt(d));
      EXPECT_FALSE(has_duplicates(got)) << ::testing::PrintToString(sorted(got));
      EXPECT_EQ(sorted(got), sorted(list_dir(d.empty() ? ref() : ref() + "/" + d)));
    }
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(DirsTest, ReaddirWithSeekAndRewind) {
  write_file(mnt("dir/new.txt"), "n");
  DIR* d = ::opendir(mnt("dir").c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> first;
  long pos_after_two = -1;
  while (struct dirent* e = ::readdir(d)) {
    first.push_back(e->d_name);
    if (first.size() == 2) pos_after_two = ::telldir(d);
  }
  ::rewinddir(d);
  std::vector<std::string> second;
  while (struct dirent* e = ::readdir(d)) second.push_back(e->d_name);
  std::vector<std::string> tail;
  if (pos_after_two >= 0) {
    ::seekdir(d, pos_after_two);
    while (struct dirent* e = ::readdir(d)) tail.push_back(e->d_name);
  }
  ::closedir(d);
  EXPECT_EQ(first, second) << "rewinddir gave a different listing";
  ASSERT_GE(first.size(), 2u);
  EXPECT_EQ(tail, std::vector<std::string>(first.begin() + 2, first.end()))
      << "seekdir(telldir()) did not resume where it left off";
  EXPECT_EQ(sorted(first),
            (std::vector<std::string>{".", "..", "a.txt", "hard2", "new.txt", "sub"}));
}

TEST_F(DirsTest, DirectoryTimesFollowChanges) {
  auto mtime = [&](const std::string& rel) { return ns_of(stat_or_throw(mnt(rel)).st_mtim); };
  auto ctime = [&](const std::string& rel) { return ns_of(stat_or_throw(mnt(rel)).st_ctim); };
  ASSERT_EQ(mtime("dir"), kOldDirMtimeNs);
  int64_t dir_ctime = ctime("dir");
  write_file(mnt("dir/created"), "c");
  EXPECT_GT(mtime("dir"), kOldDirMtimeNs) << "creating an entry updates the directory's mtime";
  EXPECT_GE(ctime("dir"), dir_ctime);
  ASSERT_EQ(mtime("dir/sub"), kOldDirMtimeNs);
  ASSERT_EQ(err(::unlink(mnt("dir/sub/b.txt").c_str())), 0);
  EXPECT_GT(mtime("dir/sub"), kOldDirMtimeNs) << "unlink updates the directory's mtime";
  ASSERT_EQ(mtime("whnames"), kOldDirMtimeNs);
  ASSERT_EQ(mtime("empty"), kOldDirMtimeNs);
  ASSERT_EQ(err(::rename(mnt("whnames/foo").c_str(), mnt("empty/foo").c_str())), 0);
  EXPECT_GT(mtime("whnames"), kOldDirMtimeNs) << "rename updates the source directory";
  EXPECT_GT(mtime("empty"), kOldDirMtimeNs) << "rename updates the target directory";
  ASSERT_EQ(mtime("dir/sub/deep"), kOldDirMtimeNs);
  struct timespec t[2] = {{0, UTIME_OMIT}, {1'700'000'000, 5}};
  ASSERT_EQ(err(::utimensat(AT_FDCWD, mnt("dir/sub/deep").c_str(), t, 0)), 0);
  write_file(mnt("dir/sub/deep/c.txt"), "rewritten");  // a change to an entry, not the dir
  EXPECT_EQ(mtime("dir/sub/deep"), 1'700'000'000'000'000'005LL)
      << "rewriting a file does not touch its directory";
  remount();
  EXPECT_GT(mtime("dir"), kOldDirMtimeNs);
  EXPECT_GT(mtime("empty"), kOldDirMtimeNs);
  EXPECT_EQ(mtime("dir/sub/deep"), 1'700'000'000'000'000'005LL);
}

TEST_F(DirsTest, ReaddirTypesMatchStat) {
  write_file(mnt("dir/new.txt"), "n");
  ASSERT_EQ(err(::mkfifo(mnt("dir/newfifo").c_str(), 0644)), 0);
  ASSERT_EQ(err(::symlink("a.txt", mnt("dir/newsym").c_str())), 0);
  for (const std::string d : {"", "dir"}) {
    DIR* dp = ::opendir(d.empty() ? mnt().c_str() : mnt(d).c_str());
    ASSERT_NE(dp, nullptr);
    while (struct dirent* e = ::readdir(dp)) {
      std::string name = e->d_name;
      if (name == "." || name == ".." || e->d_type == DT_UNKNOWN) continue;
      struct stat st = lstat_or_throw(mnt(d.empty() ? name : d + "/" + name));
      EXPECT_EQ(static_cast<unsigned>(e->d_type), (st.st_mode & S_IFMT) >> 12)
          << "d_type of " << d << "/" << name;
    }
    ::closedir(dp);
  }
}

TEST_F(DirsTest, ConcurrentChangesInOneDirectory) {
  constexpr int kThreads = 4, kPerThread = 150;
  std::atomic<bool> stop{false};
  std::atomic<int> bad_listings{0};
  std::string bad_example;
  std::mutex bad_mu;
  // A reader: the untouched lower names must appear exactly once in every
  // listing taken while the directory changes.
  std::thread reader([&] {
    while (!stop) {
      std::vector<std::string> names;
      try {
        names = list_dir(mnt("dir"));
      } catch (const std::exception& e) {
        std::lock_guard l(bad_mu);
        bad_example = e.what();
        ++bad_listings;
        continue;
      }
      for (const char* fixed : {"a.txt", "hard2", "sub"}) {
        if (std::count(names.begin(), names.end(), fixed) != 1) {
          std::lock_guard l(bad_mu);
          bad_example = std::string(fixed) + " listed " +
                        std::to_string(std::count(names.begin(), names.end(), fixed)) + " times";
          ++bad_listings;
        }
      }
    }
  });
  std::vector<std::thread> writers;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string base = mnt("dir/t" + std::to_string(t) + "-" + std::to_string(i));
        try {
          write_file(base, base);
          if (::rename(base.c_str(), (base + ".done").c_str()) != 0) ++errors;
          if (i % 3 == 0 && ::unlink((base + ".done").c_str()) != 0) ++errors;
        } catch (const std::exception&) {
          ++errors;
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  reader.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(bad_listings.load(), 0) << "e.g. " << bad_example;
  std::set<std::string> want = {"a.txt", "hard2", "sub"};
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      if (i % 3 != 0) want.insert("t" + std::to_string(t) + "-" + std::to_string(i) + ".done");
    }
  }
  auto check = [&] {
    auto got = list_dir(mnt("dir"));
    EXPECT_FALSE(has_duplicates(got));
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want);
    EXPECT_EQ(read_file(mnt("dir/t3-149.done")), mnt("dir/t3-149"));
  };
  check();
  remount();
  check();
}

// A lower with a directory of many entries, to list in several getdents calls.
class BigDirTest : public CowfsTest {
 protected:
  static constexpr int kFiles = 600;
  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    ::mkdir((root + "/many").c_str(), 0755);
    for (int i = 0; i < kFiles; ++i) {
      write_file(root + "/many/file-with-a-longish-name-" + std::to_string(i), "x");
    }
  }
};

TEST_F(BigDirTest, LargeMergedDirectory) {
  std::set<std::string> want;
  for (int i = 0; i < kFiles; ++i) {
    std::string name = "file-with-a-longish-name-" + std::to_string(i);
    if (i % 3 == 0) {
      ASSERT_EQ(err(::unlink(mnt("many/" + name).c_str())), 0) << name;
      if (i % 2 == 0) {
        write_file(mnt("many/" + name), "again");
        want.insert(name);
      }
    } else {
      want.insert(name);
    }
  }
  for (int i = 0; i < 300; ++i) {
    std::string name = "new-" + std::to_string(i);
    write_file(mnt("many/" + name), "n");
    want.insert(name);
  }
  auto check = [&] {
    auto got = list_dir(mnt("many"));
    EXPECT_FALSE(has_duplicates(got));
    std::set<std::string> got_set(got.begin(), got.end());
    EXPECT_EQ(got_set.size(), want.size());
    std::vector<std::string> missing, extra;
    std::set_difference(want.begin(), want.end(), got_set.begin(), got_set.end(),
                        std::back_inserter(missing));
    std::set_difference(got_set.begin(), got_set.end(), want.begin(), want.end(),
                        std::back_inserter(extra));
    EXPECT_TRUE(missing.empty()) << missing.size() << " missing, e.g. " << missing.front();
    EXPECT_TRUE(extra.empty()) << extra.size() << " unexpected, e.g. " << extra.front();
  };
  check();
  remount();
  check();
}

// Two lowers: the top one (index 0) has the standard tree plus a few names
// that the bottom one (index 1) also has.
class TwoLowersTest : public CowfsTest {
 protected:
  int lower_count() const override { return 2; }
  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    auto p = [&](const std::string& rel) { return root + "/" + rel; };
    if (index == 0) {
      ::mkdir(p("merged").c_str(), 0755);
      write_file(p("merged/common.txt"), "top common\n");
      write_file(p("merged/top.txt"), "top\n");
      write_file(p("bdir"), "a file in the top lower\n");
    } else {
      write_file(p("small.txt"), "bottom version\n");
      write_file(p("bottom_only.txt"), "only in the bottom lower\n");
      ::mkdir(p("merged").c_str(), 0755);
      write_file(p("merged/common.txt"), "bottom common\n");
      write_file(p("merged/bottom.txt"), "bottom\n");
      ::mkdir(p("dir").c_str(), 0755);
      write_file(p("dir/from_bottom.txt"), "from bottom\n");
      ::mkdir(p("bdir").c_str(), 0755);
      write_file(p("bdir/x"), "x in the bottom lower\n");
    }
  }
};

TEST_F(TwoLowersTest, UpperLowerShadowsAndDirectoriesMerge) {
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  EXPECT_EQ(read_file(mnt("bottom_only.txt")), "only in the bottom lower\n");
  EXPECT_EQ(read_file(mnt("merged/common.txt")), "top common\n");
  EXPECT_EQ(read_file(mnt("dir/from_bottom.txt")), "from bottom\n");
  EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\n");
  EXPECT_TRUE(S_ISREG(stat_or_throw(mnt("bdir")).st_mode)) << "a file hides a lower directory";
  auto root = list_dir(mnt());
  EXPECT_FALSE(has_duplicates(root)) << ::testing::PrintToString(sorted(root));
  EXPECT_EQ(std::count(root.begin(), root.end(), "bottom_only.txt"), 1);
  EXPECT_EQ(sorted(list_dir(mnt("merged"))),
            (std::vector<std::string>{"bottom.txt", "common.txt", "top.txt"}));
  EXPECT_EQ(sorted(list_dir(mnt("dir"))),
            (std::vector<std::string>{"a.txt", "from_bottom.txt", "hard2", "sub"}));
  expect_top_empty("after only reading");
}

TEST_F(TwoLowersTest, DeletionHidesTheNameInEveryLower) {
  ASSERT_EQ(err(::unlink(mnt("small.txt").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("merged/common.txt").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("bottom_only.txt").c_str())), 0);
  auto check = [&] {
    struct stat st {};
    EXPECT_EQ(err(::stat(mnt("small.txt").c_str(), &st)), ENOENT)
        << "deleting the top lower's file must not uncover the bottom lower's";
    EXPECT_EQ(err(::stat(mnt("merged/common.txt").c_str(), &st)), ENOENT);
    EXPECT_EQ(err(::stat(mnt("bottom_only.txt").c_str(), &st)), ENOENT);
    EXPECT_EQ(sorted(list_dir(mnt("merged"))), (std::vector<std::string>{"bottom.txt", "top.txt"}));
    auto root = list_dir(mnt());
    EXPECT_EQ(std::count(root.begin(), root.end(), "small.txt"), 0);
    EXPECT_EQ(std::count(root.begin(), root.end(), "bottom_only.txt"), 0);
  };
  check();
  remount();
  check();
}

TEST_F(TwoLowersTest, ReplacingAFileThatHidesALowerDirectory) {
  ASSERT_EQ(err(::unlink(mnt("bdir").c_str())), 0);
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("bdir").c_str(), &st)), ENOENT)
      << "the bottom lower's directory must stay hidden";
  ASSERT_EQ(err(::mkdir(mnt("bdir").c_str(), 0755)), 0);
  EXPECT_EQ(list_dir(mnt("bdir")), std::vector<std::string>{});
  remount();
  EXPECT_EQ(list_dir(mnt("bdir")), std::vector<std::string>{});
}

TEST_F(TwoLowersTest, RmRfAndRecreateMergedDirectory) {
  RunResult r = run({"rm", "-rf", "--", mnt("merged")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(err(::mkdir(mnt("merged").c_str(), 0755)), 0);
  write_file(mnt("merged/fresh"), "fresh");
  auto check = [&] { EXPECT_EQ(list_dir(mnt("merged")), std::vector<std::string>{"fresh"}); };
  check();
  remount();
  check();
}

TEST_F(TwoLowersTest, EmptiedMergedDirectoryCanBeRemovedOrReplaced) {
  for (const char* n : {"common.txt", "top.txt", "bottom.txt"}) {
    ASSERT_EQ(err(::unlink(mnt(std::string("merged/") + n).c_str())), 0) << n;
  }
  EXPECT_EQ(list_dir(mnt("merged")), std::vector<std::string>{});
  ASSERT_EQ(err(::mkdir(mnt("newdir").c_str(), 0755)), 0);
  write_file(mnt("newdir/n"), "n");
  EXPECT_EQ(err(::rename(mnt("newdir").c_str(), mnt("merged").c_str())), 0)
      << "renaming onto a directory emptied through the mount";
  EXPECT_EQ(list_dir(mnt("merged")), std::vector<std::string>{"n"});
  ASSERT_EQ(err(::unlink(mnt("merged/n").c_str())), 0);
  EXPECT_EQ(err(::rmdir(mnt("merged").c_str())), 0);
  remount();
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("merged").c_str(), &st)), ENOENT);
}

TEST_F(TwoLowersTest, RenameMergedDirectory) {
  ASSERT_EQ(err(::rename(mnt("merged").c_str(), mnt("moved").c_str())), 0);
  auto check = [&] {
    struct stat st {};
    EXPECT_EQ(err(::stat(mnt("merged").c_str(), &st)), ENOENT);
    EXPECT_EQ(sorted(list_dir(mnt("moved"))),
              (std::vector<std::string>{"bottom.txt", "common.txt", "top.txt"}));
    EXPECT_EQ(read_file(mnt("moved/common.txt")), "top common\n");
    EXPECT_EQ(read_file(mnt("moved/bottom.txt")), "bottom\n");
  };
  check();
  remount();
  check();
}

}  // namespace
}  // namespace cowfs_it
