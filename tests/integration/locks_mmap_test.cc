// BSD (flock), POSIX (fcntl) and OFD locks between processes, and shared
// writable mmap, through a cowfs mount.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class LocksTest : public CowfsTest {
 protected:
  // Runs fn in a forked child and returns what it returned (0..255), or -1 if
  // the child did not finish in time (it is killed then). fn must only make
  // system calls: no gtest assertions, no allocation-heavy work.
  static int in_child(const std::function<int()>& fn) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(fn() & 0xff);
    if (pid < 0) return -1;
    int status = 0;
    bool done = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 20s);
    if (!done) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Lines of /proc/locks that lock the lower's own inode of rel: a lock that
  // reached the lower (which must never happen).
  std::vector<std::string> locks_on_lower(const std::string& rel) {
    struct stat st = stat_or_throw(lower(rel));
    std::ostringstream key;
    key << std::hex << std::setfill('0') << std::setw(2) << major(st.st_dev) << ":" << std::setw(2)
        << minor(st.st_dev) << ":" << std::dec << st.st_ino << " ";
    std::ifstream in("/proc/locks");
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
      if (line.find(key.str()) != std::string::npos) out.push_back(line);
    }
    return out;
  }
};

int try_flock(const std::string& path, int op) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 200;
  int rc = ::flock(fd, op | LOCK_NB) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

int try_posix(const std::string& path, int cmd, short type, off_t start, off_t len) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 200;
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  int rc = ::fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

bool is_conflict(int e) { return e == EAGAIN || e == EACCES; }

TEST_F(LocksTest, FlockBetweenProcesses) {
  const std::string path = mnt("small.txt");  // a lower file, never copied up by locking
  Fd mine = open_or_throw(path, O_RDONLY);
  ASSERT_EQ(err(::flock(mine.get(), LOCK_EX)), 0);
  EXPECT_EQ(locks_on_lower("small.txt"), std::vector<std::string>{}) << "a lock reached the lower";
  EXPECT_EQ(in_child([&] { return try_flock(path, LOCK_EX); }), EWOULDBLOCK);
  EXPECT_EQ(in_child([&] { return try_flock(path, LOCK_SH); }), EWOULDBLOCK);
  ASSERT_EQ(err(::flock(mine.get(), LOCK_SH)), 0);  // downgrade
  EXPECT_EQ(in_child([&] { return try_flock(path, LOCK_SH); }), 0);
  EXPECT_EQ(in_child([&] { return try_flock(path, LOCK_EX); }), EWOULDBLOCK);
  ASSERT_EQ(err(::flock(mine.get(), LOCK_UN)), 0);
  EXPECT_EQ(in_child([&] { return try_flock(path, LOCK_EX); }), 0);
  // A lock on a file that is then copied up by a write keeps excluding.
  Fd rw = open_or_throw(mnt("xattr.txt"), O_RDWR);
  ASSERT_EQ(err(::flock(rw.get(), LOCK_EX)), 0);
  pwrite_all(rw.get(), "W", 0);
  EXPECT_EQ(in_child([&] { return try_flock(mnt("xattr.txt"), LOCK_EX); }), EWOULDBLOCK);
  rw.reset();  // closing the only descriptor releases a flock
  EXPECT_EQ(in_child([&] { return try_flock(mnt("xattr.txt"), LOCK_EX); }), 0);
}

TEST_F(LocksTest, PosixLocksBetweenProcesses) {
  const std::string path = mnt("small.txt");
  Fd mine = open_or_throw(path, O_RDWR);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 100;
  ASSERT_EQ(err(::fcntl(mine.get(), F_SETLK, &fl)), 0);
  EXPECT_EQ(locks_on_lower("small.txt"), std::vector<std::string>{}) << "a lock reached the lower";

  int e = in_child([&] { return try_posix(path, F_SETLK, F_WRLCK, 50, 10); });
  EXPECT_TRUE(is_conflict(e)) << "got " << e;
  e = in_child([&] { return try_posix(path, F_SETLK, F_RDLCK, 0, 1); });
  EXPECT_TRUE(is_conflict(e)) << "got " << e;
  EXPECT_EQ(in_child([&] { return try_posix(path, F_SETLK, F_WRLCK, 200, 100); }), 0);

  // F_GETLK in another process describes the holder.
  const pid_t me = ::getpid();
  int getlk = in_child([&] {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    struct flock q {};
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    q.l_start = 10;
    q.l_len = 5;
    if (::fcntl(fd, F_GETLK, &q) != 0) return 1;
    if (q.l_type != F_WRLCK) return 2;
    if (q.l_pid != me) return 3;
    if (q.l_start != 0 || q.l_len != 100) return 4;
    return 0;
  });
  EXPECT_EQ(getlk, 0) << "1: F_GETLK failed, 2: wrong type, 3: wrong pid, 4: wrong range";

  // Closing any descriptor of the file drops this process' POSIX locks.
  { Fd other = open_or_throw(path, O_RDONLY); }
  EXPECT_EQ(in_child([&] { return try_posix(path, F_SETLK, F_WRLCK, 0, 100); }), 0);
  // Lock again and release explicitly.
  ASSERT_EQ(err(::fcntl(mine.get(), F_SETLK, &fl)), 0);
  e = in_child([&] { return try_posix(path, F_SETLK, F_WRLCK, 0, 0); });
  EXPECT_TRUE(is_conflict(e)) << "got " << e;
  fl.l_type = F_UNLCK;
  ASSERT_EQ(err(::fcntl(mine.get(), F_SETLK, &fl)), 0);
  EXPECT_EQ(in_child([&] { return try_posix(path, F_SETLK, F_WRLCK, 0, 0); }), 0);
}

TEST_F(LocksTest, OpenFileDescriptionLocks) {
  const std::string path = mnt("big.bin");
  Fd a = open_or_throw(path, O_RDWR);
  Fd b = open_or_throw(path, O_RDWR);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 4096;
  ASSERT_EQ(err(::fcntl(a.get(), F_OFD_SETLK, &fl)), 0);
  // Another open file description conflicts, even in the same process.
  EXPECT_TRUE(is_conflict(err(::fcntl(b.get(), F_OFD_SETLK, &fl))));
  int e = in_child([&] { return try_posix(path, F_OFD_SETLK, F_RDLCK, 100, 1); });
  EXPECT_TRUE(is_conflict(e)) << "got " << e;
  a.reset();
  EXPECT_EQ(err(::fcntl(b.get(), F_OFD_SETLK, &fl)), 0);
}

class MmapTest : public CowfsTest {};

struct Mapping {
  void* addr = MAP_FAILED;
  size_t len = 0;
  Mapping(int fd, size_t n, int prot, int flags) : len(n) {
    addr = ::mmap(nullptr, n, prot, flags, fd, 0);
  }
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, len);
  }
  char* bytes() const { return static_cast<char*>(addr); }
  bool ok() const { return addr != MAP_FAILED; }
};

TEST_F(MmapTest, SharedWritableMmapOfLowerFiles) {
  std::string want_small = "MMAP" + std::string(kSmall.substr(4));
  std::string want_big = big_content();
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
    Mapping m(fd.get(), kSmall.size(), PROT_READ | PROT_WRITE, MAP_SHARED);
    ASSERT_TRUE(m.ok()) << errno_name(errno);
    EXPECT_EQ(std::string(m.bytes(), kSmall.size()), kSmall);
    std::memcpy(m.bytes(), "MMAP", 4);
    ASSERT_EQ(err(::msync(m.addr, m.len, MS_SYNC)), 0);
    EXPECT_EQ(pread_all(fd.get()), want_small) << "read() after msync, same descriptor";
  }
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDWR);
    Mapping m(fd.get(), kBigSize, PROT_READ | PROT_WRITE, MAP_SHARED);
    ASSERT_TRUE(m.ok()) << errno_name(errno);
    std::memcpy(m.bytes() + 2 * 1024 * 1024 + 5, "chunk", 5);
    std::memcpy(m.bytes() + 100, "start", 5);
    want_big.replace(2 * 1024 * 1024 + 5, 5, "chunk");
    want_big.replace(100, 5, "start");
    // No msync: munmap + close must still get the data to the file.
  }
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
  remount();
  EXPECT_EQ(read_file(mnt("small.txt")), want_small);
  EXPECT_EQ(first_difference(want_big, read_file(mnt("big.bin"))), "");
}

TEST_F(MmapTest, SharedWritableMmapOfNewFile) {
  const size_t n = 1 << 20;
  std::string want = pattern(n, 9);
  {
    Fd fd = open_or_throw(mnt("mapped.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_EQ(err(::ftruncate(fd.get(), static_cast<off_t>(n))), 0);
    Mapping m(fd.get(), n, PROT_READ | PROT_WRITE, MAP_SHARED);
    ASSERT_TRUE(m.ok()) << errno_name(errno);
    std::memcpy(m.bytes(), want.data(), n);
    ASSERT_EQ(err(::msync(m.addr, m.len, MS_SYNC)), 0);
  }
  EXPECT_EQ(first_difference(want, read_file(mnt("mapped.bin"))), "");
  remount();
  EXPECT_EQ(first_difference(want, read_file(mnt("mapped.bin"))), "");
}

TEST_F(MmapTest, WritesShowInAnExistingMapping) {
  Fd fd = open_or_throw(mnt("small.txt"), O_RDWR);
  Mapping m(fd.get(), kSmall.size(), PROT_READ, MAP_SHARED);
  ASSERT_TRUE(m.ok()) << errno_name(errno);
  EXPECT_EQ(std::string(m.bytes(), 5), "hello");
  pwrite_all(fd.get(), "NEW", 0);  // copies the file up
  EXPECT_EQ(std::string(m.bytes(), 5), "NEWlo");
}

TEST_F(MmapTest, PrivateMappingDoesNotWriteTheFile) {
  {
    Fd fd = open_or_throw(mnt("small.txt"), O_RDONLY);
    Mapping m(fd.get(), kSmall.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE);
    ASSERT_TRUE(m.ok()) << errno_name(errno);
    std::memcpy(m.bytes(), "PRIV", 4);
    EXPECT_EQ(std::string(m.bytes(), 4), "PRIV");
  }
  EXPECT_EQ(read_file(mnt("small.txt")), kSmall);
  {
    Fd fd = open_or_throw(mnt("big.bin"), O_RDONLY);
    Mapping m(fd.get(), kBigSize, PROT_READ, MAP_SHARED);
    ASSERT_TRUE(m.ok()) << errno_name(errno);
    EXPECT_EQ(first_difference(big_content(), std::string_view(m.bytes(), kBigSize)), "");
  }
  expect_top_empty("after private and read-only mappings");
}

}  // namespace
}  // namespace cowfs_it
