// rename(2) and renameat2(2) through a cowfs mount, each case also applied to
// a plain copy of the lower (the reference) and the trees compared.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

using RenameTest = CowfsTest;

int rename_in(const std::string& root, const std::string& from, const std::string& to,
              unsigned flags = 0) {
  return err(::renameat2(AT_FDCWD, (root + "/" + from).c_str(), AT_FDCWD, (root + "/" + to).c_str(),
                         flags));
}

TEST_F(RenameTest, RenameLowerFile) {
  ino_t ino = stat_or_throw(mnt("small.txt")).st_ino;
  for (const std::string& root : {mnt(), ref()}) {
    ASSERT_EQ(rename_in(root, "small.txt", "renamed.txt"), 0) << root;
    ASSERT_EQ(rename_in(root, "big.bin", "dir/sub/moved.bin"), 0) << root;
    EXPECT_EQ(rename_in(root, "fifo", "dir/fifo2"), 0) << root;
    ASSERT_EQ(rename_in(root, "sym", "dir/sym2"), 0) << root;  // now dangles: relative target
  }
  auto check = [&] {
    struct stat st {};
    EXPECT_EQ(err(::stat(mnt("small.txt").c_str(), &st)), ENOENT);
    EXPECT_EQ(err(::stat(mnt("big.bin").c_str(), &st)), ENOENT);
    EXPECT_EQ(read_file(mnt("renamed.txt")), kSmall);
    struct stat r = stat_or_throw(mnt("renamed.txt"));
    EXPECT_EQ(r.st_ino, ino) << "rename keeps the inode number";
    EXPECT_EQ(ns_of(r.st_mtim), kSmallMtimeNs) << "rename does not change the file's mtime";
    EXPECT_EQ(first_difference(big_content(), read_file(mnt("dir/sub/moved.bin"))), "");
    struct stat f {};
    EXPECT_EQ(err(::lstat(mnt("dir/fifo2").c_str(), &f)), 0);
    EXPECT_TRUE(S_ISFIFO(f.st_mode));
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, RenameLowerDirectoryWithContent) {
  Manifest before = Manifest::take(mnt("dir"));
  for (const std::string& root : {mnt(), ref()}) {
    ASSERT_EQ(rename_in(root, "dir", "dir2"), 0) << root;
  }
  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    struct stat st {};
    EXPECT_EQ(err(::stat(mnt("dir").c_str(), &st)), ENOENT);
    EXPECT_EQ(err(::stat(mnt("dir/a.txt").c_str(), &st)), ENOENT);
    Manifest after = Manifest::take(mnt("dir2"));
    EXPECT_EQ(diff(before, after, kSemantic | kIno), "")
        << "content of the renamed directory (with inode numbers)";
    expect_same_as_ref(kShape);
  };
  check("after rename");
  remount();
  check("after remount");

  // The old name, made again, is a new empty directory: no trace of the
  // content that moved away.
  for (const std::string& root : {mnt(), ref()}) {
    ASSERT_EQ(err(::mkdir((root + "/dir").c_str(), 0755)), 0);
    write_file(root + "/dir2/a.txt", "changed after rename\n");
    ASSERT_EQ(rename_in(root, "dir2", "dir3"), 0) << root;
    ASSERT_EQ(rename_in(root, "dir3/sub", "sub-out"), 0) << root;
  }
  auto check2 = [&](const std::string& when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(list_dir(mnt("dir")), std::vector<std::string>{});
    EXPECT_EQ(sorted(list_dir(mnt("dir3"))), (std::vector<std::string>{"a.txt", "hard2"}));
    EXPECT_EQ(read_file(mnt("dir3/a.txt")), "changed after rename\n");
    EXPECT_EQ(read_file(mnt("sub-out/deep/c.txt")), "c\n");
    expect_same_as_ref(kShape);
  };
  check2("after more renames");
  remount();
  check2("after remount");
}

TEST_F(RenameTest, RenameDirectoryBackToItsOriginalName) {
  for (const std::string& root : {mnt(), ref()}) {
    ASSERT_EQ(rename_in(root, "dir", "elsewhere"), 0);
    write_file(root + "/elsewhere/new.txt", "new");
    ASSERT_EQ(rename_in(root, "elsewhere", "dir"), 0);
  }
  expect_same_as_ref(kShape, "after rename and back");
  remount();
  expect_same_as_ref(kShape, "after remount");
  EXPECT_EQ(sorted(list_dir(mnt("dir"))),
            (std::vector<std::string>{"a.txt", "hard2", "new.txt", "sub"}));
}

TEST_F(RenameTest, RenameOverExistingFiles) {
  for (const std::string& root : {mnt(), ref()}) {
    write_file(root + "/new.txt", "new file\n");
    ASSERT_EQ(rename_in(root, "new.txt", "small.txt"), 0);  // new over lower
    ASSERT_EQ(rename_in(root, "xattr.txt", "exec.sh"), 0);  // lower over lower
    write_file(root + "/target.txt", "target\n");
    ASSERT_EQ(rename_in(root, "owned.txt", "target.txt"), 0);  // lower over new
    ASSERT_EQ(rename_in(root, "dir/a.txt", "dir/sub/b.txt"), 0);
    ASSERT_EQ(rename_in(root, "sym", "dangling"), 0);  // symlink over symlink
    // Two names of one inode: rename does nothing and succeeds.
    ASSERT_EQ(rename_in(root, "hard1", "dir/hard2"), 0);
    ASSERT_EQ(rename_in(root, "empty", "empty"), 0);
  }
  auto check = [&] {
    struct stat st {};
    EXPECT_EQ(read_file(mnt("small.txt")), "new file\n");
    EXPECT_EQ(read_file(mnt("exec.sh")), "has xattr\n");
    EXPECT_EQ(err(::stat(mnt("xattr.txt").c_str(), &st)), ENOENT);
    EXPECT_EQ(read_file(mnt("target.txt")), "owned by someone else\n");
    EXPECT_EQ(stat_or_throw(mnt("target.txt")).st_uid, 4242u);
    EXPECT_EQ(read_file(mnt("dir/sub/b.txt")), "a\n");
    EXPECT_EQ(read_file(mnt("hard1")), kLinked) << "rename onto a hard link of itself is a no-op";
    EXPECT_EQ(read_file(mnt("dir/hard2")), kLinked);
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, DirectoryOntoDirectory) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    ASSERT_EQ(err(::mkdir((root + "/newdir").c_str(), 0755)), 0);
    write_file(root + "/newdir/f", "f");
    ASSERT_EQ(err(::mkdir((root + "/newempty").c_str(), 0755)), 0);
    // Onto populated directories: lower, new, and merged.
    EXPECT_EQ(rename_in(root, "empty", "dir"), ENOTEMPTY);
    EXPECT_EQ(rename_in(root, "newempty", "whnames"), ENOTEMPTY);
    EXPECT_EQ(rename_in(root, "empty", "newdir"), ENOTEMPTY);
    EXPECT_EQ(rename_in(root, "whnames", "dir/sub"), ENOTEMPTY);
    // Type mismatches and loops.
    EXPECT_EQ(rename_in(root, "small.txt", "empty"), EISDIR);
    EXPECT_EQ(rename_in(root, "empty", "small.txt"), ENOTDIR);
    EXPECT_EQ(rename_in(root, "dir", "dir/sub/inside"), EINVAL);
    EXPECT_EQ(rename_in(root, "missing", "x"), ENOENT);
    // Onto an empty lower directory, and onto a lower directory emptied
    // through the mount.
    EXPECT_EQ(rename_in(root, "whnames", "empty"), 0);
    ASSERT_EQ(err(::unlink((root + "/dir/sub/deep/c.txt").c_str())), 0);
    EXPECT_EQ(rename_in(root, "newdir", "dir/sub/deep"), 0);
    EXPECT_EQ(rename_in(root, "newempty", "dir/sub/deep"), ENOTEMPTY);
  }
  auto check = [&] {
    EXPECT_EQ(sorted(list_dir(mnt("empty"))),
              (std::vector<std::string>{".wh..wh..opq", ".wh.foo", "bar", "foo"}));
    EXPECT_EQ(list_dir(mnt("dir/sub/deep")), std::vector<std::string>{"f"});
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, NoReplace) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    write_file(root + "/new.txt", "new\n");
    EXPECT_EQ(rename_in(root, "small.txt", "xattr.txt", RENAME_NOREPLACE), EEXIST);
    EXPECT_EQ(rename_in(root, "new.txt", "small.txt", RENAME_NOREPLACE), EEXIST);
    EXPECT_EQ(rename_in(root, "small.txt", "new.txt", RENAME_NOREPLACE), EEXIST);
    EXPECT_EQ(rename_in(root, "dir", "empty", RENAME_NOREPLACE), EEXIST);
    EXPECT_EQ(rename_in(root, "small.txt", "sym", RENAME_NOREPLACE), EEXIST);
    EXPECT_EQ(rename_in(root, "small.txt", "fresh.txt", RENAME_NOREPLACE), 0);
    // Onto a deleted lower name.
    ASSERT_EQ(err(::unlink((root + "/exec.sh").c_str())), 0);
    EXPECT_EQ(rename_in(root, "new.txt", "exec.sh", RENAME_NOREPLACE), 0);
    ASSERT_EQ(err(::rmdir((root + "/empty").c_str())), 0);
    EXPECT_EQ(rename_in(root, "dir", "empty", RENAME_NOREPLACE), 0);
  }
  auto check = [&] {
    EXPECT_EQ(read_file(mnt("fresh.txt")), kSmall);
    EXPECT_EQ(read_file(mnt("exec.sh")), "new\n");
    EXPECT_EQ(read_file(mnt("xattr.txt")), "has xattr\n");
    EXPECT_EQ(read_file(mnt("empty/a.txt")), "a\n");
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, Exchange) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    write_file(root + "/new.txt", "new\n");
    EXPECT_EQ(rename_in(root, "small.txt", "new.txt", RENAME_EXCHANGE), 0);  // lower <-> new
    EXPECT_EQ(rename_in(root, "exec.sh", "xattr.txt", RENAME_EXCHANGE), 0);  // lower <-> lower
    EXPECT_EQ(rename_in(root, "whnames", "hard1", RENAME_EXCHANGE), 0);      // dir <-> file
    EXPECT_EQ(rename_in(root, "dir", "empty", RENAME_EXCHANGE), 0);          // dir <-> dir
    EXPECT_EQ(rename_in(root, "small.txt", "missing", RENAME_EXCHANGE), ENOENT);
    EXPECT_EQ(rename_in(root, "small.txt", "missing", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
  }
  auto check = [&] {
    EXPECT_EQ(read_file(mnt("small.txt")), "new\n");
    EXPECT_EQ(read_file(mnt("new.txt")), kSmall);
    EXPECT_EQ(read_file(mnt("exec.sh")), "has xattr\n");
    EXPECT_EQ(read_file(mnt("xattr.txt")), "#!/bin/sh\necho hi\n");
    EXPECT_EQ(stat_or_throw(mnt("xattr.txt")).st_mode & 07777, 0755u);
    EXPECT_EQ(read_file(mnt("whnames")), kLinked);
    EXPECT_EQ(read_file(mnt("hard1/foo")), "content of foo\n");
    EXPECT_EQ(read_file(mnt("empty/sub/b.txt")), "b\n");
    EXPECT_EQ(list_dir(mnt("dir")), std::vector<std::string>{});
    EXPECT_EQ(stat_or_throw(mnt("whnames")).st_nlink, 2u) << "still linked to empty/hard2";
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, RenameOntoDeletedLowerNames) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    // A file onto the name of a deleted lower directory.
    RunResult r = run({"rm", "-rf", "--", root + "/dir"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(rename_in(root, "small.txt", "dir"), 0);
    // A new directory onto the name of a deleted lower directory: it must not
    // merge with what the lower had there.
    r = run({"rm", "-rf", "--", root + "/whnames"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(err(::mkdir((root + "/fresh").c_str(), 0755)), 0);
    write_file(root + "/fresh/only", "only");
    ASSERT_EQ(rename_in(root, "fresh", "whnames"), 0);
    // A lower directory onto the name of another deleted lower directory.
    ASSERT_EQ(err(::rmdir((root + "/empty").c_str())), 0);
    ASSERT_EQ(err(::unlink((root + "/dir").c_str())), 0);
    ASSERT_EQ(err(::mkdir((root + "/dir").c_str(), 0755)), 0);
    write_file(root + "/dir/x", "x");
    ASSERT_EQ(rename_in(root, "dir", "empty"), 0);
  }
  auto check = [&] {
    EXPECT_EQ(list_dir(mnt("whnames")), std::vector<std::string>{"only"});
    EXPECT_EQ(list_dir(mnt("empty")), std::vector<std::string>{"x"});
    struct stat st {};
    EXPECT_EQ(err(::lstat(mnt("dir").c_str(), &st)), ENOENT);
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, LowerDirectoryOntoDeletedLowerDirectory) {
  for (const std::string& root : {mnt(), ref()}) {
    RunResult r = run({"rm", "-rf", "--", root + "/whnames"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(rename_in(root, "dir", "whnames"), 0);
  }
  auto check = [&] {
    EXPECT_EQ(sorted(list_dir(mnt("whnames"))),
              (std::vector<std::string>{"a.txt", "hard2", "sub"}));
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, DeletionsTravelWithARenamedDirectory) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    ASSERT_EQ(err(::unlink((root + "/dir/a.txt").c_str())), 0);
    RunResult r = run({"rm", "-rf", "--", root + "/dir/sub/deep"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(rename_in(root, "dir", "dir2"), 0);
    // Delete inside the renamed directory too, then move it back.
    ASSERT_EQ(err(::unlink((root + "/dir2/hard2").c_str())), 0);
    ASSERT_EQ(rename_in(root, "dir2", "dir"), 0);
    ASSERT_EQ(rename_in(root, "dir", "empty/inner"), 0);  // into another lower directory
  }
  auto check = [&] {
    EXPECT_EQ(sorted(list_dir(mnt("empty/inner"))), std::vector<std::string>{"sub"});
    EXPECT_EQ(sorted(list_dir(mnt("empty/inner/sub"))), std::vector<std::string>{"b.txt"});
    EXPECT_EQ(stat_or_throw(mnt("hard1")).st_nlink, 1u);
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(RenameTest, NestedRenamesOfLowerDirectories) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    ASSERT_EQ(rename_in(root, "dir/sub", "top-sub"), 0);
    ASSERT_EQ(rename_in(root, "dir", "whnames/dir-moved"), 0);
    ASSERT_EQ(rename_in(root, "top-sub", "whnames/dir-moved/sub-back"), 0);
    ASSERT_EQ(rename_in(root, "whnames/dir-moved/sub-back/deep", "deep-at-top"), 0);
    write_file(root + "/whnames/dir-moved/sub-back/new.txt", "new");
    ASSERT_EQ(err(::mkdir((root + "/dir").c_str(), 0755)), 0);  // the old name again
  }
  auto check = [&] {
    EXPECT_EQ(read_file(mnt("whnames/dir-moved/a.txt")), "a\n");
    EXPECT_EQ(sorted(list_dir(mnt("whnames/dir-moved/sub-back"))),
              (std::vector<std::string>{"b.txt", "new.txt"}));
    EXPECT_EQ(read_file(mnt("deep-at-top/c.txt")), "c\n");
    EXPECT_EQ(list_dir(mnt("dir")), std::vector<std::string>{});
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
  // And all of it removed: nothing comes back.
  for (const std::string& root : {mnt(), ref()}) {
    RunResult r = run({"rm", "-rf", "--", root + "/whnames", root + "/deep-at-top", root + "/dir"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_EQ(err(::mkdir((root + "/whnames").c_str(), 0755)), 0);
  }
  expect_same_as_ref(kShape, "after rm -rf");
  remount();
  expect_same_as_ref(kShape, "after rm -rf and remount");
  EXPECT_EQ(list_dir(mnt("whnames")), std::vector<std::string>{});
}

TEST_F(RenameTest, OpenFilesFollowTheirRenamedDirectory) {
  Fd fd = open_or_throw(mnt("dir/sub/b.txt"), O_RDWR);
  ASSERT_EQ(err(::rename(mnt("dir").c_str(), mnt("dir-renamed").c_str())), 0);
  pwrite_all(fd.get(), "B", 0);
  EXPECT_EQ(read_file(mnt("dir-renamed/sub/b.txt")), "B\n");
  fd.reset();
  remount();
  EXPECT_EQ(read_file(mnt("dir-renamed/sub/b.txt")), "B\n");
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("dir").c_str(), &st)), ENOENT);
}

TEST_F(RenameTest, RenameWhileOpen) {
  Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
  ASSERT_EQ(err(::rename(mnt("small.txt").c_str(), mnt("dir/moved.txt").c_str())), 0);
  pwrite_all(fd.get(), "WRITTEN", 0);
  EXPECT_EQ(read_file(mnt("dir/moved.txt")), "WRITTEN" + std::string(kSmall.substr(7)));
  fd.reset();
  remount();
  EXPECT_EQ(read_file(mnt("dir/moved.txt")), "WRITTEN" + std::string(kSmall.substr(7)));
}

}  // namespace
}  // namespace cowfs_it
