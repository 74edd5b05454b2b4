// Names: ".wh."-style names are ordinary names, NAME_MAX (255) works and 256
// bytes get ENAMETOOLONG, and paths up to PATH_MAX work (built relative to
// directory fds, so the store's longer paths are cowfs' problem, not ours).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class NamesTest : public CowfsTest {
 protected:
  static std::string name_of(size_t len, char c) { return std::string(len, c); }
  static std::string name255() { return std::string(251, 'n') + ".txt"; }
  static std::string dir255() { return std::string(255, 'D'); }
  // The lower's deep chain: kDepth directories of 200 bytes, then a file with
  // a 255-byte name: 19 * 201 + 255 = 4074 bytes relative to the lower root.
  static constexpr int kDepth = 19;
  static std::vector<std::string> deep_dirs() {
    std::vector<std::string> v;
    for (int i = 0; i < kDepth; ++i) v.push_back(std::string(200, static_cast<char>('a' + i)));
    return v;
  }
  static std::string deep_file() { return std::string(255, 'f'); }

  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    write_file(root + "/" + name255(), "255 bytes of name\n");
    ::mkdir((root + "/" + dir255()).c_str(), 0755);
    write_file(root + "/" + dir255() + "/" + name255(), "inside\n");
    Fd dir = open_or_throw(root, O_RDONLY | O_DIRECTORY);
    for (const auto& c : deep_dirs()) {
      if (::mkdirat(dir.get(), c.c_str(), 0755) != 0) throw std::runtime_error("mkdirat");
      dir = openat_or_throw(dir.get(), c, O_RDONLY | O_DIRECTORY);
    }
    Fd f = openat_or_throw(dir.get(), deep_file(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    write_fd_all(f.get(), "deep in the lower\n");
  }

  // Opens the directory at root/comps[0]/comps[1]/... one component at a time.
  static Fd walk(const std::string& root, const std::vector<std::string>& comps) {
    Fd dir = open_or_throw(root, O_RDONLY | O_DIRECTORY);
    for (const auto& c : comps) dir = openat_or_throw(dir.get(), c, O_RDONLY | O_DIRECTORY);
    return dir;
  }
  static std::string read_at(int dirfd, const std::string& name) {
    Fd f = openat_or_throw(dirfd, name, O_RDONLY);
    return pread_all(f.get());
  }
};

TEST_F(NamesTest, WhiteoutLikeNamesInTheLowerAreOrdinaryFiles) {
  EXPECT_EQ(sorted(list_dir(mnt("whnames"))),
            (std::vector<std::string>{".wh..wh..opq", ".wh.foo", "bar", "foo"}));
  for (const char* n : {"foo", "bar", ".wh.foo", ".wh..wh..opq"}) {
    EXPECT_EQ(read_file(mnt(std::string("whnames/") + n)), std::string("content of ") + n + "\n");
  }
  expect_top_empty("after only reading");
}

TEST_F(NamesTest, WhiteoutLikeNamesMadeThroughTheMount) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    write_file(root + "/.wh.small.txt", "not a whiteout");
    write_file(root + "/dir/.wh..wh..opq", "not an opaque marker");
    write_file(root + "/dir/.wh.a.txt", "x");
    write_file(root + "/.wh.", "prefix only");
    write_file(root + "/.wh.nonexistent", "x");
    ASSERT_EQ(err(::mkdir((root + "/.wh.dir").c_str(), 0755)), 0);
    ASSERT_EQ(err(::mkdir((root + "/dir/sub/.wh..wh..opq").c_str(), 0755)), 0);
    write_file(root + "/tmpname", "renamed");
    ASSERT_EQ(err(::rename((root + "/tmpname").c_str(), (root + "/.wh.hard1").c_str())), 0);
    ASSERT_EQ(err(::symlink("small.txt", (root + "/.wh.exec.sh").c_str())), 0);
    // Delete lower names next to look-alikes.
    ASSERT_EQ(err(::unlink((root + "/whnames/.wh.foo").c_str())), 0);
    ASSERT_EQ(err(::unlink((root + "/whnames/bar").c_str())), 0);
  }
  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
    EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\n");
    EXPECT_EQ(read_file(mnt("hard1")), kLinked);
    EXPECT_EQ(read_file(mnt("exec.sh")), "#!/bin/sh\necho hi\n");
    EXPECT_EQ(read_file(mnt(".wh.small.txt")), "not a whiteout");
    EXPECT_EQ(sorted(list_dir(mnt("dir"))),
              (std::vector<std::string>{".wh..wh..opq", ".wh.a.txt", "a.txt", "hard2", "sub"}));
    EXPECT_EQ(sorted(list_dir(mnt("dir/sub"))),
              (std::vector<std::string>{".wh..wh..opq", "b.txt", "deep"}));
    EXPECT_EQ(sorted(list_dir(mnt("whnames"))), (std::vector<std::string>{".wh..wh..opq", "foo"}));
    expect_same_as_ref(kShape);
  };
  check("after creating");
  remount();
  check("after remount");
  for (const std::string& root : {mnt(), ref()}) {
    for (const char* n : {".wh.small.txt", "dir/.wh..wh..opq", "dir/.wh.a.txt", ".wh.",
                          ".wh.nonexistent", ".wh.hard1", ".wh.exec.sh", "whnames/.wh..wh..opq"}) {
      ASSERT_EQ(err(::unlink((root + "/" + n).c_str())), 0) << n;
    }
    ASSERT_EQ(err(::rmdir((root + "/.wh.dir").c_str())), 0);
    ASSERT_EQ(err(::rmdir((root + "/dir/sub/.wh..wh..opq").c_str())), 0);
  }
  expect_same_as_ref(kShape, "after deleting them");
  remount();
  expect_same_as_ref(kShape, "after deleting them and remount");
}

TEST_F(NamesTest, NameMaxWorksAndLongerIsENAMETOOLONG) {
  const std::string n255 = name_of(255, 'x');
  const std::string n256 = name_of(256, 'y');
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    for (const std::string& d : {root, root + "/dir/sub"}) {
      write_file(d + "/" + n255, "max");
      EXPECT_EQ(err(::mkdir((d + "/" + name_of(255, 'm')).c_str(), 0755)), 0);
      EXPECT_EQ(err(::symlink("small.txt", (d + "/" + name_of(255, 's')).c_str())), 0);
      EXPECT_EQ(err(::link((d + "/" + n255).c_str(), (d + "/" + name_of(255, 'l')).c_str())), 0);
      EXPECT_EQ(err(::mkfifo((d + "/" + name_of(255, 'p')).c_str(), 0644)), 0);

      std::string p256 = d + "/" + n256;
      struct stat st {};
      EXPECT_EQ(err(::open(p256.c_str(), O_RDWR | O_CREAT, 0644)), ENAMETOOLONG);
      EXPECT_EQ(err(::mkdir(p256.c_str(), 0755)), ENAMETOOLONG);
      EXPECT_EQ(err(::symlink("x", p256.c_str())), ENAMETOOLONG);
      EXPECT_EQ(err(::link((d + "/" + n255).c_str(), p256.c_str())), ENAMETOOLONG);
      EXPECT_EQ(err(::rename((d + "/" + n255).c_str(), p256.c_str())), ENAMETOOLONG);
      EXPECT_EQ(err(::mkfifo(p256.c_str(), 0644)), ENAMETOOLONG);
      EXPECT_EQ(err(::lstat(p256.c_str(), &st)), ENAMETOOLONG);
      EXPECT_EQ(err(::unlink(p256.c_str())), ENAMETOOLONG);
      EXPECT_EQ(err(::rmdir(p256.c_str())), ENAMETOOLONG);
    }
    // Lower names of 255 bytes: delete, rename, recreate.
    ASSERT_EQ(err(::unlink((root + "/" + name255()).c_str())), 0);
    ASSERT_EQ(
        err(::rename((root + "/" + dir255()).c_str(), (root + "/" + name_of(255, 'R')).c_str())),
        0);
    write_file(root + "/" + dir255(), "a file where the directory was");
  }
  auto check = [&] {
    struct stat st {};
    EXPECT_EQ(err(::stat(mnt(name255()).c_str(), &st)), ENOENT);
    EXPECT_EQ(read_file(mnt(name_of(255, 'R') + "/" + name255())), "inside\n");
    EXPECT_EQ(read_file(mnt(dir255())), "a file where the directory was");
    EXPECT_EQ(read_file(mnt("dir/sub/" + n255)), "max");
    EXPECT_EQ(stat_or_throw(mnt("dir/sub/" + n255)).st_nlink, 2u);
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(NamesTest, DeepLowerPathNearPathMax) {
  const auto dirs = deep_dirs();
  {
    Fd d = walk(mnt(), dirs);
    EXPECT_EQ(read_at(d.get(), deep_file()), "deep in the lower\n");
    // Write (copies up every directory of the chain), add a sibling, rename.
    Fd f = openat_or_throw(d.get(), deep_file(), O_WRONLY | O_APPEND);
    write_fd_all(f.get(), "appended\n");
    Fd n = openat_or_throw(d.get(), "new", O_WRONLY | O_CREAT | O_EXCL, 0644);
    write_fd_all(n.get(), "new deep file\n");
    ASSERT_EQ(err(::renameat(d.get(), "new", d.get(), "renamed")), 0);
  }
  expect_copied_up(dirs[0]);
  remount();
  {
    Fd d = walk(mnt(), dirs);
    EXPECT_EQ(read_at(d.get(), deep_file()), "deep in the lower\nappended\n");
    EXPECT_EQ(read_at(d.get(), "renamed"), "new deep file\n");
    ASSERT_EQ(err(::unlinkat(d.get(), deep_file().c_str(), 0)), 0);
  }
  remount();
  {
    Fd d = walk(mnt(), dirs);
    struct stat st {};
    EXPECT_EQ(err(::fstatat(d.get(), deep_file().c_str(), &st, 0)), ENOENT);
    EXPECT_EQ(sorted(list_dir("/proc/self/fd/" + std::to_string(d.get()))),
              std::vector<std::string>{"renamed"});
  }
  // rm -rf works fd-relative as well.
  RunResult r = run({"rm", "-rf", "--", mnt(dirs[0])});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt(dirs[0]).c_str(), &st)), ENOENT);
}

TEST_F(NamesTest, NewPathsUpToPathMax) {
  // A chain whose full path, mount prefix included, is exactly PATH_MAX - 1
  // bytes: the longest path open(2) accepts.
  const std::string prefix = mnt();
  size_t remaining = PATH_MAX - 1 - (prefix.size() + 1);
  std::vector<std::string> comps;
  char c = 'A';
  while (remaining > 255) {
    size_t len = std::min<size_t>(250, remaining - 2);
    comps.push_back(std::string(len, c++));
    remaining -= len + 1;
  }
  const std::string leaf(remaining, 'z');
  std::string full = prefix;
  for (const auto& s : comps) full += "/" + s;
  full += "/" + leaf;
  ASSERT_EQ(full.size(), static_cast<size_t>(PATH_MAX - 1));
  {
    Fd dir = open_or_throw(prefix, O_RDONLY | O_DIRECTORY);
    for (const auto& s : comps) {
      ASSERT_EQ(err(::mkdirat(dir.get(), s.c_str(), 0755)), 0);
      dir = openat_or_throw(dir.get(), s, O_RDONLY | O_DIRECTORY);
    }
    Fd f = openat_or_throw(dir.get(), leaf, O_WRONLY | O_CREAT | O_EXCL, 0644);
    write_fd_all(f.get(), "at PATH_MAX");
  }
  EXPECT_EQ(read_file(full), "at PATH_MAX");
  EXPECT_EQ(err(::truncate(full.c_str(), 2)), 0);
  remount();
  EXPECT_EQ(read_file(full), "at");
  {
    // One level deeper, relative to the deepest directory: beyond PATH_MAX as
    // a full path, still fine relative to a directory fd.
    Fd dir = walk(prefix, comps);
    ASSERT_EQ(err(::mkdirat(dir.get(), "deeper", 0755)), 0);
    Fd deeper = openat_or_throw(dir.get(), "deeper", O_RDONLY | O_DIRECTORY);
    Fd f = openat_or_throw(deeper.get(), std::string(255, 'q'), O_RDWR | O_CREAT, 0644);
    write_fd_all(f.get(), "beyond");
    EXPECT_EQ(pread_all(f.get()), "beyond");
  }
  remount();
  {
    Fd dir = walk(prefix, comps);
    Fd deeper = openat_or_throw(dir.get(), "deeper", O_RDONLY | O_DIRECTORY);
    EXPECT_EQ(read_at(deeper.get(), std::string(255, 'q')), "beyond");
  }
}

}  // namespace
}  // namespace cowfs_it
