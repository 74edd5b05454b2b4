// Layers on a live mount: checkpoint, rewind, reset and compact through the
// daemon's control socket, checked against manifests of the view.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class LayersTest : public CowfsTest {
 protected:
  void SetUp() override {
    CowfsTest::SetUp();
    if (reference_mode()) GTEST_SKIP() << "layers have no plain-directory reference";
  }
  RunResult cowfs(std::vector<std::string> args) {
    args.insert(args.begin(), cowfs_bin());
    return run(args);
  }
  void ok(const std::vector<std::string>& args) {
    auto r = cowfs(args);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
  }
  void checkpoint(const std::string& label) { ok({"checkpoint", "--store", store(), label}); }
  void rewind(const std::string& label) { ok({"rewind", "--store", store(), label}); }
  Manifest view() { return Manifest::take(mnt()); }
};

// Directory mtimes change with every entry and are restored too, so the
// comparison includes them.
constexpr unsigned kFields = kSemantic;

TEST_F(LayersTest, RewindShowsExactlyTheCheckpointedState) {
  write_file(mnt("small.txt"), "changed before A\n");
  write_file(mnt("new-in-a"), "a\n");
  ASSERT_EQ(::rename(mnt("dir").c_str(), mnt("renamed-dir").c_str()), 0);
  ASSERT_EQ(::unlink(mnt("hard1").c_str()), 0);
  checkpoint("A");
  Manifest at_a = view();

  write_file(mnt("small.txt"), "changed before B\n");
  ASSERT_EQ(::unlink(mnt("new-in-a").c_str()), 0);
  ASSERT_EQ(::rename(mnt("renamed-dir").c_str(), mnt("again").c_str()), 0);
  ASSERT_EQ(::mkdir(mnt("made-in-b").c_str(), 0755), 0);
  checkpoint("B");
  write_file(mnt("after-b"), "x");
  remove_tree(mnt("again/sub"));

  rewind("A");
  EXPECT_EQ(diff(at_a, view(), kFields), "");
  remount();
  EXPECT_EQ(diff(at_a, view(), kFields), "");
  auto gone = cowfs({"rewind", "--store", store(), "B"});  // rewinding to A dropped it
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("'B'"), std::string::npos) << gone.err;
}

// ln FIRST OTHER; rm FIRST; checkpoint; write OTHER. The kernel reaches the
// file by OTHER without asking again, so the copy-up must land where OTHER
// finds it: it once went to a copy with no name, and the write was lost.
TEST_F(LayersTest, WritesThroughASurvivingHardLinkAfterACheckpointAreKept) {
  write_file(mnt("made-here"), "made\n");
  for (const std::string first : {"made-here", "small.txt"}) {
    SCOPED_TRACE(first);
    const std::string other = "dir/other-" + first;
    ASSERT_EQ(::link(mnt(first).c_str(), mnt(other).c_str()), 0);
    ASSERT_EQ(::unlink(mnt(first).c_str()), 0);
    checkpoint("before-" + first);
    append_file(mnt(other), "changed\n");
    const std::string want =
        (first == "made-here" ? std::string("made\n") : std::string(kSmall)) + "changed\n";
    EXPECT_EQ(read_file(mnt(other)), want);
    EXPECT_EQ(stat_or_throw(mnt(other)).st_nlink, 1u);
    remount();
    EXPECT_EQ(read_file(mnt(other)), want);
    EXPECT_EQ(stat_or_throw(mnt(other)).st_nlink, 1u);
  }
}

TEST_F(LayersTest, RewindBringsASurvivingHardLinkBackAsCheckpointed) {
  write_file(mnt("made-here"), "made\n");
  ASSERT_EQ(::link(mnt("made-here").c_str(), mnt("dir/other").c_str()), 0);
  ASSERT_EQ(::unlink(mnt("made-here").c_str()), 0);
  checkpoint("A");
  write_file(mnt("dir/other"), "longer, at B\n");
  checkpoint("B");
  write_file(mnt("dir/other"), "after B\n");
  rewind("B");
  EXPECT_EQ(read_file(mnt("dir/other")), "longer, at B\n");
  rewind("A");
  // The size too: with the writeback cache the kernel keeps its own.
  EXPECT_EQ(read_file(mnt("dir/other")), "made\n");
  EXPECT_EQ(stat_or_throw(mnt("dir/other")).st_nlink, 1u);
  remount();
  EXPECT_EQ(read_file(mnt("dir/other")), "made\n");
}

// Symlinks and FIFOs cannot carry cowfs' xattrs, so their names below keep
// their count in an index record instead.
TEST_F(LayersTest, HardLinksOfSymlinksAndFifosCountTheirNamesAcrossACheckpoint) {
  ASSERT_EQ(::symlink("small.txt", mnt("new-sym").c_str()), 0);
  ASSERT_EQ(::mkfifo(mnt("new-fifo").c_str(), 0644), 0);
  checkpoint("made");
  for (const std::string name : {"new-sym", "new-fifo"}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(::link(mnt(name).c_str(), mnt("dir/" + name + "2").c_str()), 0);
    ASSERT_EQ(::link(mnt(name).c_str(), mnt("dir/" + name + "3").c_str()), 0);
    checkpoint("linked-" + name);
    EXPECT_EQ(lstat_or_throw(mnt(name)).st_nlink, 3u);
    ASSERT_EQ(::unlink(mnt("dir/" + name + "2").c_str()), 0);
    EXPECT_EQ(lstat_or_throw(mnt(name)).st_nlink, 2u);
    EXPECT_EQ(lstat_or_throw(mnt("dir/" + name + "3")).st_nlink, 2u);
    ASSERT_EQ(::unlink(mnt(name).c_str()), 0);
    EXPECT_EQ(lstat_or_throw(mnt("dir/" + name + "3")).st_nlink, 1u);
    remount();
    EXPECT_EQ(lstat_or_throw(mnt("dir/" + name + "3")).st_nlink, 1u);
    rewind("linked-" + name);
    EXPECT_EQ(lstat_or_throw(mnt(name)).st_nlink, 3u);
  }
  char target[64] = {};
  ASSERT_EQ(::readlink(mnt("dir/new-sym3").c_str(), target, sizeof target - 1), 9);
  EXPECT_STREQ(target, "small.txt");
}

// The last name of a lower hard link goes after a checkpoint: the frozen
// copy that name found must keep its count of names for a rewind.
TEST_F(LayersTest, UnlinkingTheLastNameOfAHardLinkLeavesTheCheckpointAlone) {
  append_file(mnt("hard1"), "more\n");
  ASSERT_EQ(::unlink(mnt("hard1").c_str()), 0);
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_nlink, 1u);
  checkpoint("A");
  ASSERT_EQ(::unlink(mnt("dir/hard2").c_str()), 0);
  rewind("A");
  const std::string want = std::string(kLinked) + "more\n";
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_nlink, 1u);
  EXPECT_EQ(read_file(mnt("dir/hard2")), want);
  remount();
  EXPECT_EQ(stat_or_throw(mnt("dir/hard2")).st_nlink, 1u);
  EXPECT_EQ(read_file(mnt("dir/hard2")), want);
}

// A symlink's own xattrs (trusted.* here) are copied with it; they are not
// reachable through an O_PATH fd of it, only through its directory.
TEST_F(LayersTest, ASymlinksXattrsSurviveItsCopyUpFromAFrozenLayer) {
  ASSERT_EQ(::symlink("small.txt", mnt("xsym").c_str()), 0);
  ASSERT_EQ(::lsetxattr(mnt("xsym").c_str(), "trusted.t0", "v", 1, 0), 0) << errno_name(errno);
  checkpoint("A");
  // A new name copies the symlink up into the new top.
  ASSERT_EQ(::link(mnt("xsym").c_str(), mnt("dir/xsym2").c_str()), 0);
  for (const char* name : {"xsym", "dir/xsym2"}) {
    char v[8] = {};
    EXPECT_EQ(::lgetxattr(mnt(name).c_str(), "trusted.t0", v, sizeof v), 1) << name;
    EXPECT_STREQ(v, "v") << name;
  }
}

// A directory moved out of a renamed directory records the path it had,
// which runs through that directory's new name in an older layer. Read back
// from disk (after a rewind), the path must be followed as a lookup is, one
// name at a time through each layer's own renames (fsdiff soak seed 7000027).
TEST_F(LayersTest, ADirectoryMovedOutOfARenamedOneKeepsItsContentAfterARewind) {
  ASSERT_EQ(::rename(mnt("dir").c_str(), mnt("empty").c_str()), 0);
  ASSERT_EQ(::chmod(mnt("empty/sub").c_str(), 0700), 0);  // copied up, under the rename
  checkpoint("A");
  ASSERT_EQ(::rename(mnt("empty/sub").c_str(), mnt("moved").c_str()), 0);
  checkpoint("B");
  write_file(mnt("after-b"), "x\n");
  rewind("B");
  EXPECT_EQ(read_file(mnt("moved/b.txt")), "b\n");
  EXPECT_EQ(read_file(mnt("moved/deep/c.txt")), "c\n");
  EXPECT_EQ(lstat_or_throw(mnt("moved")).st_mode & 07777, 0700u);
}

// A hard link renamed before a checkpoint and written through its other
// name after it: the copy lands under the renamed name, not the one the
// kernel used. A rewind must still make the kernel drop what it cached for
// that name, or it keeps the dropped write's times (fsdiff soak seed 9100081).
TEST_F(LayersTest, RewindRestoresAHardLinkWrittenThroughItsOtherName) {
  const struct stat before = stat_or_throw(mnt("dir/hard2"));
  ASSERT_EQ(::rename(mnt("hard1").c_str(), mnt("empty/renamed").c_str()), 0);
  checkpoint("A");
  {
    Fd fd = open_or_throw(mnt("dir/hard2"), O_WRONLY);
    pwrite_all(fd.get(), "changed after A, and longer\n", 0);
  }
  rewind("A");
  const struct stat after = stat_or_throw(mnt("dir/hard2"));
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(read_file(mnt("dir/hard2")), kLinked);
}

// Unlinking one name of a hard-linked symlink copies it up under that name
// first (its other name must then count one link less). The copy's xattrs
// come from the copy the node stands for, not from the inode that name had
// in an older layer (fsdiff soak seed 7000060).
TEST_F(LayersTest, AHardLinkedSymlinkKeepsItsXattrsWhenItsOtherNameGoes) {
  ASSERT_EQ(::symlink("small.txt", mnt("xsym").c_str()), 0);
  ASSERT_EQ(::link(mnt("xsym").c_str(), mnt("dir/xsym2").c_str()), 0);
  checkpoint("A");
  // Copied up into the second layer, by its first name.
  ASSERT_EQ(::lsetxattr(mnt("xsym").c_str(), "trusted.t0", "v", 1, 0), 0) << errno_name(errno);
  checkpoint("B");
  ASSERT_EQ(::unlink(mnt("dir/xsym2").c_str()), 0);
  char v[8] = {};
  EXPECT_EQ(::lgetxattr(mnt("xsym").c_str(), "trusted.t0", v, sizeof v), 1) << errno_name(errno);
  EXPECT_STREQ(v, "v");
  EXPECT_EQ(lstat_or_throw(mnt("xsym")).st_nlink, 1u);
}

// Opened without writing (no copy-up), a file of a frozen layer loses its
// one name: the open handle sees no link left.
TEST_F(LayersTest, UnlinkingAFrozenFileOpenForReadingLeavesNoLink) {
  write_file(mnt("frozen.txt"), "frozen\n");
  ASSERT_EQ(::mkfifo(mnt("frozen.fifo").c_str(), 0644), 0);
  checkpoint("A");
  for (const char* name : {"frozen.txt", "frozen.fifo"}) {
    Fd fd = open_or_throw(mnt(name), O_RDONLY | O_NONBLOCK);
    ASSERT_EQ(::unlink(mnt(name).c_str()), 0);
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_nlink, 0u) << name;
  }
}

// After a rewind the kernel forgets dir but still knows dir/a.txt by its
// other name; cowfs must keep one node for dir, or the copy-up of a.txt
// tries to copy dir up a second time (EEXIST).
TEST_F(LayersTest, AFileCopiedUpAfterARewindFindsItsDirectoryAlreadyCopiedUp) {
  ASSERT_EQ(::link(mnt("dir/a.txt").c_str(), mnt("empty/a-link").c_str()), 0);
  checkpoint("A");
  // dir is in the dropped layer: the rewind invalidates it in the kernel.
  append_file(mnt("dir/sub/b.txt"), "after A\n");
  rewind("A");
  ASSERT_EQ(::setxattr(mnt("dir/sub/deep").c_str(), "user.k", "1", 1, 0), 0) << errno_name(errno);
  append_file(mnt("empty/a-link"), "more\n");
  EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\nmore\n");
  EXPECT_EQ(stat_or_throw(mnt("dir/a.txt")).st_nlink, 2u);
}

TEST_F(LayersTest, ReaderSeesRewoundContent) {
  checkpoint("A");
  Fd fd = open_or_throw(mnt("small.txt"), O_RDONLY);
  EXPECT_EQ(pread_all(fd.get()), kSmall);  // now in the page cache
  write_file(mnt("small.txt"), "later\n");
  EXPECT_EQ(read_file(mnt("small.txt")), "later\n");
  rewind("A");
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_size, static_cast<off_t>(kSmall.size()));
}

// The path the kernel gives an open file; " (deleted)" at its end once the
// kernel dropped the file's entry.
std::string fd_path(int fd) {
  char buf[4096];
  ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf);
  return n < 0 ? errno_name(errno) : std::string(buf, static_cast<size_t>(n));
}

// A rewind drops from the kernel what the dropped layer changed, not the
// directories it only passed through: dropping dir's entry would drop every
// cached entry below it (and with them the page cache of every file there
// nothing holds open), so a rerun read all of them through the daemon again.
// The open O_PATH fds pin the entries against memory pressure; the kernel
// marks an entry it was told to drop " (deleted)".
TEST_F(LayersTest, RewindKeepsTheEntriesOfDirectoriesTheLayerOnlyPassedThrough) {
  checkpoint("A");
  Fd dir = open_or_throw(mnt("dir"), O_PATH | O_DIRECTORY);
  Fd sub = open_or_throw(mnt("dir/sub"), O_PATH | O_DIRECTORY);
  Fd a = open_or_throw(mnt("dir/a.txt"), O_RDONLY);
  EXPECT_EQ(pread_all(a.get()), "a\n");
  append_file(mnt("dir/sub/b.txt"), "after A\n");
  ASSERT_EQ(::mkdir(mnt("dir/made-after-a").c_str(), 0755), 0);
  write_file(mnt("dir/made-after-a/f"), "f\n");
  Fd made = open_or_throw(mnt("dir/made-after-a"), O_PATH | O_DIRECTORY);
  EXPECT_EQ(list_dir(mnt("dir")).size(), 4u);  // the kernel may keep this listing
  rewind("A");
  EXPECT_EQ(fd_path(dir.get()), mnt("dir"));
  EXPECT_EQ(fd_path(sub.get()), mnt("dir/sub"));
  EXPECT_EQ(fd_path(a.get()), mnt("dir/a.txt"));
  // What the layer made is gone, and what it changed is as before.
  EXPECT_EQ(fd_path(made.get()), mnt("dir/made-after-a") + " (deleted)");
  EXPECT_EQ(err(::access(mnt("dir/made-after-a").c_str(), F_OK)), ENOENT);
  EXPECT_EQ(read_file(mnt("dir/sub/b.txt")), "b\n");
  EXPECT_EQ(sorted(list_dir(mnt("dir"))), (std::vector<std::string>{"a.txt", "hard2", "sub"}));
}

// Names the kernel saw missing (negative entries, cached) come back with a
// rewind: deleted, hidden by a directory made over the old one, or renamed.
TEST_F(LayersTest, RewindBringsBackNamesTheKernelSawMissing) {
  checkpoint("A");
  ASSERT_EQ(::unlink(mnt("dir/a.txt").c_str()), 0);
  remove_tree(mnt("dir/sub"));
  ASSERT_EQ(::mkdir(mnt("dir/sub").c_str(), 0755), 0);
  ASSERT_EQ(::rename(mnt("small.txt").c_str(), mnt("dir/small-moved").c_str()), 0);
  for (const char* gone : {"dir/a.txt", "dir/sub/b.txt", "dir/sub/deep", "small.txt"}) {
    EXPECT_EQ(err(::access(mnt(gone).c_str(), F_OK)), ENOENT) << gone;
  }
  rewind("A");
  EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\n");
  EXPECT_EQ(read_file(mnt("dir/sub/b.txt")), "b\n");
  EXPECT_EQ(read_file(mnt("dir/sub/deep/c.txt")), "c\n");
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  EXPECT_EQ(err(::access(mnt("dir/small-moved").c_str(), F_OK)), ENOENT);
}

TEST_F(LayersTest, RewindRefusedWhileADroppedFileIsOpenForWriting) {
  checkpoint("A");
  write_file(mnt("dir/a.txt"), "new\n");
  Fd fd = open_or_throw(mnt("dir/a.txt"), O_WRONLY);
  Manifest before = view();
  auto r = cowfs({"rewind", "--store", store(), "A"});
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_NE(r.err.find("/dir/a.txt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pid " + std::to_string(::getpid())), std::string::npos) << r.err;
  EXPECT_EQ(diff(before, view(), kFields), "");  // nothing changed
  fd.reset();
  rewind("A");
  EXPECT_EQ(read_file(mnt("dir/a.txt")), "a\n");
}

TEST_F(LayersTest, WritesThroughAHandleOpenedBeforeACheckpointGoToTheNewTop) {
  Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
  pwrite_all(fd.get(), "1", 0);
  checkpoint("A");
  // The frozen layer's copy must not change from here on.
  std::string frozen_before = read_file(mnt("small.txt"));
  pwrite_all(fd.get(), "2", 1);
  ASSERT_EQ(::fsync(fd.get()), 0);
  EXPECT_EQ(read_file(mnt("small.txt")).substr(0, 2), "12");
  fd.reset();
  rewind("A");
  EXPECT_EQ(read_file(mnt("small.txt")), frozen_before);
}

TEST_F(LayersTest, MmapWritesBeforeACheckpointBelongToIt) {
  Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memcpy(p, "MMAP", 4);  // dirty in the page cache, not yet written back
  checkpoint("A");
  std::memcpy(p, "LATE", 4);
  ASSERT_EQ(::msync(p, 4096, MS_SYNC), 0);
  ::munmap(p, 4096);
  fd.reset();
  EXPECT_EQ(read_file(mnt("small.txt")).substr(0, 4), "LATE");
  rewind("A");
  EXPECT_EQ(read_file(mnt("small.txt")).substr(0, 4), "MMAP");
}

TEST_F(LayersTest, ResetShowsTheLowersAlone) {
  Manifest base = view();
  write_file(mnt("small.txt"), "x");
  remove_tree(mnt("dir"));
  checkpoint("A");
  write_file(mnt("n"), "n");
  ok({"reset", "--store", store()});
  EXPECT_EQ(diff(base, view(), kFields), "");
  remount();
  EXPECT_EQ(diff(base, view(), kFields), "");
}

TEST_F(LayersTest, CompactKeepsTheViewAndKeptCheckpoints) {
  write_file(mnt("small.txt"), "one\n");
  checkpoint("A");
  Manifest at_a = view();
  ASSERT_EQ(::rename(mnt("dir").c_str(), mnt("moved").c_str()), 0);
  checkpoint("B");
  write_file(mnt("moved/sub/b.txt"), "bee\n");
  checkpoint("C");
  write_file(mnt("top-only"), "t");
  Manifest now = view();
  ok({"compact", "--store", store(), "--keep", "A"});
  EXPECT_EQ(diff(now, view(), kFields | kIno), "");
  auto layers = cowfs({"layers", "--store", store(), "--json"});
  EXPECT_EQ(layers.out.find("\"label\":\"B\""), std::string::npos) << layers.out;
  EXPECT_NE(layers.out.find("\"label\":\"A\""), std::string::npos) << layers.out;
  remount();
  EXPECT_EQ(diff(now, view(), kFields | kIno), "");
  rewind("A");
  EXPECT_EQ(diff(at_a, view(), kFields), "");
}

// The moved directory's redirect runs through a directory renamed in the
// layer it is merged into: the merged layer must say where it continues
// below itself, which is the renamed directory's old path.
TEST_F(LayersTest, CompactKeepsADirectoryMovedOutOfARenamedOne) {
  checkpoint("A");
  ASSERT_EQ(::rename(mnt("dir").c_str(), mnt("empty").c_str()), 0);
  ASSERT_EQ(::chmod(mnt("empty/sub").c_str(), 0700), 0);
  checkpoint("B");
  ASSERT_EQ(::rename(mnt("empty/sub").c_str(), mnt("moved").c_str()), 0);
  checkpoint("C");
  Manifest now = view();
  ok({"compact", "--store", store(), "--keep", "A"});
  remount();
  EXPECT_EQ(diff(now, view(), kFields), "");
  EXPECT_EQ(read_file(mnt("moved/deep/c.txt")), "c\n");
}

TEST_F(LayersTest, InodeNumbersSurviveCheckpointRewindAndRemount) {
  const ino_t small = stat_or_throw(mnt("small.txt")).st_ino;
  const ino_t dir = stat_or_throw(mnt("dir")).st_ino;
  write_file(mnt("small.txt"), "x");
  write_file(mnt("dir/new"), "x");
  checkpoint("A");
  write_file(mnt("small.txt"), "y");
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_ino, small);
  rewind("A");
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_ino, small);
  EXPECT_EQ(stat_or_throw(mnt("dir")).st_ino, dir);
  remount();
  EXPECT_EQ(stat_or_throw(mnt("small.txt")).st_ino, small);
  EXPECT_EQ(stat_or_throw(mnt("dir")).st_ino, dir);
}

TEST_F(LayersTest, OfflineCommandsWorkOnTheUnmountedStore) {
  write_file(mnt("small.txt"), "A-state\n");
  ASSERT_EQ(mount().unmount(), "");
  ok({"checkpoint", "--store", store(), "A"});
  auto bad = cowfs({"rewind", "--store", store(), "nope"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(bad.err_lines().size(), 1u) << bad.err;
  remount();
  write_file(mnt("small.txt"), "B-state\n");
  ASSERT_EQ(mount().unmount(), "");
  ok({"rewind", "--store", store(), "A"});
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), "A-state\n");
}

}  // namespace
}  // namespace cowfs_it
