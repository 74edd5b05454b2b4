#include "tests/harness/e2e_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace rehearse_test {

namespace fs = std::filesystem;

std::string RehearseE2E::lower_src_;
std::string RehearseE2E::lower_;
std::unique_ptr<TempDir> RehearseE2E::suite_tmp_;
std::map<std::string, std::string> RehearseE2E::manifest_;

namespace {

void sh(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("command failed: " + cmd);
}

uint64_t fnv(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool is_mount_point(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string a, b, c, d, point;
    ls >> a >> b >> c >> d >> point;
    if (point == path) return true;
  }
  return false;
}

}  // namespace

std::map<std::string, std::string> manifest(const std::string& root) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    std::string rel = e.path().string().substr(root.size());
    struct stat st {};
    ::lstat(e.path().c_str(), &st);
    std::string v = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                    std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) v += " " + std::to_string(fnv(read_file(e.path().string())));
    m[rel] = v;
  }
  return m;
}

// ---- Background ------------------------------------------------------------------

Background::Background(const std::vector<std::string>& argv,
                       const std::vector<std::string>& extra_env) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) throw std::runtime_error("pipe");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close_range(3, ~0U, 0);
    ::execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
  ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
}

Background::~Background() {
  if (!done_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

const std::string& Background::out() {
  char buf[65536];
  for (int fd : {out_fd_, err_fd_}) {
    ssize_t n;
    while (fd >= 0 && (n = ::read(fd, buf, sizeof buf)) > 0) {
      (fd == out_fd_ ? out_ : err_).append(buf, static_cast<size_t>(n));
    }
  }
  return out_;
}

CliResult Background::wait() {
  if (!done_) {
    // Pipes may be held by a cowfs daemon the run started: read until the
    // child exits, then what is left.
    while (true) {
      out();
      pid_t w = ::waitpid(pid_, &status_, WNOHANG);
      if (w == pid_) break;
      pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      ::poll(p, 2, 50);
    }
    out();
    done_ = true;
  }
  CliResult r;
  r.exit_code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  r.out = out_;
  r.err = err_;
  return r;
}

void Background::signal(int sig) { ::kill(pid_, sig); }

void Background::kill9() {
  ::kill(pid_, SIGKILL);
  wait();
}

// ---- fixture -----------------------------------------------------------------------

void RehearseE2E::SetUpTestSuite() {
  ::setenv("REHEARSE_COWFS", COWFS_BIN, 1);
  suite_tmp_ = std::make_unique<TempDir>("rehearse-e2e-prod");
  lower_src_ = suite_tmp_->sub("prod-src");
  lower_ = suite_tmp_->sub("prod");
  mkdirs(lower_src_ + "/data");
  mkdirs(lower_src_ + "/blobs");
  mkdirs(lower_);
  sqlite3* db = nullptr;
  sqlite3_open((lower_src_ + "/data/app.db").c_str(), &db);
  std::string sql =
      "PRAGMA journal_mode=DELETE;"
      "CREATE TABLE content(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL);"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<" +
      std::to_string(kRows) +
      ") INSERT INTO content SELECT i, 'title ' || i, printf('%.*c', 20 + i % 50, 'x') FROM n;";
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    throw std::runtime_error(std::string("snapshot: ") + (err ? err : "?"));
  }
  sqlite3_close(db);
  for (int i = 0; i < kBlobs; ++i) {
    write_file(lower_src_ + "/blobs/blob-" + std::to_string(i) + ".bin",
               "blob " + std::to_string(i) + std::string(static_cast<size_t>(100 + i % 300), 'b'));
  }
  sh("mount --bind " + lower_src_ + " " + lower_);
  sh("mount -o remount,bind,ro " + lower_);
  manifest_ = manifest(lower_);
}

void RehearseE2E::TearDownTestSuite() {
  ::umount2(lower_.c_str(), MNT_DETACH);
  suite_tmp_.reset();
}

void RehearseE2E::SetUp() {
  tmp_ = std::make_unique<TempDir>("rehearse-e2e");
  mkdirs(steps());
  CliResult r = CliResult{};
  auto a = argv({"init", "--lower", lower_, "--mountpoint", "mnt", "--steps", "steps", "--sqlite",
                 "data/app.db"});
  Background b(a);
  r = b.wait();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
}

void RehearseE2E::TearDown() {
  if (mounted()) {
    CliResult r = rehearse({"umount"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    if (mounted()) {
      ::umount2(mnt().c_str(), MNT_DETACH);
    }
  }
  EXPECT_TRUE(manifest(lower_) == manifest_) << "the lower changed: lowers must never be written";
  tmp_.reset();
}

bool RehearseE2E::mounted() const { return is_mount_point(mnt()); }

std::vector<std::string> RehearseE2E::argv(const std::vector<std::string>& args) const {
  std::vector<std::string> a = {REHEARSE_BIN, "-C", tmp_->path()};
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

CliResult RehearseE2E::rehearse(const std::vector<std::string>& args,
                                const std::vector<std::string>& extra_env) {
  Background b(argv(args), extra_env);
  return b.wait();
}

void RehearseE2E::step(const std::string& rel, const std::string& body, bool exec) {
  std::string p = steps() + "/" + rel;
  mkdirs(p.substr(0, p.rfind('/')));
  write_file(p, body, exec ? 0755 : 0644);
}

// 1.0: schema (sql) + a marker file (exec)
// 1.1: batched backfill over all rows, logging every window in batch_log
//      (UNIQUE, so a redone batch fails), + blob move in bounded calls
//      (exec, exit 75 until done, state = how many moved)
// 1.2: an index (sql) + a check of the blob move (exec)
void RehearseE2E::write_standard_steps(int batch_size) {
  step("1.0/10-schema.sql",
       "ALTER TABLE content ADD COLUMN words INTEGER;\n"
       "CREATE TABLE batch_log(step TEXT, lo INTEGER, hi INTEGER, UNIQUE(step, lo));\n");
  step("1.0/20-marker.sh",
       "#!/bin/sh\nset -e\necho \"upgraded by $REHEARSE_STEP\" > marker.txt\n"
       "echo \"1 1 marker written\" >&$REHEARSE_PROGRESS_FD\n",
       true);
  step("1.1/10-words.sql",
       "-- Backfill the word count.\n-- rehearse:batch table=content key=id size=" +
           std::to_string(batch_size) +
           "\nUPDATE content SET words = length(body) WHERE id BETWEEN :lo AND :hi;\n"
           "INSERT INTO batch_log(step, lo, hi) VALUES('words', :lo, :hi);\n");
  step("1.1/20-move-blobs.sh",
       "#!/bin/sh\nset -e\n"
       "done=$(cat \"$REHEARSE_STATE\" 2>/dev/null || true); done=${done:-0}\n"
       "mkdir -p blobs-v2\n"
       "n=$(ls blobs | sort | head -n 500 | wc -l)\n"
       "ls blobs | sort | head -n 500 | (cd blobs && xargs mv -t ../blobs-v2/)\n"
       "done=$((done+n))\n"
       "echo $done > \"$REHEARSE_STATE\"\n"
       "echo \"$done " +
           std::to_string(kBlobs) +
           " moved\" >&$REHEARSE_PROGRESS_FD\n"
           "echo \"moved $n blobs\"\n"
           "if [ -n \"$(ls blobs)\" ]; then exit 75; fi\n",
       true);
  step("1.2/10-index.sql", "CREATE INDEX content_words ON content(words);\n");
  step("1.2/20-check.sh",
       "#!/bin/sh\nn=$(find blobs-v2 -type f | wc -l)\n"
       "if [ \"$n\" -ne " +
           std::to_string(kBlobs) + " ]; then echo \"expected " + std::to_string(kBlobs) +
           " blobs, found $n\" >&2; exit 1; fi\n",
       true);
}

void RehearseE2E::write_mini_steps() {
  step("1.0/10-schema.sql",
       "CREATE TABLE batch_log(step TEXT, lo INTEGER, hi INTEGER, UNIQUE(step, lo));\n"
       "CREATE TABLE calls(version TEXT UNIQUE);\n");
  step("1.0/20-count.sh", "#!/bin/sh\necho \"$REHEARSE_VERSION\" >> calls.txt\n", true);
  step("1.1/10-batch.sql",
       "-- rehearse:batch table=content key=id size=" + std::to_string(kRows / 4) +
           "\nINSERT INTO batch_log(step, lo, hi) VALUES('b', :lo, :hi);\n");
  step("1.1/20-count.sh", "#!/bin/sh\necho \"$REHEARSE_VERSION\" >> calls.txt\n", true);
  step("1.2/10-last.sql", "INSERT INTO calls(version) VALUES('1.2');\n");
}

void RehearseE2E::expect_mini_done_exactly_once(int commits_above_1_0) {
  EXPECT_EQ(query("SELECT count(*) || '/' || count(DISTINCT lo) FROM batch_log"), "4/4");
  EXPECT_EQ(query("SELECT group_concat(version) FROM calls"), "1.2");
  EXPECT_EQ(read_file(mnt("calls.txt")), "1.0\n1.1\n");
  EXPECT_EQ(query("SELECT version FROM _rehearse_version"), "1.2");
  EXPECT_EQ(journal_query("SELECT group_concat(version || ':' || state || ':' || layer, ' ') "
                          "FROM (SELECT * FROM applied ORDER BY version)"),
            "1.0:applied:1.0 1.1:applied:1.1 1.2:applied:1.2");
  EXPECT_EQ(journal_query("SELECT count(*) FROM commits WHERE version='1.1'"),
            std::to_string(commits_above_1_0));
  EXPECT_EQ(journal_query("SELECT count(*) FROM commits WHERE version='1.2'"),
            std::to_string(commits_above_1_0));
  EXPECT_EQ(journal_query("SELECT count(*) FROM commits WHERE version='1.0'"), "1");
  EXPECT_EQ(journal_query("SELECT count(*) FROM partial"), "0");
  EXPECT_EQ(journal_query("SELECT count(*) FROM intent"), "0");
}

std::string RehearseE2E::query(const std::string& sql) {
  return sqlite_query(mnt("data/app.db"), sql);
}

std::string RehearseE2E::journal_query(const std::string& sql) {
  return sqlite_query(journal_path(), sql);
}

std::string sqlite_query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
      if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
        out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      }
    } else {
      out = std::string("ERROR ") + sqlite3_errmsg(db);
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return out;
}

std::string RehearseE2E::status_json() {
  CliResult r = rehearse({"status", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  return r.out;
}

std::vector<std::string> RehearseE2E::events(const std::string& out, const std::string& event) {
  std::vector<std::string> found;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"event\":\"" + event + "\"") != std::string::npos) found.push_back(line);
  }
  return found;
}

}  // namespace rehearse_test
