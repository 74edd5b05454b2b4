// Crash tests: kill -9 of the cowfs daemon at random moments during writes,
// copy-ups, chunked writes, atomic renames, checkpoints and rewinds; then
// remount and check that what was fsynced is there, that nothing
// half-written is presented as data, and that frozen layers are unchanged.
//
// A forked writer process works through the mount and logs each step to a
// file outside it ("begin ..." before, "done ..." after fsync returned). The
// test kills the daemon after a random delay (the seed is printed; set
// CRASH_SEED to replay), the writer stops at its first error, and the log
// is the model the remounted store is checked against.
//
// A kill -9 is not a power cut: what the daemon wrote to the store is in the
// host's page cache and survives. What can be lost is what the kernel had
// not yet sent to the daemon (FUSE writeback cache) — allowed for writes
// that were not fsynced.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "tests/reliability/crash_env.h"
#include "tests/reliability/rel_util.h"

namespace cowfs_rel {
namespace {

using namespace cowfs_it;
using namespace std::chrono_literals;

constexpr size_t kSmall = 16 * 1024;
constexpr size_t kBig = 3 * 1024 * 1024 / 2;  // above the 1 MiB chunk threshold

void populate(const std::string& root) {
  for (int i = 0; i < 6; ++i) write_file(root + "/s" + std::to_string(i), pattern(kSmall, 100 + i));
  for (int i = 0; i < 3; ++i) write_file(root + "/b" + std::to_string(i), pattern(kBig, 200 + i));
  write_file(root + "/r_final", pattern(5000, 300));
}

uint64_t seed_from_env() {
  long s = env_long("CRASH_SEED", 0);
  if (s != 0) return static_cast<uint64_t>(s);
  return std::random_device{}();
}

// Appends one line to the log (outside the mount); the process may die any
// time after, the line is in the host's page cache.
void log_line(int fd, const std::string& line) {
  std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

bool write_all_fd(int fd, const std::string& data, off_t off) {
  for (size_t done = 0; done < data.size();) {
    size_t n = std::min<size_t>(4096, data.size() - done);
    ssize_t r = ::pwrite(fd, data.data() + done, n, off + static_cast<off_t>(done));
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

// The writer: runs until a call fails (the daemon is dead). Never returns.
[[noreturn]] void writer(const std::string& mnt, int log, uint64_t seed, int first) {
  std::mt19937_64 rng(seed);
  for (int i = first;; ++i) {
    int kind = static_cast<int>(rng() % 3);
    if (kind == 0) {  // a new file, written in 4 KiB pieces, fsynced
      std::string name = "n" + std::to_string(i);
      size_t size = 4096 + rng() % (200 * 1024);
      log_line(log, "begin new " + name + " " + std::to_string(size) + " " + std::to_string(i));
      int fd = ::open((mnt + "/" + name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 || !write_all_fd(fd, pattern(size, static_cast<uint64_t>(i)), 0) ||
          ::fsync(fd) != 0 || ::close(fd) != 0) {
        _exit(0);
      }
      log_line(log, "done");
    } else if (kind == 1) {  // overwrite inside a lower file: copy-up, chunked or whole
      bool big = rng() % 2;
      std::string name = (big ? "b" : "s") + std::to_string(rng() % (big ? 3 : 6));
      size_t size = big ? kBig : kSmall;
      size_t len = 1 + rng() % (big ? 300 * 1024 : 8192);
      size_t off = rng() % (size - len);
      log_line(log, "begin ow " + name + " " + std::to_string(off) + " " + std::to_string(len) +
                        " " + std::to_string(i));
      int fd = ::open((mnt + "/" + name).c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || !write_all_fd(fd, pattern(len, static_cast<uint64_t>(i)), off) ||
          ::fsync(fd) != 0 || ::close(fd) != 0) {
        _exit(0);
      }
      log_line(log, "done");
    } else {  // the atomic-replace idiom: write aside, fsync, rename over
      size_t size = 1 + rng() % (150 * 1024);
      log_line(log, "begin rp r_final " + std::to_string(size) + " " + std::to_string(i));
      int fd = ::open((mnt + "/t.tmp").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || !write_all_fd(fd, pattern(size, static_cast<uint64_t>(i)), 0) ||
          ::fsync(fd) != 0 || ::close(fd) != 0 ||
          ::rename((mnt + "/t.tmp").c_str(), (mnt + "/r_final").c_str()) != 0) {
        _exit(0);
      }
      log_line(log, "done");
    }
  }
}

struct Pending {
  std::string kind, name;
  size_t a = 0, b = 0;
  uint64_t seed = 0;
};

// Replays the log onto the model; returns the step in flight at the kill.
std::optional<Pending> apply_log(const std::string& log, std::map<std::string, std::string>& model,
                                 int* next_index) {
  std::istringstream in(log);
  std::string line;
  std::optional<Pending> pending;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string word;
    ls >> word;
    if (word == "begin") {
      Pending p;
      ls >> p.kind >> p.name;
      if (p.kind == "new" || p.kind == "rp") {
        ls >> p.a >> p.seed;
      } else {
        ls >> p.a >> p.b >> p.seed;
      }
      *next_index = static_cast<int>(p.seed) + 1;
      pending = p;
    } else if (word == "done" && pending) {
      const Pending& p = *pending;
      if (p.kind == "new" || p.kind == "rp") {
        model[p.name] = pattern(p.a, p.seed);
        if (p.kind == "rp") model.erase("t.tmp");
      } else {
        model[p.name].replace(p.a, p.b, pattern(p.b, p.seed));
      }
      pending.reset();
    }
  }
  return pending;
}

// Checks the remounted tree against the model and the step in flight.
std::string check_tree(const std::string& mnt, const std::map<std::string, std::string>& model,
                       const std::optional<Pending>& pending) {
  std::string problems;
  std::set<std::string> expected;
  for (const auto& [name, content] : model) expected.insert(name);
  for (const auto& name : list_dir(mnt)) {
    if (expected.count(name)) continue;
    bool in_flight = pending && ((pending->kind == "new" && pending->name == name) ||
                                 (pending->kind == "rp" && name == "t.tmp"));
    if (!in_flight) problems += "unexpected file " + name + "; ";
  }
  for (const auto& [name, want] : model) {
    if (name == "t.tmp" && pending && pending->kind == "rp") continue;  // being rewritten
    std::string got;
    try {
      got = read_file(mnt + "/" + name);
    } catch (const std::exception& e) {
      problems += name + ": " + e.what() + "; ";
      continue;
    }
    if (pending && pending->kind == "ow" && pending->name == name) {
      // Each byte of the range in flight is old or new; the rest exact.
      std::string fresh = pattern(pending->b, pending->seed);
      if (got.size() != want.size()) {
        problems += name + ": size " + std::to_string(got.size()) +
                    " after a crash during an "
                    "overwrite inside the file (expected " +
                    std::to_string(want.size()) + "); ";
        continue;
      }
      for (size_t i = 0; i < got.size(); ++i) {
        bool in_range = i >= pending->a && i < pending->a + pending->b;
        if (got[i] == want[i] || (in_range && got[i] == fresh[i - pending->a])) continue;
        problems += name + ": byte " + std::to_string(i) +
                    " is neither the old nor the new data"
                    " (a half-written copy-up or chunk); ";
        break;
      }
    } else if (pending && pending->kind == "rp" && name == "r_final") {
      if (got != want && got != pattern(pending->a, pending->seed)) {
        problems +=
            "r_final is neither the old nor the new version after a crash during an "
            "atomic rename (" +
            first_difference(want, got) + "); ";
      }
    } else if (got != want) {
      problems += name + ": fsynced content lost or damaged: " + first_difference(want, got) + "; ";
    }
  }
  if (pending && pending->kind == "new" && !model.count(pending->name)) {
    struct stat st {};
    if (::stat((mnt + "/" + pending->name).c_str(), &st) == 0) {
      // Not fsynced: may be missing or short, but only ever holds what was
      // written (or zeros where a page had not arrived).
      std::string got = read_file(mnt + "/" + pending->name);
      std::string want = pattern(pending->a, pending->seed);
      if (got.size() > want.size()) problems += pending->name + " grew past what was written; ";
      for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        if (got[i] != want[i] && got[i] != '\0') {
          problems += pending->name + ": byte " + std::to_string(i) + " was never written; ";
          break;
        }
      }
    }
  }
  return problems;
}

std::map<std::string, std::string> initial_model(const std::string& src) {
  std::map<std::string, std::string> model;
  for (const auto& name : list_dir(src)) model[name] = read_file(src + "/" + name);
  return model;
}

// Waits (bounded) for the forked writer to finish after the daemon died.
bool reap(pid_t pid) {
  int status = 0;
  bool done = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 30s);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  return done;
}

TEST(CrashTest, KillDuringWritesCopyUpsAndRenames) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount of the lower";
  const uint64_t seed = seed_from_env();
  SCOPED_TRACE("CRASH_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  CrashEnv env("cowfs-crash", populate);
  auto model = initial_model(env.lower_src());
  env.mount_now();
  // A frozen layer under everything the rounds write.
  write_file(env.m("frozen.txt"), "frozen\n");
  model["frozen.txt"] = "frozen\n";
  RunResult cp = cowfs({"checkpoint", "--store", env.store(), "base"});
  ASSERT_EQ(cp.exit_code, 0) << cp.describe();
  ASSERT_GE(env.stack().size(), 2u);
  const std::string frozen_id = env.stack().front().first;
  const Manifest frozen = env.layer(frozen_id);

  const std::string log_path = env.tmp().sub("writer.log");
  int next_index = 0;
  const int rounds = static_cast<int>(env_long("CRASH_ROUNDS", 5));
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ::unlink(log_path.c_str());
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(log, 0);
    uint64_t wseed = rng();
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) writer(env.mnt(), log, wseed, next_index);
    ::close(log);
    auto delay = std::chrono::milliseconds(50 + rng() % 700);
    // Wait until the writer has really started, then a random moment more.
    wait_until([&] { return slurp(log_path).size() > 0; }, 10s);
    std::this_thread::sleep_for(delay);
    env.kill_only();
    ASSERT_TRUE(reap(child)) << "the writer hung on the dead mount";
    std::string said = env.kill_daemon();
    if (!said.empty()) std::cerr << "note: cowfs umount on the dead mount: " << said << "\n";
    ASSERT_FALSE(is_mounted(env.mnt())) << "the dead mount could not be removed";

    std::string log_text = slurp(log_path);
    auto pending = apply_log(log_text, model, &next_index);
    ASSERT_NO_THROW(env.mount_now()) << "the store does not mount after kill -9";
    std::string problems = check_tree(env.mnt(), model, pending);
    EXPECT_EQ(problems, "") << "after kill -9 during:\n" << log_text;
    EXPECT_EQ(diff(frozen, env.layer(frozen_id), kFrozenFields), "") << "the frozen layer changed";
    if (!problems.empty()) break;
    // The in-flight step is settled now; make the model what is there.
    if (pending) {
      for (const std::string& name : {pending->name, std::string("t.tmp")}) {
        struct stat st {};
        if (::stat(env.m(name).c_str(), &st) == 0) {
          model[name] = read_file(env.m(name));
        } else {
          model.erase(name);
        }
      }
    }
  }
  EXPECT_EQ(env.unmount(), "");
  EXPECT_EQ(env.lower_changes(), "") << "the lower changed";
}

// Kills the daemon while a writer alternates fsynced writes, checkpoints and
// rewinds through the control socket. After the remount the stack must be
// valid, every checkpoint that reported success (and was not dropped by a
// later rewind) must be there, and each checkpoint must hold exactly what was
// written before it.
TEST(CrashTest, KillDuringCheckpointsAndRewinds) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount of the lower";
  const uint64_t seed = seed_from_env();
  SCOPED_TRACE("CRASH_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  CrashEnv env("cowfs-crashcp", populate);
  env.mount_now();
  const std::string log_path = env.tmp().sub("cp.log");
  int next_gen = 1;
  const int rounds = static_cast<int>(env_long("CRASH_ROUNDS", 4));
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Frozen layers from earlier rounds must survive this one unchanged.
    std::map<std::string, Manifest> frozen;
    auto st = env.stack();
    for (size_t i = 0; i + 1 < st.size(); ++i) frozen[st[i].first] = env.layer(st[i].first);

    ::unlink(log_path.c_str());
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(log, 0);
    const int first = next_gen;
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (int k = first;; ++k) {
        // gen holds k and b0 gets a chunk marked k: both fsynced.
        int fd =
            ::open((env.mnt() + "/gen").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        std::string g = std::to_string(k);
        if (fd < 0 || ::write(fd, g.data(), g.size()) != static_cast<ssize_t>(g.size()) ||
            ::fsync(fd) != 0 || ::close(fd) != 0) {
          _exit(0);
        }
        fd = ::open((env.mnt() + "/b0").c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || !write_all_fd(fd, pattern(70000, static_cast<uint64_t>(k)), 0) ||
            ::fsync(fd) != 0 || ::close(fd) != 0) {
          _exit(0);
        }
        log_line(log, "begin checkpoint g" + std::to_string(k));
        RunResult r =
            run({cowfs_bin(), "checkpoint", "--store", env.store(), "g" + std::to_string(k)},
                {.cwd = "", .timeout = 30s});
        if (r.exit_code != 0) _exit(0);
        log_line(log, "ok checkpoint g" + std::to_string(k));
        if (k % 3 == 0 && k - 1 >= first) {
          log_line(log, "begin rewind g" + std::to_string(k - 1));
          r = run({cowfs_bin(), "rewind", "--store", env.store(), "g" + std::to_string(k - 1)},
                  {.cwd = "", .timeout = 30s});
          if (r.exit_code != 0) _exit(0);
          log_line(log, "ok rewind g" + std::to_string(k - 1));
        }
      }
    }
    ::close(log);
    wait_until([&] { return slurp(log_path).find("checkpoint") != std::string::npos; }, 20s);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1500));
    env.kill_only();
    ASSERT_TRUE(reap(child)) << "the writer hung on the dead mount";
    std::string said = env.kill_daemon();
    if (!said.empty()) std::cerr << "note: cowfs umount on the dead mount: " << said << "\n";

    const std::string log_text = slurp(log_path);
    SCOPED_TRACE("writer log:\n" + log_text);
    // Labels that must exist: successful checkpoints not followed by the
    // start of a rewind to an earlier label.
    std::vector<std::string> must_exist;
    std::istringstream in(log_text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("ok checkpoint ", 0) == 0) must_exist.push_back(line.substr(14));
      if (line.rfind("begin rewind ", 0) == 0) {
        int target = std::stoi(line.substr(14));
        std::erase_if(must_exist,
                      [&](const std::string& l) { return std::stoi(l.substr(1)) > target; });
      }
      if (line.rfind("begin checkpoint g", 0) == 0) next_gen = std::stoi(line.substr(18)) + 1;
    }

    RunResult layers = cowfs({"layers", "--store", env.store()});
    EXPECT_EQ(layers.exit_code, 0)
        << "cowfs layers on the store after kill -9: " << layers.describe();
    ASSERT_NO_THROW(env.mount_now()) << "the store does not mount after kill -9";
    auto now = env.stack();
    std::set<std::string> labels;
    for (const auto& [id, label] : now) labels.insert(label);
    for (const auto& l : must_exist) {
      EXPECT_TRUE(labels.count(l))
          << "checkpoint " << l << " reported success but is gone after kill -9";
    }
    for (const auto& [id, m] : frozen) {
      // (clang 14 cannot capture a structured binding.)
      const std::string& frozen_id = id;
      bool still =
          std::any_of(now.begin(), now.end(), [&](const auto& p) { return p.first == frozen_id; });
      EXPECT_TRUE(still) << "frozen layer " << id << " from an earlier round vanished";
      if (still) {
        EXPECT_EQ(diff(m, env.layer(id), kFrozenFields), "") << "frozen layer " << id;
      }
    }
    // Every checkpoint of this round holds what was written before it:
    // rewind to each, highest first (a rewind drops only what is above).
    std::vector<int> round_gens;
    for (const auto& [id, label] : now) {
      if (label.size() < 2 || label[0] != 'g') continue;
      int k = std::stoi(label.substr(1));
      if (k >= first) round_gens.push_back(k);
    }
    std::sort(round_gens.rbegin(), round_gens.rend());
    for (int k : round_gens) {
      const std::string label = "g" + std::to_string(k);
      RunResult rw = cowfs({"rewind", "--store", env.store(), label});
      ASSERT_EQ(rw.exit_code, 0) << rw.describe();
      EXPECT_EQ(read_file(env.m("gen")), std::to_string(k)) << "checkpoint " << label;
      std::string b0 = read_file(env.m("b0"));
      EXPECT_EQ(first_difference(pattern(70000, static_cast<uint64_t>(k)), b0.substr(0, 70000)), "")
          << "b0's first chunk in checkpoint " << label;
      EXPECT_EQ(first_difference(pattern(kBig, 200).substr(70000), b0.substr(70000)), "")
          << "the untouched rest of b0 in checkpoint " << label;
    }
  }
  EXPECT_EQ(env.unmount(), "");
  EXPECT_EQ(env.lower_changes(), "") << "the lower changed";
}

// A rename away from a name that a lower has must hide that lower name in
// the same step as the entry leaves it. The daemon is killed (a crash point
// of COWFS_TEST_FAULTS, cowfs/sys/fault_env.h) in place of each call that
// would put one of the rename's two names in place in the store; after a
// remount the old view or the new one must show (for a file, also both
// names, which rename(2) allows), never the production entry back under the
// old name beside the moved one.
TEST(CrashTest, RenameOverALowerNameIsOneStep) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for the read-only bind mount of the lower";
  struct Case {
    std::string op;  // rename or link
    bool at_source;  // the call that lands the old name (else the new one)
    bool dir;
  };
  std::vector<Case> cases;
  for (bool dir : {false, true}) {
    for (const char* op : {"rename", "link"}) {
      for (bool at_source : {true, false}) cases.push_back({op, at_source, dir});
    }
  }
  auto src_of = [](size_t i) { return "moved" + std::to_string(i); };
  auto dst_of = [](size_t i) { return "target" + std::to_string(i); };
  CrashEnv env("cowfs-crashmv", [&](const std::string& root) {
    for (size_t i = 0; i < cases.size(); ++i) {
      if (cases[i].dir) {
        ASSERT_EQ(err(::mkdir((root + "/" + src_of(i)).c_str(), 0755)), 0);
        write_file(root + "/" + src_of(i) + "/inner", "production inner\n");
      } else {
        write_file(root + "/" + src_of(i), "production source\n");
        write_file(root + "/" + dst_of(i), "production target\n");
      }
    }
  });
  // The sources get their top copies on a healthy mount, so that the only
  // calls naming them in the faulty one are the rename's own.
  env.mount_now();
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].dir) {
      write_file(env.m(src_of(i) + "/added"), "added\n");
    } else {
      write_file(env.m(src_of(i)), "rewritten source\n");
    }
  }
  ASSERT_EQ(env.unmount(), "");

  int crashes[2] = {0, 0};  // files, directories
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string src = src_of(i), dst = dst_of(i);
    const std::string fault = c.op + ":" + (c.at_source ? src : dst) + "=KILL";
    SCOPED_TRACE("COWFS_TEST_FAULTS=" + fault + (c.dir ? ", a directory" : ", a file"));
    {
      MountSpec spec = env.spec();
      spec.run_as = {"env", "COWFS_TEST_FAULTS=" + fault};
      CowfsMount faulty(spec);
      // Fails (the daemon is gone) or succeeds (no such call was made).
      const int e = err(::rename(env.m(src).c_str(), env.m(dst).c_str()));
      if (e != 0) {
        std::cerr << "note: crashed at " << fault << ": " << errno_name(e) << "\n";
        ++crashes[c.dir];
      }
      env.kill_daemon();
    }
    ASSERT_NO_THROW(env.mount_now()) << "the store does not mount after the crash";
    struct stat st {};
    const bool src_there = ::lstat(env.m(src).c_str(), &st) == 0;
    const bool dst_there = ::lstat(env.m(dst).c_str(), &st) == 0;
    if (c.dir) {
      const std::vector<std::string> whole = {"added", "inner"};
      EXPECT_TRUE(src_there != dst_there) << "the directory is under both names, or neither";
      if (src_there) {
        EXPECT_EQ(sorted(list_dir(env.m(src))), whole) << "the old name shows something else";
      }
      if (dst_there) {
        EXPECT_EQ(sorted(list_dir(env.m(dst))), whole) << "the new name shows something else";
      }
    } else {
      const std::string moved = "rewritten source\n";
      if (src_there) {
        EXPECT_EQ(read_file(env.m(src)), moved) << "the production file is back at the old name";
      }
      ASSERT_TRUE(dst_there) << "the target is gone";
      const std::string at_dst = read_file(env.m(dst));
      if (!src_there) {
        EXPECT_EQ(at_dst, moved) << "the file is under neither name";
      } else {
        EXPECT_TRUE(at_dst == moved || at_dst == "production target\n") << at_dst;
      }
    }
    ASSERT_EQ(env.unmount(), "");
  }
  // Some call of every rename put a name in place: the test crashed there.
  EXPECT_GT(crashes[0], 0) << "no crash point was reached by a file's rename";
  EXPECT_GT(crashes[1], 0) << "no crash point was reached by a directory's rename";
  EXPECT_EQ(env.lower_changes(), "") << "the lower changed";
}

}  // namespace
}  // namespace cowfs_rel
