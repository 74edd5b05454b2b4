// Hard links (including lower hard links through copy-up and remount),
// symlinks and special files through a cowfs mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <climits>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

using LinksTest = CowfsTest;

TEST_F(LinksTest, LowerHardLinksStayLinkedThroughCopyUpAndRemount) {
  struct stat a = stat_or_throw(mnt("hard1"));
  struct stat b = stat_or_throw(mnt("dir/hard2"));
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(b.st_nlink, 2u);

  // Write through one name (copy-up); the other name shows it.
  {
    Fd fd = open_or_throw(mnt("hard1"), O_WRONLY | O_APPEND);
    write_fd_all(fd.get(), "via hard1\n");
  }
  std::string want = std::string(kLinked) + "via hard1\n";
  EXPECT_EQ(read_file(mnt("dir/hard2")), want);
  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    struct stat x = stat_or_throw(mnt("hard1"));
    struct stat y = stat_or_throw(mnt("dir/hard2"));
    EXPECT_EQ(x.st_ino, a.st_ino);
    EXPECT_EQ(y.st_ino, a.st_ino);
    EXPECT_EQ(x.st_nlink, 2u);
    EXPECT_EQ(y.st_nlink, 2u);
    EXPECT_EQ(read_file(mnt("hard1")), want);
    EXPECT_EQ(read_file(mnt("dir/hard2")), want);
  };
  check("after copy-up");
  remount();
  check("after remount");

  // Now through the other name, after the remount, and metadata too.
  append_file(mnt("dir/hard2"), "via hard2\n");
  ASSERT_EQ(err(::chmod(mnt("dir/hard2").c_str(), 0600)), 0);
  want += "via hard2\n";
  check("after second write");
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_mode & 07777, 0600u);
  remount();
  check("after second remount");
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_mode & 07777, 0600u);
}

TEST_F(LinksTest, LowerHardLinkMetadataChangeShowsThroughTheOtherName) {
  ASSERT_EQ(err(::chown(mnt("dir/hard2").c_str(), 99, 98)), 0);
  struct stat st = stat_or_throw(mnt("hard1"));
  EXPECT_EQ(st.st_uid, 99u);
  EXPECT_EQ(st.st_gid, 98u);
  remount();
  st = stat_or_throw(mnt("hard1"));
  EXPECT_EQ(st.st_uid, 99u);
  EXPECT_EQ(st.st_gid, 98u);
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_ino, stat_or_throw(mnt("dir/hard2")).st_ino);
}

TEST_F(LinksTest, XattrOnLowerHardLinkShowsThroughTheOtherName) {
  ASSERT_EQ(err(::setxattr(mnt("hard1").c_str(), "user.via", "hard1", 5, 0)), 0);
  char buf[16];
  ssize_t n = ::getxattr(mnt("dir/hard2").c_str(), "user.via", buf, sizeof buf);
  EXPECT_EQ(n, 5) << errno_name(errno);
  remount();
  n = ::getxattr(mnt("dir/hard2").c_str(), "user.via", buf, sizeof buf);
  ASSERT_EQ(n, 5) << errno_name(errno);
  EXPECT_EQ(std::string(buf, 5), "hard1");
}

TEST_F(LinksTest, LowerHardLinkInARenamedDirectory) {
  ASSERT_EQ(err(::rename(mnt("dir").c_str(), mnt("moved").c_str())), 0);
  append_file(mnt("hard1"), "after the rename\n");
  std::string want = std::string(kLinked) + "after the rename\n";
  EXPECT_EQ(read_file(mnt("moved/hard2")), want);
  remount();
  EXPECT_EQ(read_file(mnt("moved/hard2")), want);
  EXPECT_EQ(read_file(mnt("hard1")), want);
  EXPECT_EQ(stat_or_throw(mnt("moved/hard2")).st_ino, stat_or_throw(mnt("hard1")).st_ino);
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_nlink, 2u);
}

TEST_F(LinksTest, OpenLowerHardLinkAfterUnlinkOfOneName) {
  Fd fd = open_or_throw(mnt("hard1"), O_RDWR);
  ASSERT_EQ(err(::unlink(mnt("hard1").c_str())), 0);
  EXPECT_EQ(fstat_or_throw(fd.get()).st_nlink, 1u) << "dir/hard2 still names the file";
  pwrite_all(fd.get(), "L", 0);
  EXPECT_EQ(read_file(mnt("dir/hard2")), "L" + std::string(kLinked.substr(1)));
  fd.reset();
  remount();
  EXPECT_EQ(read_file(mnt("dir/hard2")), "L" + std::string(kLinked.substr(1)));
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_nlink, 1u);
}

TEST_F(LinksTest, RenamedLowerHardLinkStaysLinked) {
  ino_t ino = stat_or_throw(mnt("hard1")).st_ino;
  ASSERT_EQ(err(::rename(mnt("hard1").c_str(), mnt("empty/renamed").c_str())), 0);
  append_file(mnt("dir/hard2"), "+");
  EXPECT_EQ(read_file(mnt("empty/renamed")), std::string(kLinked) + "+");
  remount();
  EXPECT_EQ(read_file(mnt("empty/renamed")), std::string(kLinked) + "+");
  EXPECT_EQ(stat_or_throw(mnt("empty/renamed")).st_ino, ino);
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_ino, ino);
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_nlink, 2u);
}

TEST_F(LinksTest, UnlinkOneLowerHardLink) {
  ASSERT_EQ(err(::unlink(mnt("dir/hard2").c_str())), 0);
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_nlink, 1u);
  EXPECT_EQ(read_file(mnt("hard1")), kLinked);
  append_file(mnt("hard1"), "more");
  remount();
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_nlink, 1u);
  EXPECT_EQ(read_file(mnt("hard1")), std::string(kLinked) + "more");
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("dir/hard2").c_str(), &st)), ENOENT);
}

TEST_F(LinksTest, NewHardLinkToLowerFile) {
  ino_t ino = stat_or_throw(mnt("small.txt")).st_ino;
  ASSERT_EQ(err(::link(mnt("small.txt").c_str(), mnt("dir/small-link").c_str())), 0);
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_nlink, 2u);
  EXPECT_EQ(stat_or_throw(mnt("dir/small-link")).st_nlink, 2u);
  EXPECT_EQ(stat_or_throw(mnt("dir/small-link")).st_ino, ino);
  {
    Fd fd = open_or_throw(mnt("dir/small-link"), O_WRONLY);
    pwrite_all(fd.get(), "LINK", 0);
  }
  std::string want = "LINK" + std::string(kSmall.substr(4));
  EXPECT_EQ(read_file(mnt("small.txt")), want);
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), want);
  EXPECT_EQ(read_file(mnt("dir/small-link")), want);
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_ino, ino);
  EXPECT_EQ(stat_or_throw(mnt("dir/small-link")).st_ino, ino);
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_nlink, 2u);
  // Unlinking the original keeps the link.
  ASSERT_EQ(err(::unlink(mnt("small.txt").c_str())), 0);
  EXPECT_EQ(read_file(mnt("dir/small-link")), want);
  EXPECT_EQ(stat_or_throw(mnt("dir/small-link")).st_nlink, 1u);
  remount();
  EXPECT_EQ(read_file(mnt("dir/small-link")), want);
  EXPECT_EQ(stat_or_throw(mnt("dir/small-link")).st_nlink, 1u);
}

TEST_F(LinksTest, ThirdLinkToLowerHardLinkedFile) {
  ASSERT_EQ(err(::link(mnt("hard1").c_str(), mnt("hard3").c_str())), 0);
  EXPECT_EQ(stat_or_throw(mnt("hard1")).st_nlink, 3u);
  append_file(mnt("hard3"), "3");
  remount();
  for (const char* n : {"hard1", "dir/hard2", "hard3"}) {
    EXPECT_EQ(read_file(mnt(n)), std::string(kLinked) + "3") << n;
    EXPECT_EQ(stat_or_throw(mnt(n)).st_nlink, 3u) << n;
  }
}

TEST_F(LinksTest, HardLinksOfNewFilesAndErrors) {
  write_file(mnt("new.txt"), "new");
  ASSERT_EQ(err(::link(mnt("new.txt").c_str(), mnt("dir/new-link").c_str())), 0);
  append_file(mnt("dir/new-link"), "+");
  EXPECT_EQ(read_file(mnt("new.txt")), "new+");
  EXPECT_EQ(err(::link(mnt("new.txt").c_str(), mnt("small.txt").c_str())), EEXIST);
  EXPECT_EQ(err(::link(mnt("dir").c_str(), mnt("dirlink").c_str())), EPERM);
  EXPECT_EQ(err(::link(mnt("missing").c_str(), mnt("x").c_str())), ENOENT);
  // link() of a symlink links the symlink itself.
  ASSERT_EQ(err(::linkat(AT_FDCWD, mnt("sym").c_str(), AT_FDCWD, mnt("sym-link").c_str(), 0)), 0);
  EXPECT_TRUE(S_ISLNK(lstat_or_throw(mnt("sym-link")).st_mode));
  remount();
  EXPECT_EQ(read_file(mnt("dir/new-link")), "new+");
  EXPECT_EQ(stat_or_throw(mnt("new.txt")).st_nlink, 2u);
  EXPECT_EQ(lstat_or_throw(mnt("sym")).st_ino, lstat_or_throw(mnt("sym-link")).st_ino);
}

std::string readlink_str(const std::string& path) {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return "<" + errno_name(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

TEST_F(LinksTest, Symlinks) {
  EXPECT_EQ(readlink_str(mnt("sym")), "small.txt");
  EXPECT_EQ(readlink_str(mnt("dangling")), "does/not/exist");
  EXPECT_EQ(lstat_or_throw(mnt("sym")).st_size, 9);
  struct stat st {};
  EXPECT_EQ(err(::stat(mnt("dangling").c_str(), &st)), ENOENT);

  ASSERT_EQ(err(::symlink("dir/sub/b.txt", mnt("newsym").c_str())), 0);
  ASSERT_EQ(err(::symlink("../a.txt", mnt("dir/sub/up").c_str())), 0);
  std::string long_target(1000, 'x');
  ASSERT_EQ(err(::symlink(long_target.c_str(), mnt("longsym").c_str())), 0);
  EXPECT_EQ(err(::symlink("x", mnt("small.txt").c_str())), EEXIST);
  struct stat ls = lstat_or_throw(mnt("newsym"));
  EXPECT_TRUE(S_ISLNK(ls.st_mode));
  EXPECT_EQ(ls.st_size, 13);
  EXPECT_EQ(ls.st_uid, ::geteuid());
  // Retarget a lower symlink: delete and recreate it.
  ASSERT_EQ(err(::unlink(mnt("sym").c_str())), 0);
  ASSERT_EQ(err(::symlink("exec.sh", mnt("sym").c_str())), 0);
  auto check = [&] {
    EXPECT_EQ(readlink_str(mnt("newsym")), "dir/sub/b.txt");
    EXPECT_EQ(read_file(mnt("newsym")), "b\n");
    EXPECT_EQ(read_file(mnt("dir/sub/up")), "a\n");
    EXPECT_EQ(readlink_str(mnt("longsym")), long_target);
    EXPECT_EQ(readlink_str(mnt("sym")), "exec.sh");
    EXPECT_EQ(read_file(mnt("sym")), "#!/bin/sh\necho hi\n");
  };
  check();
  remount();
  check();
}

TEST_F(LinksTest, FifosAndMknod) {
  EXPECT_TRUE(S_ISFIFO(lstat_or_throw(mnt("fifo")).st_mode));
  ASSERT_EQ(err(::mkfifo(mnt("newfifo").c_str(), 0640)), 0);
  ASSERT_EQ(err(::mknod(mnt("dir/nodfifo").c_str(), S_IFIFO | 0600, 0)), 0);
  ASSERT_EQ(err(::mknod(mnt("regular").c_str(), S_IFREG | 0600, 0)), 0);
  ASSERT_EQ(err(::mknod(mnt("null").c_str(), S_IFCHR | 0666, makedev(1, 3))), 0);
  EXPECT_EQ(err(::mkfifo(mnt("small.txt").c_str(), 0600)), EEXIST);
  struct stat f = lstat_or_throw(mnt("newfifo"));
  EXPECT_TRUE(S_ISFIFO(f.st_mode));
  EXPECT_EQ(f.st_mode & 07777, 0640u);
  EXPECT_TRUE(S_ISREG(lstat_or_throw(mnt("regular")).st_mode));
  EXPECT_EQ(lstat_or_throw(mnt("regular")).st_size, 0);
  // Data through a FIFO in the mount.
  {
    Fd r = open_or_throw(mnt("newfifo"), O_RDONLY | O_NONBLOCK);
    Fd w = open_or_throw(mnt("newfifo"), O_WRONLY | O_NONBLOCK);
    write_fd_all(w.get(), "through the fifo");
    char buf[64];
    ssize_t n = ::read(r.get(), buf, sizeof buf);
    ASSERT_GT(n, 0) << errno_name(errno);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "through the fifo");
  }
  // Changing the lower FIFO's metadata copies it up as a FIFO.
  EXPECT_EQ(err(::chmod(mnt("fifo").c_str(), 0600)), 0);
  auto check = [&] {
    struct stat lf = lstat_or_throw(mnt("fifo"));
    EXPECT_TRUE(S_ISFIFO(lf.st_mode));
    EXPECT_EQ(lf.st_mode & 07777, 0600u);
    EXPECT_TRUE(S_ISFIFO(lstat_or_throw(mnt("dir/nodfifo")).st_mode));
    struct stat cd = lstat_or_throw(mnt("null"));
    EXPECT_TRUE(S_ISCHR(cd.st_mode));
    EXPECT_EQ(cd.st_rdev, makedev(1, 3));
  };
  check();
  remount();
  check();
}

}  // namespace
}  // namespace cowfs_it
