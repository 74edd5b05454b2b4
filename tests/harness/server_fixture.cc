#include "tests/harness/server_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace rehearse_test {

namespace fs = std::filesystem;

std::unique_ptr<TempDir> ServerE2E::suite_tmp_;

namespace {

void sh(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("command failed: " + cmd);
}

std::string template_dir() { return "pg-template"; }

}  // namespace

void ServerE2E::SetUpTestSuite() {
  ::setenv("REHEARSE_COWFS", COWFS_BIN, 1);
  suite_tmp_ = std::make_unique<TempDir>("rehearse-server-suite");
  ::chmod(suite_tmp_->path().c_str(), 0755);
  const std::string t = suite_tmp_->sub(template_dir());
  mkdirs(t);
  sh("chown postgres " + t);
  // Checksums on, as the crash tests check them with pg_checksums.
  sh("runuser -u postgres -- " + std::string(kPgBin) + "/initdb -D " + t +
     "/pgdata --data-checksums -A trust -U postgres >" + suite_tmp_->sub("initdb.log") + " 2>&1");
  // A small redo log, so that copying production per test stays cheap.
  sh("chown mysql " + t + " && mariadb-install-db --no-defaults --user=mysql --datadir=" + t +
     "/mysql --auth-root-authentication-method=socket --skip-test-db "
     "--innodb-log-file-size=8M >" +
     suite_tmp_->sub("mariadb-install.log") + " 2>&1");
  sh("echo 'CREATE DATABASE app;' | runuser -u mysql -- /usr/sbin/mariadbd --no-defaults "
     "--bootstrap --datadir=" +
     t + "/mysql --skip-networking --innodb-log-file-size=8M >>" +
     suite_tmp_->sub("mariadb-install.log") + " 2>&1");
}

void ServerE2E::TearDownTestSuite() { suite_tmp_.reset(); }

void ServerE2E::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (bind mounts, the postgres user)";
  tmp_ = std::make_unique<TempDir>("rehearse-server");
  ::chmod(tmp_->path().c_str(), 0755);
  port_ = 20000 + ::getpid() % 20000;
  const std::string src = tmp_->sub("prod-src");
  mkdirs(src);
  mkdirs(prod());
  mkdirs(ws());
  mkdirs(steps());
  sh("cp -a " + suite_tmp_->sub(template_dir()) + "/pgdata " + src + "/pgdata");
  sh("cp -a " + suite_tmp_->sub(template_dir()) + "/mysql " + src + "/mysql");
  mkdirs(src + "/files");
  write_file(src + "/files/readme.txt", "production file\n");
  sh("mount --bind " + src + " " + prod());
  sh("mount -o remount,bind,ro " + prod());
  manifest_ = manifest(prod());
  CliResult r = rehearse({"init", "--lower", prod(), "--mountpoint", "mnt", "--steps", steps()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
}

void ServerE2E::TearDown() {
  if (!tmp_) return;
  // rehearse umount stops services a killed rehearse left behind.
  CliResult r = rehearse({"umount"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  auto left = leftovers();
  EXPECT_TRUE(left.empty()) << "processes left running: " << left.size() << " (first pid "
                            << (left.empty() ? 0 : left.front()) << ")";
  for (pid_t p : left) ::kill(p, SIGKILL);
  for (int i = 0; i < 100 && !leftovers().empty(); ++i) ::usleep(50000);
  ::umount2(mnt().c_str(), MNT_DETACH);
  EXPECT_TRUE(manifest(prod()) == manifest_) << "production changed: lowers must never be written";
  ::umount2(prod().c_str(), MNT_DETACH);
  tmp_.reset();
}

std::vector<pid_t> ServerE2E::leftovers() const {
  std::vector<pid_t> out;
  const std::string dir = tmp_->path();
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid == ::getpid()) continue;
    std::string base = std::string("/proc/") + e->d_name;
    std::ifstream in(base + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::error_code ec;
    std::string cwd = fs::read_symlink(base + "/cwd", ec).string();
    std::ifstream st(base + "/stat");
    std::string stat;
    std::getline(st, stat);
    auto close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') continue;
    // cowfs itself is unmounted by TearDown; everything else is a leftover.
    if (cmd.find("cowfs") != std::string::npos) continue;
    if (cmd.find(dir) != std::string::npos || cwd.rfind(dir, 0) == 0) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(d);
  return out;
}

pid_t ServerE2E::cowfs_pid() const {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("cowfs") != std::string::npos &&
        cmd.find(std::string("--store") + '\0' + ws() + "/.rehearse/store" + '\0') !=
            std::string::npos) {
      found = static_cast<pid_t>(pid);
    }
  }
  ::closedir(d);
  return found;
}

std::vector<std::string> ServerE2E::argv(const std::vector<std::string>& args) const {
  std::vector<std::string> a = {REHEARSE_BIN, "-C", ws()};
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

CliResult ServerE2E::rehearse(const std::vector<std::string>& args,
                              const std::vector<std::string>& extra_env) {
  Background b(argv(args), extra_env);
  return b.wait();
}

void ServerE2E::step(const std::string& rel, const std::string& body, bool exec) {
  std::string p = steps() + "/" + rel;
  mkdirs(p.substr(0, p.rfind('/')));
  write_file(p, body, exec ? 0755 : 0644);
}

void ServerE2E::append_config(const std::string& text) {
  std::ofstream out(ws() + "/rehearse.toml", std::ios::app);
  out << "\n" << text << "\n";
}

std::string ServerE2E::pg_service(const std::string& extra) const {
  const std::string p = std::to_string(port_);
  std::string bin = kPgBin;
  return "[[service]]\nname = \"db\"\n"
         "start = \"" +
         bin + "/pg_ctl -D {root}/pgdata -o \\\"-k {run} -p " + p +
         " -c listen_addresses=''\\\" -w start\"\n"
         "stop = \"" +
         bin + "/pg_ctl -D {root}/pgdata -m fast -w stop\"\n" + "ready = \"" + bin +
         "/pg_isready -q -h {run} -p " + p +
         "\"\n"
         "user = \"postgres\"\n"
         "flush = \"psql -h {run} -p " +
         p + " -U postgres -Atc CHECKPOINT\"\n" + extra;
}

std::string ServerE2E::psql_cmd() const {
  return "psql -v ON_ERROR_STOP=1 -At -h " + run_dir() + " -p " + std::to_string(port_) +
         " -U postgres";
}

std::string ServerE2E::psql(const std::string& sql) {
  CliResult r = rehearse({"exec", "--", "psql", "-v", "ON_ERROR_STOP=1", "-At", "-h", run_dir(),
                          "-p", std::to_string(port_), "-U", "postgres", "-c", sql});
  if (r.exit_code != 0) return "ERROR: " + r.describe();
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string ServerE2E::mariadb_service(const std::string& flush_method) const {
  return "[[service]]\nname = \"mariadb\"\n"
         "start = \"/usr/sbin/mariadbd --no-defaults --datadir={root}/mysql "
         "--socket={run}/mysql.sock --skip-networking --pid-file={run}/mariadb.pid "
         "--innodb-log-file-size=8M" +
         (flush_method.empty() ? "" : " --innodb-flush-method=" + flush_method) +
         " &\"\n"
         "ready = \"mariadb-admin --no-defaults --socket={run}/mysql.sock ping\"\n"
         "stop = \"mariadb-admin --no-defaults --socket={run}/mysql.sock shutdown\"\n"
         "flush = \"mariadb --no-defaults --socket={run}/mysql.sock -e 'FLUSH TABLES'\"\n"
         "user = \"mysql\"\n";
}

std::string ServerE2E::mariadb_database() const {
  return "database = \"mysql://root@localhost/app?socket={run}/mysql.sock\"";
}

std::string ServerE2E::mariadb_cmd() const {
  return "mariadb --no-defaults -N -B -uroot -S " + run_dir() + "/mysql.sock app";
}

std::string ServerE2E::mariadb(const std::string& sql) {
  CliResult r = rehearse({"exec", "--", "mariadb", "--no-defaults", "-N", "-B", "-uroot", "-S",
                          run_dir() + "/mysql.sock", "-e", sql, "app"});
  if (r.exit_code != 0) return "ERROR: " + r.describe();
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string ServerE2E::psql_direct(const std::string& sql) const {
  std::string cmd = psql_cmd() + " -c \"" + sql + "\" 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return "ERROR: popen";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int rc = ::pclose(f);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return rc == 0 ? out : "ERROR: " + out;
}

std::string ServerE2E::pg_database() const {
  return "database = \"postgresql:///postgres?host={run}&port=" + std::to_string(port_) +
         "&user=postgres\"";
}

std::string ServerE2E::journal_query(const std::string& sql) {
  return sqlite_query(ws() + "/.rehearse/journal.db", sql);
}

}  // namespace rehearse_test
