// Hostile input: each case asserts a clear one-line error ("cowfs: ..."), a
// non-zero exit and no partial state (nothing created, nothing changed, no
// mount, no daemon) — or, for input that must work (relative paths, odd
// names, long paths, huge directories), that it does.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "tests/reliability/crash_env.h"
#include "tests/reliability/rel_util.h"

namespace cowfs_rel {
namespace {

using namespace cowfs_it;
using namespace std::chrono_literals;

// A macro, not a function: GTEST_SKIP() returns from the function it is
// written in, so it must expand in the test's own body to end the test.
#define SKIP_UNLESS_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mounts"

void populate_small(const std::string& root) {
  write_file(root + "/f.txt", "lower\n");
  write_file(root + "/big.bin", pattern(3 * 1024 * 1024, 3));
  ::mkdir((root + "/d").c_str(), 0755);
  write_file(root + "/d/g.txt", "g\n");
}

// Everything about a path that a failed command must leave alone.
std::string state_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "absent";
  if (!S_ISDIR(st.st_mode)) return "file " + std::to_string(st.st_size);
  Manifest m = Manifest::take(path);
  std::string s;
  for (const auto& [rel, fi] : m.entries) {
    // A refused start may take the lock and log; those are not store state.
    if (rel == "lock" || rel == "cowfs.log") continue;
    s += rel + ":" + std::to_string(fi.size) + ":" + std::to_string(fi.hash) +
         (fi.type == S_IFDIR ? "" : ":" + std::to_string(fi.mtime_ns)) + ";";
  }
  return s;
}

TEST(HostileTest, BadMountRequestsFailCleanly) {
  SKIP_UNLESS_ROOT();
  TempDir tmp("cowfs-hostile");
  const std::string lower = tmp.mkdir("lower");  // writable: so "nothing created" is checkable
  populate_small(lower);
  const std::string mnt = tmp.mkdir("mnt");
  const std::string full = tmp.mkdir("full");
  write_file(full + "/x", "x");
  const std::string notstore = tmp.mkdir("notstore");
  write_file(notstore + "/precious", "not a store\n");
  tmp.mkdir("st-outer/l");
  tmp.mkdir("m2/l");
  tmp.mkdir("lower/m");  // a mountpoint inside the lower (made in the source)
  ASSERT_EQ(::symlink(lower.c_str(), tmp.sub("tolower").c_str()), 0);
  write_file(tmp.sub("afile"), "not a dir\n");

  struct Case {
    std::string what;
    std::vector<std::string> args;  // after "mount"
    std::vector<std::string> needles;
    std::vector<std::string> untouched;  // paths whose state must not change
  };
  const std::string t = tmp.path();
  std::vector<Case> cases = {
      {"store inside the lower",
       {"--store", lower + "/store", "--lower", lower, mnt},
       {"inside lower"},
       {lower}},
      {"store is the lower", {"--store", lower, "--lower", lower, mnt}, {"lower"}, {lower}},
      {"store inside the lower through a symlink",
       {"--store", t + "/tolower/store", "--lower", lower, mnt},
       {"inside lower"},
       {lower}},
      {"store inside the lower by a relative path with ..",
       {"--store", "lower/../lower/store", "--lower", "lower", "mnt"},
       {"inside lower"},
       {lower}},
      {"lower inside the store",
       {"--store", t + "/st-outer", "--lower", t + "/st-outer/l", mnt},
       {"inside store"},
       {t + "/st-outer"}},
      {"mountpoint inside the lower",
       {"--store", t + "/s1", "--lower", lower, lower + "/m"},
       {"inside lower"},
       {lower, t + "/s1"}},
      {"lower inside the mountpoint",
       {"--store", t + "/s2", "--lower", t + "/m2/l", t + "/m2"},
       {"inside mountpoint"},
       {t + "/m2", t + "/s2"}},
      {"mountpoint inside the store",
       {"--store", t + "/st-outer", "--lower", lower, t + "/st-outer/l"},
       {"inside store"},
       {t + "/st-outer", lower}},
      {"store inside the mountpoint",
       {"--store", mnt + "/store", "--lower", lower, mnt},
       {"inside mountpoint"},
       {mnt, lower}},
      {"missing lower",
       {"--store", t + "/s3", "--lower", t + "/nope", mnt},
       {t + "/nope"},
       {t + "/s3"}},
      {"lower is a file",
       {"--store", t + "/s4", "--lower", t + "/afile", mnt},
       {"afile"},
       {t + "/s4"}},
      {"missing mountpoint",
       {"--store", t + "/s5", "--lower", lower, t + "/nomnt"},
       {"nomnt"},
       {t + "/s5", t + "/nomnt"}},
      {"mountpoint not empty",
       {"--store", t + "/s6", "--lower", lower, full},
       {"not empty"},
       {t + "/s6", full}},
      {"store is some other non-empty directory",
       {"--store", notstore, "--lower", lower, mnt},
       {notstore},
       {notstore}},
      {"chunk size not a power of two",
       {"--store", t + "/s7", "--lower", lower, "--chunk-size", "1000", mnt},
       {"chunk-size"},
       {t + "/s7"}},
      {"unknown mount option",
       {"--store", t + "/s8", "--lower", lower, "-o", "bogus", mnt},
       {"bogus"},
       {t + "/s8"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<std::string> before;
    for (const auto& p : c.untouched) before.push_back(state_of(p));
    std::vector<std::string> argv = {cowfs_bin(), "mount"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = run(argv, {.cwd = t, .timeout = 30s});
    EXPECT_EQ(check_one_line_error(r, c.needles), "");
    for (size_t i = 0; i < c.untouched.size(); ++i) {
      EXPECT_EQ(state_of(c.untouched[i]), before[i]) << c.untouched[i] << " was changed";
    }
    for (const auto& mp : mounts_under(t)) {
      ADD_FAILURE() << "left a mount at " << mp;
      force_unmount(mp);
    }
  }
}

TEST(HostileTest, RelativePathsWork) {
  SKIP_UNLESS_ROOT();
  TempDir tmp("cowfs-relative");
  std::string src = tmp.mkdir("lower-src");
  populate_small(src);
  ReadOnlyBind bind(src, tmp.mkdir("lower"));
  tmp.mkdir("mnt");
  RunResult r = run({cowfs_bin(), "mount", "--store", "./store", "--lower", "lower", "mnt"},
                    {.cwd = tmp.path(), .timeout = 30s});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(is_mounted(tmp.sub("mnt")));
  EXPECT_EQ(read_file(tmp.sub("mnt/f.txt")), "lower\n") << "the relative lower was not resolved";
  write_file(tmp.sub("mnt/new.txt"), "new\n");
  r = run({cowfs_bin(), "checkpoint", "--store", "store", "one"}, {.cwd = tmp.path()});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  struct stat st {};
  EXPECT_EQ(err(::stat(tmp.sub("store/stack").c_str(), &st)), 0) << "the store is not where given";
  r = run({cowfs_bin(), "umount", "mnt"}, {.cwd = tmp.path(), .timeout = 30s});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(wait_until([&] { return !is_mounted(tmp.sub("mnt")); }, 10s));
  EXPECT_TRUE(wait_until([&] { return cowfs_daemons(tmp.sub("mnt")).empty(); }, 15s));
}

TEST(HostileTest, SecondCowfsOnTheSameStore) {
  SKIP_UNLESS_ROOT();
  CrashEnv env("cowfs-second", populate_small);
  env.mount_now();
  write_file(env.m("mine.txt"), "first mount\n");
  const std::string mnt2 = env.tmp().mkdir("mnt2");
  const std::string stack = slurp(env.store() + "/stack");
  RunResult r = cowfs({"mount", "--store", env.store(), "--lower", env.lower(), mnt2}, 30s);
  EXPECT_EQ(check_one_line_error(r, {env.store()}), "");
  EXPECT_FALSE(is_mounted(mnt2)) << "a second cowfs mounted the same store";
  EXPECT_TRUE(cowfs_daemons(mnt2).empty());
  EXPECT_EQ(slurp(env.store() + "/stack"), stack);
  EXPECT_EQ(read_file(env.m("mine.txt")), "first mount\n") << "the first mount was disturbed";
  EXPECT_TRUE(process_alive(env.mount()->daemon_pid()));
  EXPECT_EQ(env.unmount(), "");
  EXPECT_EQ(env.lower_changes(), "");
}

// A store with one frozen layer, a top with a chunked write, unmounted.
struct CorruptFixture {
  CrashEnv env{"cowfs-corrupt", populate_small};
  std::string top_id, frozen_id, map_path;
  CorruptFixture() {
    env.mount_now();
    write_file(env.m("frozen.txt"), "frozen\n");
    RunResult r = cowfs({"checkpoint", "--store", env.store(), "one"});
    if (r.exit_code != 0) throw std::runtime_error(r.describe());
    Fd fd = open_or_throw(env.m("big.bin"), O_WRONLY);
    pwrite_all(fd.get(), std::string(65536, 'W'), 65536);
    fd.reset();
    if (env.unmount() != "") throw std::runtime_error("unmount");
    auto st = env.stack();
    frozen_id = st.front().first;
    top_id = st.back().first;
    for (const auto& n : list_dir(env.store() + "/layers/" + top_id + "/chunks")) {
      if (n.size() > 4 && n.substr(n.size() - 4) == ".map") {
        map_path = env.store() + "/layers/" + top_id + "/chunks/" + n;
      }
    }
  }
  // Mount (expected to fail) and `cowfs layers`: both must fail in one line
  // naming the problem and leave the store as it was.
  void expect_refused(const std::vector<std::string>& needles, bool check_layers = true) {
    const std::string before = state_of(env.store());
    RunResult r = cowfs({"mount", "--store", env.store(), "--lower", env.lower(), env.mnt()});
    EXPECT_EQ(check_one_line_error(r, needles), "") << "mount";
    EXPECT_FALSE(is_mounted(env.mnt()));
    if (is_mounted(env.mnt())) run({cowfs_bin(), "umount", env.mnt()});
    if (check_layers) {
      RunResult l = cowfs({"layers", "--store", env.store()});
      EXPECT_EQ(check_one_line_error(l, needles), "") << "layers";
    }
    EXPECT_EQ(state_of(env.store()), before) << "the corrupt store was changed (\"repaired\")";
  }
};

TEST(HostileTest, CorruptStoreGarbageStack) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  write_file(f.env.store() + "/stack", std::string("\x01\x02garbage\nmore garbage\n"));
  f.expect_refused({"stack"});
}

TEST(HostileTest, CorruptStoreEmptyStack) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  write_file(f.env.store() + "/stack", "");
  f.expect_refused({"stack"});
}

TEST(HostileTest, CorruptStoreStackNamesMissingLayer) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  std::string stack = slurp(f.env.store() + "/stack");
  stack.replace(stack.find(f.frozen_id), f.frozen_id.size(), "deadbeef-0-0");
  write_file(f.env.store() + "/stack", stack);
  f.expect_refused({"deadbeef-0-0"}, /*check_layers=*/false);
}

TEST(HostileTest, CorruptStoreGarbageFormat) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  write_file(f.env.store() + "/format", "cowfs-store 99\n");
  f.expect_refused({"format"});
}

TEST(HostileTest, CorruptStoreMissingFormat) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  ASSERT_EQ(err(::unlink((f.env.store() + "/format").c_str())), 0);
  f.expect_refused({"format"});
}

// A damaged chunk map is detected: the mount refuses naming it, or reads of
// the file fail with EIO. Never wrong bytes, never a silent "repair".
void check_damaged_map(CorruptFixture& f, const std::string& damage) {
  ASSERT_FALSE(f.map_path.empty()) << "no chunk map in the top layer";
  write_file(f.map_path, damage);
  const std::string map_before = slurp(f.map_path);
  RunResult r = cowfs({"mount", "--store", f.env.store(), "--lower", f.env.lower(), f.env.mnt()});
  if (r.exit_code != 0) {
    EXPECT_EQ(check_one_line_error(r, {"map"}), "");
  } else {
    std::string want = pattern(3 * 1024 * 1024, 3);
    want.replace(65536, 65536, std::string(65536, 'W'));
    Fd fd(::open(f.env.m("big.bin").c_str(), O_RDONLY));
    int e = 0;
    std::string got;
    if (!fd) {
      e = errno;
    } else {
      got.resize(want.size());
      ssize_t n = ::pread(fd.get(), got.data(), got.size(), 0);
      if (n < 0)
        e = errno;
      else
        got.resize(static_cast<size_t>(n));
    }
    if (e == 0) {
      EXPECT_EQ(first_difference(want, got), "")
          << "a damaged chunk map was read as if fine: the file shows wrong bytes";
    } else {
      EXPECT_EQ(e, EIO) << errno_name(e);
    }
    EXPECT_EQ(read_file(f.env.m("frozen.txt")), "frozen\n") << "the rest of the mount works";
    run({cowfs_bin(), "umount", f.env.mnt()});
    wait_until([&] { return !is_mounted(f.env.mnt()); }, 10s);
    force_unmount(f.env.mnt());
  }
  EXPECT_EQ(slurp(f.map_path), map_before) << "the damaged chunk map was rewritten";
}

TEST(HostileTest, CorruptStoreGarbageChunkMap) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  check_damaged_map(f, "this is not a chunk map\n\x01\x02\x03");
}

TEST(HostileTest, CorruptStoreTruncatedChunkMap) {
  SKIP_UNLESS_ROOT();
  CorruptFixture f;
  ASSERT_FALSE(f.map_path.empty());
  std::string m = slurp(f.map_path);
  check_damaged_map(f, m.substr(0, m.size() / 2));
}

void populate_names(const std::string& root) {
  write_file(root + "/new\nline", "newline name\n");
  ::mkdir((root + "/dir\nwith\nnewlines").c_str(), 0755);
  write_file(root + "/dir\nwith\nnewlines/inner", "inner\n");
  write_file(root + "/" + std::string(255, 'L'), "long name\n");
  // A chain of directories whose deepest file has a 4095-byte path through
  // the mount (computed by the test; here the chain is long enough).
  Fd dir = open_or_throw(root, O_RDONLY | O_DIRECTORY);
  for (int i = 0; i < 20; ++i) {
    std::string name(200, static_cast<char>('a' + i));
    if (::mkdirat(dir.get(), name.c_str(), 0755) != 0) throw std::runtime_error("mkdirat");
    dir = openat_or_throw(dir.get(), name, O_RDONLY | O_DIRECTORY);
  }
  Fd f = openat_or_throw(dir.get(), "deep.txt", O_WRONLY | O_CREAT, 0644);
  write_fd_all(f.get(), "deep\n");
}

TEST(HostileTest, NamesWithNewlinesAndMaximalNames) {
  SKIP_UNLESS_ROOT();
  CrashEnv env("cowfs-names", populate_names);
  env.mount_now();
  // Newlines.
  EXPECT_EQ(read_file(env.m("new\nline")), "newline name\n");
  append_file(env.m("new\nline"), "more\n");
  EXPECT_EQ(read_file(env.m("dir\nwith\nnewlines/inner")), "inner\n");
  EXPECT_EQ(err(::rename(env.m("dir\nwith\nnewlines").c_str(), env.m("re\nnamed").c_str())), 0);
  write_file(env.m("created\n"), "created\n");
  // 255 bytes: fine; 256: ENAMETOOLONG, nothing created.
  const std::string n255(255, 'N');
  write_file(env.m(n255), "255\n");
  append_file(env.m(std::string(255, 'L')), "copied up\n");
  struct stat st {};
  EXPECT_EQ(err(::open(env.m(std::string(256, 'N')).c_str(), O_CREAT | O_WRONLY, 0644)),
            ENAMETOOLONG);
  EXPECT_EQ(err(::mkdir(env.m(std::string(256, 'D')).c_str(), 0755)), ENAMETOOLONG);
  EXPECT_EQ(err(::rename(env.m(n255).c_str(), env.m(std::string(256, 'R')).c_str())), ENAMETOOLONG);
  // A 4095-byte path through the mount: the deepest lower file and a new one.
  std::string rel;
  for (int i = 0; i < 20; ++i) rel += std::string(200, static_cast<char>('a' + i)) + "/";
  std::string deep = env.mnt() + "/" + rel;
  const size_t room = 4095 - deep.size();
  ASSERT_GT(room, 10u) << "the mountpoint path is too long for this test";
  std::string lower_deep = deep + "deep.txt";
  std::string new_deep = deep + std::string(room, 'z');
  ASSERT_EQ(new_deep.size(), 4095u);
  EXPECT_EQ(read_file(lower_deep), "deep\n");
  append_file(lower_deep, "written through a long path\n");  // copy-up of 20 parents
  write_file(new_deep, "at 4095\n");
  EXPECT_EQ(read_file(new_deep), "at 4095\n");
  EXPECT_EQ(err(::stat((new_deep + "x").c_str(), &st)), ENAMETOOLONG);

  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(read_file(env.m("new\nline")), "newline name\nmore\n");
    EXPECT_EQ(read_file(env.m("re\nnamed/inner")), "inner\n");
    EXPECT_EQ(err(::stat(env.m("dir\nwith\nnewlines").c_str(), &st)), ENOENT);
    EXPECT_EQ(read_file(env.m("created\n")), "created\n");
    EXPECT_EQ(read_file(env.m(n255)), "255\n");
    EXPECT_EQ(read_file(env.m(std::string(255, 'L'))), "long name\ncopied up\n");
    EXPECT_EQ(read_file(lower_deep), "deep\nwritten through a long path\n");
    EXPECT_EQ(read_file(new_deep), "at 4095\n");
    auto names = list_dir(env.mnt());
    EXPECT_EQ(std::count(names.begin(), names.end(), "new\nline"), 1);
    EXPECT_EQ(std::count(names.begin(), names.end(), "re\nnamed"), 1);
  };
  check("mounted");
  RunResult r = cowfs({"checkpoint", "--store", env.store(), "names"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  r = cowfs({"diff", "--store", env.store(), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("new\\nline"), std::string::npos)
      << "diff --json should name new\\nline, escaped: " << r.out.substr(0, 2000);
  EXPECT_EQ(r.out.find("new\nline"), std::string::npos) << "a raw newline inside a JSON string";
  // A label with a newline is refused in one line, the stack untouched.
  const std::string stack = slurp(env.store() + "/stack");
  r = cowfs({"checkpoint", "--store", env.store(), "bad\nlabel"});
  EXPECT_EQ(check_one_line_error(r, {}), "");
  EXPECT_EQ(slurp(env.store() + "/stack"), stack);
  ASSERT_NO_THROW(env.unmount());
  ASSERT_NO_THROW(env.mount_now());
  check("after a remount");
  EXPECT_EQ(env.unmount(), "");
  EXPECT_EQ(env.lower_changes(), "");
}

// A lower directory with 1,000,000 entries (empty files made with mknod on
// a tmpfs): lookups, listing, a create and an unlink in it, all bounded in
// time. The lower is compared by its directory's stat, not a full manifest
// (1M lstat+listxattr calls would dominate the test).
TEST(HostileTest, LowerDirectoryWithAMillionEntries) {
  SKIP_UNLESS_ROOT();
  const int n = static_cast<int>(env_long("HOSTILE_MILLION", 1'000'000));
  TempDir tmp("cowfs-million");
  const std::string src = tmp.mkdir("lower-src");
  RunResult mt = run({"mount", "-t", "tmpfs", "-o",
                      "size=64m,nr_inodes=" + std::to_string(n + 1000), "tmpfs", src});
  ASSERT_EQ(mt.exit_code, 0) << mt.describe();
  ASSERT_EQ(::mkdir((src + "/big").c_str(), 0755), 0);
  {
    Fd dir = open_or_throw(src + "/big", O_RDONLY | O_DIRECTORY);
    char name[32];
    for (int i = 0; i < n; ++i) {
      std::snprintf(name, sizeof name, "f%07d", i);
      ASSERT_EQ(::mknodat(dir.get(), name, S_IFREG | 0644, 0), 0)
          << name << " " << errno_name(errno);
    }
  }
  ReadOnlyBind bind(src, tmp.mkdir("lower"));
  struct stat before = stat_or_throw(tmp.sub("lower/big"));
  const std::string mnt = tmp.mkdir("mnt");
  CowfsMount mount(MountSpec{tmp.sub("store"), {tmp.sub("lower")}, mnt, {}, {}});
  Watchdog dog(240s, [mnt] {
    for (pid_t pid : cowfs_daemons(mnt)) ::kill(pid, SIGKILL);
  });
  auto t0 = std::chrono::steady_clock::now();
  std::mt19937 rng(7);
  for (int k = 0; k < 20; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "f%07d", static_cast<int>(rng() % static_cast<unsigned>(n)));
    struct stat st {};
    EXPECT_EQ(err(::stat((mnt + "/big/" + name).c_str(), &st)), 0) << name;
  }
  struct stat st {};
  EXPECT_EQ(err(::stat((mnt + "/big/absent").c_str(), &st)), ENOENT);
  auto lookups = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(lookups, 10s) << "21 lookups in a 1M-entry directory took too long";

  t0 = std::chrono::steady_clock::now();
  auto names = list_dir(mnt + "/big");
  auto listing = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(names.size(), static_cast<size_t>(n));
  EXPECT_LT(listing, 60s) << "listing 1M entries";
  std::cerr << "note: 1M-entry listing took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(listing).count() << " ms\n";

  write_file(mnt + "/big/zz-new", "new\n");
  EXPECT_EQ(err(::unlink((mnt + "/big/f0000000").c_str())), 0);
  EXPECT_EQ(err(::stat((mnt + "/big/f0000000").c_str(), &st)), ENOENT);
  EXPECT_EQ(read_file(mnt + "/big/zz-new"), "new\n");
  names = list_dir(mnt + "/big");
  EXPECT_EQ(names.size(), static_cast<size_t>(n));
  EXPECT_EQ(std::count(names.begin(), names.end(), "zz-new"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "f0000000"), 0);
  EXPECT_EQ(mount.unmount(), "");
  struct stat after = stat_or_throw(tmp.sub("lower/big"));
  EXPECT_EQ(ns_of(after.st_mtim), ns_of(before.st_mtim));
  EXPECT_EQ(ns_of(after.st_ctim), ns_of(before.st_ctim));
  EXPECT_EQ(after.st_nlink, before.st_nlink);
}

// A lower that disappears while mounted: here the lower is itself a FUSE
// mount (another cowfs over a read-only bind, standing in for SSHFS or a
// network mount) whose daemon is killed. Reads of lower data fail with EIO,
// the mount survives (top-layer files work), and it recovers once the lower
// is mounted again at the same path.
TEST(HostileTest, LowerDisappearsWhileMounted) {
  SKIP_UNLESS_ROOT();
  TempDir tmp("cowfs-vanish");
  const std::string data = tmp.mkdir("data");
  for (int i = 0; i < 6; ++i)
    write_file(data + "/f" + std::to_string(i), "file " + std::to_string(i) + "\n");
  ReadOnlyBind bind(data, tmp.mkdir("data-ro"));
  Manifest data_before = Manifest::take(data);
  const std::string lower = tmp.mkdir("lower");
  const MountSpec inner_spec{tmp.sub("inner-store"), {tmp.sub("data-ro")}, lower, {}, {}};
  auto inner = std::make_unique<CowfsMount>(inner_spec);
  const std::string mnt = tmp.mkdir("mnt");
  CowfsMount outer(MountSpec{tmp.sub("store"), {lower}, mnt, {}, {}});
  Watchdog dog(120s, [mnt] {
    for (pid_t pid : cowfs_daemons(mnt)) ::kill(pid, SIGKILL);
  });
  EXPECT_EQ(read_file(mnt + "/f0"), "file 0\n");
  write_file(mnt + "/top.txt", "in the top layer\n");

  inner->kill_daemon();
  ASSERT_TRUE(wait_until([&] { return cowfs_daemons(lower).empty(); }, 10s));
  Fd fd(::open((mnt + "/f1").c_str(), O_RDONLY));
  int e = fd ? 0 : errno;
  if (fd) {
    char buf[64];
    e = ::read(fd.get(), buf, sizeof buf) < 0 ? errno : 0;
  }
  EXPECT_EQ(e, EIO) << "reading lower data while the lower is gone: " << errno_name(e);
  fd.reset();
  EXPECT_TRUE(process_alive(outer.daemon_pid())) << "cowfs died when its lower went away";
  EXPECT_EQ(read_file(mnt + "/top.txt"), "in the top layer\n") << "the mount did not survive";
  EXPECT_NO_THROW(append_file(mnt + "/top.txt", "still writable\n"));
  // A new name might exist in the lower that cannot answer: not ENOENT.
  EXPECT_EQ(err(::mkdir((mnt + "/newdir").c_str(), 0755)), EIO);

  (void)inner->unmount();  // removes the dead mount
  inner.reset();
  ASSERT_FALSE(is_mounted(lower));
  inner = std::make_unique<CowfsMount>(inner_spec);
  bool recovered = wait_until(
      [&] {
        try {
          return read_file(mnt + "/f2") == "file 2\n";
        } catch (const std::exception&) {
          return false;
        }
      },
      15s);
  EXPECT_TRUE(recovered) << "reads did not recover after the lower came back";
  if (recovered) {
    EXPECT_EQ(read_file(mnt + "/f1"), "file 1\n");
  }
  EXPECT_EQ(read_file(mnt + "/top.txt"), "in the top layer\nstill writable\n");
  EXPECT_EQ(outer.unmount(), "");
  EXPECT_EQ(inner->unmount(), "");
  EXPECT_EQ(diff(data_before, Manifest::take(data), kEverything), "");
}

}  // namespace
}  // namespace cowfs_rel
