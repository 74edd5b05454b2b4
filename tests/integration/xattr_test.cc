// Extended attributes through a cowfs mount, including names in the
// user.cowfs. namespace that the store uses for its own markers.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

using XattrTest = CowfsTest;

// Value of an xattr, or "<ERRNO>" if it cannot be read.
std::string getx(const std::string& path, const std::string& name) {
  char buf[65536];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) return "<" + std::string(::strerrorname_np(errno)) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> listx(const std::string& path) {
  char buf[65536];
  ssize_t n = ::llistxattr(path.c_str(), buf, sizeof buf);
  if (n < 0) return {"<" + std::string(::strerrorname_np(errno)) + ">"};
  std::vector<std::string> out;
  for (size_t pos = 0; pos < static_cast<size_t>(n);) {
    std::string name = buf + pos;
    pos += name.size() + 1;
    out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

int setx(const std::string& path, const std::string& name, const std::string& value,
         int flags = 0) {
  return err(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), flags));
}

TEST_F(XattrTest, ReadLowerXattrsWithoutCopyUp) {
  EXPECT_EQ(getx(mnt("xattr.txt"), "user.test"), "1");
  EXPECT_EQ(listx(mnt("xattr.txt")), std::vector<std::string>{"user.test"});
  EXPECT_EQ(getx(mnt("dir"), "user.dirattr"), "yes");
  EXPECT_EQ(getx(mnt("small.txt"), "user.test"), "<ENODATA>");
  EXPECT_EQ(listx(mnt("small.txt")), std::vector<std::string>{});
  // Size query and a too-small buffer.
  EXPECT_EQ(::getxattr(mnt("xattr.txt").c_str(), "user.test", nullptr, 0), 1);
  char tiny[1];
  EXPECT_EQ(err(::getxattr(mnt("dir").c_str(), "user.dirattr", tiny, sizeof tiny)), ERANGE);
  EXPECT_EQ(::listxattr(mnt("xattr.txt").c_str(), nullptr, 0), 10);  // "user.test\0"
  expect_top_empty("after only reading xattrs");
}

TEST_F(XattrTest, SetGetListRemove) {
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    EXPECT_EQ(setx(root + "/xattr.txt", "user.test", "2"), 0);  // change a lower one
    EXPECT_EQ(setx(root + "/xattr.txt", "user.added", std::string("bin\0ary", 7)), 0);
    EXPECT_EQ(setx(root + "/small.txt", "user.big", std::string(4000, 'v')), 0);
    EXPECT_EQ(setx(root + "/dir", "user.dirattr", "changed"), 0);
    EXPECT_EQ(setx(root + "/empty", "user.e", ""), 0);  // empty value
    write_file(root + "/new.txt", "n");
    EXPECT_EQ(setx(root + "/new.txt", "user.n", "v"), 0);
    // Flags.
    EXPECT_EQ(setx(root + "/xattr.txt", "user.test", "3", XATTR_CREATE), EEXIST);
    EXPECT_EQ(setx(root + "/xattr.txt", "user.none", "3", XATTR_REPLACE), ENODATA);
    EXPECT_EQ(setx(root + "/exec.sh", "user.none", "3", XATTR_REPLACE), ENODATA);
    EXPECT_EQ(setx(root + "/exec.sh", "user.c", "c", XATTR_CREATE), 0);
    // Remove, on a lower file and on a copied-up one.
    EXPECT_EQ(err(::removexattr((root + "/dir").c_str(), "user.dirattr")), 0);
    EXPECT_EQ(err(::removexattr((root + "/xattr.txt").c_str(), "user.test")), 0);
    EXPECT_EQ(err(::removexattr((root + "/xattr.txt").c_str(), "user.test")), ENODATA);
    EXPECT_EQ(err(::removexattr((root + "/small.txt").c_str(), "user.nope")), ENODATA);
    // user.* xattrs are not allowed on symlinks (and the FIFO is a special file too).
    EXPECT_EQ(setx(root + "/sym", "user.x", "x"), EPERM);
  }
  auto check = [&] {
    EXPECT_EQ(getx(mnt("xattr.txt"), "user.test"), "<ENODATA>");
    EXPECT_EQ(getx(mnt("xattr.txt"), "user.added"), std::string("bin\0ary", 7));
    EXPECT_EQ(listx(mnt("xattr.txt")), std::vector<std::string>{"user.added"});
    EXPECT_EQ(getx(mnt("small.txt"), "user.big"), std::string(4000, 'v'));
    EXPECT_EQ(listx(mnt("dir")), std::vector<std::string>{});
    EXPECT_EQ(getx(mnt("empty"), "user.e"), "");
    EXPECT_EQ(getx(mnt("new.txt"), "user.n"), "v");
    EXPECT_EQ(getx(mnt("exec.sh"), "user.c"), "c");
    EXPECT_EQ(read_file(mnt("xattr.txt")), "has xattr\n");
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
}

TEST_F(XattrTest, CopiedUpFilesShowNoInternalXattrs) {
  // Every kind of change that copies up or records something in the store;
  // none of it may surface as an xattr the user did not set.
  append_file(mnt("xattr.txt"), "x");
  append_file(mnt("hard1"), "x");
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), "x", 1 << 20);
  }
  write_file(mnt("dir/sub/new"), "n");
  ASSERT_EQ(err(::rename(mnt("whnames").c_str(), mnt("moved").c_str())), 0);
  ASSERT_EQ(err(::unlink(mnt("dir/a.txt").c_str())), 0);
  RunResult r = run({"rm", "-rf", mnt("empty")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(err(::mkdir(mnt("empty").c_str(), 0755)), 0);
  auto check = [&] {
    EXPECT_EQ(listx(mnt("xattr.txt")), std::vector<std::string>{"user.test"});
    EXPECT_EQ(listx(mnt("hard1")), std::vector<std::string>{});
    EXPECT_EQ(listx(mnt("big.bin")), std::vector<std::string>{});
    EXPECT_EQ(listx(mnt("dir")), std::vector<std::string>{"user.dirattr"});
    EXPECT_EQ(listx(mnt("dir/sub")), std::vector<std::string>{});
    EXPECT_EQ(listx(mnt("moved")), std::vector<std::string>{});
    EXPECT_EQ(listx(mnt("empty")), std::vector<std::string>{});
    EXPECT_EQ(listx(mnt()), listx(lower())) << "the mount root";
  };
  check();
  remount();
  check();
}

TEST_F(XattrTest, UserXattrsNamedLikeStoreMarkersAreJustXattrs) {
  const std::vector<std::string> names = {"user.cowfs.opaque",   "user.cowfs.redirect",
                                          "user.cowfs.origin",   "user.cowfs.x",
                                          "user.overlay.opaque", "trusted.overlay.opaque"};
  for (const std::string& root : {mnt(), ref()}) {
    SCOPED_TRACE(root);
    for (const auto& n : names) {
      if (n.rfind("trusted.", 0) == 0) continue;
      EXPECT_EQ(setx(root + "/dir", n, "y"), 0) << n;           // a lower directory
      EXPECT_EQ(setx(root + "/small.txt", n, "../x"), 0) << n;  // a lower file
    }
    EXPECT_EQ(setx(root + "/whnames", "trusted.overlay.opaque", "y"), 0);
    ASSERT_EQ(err(::mkdir((root + "/newdir").c_str(), 0755)), 0);
    write_file(root + "/newdir/f", "f");
    EXPECT_EQ(setx(root + "/newdir", "user.cowfs.opaque", "y"), 0);
    EXPECT_EQ(setx(root + "/newdir", "user.cowfs.redirect", "/dir"), 0);
  }
  auto check = [&] {
    // Still merged with the lower content: the xattrs made nothing opaque.
    EXPECT_EQ(sorted(list_dir(mnt("dir"))), (std::vector<std::string>{"a.txt", "hard2", "sub"}));
    EXPECT_EQ(sorted(list_dir(mnt("whnames"))),
              (std::vector<std::string>{".wh..wh..opq", ".wh.foo", "bar", "foo"}));
    EXPECT_EQ(list_dir(mnt("newdir")), std::vector<std::string>{"f"});
    EXPECT_EQ(getx(mnt("dir"), "user.cowfs.opaque"), "y");
    EXPECT_EQ(getx(mnt("small.txt"), "user.cowfs.origin"), "../x");
    EXPECT_EQ(getx(mnt("newdir"), "user.cowfs.redirect"), "/dir");
    EXPECT_EQ(getx(mnt("whnames"), "trusted.overlay.opaque"), "y");
    expect_same_as_ref(kShape);
  };
  check();
  remount();
  check();
  for (const std::string& root : {mnt(), ref()}) {
    EXPECT_EQ(err(::removexattr((root + "/dir").c_str(), "user.cowfs.opaque")), 0);
    EXPECT_EQ(err(::removexattr((root + "/newdir").c_str(), "user.cowfs.redirect")), 0);
  }
  expect_same_as_ref(kShape, "after removing them");
}

}  // namespace
}  // namespace cowfs_it
