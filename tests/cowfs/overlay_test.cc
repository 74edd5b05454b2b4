#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

TEST_F(OverlayTest, ReadsLowerWithoutCopyingUp) {
  write_lower("a/b.txt", "hello");
  mount();
  EXPECT_EQ(read("a/b.txt"), "hello");
  EXPECT_TRUE(std::filesystem::is_empty(store_->path() + "/layers/" + store_->records().back().id +
                                        "/tree"));
}

TEST_F(OverlayTest, WriteCopiesUpAndKeepsInodeNumber) {
  write_lower("a/b.txt", "hello world");
  mount();
  auto before = overlay_->getattr(*walk("a/b.txt"));
  ASSERT_TRUE(before);
  write("a/b.txt", "HELLO");
  EXPECT_EQ(read("a/b.txt"), "HELLO world");
  EXPECT_EQ(lower_content("a/b.txt"), "hello world");
  auto after = overlay_->getattr(*walk("a/b.txt"));
  EXPECT_EQ(before->st_ino, after->st_ino);
  mount();  // remount
  auto remounted = overlay_->getattr(*walk("a/b.txt"));
  EXPECT_EQ(before->st_ino, remounted->st_ino);
  EXPECT_EQ(read("a/b.txt"), "HELLO world");
}

TEST_F(OverlayTest, UnlinkOfLowerNameLeavesWhiteout) {
  write_lower("d/x", "1");
  write_lower("d/y", "2");
  mount();
  ASSERT_TRUE(overlay_->unlink(dir("d"), "x").ok());
  EXPECT_EQ(walk("d/x").error(), ENOENT);
  EXPECT_EQ(list("d"), std::vector<std::string>{"y"});
  mount();
  EXPECT_EQ(walk("d/x").error(), ENOENT);
  EXPECT_EQ(lower_content("d/x"), "1");
}

// Switches this thread's filesystem identity (fsuid, fsgid) to an ordinary
// user for the guard's lifetime: the kernel then checks permissions as for
// that user, as it does for an unprivileged daemon. Per thread, unlike
// seteuid, and the capabilities that override permissions go with it.
class AsUser {
 public:
  AsUser(uid_t uid, gid_t gid) {
    ::syscall(SYS_setfsgid, gid);
    ::syscall(SYS_setfsuid, uid);
  }
  ~AsUser() {
    ::syscall(SYS_setfsuid, 0);
    ::syscall(SYS_setfsgid, 0);
  }
  AsUser(const AsUser&) = delete;
  AsUser& operator=(const AsUser&) = delete;
};

// A lower that the daemon cannot search may hold any name: every create
// there fails with the lower's error (EACCES), instead of making a new
// object that hides the production one. (Through a mount the kernel's
// LOOKUP meets the error first; see UnprivilegedTest for that path.)
TEST_F(OverlayTest, CreatesFailWhereALowerCannotBeSearched) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a lower its daemon cannot search";
  constexpr uid_t kUser = 65534;
  constexpr gid_t kGroup = 65534;
  write_lower("shared/name", "production\n");
  ASSERT_EQ(::chmod((lower_ + "/shared").c_str(), 0700), 0);
  mount(Overlay::Options{false});
  // The store is the daemon's, as it is for an ordinary user's mount.
  for (const auto& e : std::filesystem::recursive_directory_iterator(store_->path())) {
    ASSERT_EQ(::lchown(e.path().c_str(), kUser, kGroup), 0) << e.path();
  }
  ASSERT_EQ(::chown(store_->path().c_str(), kUser, kGroup), 0);
  const Caller user{kUser, kGroup, 022};
  {
    AsUser as_user(kUser, kGroup);
    const uint64_t shared = dir("shared");
    ASSERT_NE(shared, 0u);
    EXPECT_EQ(walk("shared/name").error(), EACCES);
    auto c = overlay_->create(shared, "name", 0644, O_RDWR, user);
    EXPECT_EQ(c ? 0 : c.error(), EACCES) << "create";
    if (c) {
      EXPECT_TRUE(overlay_->release(c->second.get()).ok());
    }
    auto m = overlay_->mkdir(shared, "name", 0755, user);
    EXPECT_EQ(m ? 0 : m.error(), EACCES) << "mkdir";
    auto f = overlay_->mknod(shared, "name", S_IFIFO | 0644, 0, user);
    EXPECT_EQ(f ? 0 : f.error(), EACCES) << "mknod";
    auto l = overlay_->symlink("x", shared, "name", user);
    EXPECT_EQ(l ? 0 : l.error(), EACCES) << "symlink";
    auto mine = overlay_->create(kRootIno, "mine", 0644, O_RDWR, user);
    ASSERT_TRUE(mine) << std::strerror(mine.error());
    EXPECT_TRUE(overlay_->release(mine->second.get()).ok());
    auto h = overlay_->link(mine->first.node->ino, shared, "name");
    EXPECT_EQ(h ? 0 : h.error(), EACCES) << "link";
  }
  EXPECT_EQ(lower_content("shared/name"), "production\n");
}

TEST_F(OverlayTest, NamesLikeMarkersAreOrdinaryNames) {
  write_lower("d/x", "1");
  mount();
  for (const char* name : {".wh.x", ".wh..wh..opq", ".wh..opq"}) {
    auto c = overlay_->create(dir("d"), name, 0644, O_RDWR, me_);
    ASSERT_TRUE(c) << name;
  }
  EXPECT_EQ(list("d"), (std::vector<std::string>{".wh..opq", ".wh..wh..opq", ".wh.x", "x"}));
  EXPECT_EQ(read("d/x"), "1");
  ASSERT_TRUE(overlay_->unlink(dir("d"), ".wh.x").ok());
  EXPECT_EQ(read("d/x"), "1");
}

TEST_F(OverlayTest, DirectoryRecreatedOverDeletedOneIsOpaque) {
  write_lower("d/old", "1");
  mount();
  ASSERT_TRUE(overlay_->unlink(dir("d"), "old").ok());
  ASSERT_TRUE(overlay_->rmdir(kRootIno, "d").ok());
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "d", 0755, me_));
  EXPECT_TRUE(list("d").empty());
  mount();
  EXPECT_TRUE(list("d").empty());
}

TEST_F(OverlayTest, RmdirOfNonEmptyMergedDirectoryFails) {
  write_lower("d/x", "1");
  mount();
  EXPECT_EQ(overlay_->rmdir(kRootIno, "d").error(), ENOTEMPTY);
}

TEST_F(OverlayTest, RenamedLowerDirectoryKeepsItsContent) {
  write_lower("d/sub/x", "deep");
  write_lower("d/y", "y");
  mount();
  auto ino = *walk("d");
  ASSERT_TRUE(overlay_->rename(kRootIno, "d", kRootIno, "e", 0).ok());
  EXPECT_EQ(walk("d").error(), ENOENT);
  EXPECT_EQ(read("e/sub/x"), "deep");
  EXPECT_EQ(list("e"), (std::vector<std::string>{"sub", "y"}));
  mount();
  EXPECT_EQ(walk("d").error(), ENOENT);
  EXPECT_EQ(read("e/sub/x"), "deep");
  EXPECT_EQ(*walk("e"), ino);
  // A rename back, and a new directory under the old name, stay apart.
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "d", 0755, me_));
  EXPECT_TRUE(list("d").empty());
}

TEST_F(OverlayTest, RenameOntoPopulatedDirectoryFails) {
  write_lower("a/x", "1");
  write_lower("b/y", "2");
  mount();
  EXPECT_EQ(overlay_->rename(kRootIno, "a", kRootIno, "b", 0).error(), ENOTEMPTY);
}

TEST_F(OverlayTest, RenameNoReplaceAndExchange) {
  write_lower("a", "A");
  write_lower("b", "B");
  mount();
  EXPECT_EQ(overlay_->rename(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE).error(), EEXIST);
  ASSERT_TRUE(overlay_->rename(kRootIno, "a", kRootIno, "b", RENAME_EXCHANGE).ok());
  EXPECT_EQ(read("a"), "B");
  EXPECT_EQ(read("b"), "A");
  mount();
  EXPECT_EQ(read("a"), "B");
  EXPECT_EQ(read("b"), "A");
}

TEST_F(OverlayTest, RenameFileOverLowerFileHidesIt) {
  write_lower("a", "A");
  write_lower("b", "B");
  mount();
  ASSERT_TRUE(overlay_->rename(kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(read("b"), "A");
  EXPECT_EQ(walk("a").error(), ENOENT);
  EXPECT_EQ(list(""), std::vector<std::string>{"b"});
}

TEST_F(OverlayTest, HardLinksStayLinkedThroughCopyUpAndRemount) {
  write_lower("one", "shared");
  ASSERT_EQ(::link((lower_ + "/one").c_str(), (lower_ + "/two").c_str()), 0);
  mount();
  EXPECT_EQ(*walk("one"), *walk("two"));
  write("one", "SHARED");
  EXPECT_EQ(read("two"), "SHARED");
  EXPECT_EQ(overlay_->getattr(*walk("two"))->st_nlink, 2u);
  mount();
  EXPECT_EQ(read("two"), "SHARED");
  EXPECT_EQ(*walk("one"), *walk("two"));
  EXPECT_EQ(overlay_->getattr(*walk("one"))->st_nlink, 2u);
  ASSERT_TRUE(overlay_->unlink(kRootIno, "two").ok());
  EXPECT_EQ(overlay_->getattr(*walk("one"))->st_nlink, 1u);
  EXPECT_EQ(lower_content("two"), "shared");
}

TEST_F(OverlayTest, OpenUnlinkedFileReportsNoLinks) {
  write_lower("f", "data");
  mount();
  auto ino = *walk("f");
  auto fh = overlay_->open(ino, O_RDONLY);
  ASSERT_TRUE(fh);
  ASSERT_TRUE(overlay_->unlink(kRootIno, "f").ok());
  EXPECT_EQ(overlay_->getattr(ino)->st_nlink, 0u);
  char buf[4];
  EXPECT_EQ(::pread(*overlay_->io_fd(**fh), buf, 4, 0), 4);
}

TEST_F(OverlayTest, UserXattrsInOurNamespaceAreEscaped) {
  write_lower("d/x", "1");
  mount();
  ASSERT_TRUE(overlay_->setxattr(dir("d"), "user.cowfs.opaque", "y", 0).ok());
  EXPECT_EQ(list("d"), std::vector<std::string>{"x"});  // not taken as a marker
  auto names = overlay_->listxattr(dir("d"));
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, std::vector<std::string>{"user.cowfs.opaque"});
  EXPECT_EQ(*overlay_->getxattr(dir("d"), "user.cowfs.opaque"), "y");
  EXPECT_EQ(overlay_->getxattr(dir("d"), "user.cowfs.origin").error(), ENODATA);
}

TEST_F(OverlayTest, NameTooLong) {
  mount();
  std::string name(256, 'n');
  EXPECT_EQ(overlay_->lookup(kRootIno, name).error(), ENAMETOOLONG);
  EXPECT_EQ(overlay_->mkdir(kRootIno, name, 0755, me_).error(), ENAMETOOLONG);
  EXPECT_TRUE(overlay_->mkdir(kRootIno, std::string(255, 'n'), 0755, me_));
}

// Bytes the files under dir take on disk (st_blocks), not their sizes: a
// copy of data shows here, a sparse or metadata-only one does not.
uint64_t allocated_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

TEST_F(OverlayTest, MetadataChangeKeepsDataAndLowerIntact) {
  // Big enough to be copied up by chunk: a chmod must copy none of its data.
  std::string data(4 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  write_lower("f", data);
  write_lower("small", "data");
  mount();
  const uint64_t store_before = allocated_bytes(root_ + "/store");
  for (const char* name : {"f", "small"}) {
    SetAttr a;
    a.mode = true;
    a.values.st_mode = 0600;
    ASSERT_TRUE(overlay_->setattr(*walk(name), a, nullptr)) << name;
    auto attr = overlay_->getattr(*walk(name));
    ASSERT_TRUE(attr) << name;
    EXPECT_EQ(attr->st_mode & 07777, 0600u) << name;
    struct stat st {};
    ASSERT_EQ(::stat((lower_ + "/" + name).c_str(), &st), 0) << name;
    EXPECT_NE(st.st_mode & 07777, 0600u) << name << ": the lower changed";
  }
  EXPECT_EQ(read("f"), data);
  EXPECT_EQ(read("small"), "data");
  // The small file is copied whole (one block); the big one costs its
  // metadata only, far less than one chunk.
  EXPECT_LT(allocated_bytes(root_ + "/store") - store_before, 64u << 10);
  mount();
  EXPECT_EQ(overlay_->getattr(*walk("f"))->st_mode & 07777, 0600u) << "after remount";
  EXPECT_EQ(read("f"), data);
}

TEST_F(OverlayTest, DeleteThenRecreateShowsNoOldBytes) {
  write_lower("f", "old content that is long");
  mount();
  ASSERT_TRUE(overlay_->unlink(kRootIno, "f").ok());
  auto c = overlay_->create(kRootIno, "f", 0644, O_RDWR, me_);
  ASSERT_TRUE(c);
  ASSERT_EQ(::pwrite(c->second->fd(), "new", 3, 0), 3);
  EXPECT_EQ(read("f"), "new");
  mount();
  EXPECT_EQ(read("f"), "new");
}

TEST_F(OverlayTest, ManyMoreFilesThanTheFdLimitAllowsStayReachable) {
  LowFdLimit limit(600);
  for (int i = 0; i < 1500; ++i) write_lower("many/l" + std::to_string(i), std::to_string(i));
  mount();
  for (int i = 0; i < 1500; ++i) {
    auto c = overlay_->create(dir("many"), "n" + std::to_string(i), 0644, O_RDWR, me_);
    ASSERT_TRUE(c) << i << ": " << std::strerror(c.error());
    EXPECT_TRUE(overlay_->release(c->second.get()).ok());
  }
  for (int i = 0; i < 1500; i += 7) {
    ASSERT_EQ(read("many/l" + std::to_string(i)), std::to_string(i));
    ASSERT_TRUE(overlay_->getattr(*walk("many/n" + std::to_string(i))));
  }
  write("many/l3", "three");
  ASSERT_TRUE(overlay_->unlink(dir("many"), "l5").ok());
  EXPECT_EQ(read("many/l3"), "three");
  EXPECT_EQ(walk("many/l5").error(), ENOENT);
  EXPECT_LT(Node::open_fds.load(), 600);
}

TEST_F(OverlayTest, ManyMoreDirectoriesThanTheFdLimitAllowsStayReachable) {
  LowFdLimit limit(600);
  for (int i = 0; i < 300; ++i) write_lower("lo/d" + std::to_string(i) + "/f", std::to_string(i));
  write_lower("moved/sub/f", "below");
  mount();
  // A renamed directory keeps reaching its lower content by its old path.
  ASSERT_TRUE(overlay_->rename(kRootIno, "moved", kRootIno, "renamed", 0).ok());
  ASSERT_TRUE(overlay_->mkdir(kRootIno, "hi", 0755, me_));
  for (int i = 0; i < 1200; ++i) {
    auto d = overlay_->mkdir(dir("hi"), "d" + std::to_string(i), 0755, me_);
    ASSERT_TRUE(d) << i << ": " << std::strerror(d.error());
    auto c = overlay_->create(d->node->ino, "f", 0644, O_RDWR, me_);
    ASSERT_TRUE(c) << i << ": " << std::strerror(c.error());
    ASSERT_EQ(::pwrite(c->second->fd(), "x", 1, 0), 1);
    EXPECT_TRUE(overlay_->release(c->second.get()).ok());
  }
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(walk("lo/d" + std::to_string(i) + "/f")) << i;
  EXPECT_LT(Node::open_fds.load(), 600);
  for (int i = 0; i < 1200; i += 7) ASSERT_EQ(read("hi/d" + std::to_string(i) + "/f"), "x");
  for (int i = 0; i < 300; i += 7) {
    const std::string d = "lo/d" + std::to_string(i);
    ASSERT_EQ(read(d + "/f"), std::to_string(i));
    write(d + "/f", "changed");  // copies the directory up through a closed part
    ASSERT_EQ(read(d + "/f"), "changed");
    auto listing = overlay_->list_dir(dir(d));
    ASSERT_TRUE(listing);
    EXPECT_EQ(listing->items.size(), 1u);
  }
  EXPECT_EQ(read("renamed/sub/f"), "below");
  EXPECT_EQ(walk("moved").error(), ENOENT);
  EXPECT_LT(Node::open_fds.load(), 600);
}

// A warm `ls -lR` reaches files the kernel already knows by getattr and
// getxattr alone, with no lookup in between: those reopen closed node fds
// and must keep within the budget too.
TEST_F(OverlayTest, AttributeReadsOfKnownFilesStayWithinTheFdLimit) {
  LowFdLimit limit(600);
  for (int i = 0; i < 1500; ++i) write_lower("many/l" + std::to_string(i), std::to_string(i));
  mount();
  std::vector<uint64_t> inos;
  for (int i = 0; i < 1500; ++i) {
    auto e = overlay_->lookup(dir("many"), "l" + std::to_string(i));
    ASSERT_TRUE(e) << i << ": " << std::strerror(e.error());
    inos.push_back(e->node->ino);
  }
  for (int round = 0; round < 2; ++round) {
    for (uint64_t ino : inos) {
      auto st = overlay_->getattr(ino);
      ASSERT_TRUE(st) << ino << ": " << std::strerror(st.error());
      auto x = overlay_->getxattr(ino, "user.none");
      ASSERT_FALSE(x);
      ASSERT_EQ(x.error(), ENODATA) << std::strerror(x.error());
    }
  }
  EXPECT_LT(Node::open_fds.load(), 600);
}

}  // namespace
}  // namespace cowfs::testing
