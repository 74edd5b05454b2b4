#include "tests/workflow/workflow_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>

namespace workflow {

namespace {

// The steps' child processes find cowfs through this variable.
const bool kEnvReady = [] {
  ::setenv("REHEARSE_COWFS", COWFS_BIN, 1);
  return true;
}();

void write_text(const std::string& path, const std::string& text, mode_t mode = 0644) {
  write_file(path, text, mode);
  ::chmod(path.c_str(), mode);
}

}  // namespace

std::string repo(const std::string& rel) {
  return rel.empty() ? std::string(REPO_ROOT) : std::string(REPO_ROOT) + "/" + rel;
}
std::string rehearse_bin() { return REHEARSE_BIN; }
std::string cowfs_bin_path() { return COWFS_BIN; }

const std::string& demo_prod(int objects) {
  (void)kEnvReady;
  static TempDir cache("wf-prod-cache");
  static std::map<int, std::string> made;
  auto it = made.find(objects);
  if (it != made.end()) return it->second;
  std::string dir = cache.sub("prod-" + std::to_string(objects));
  RunResult r = run({repo("scripts/make-demo-prod.sh"), dir, "--objects", std::to_string(objects)},
                    {.cwd = "", .timeout = 600s});
  if (r.exit_code != 0) throw std::runtime_error("make-demo-prod.sh failed: " + r.describe());
  return made.emplace(objects, dir).first->second;
}

RunResult rehearse(const std::string& ws, const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout) {
  (void)kEnvReady;
  std::vector<std::string> argv = {rehearse_bin(), "-C", ws};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {.cwd = "", .timeout = timeout});
}

void init_demo_workspace(const std::string& ws, const std::vector<std::string>& lowers,
                         const std::string& steps) {
  std::vector<std::string> args = {"init"};
  for (const auto& l : lowers) {
    args.push_back("--lower");
    args.push_back(l);
  }
  args.insert(args.end(),
              {"--mountpoint", ws + "/mnt", "--steps", steps.empty() ? repo("steps") : steps,
               "--sqlite", "var/filestorage/Data.sqlite"});
  RunResult r = rehearse(ws, args, 60s);
  if (r.exit_code != 0) throw std::runtime_error("rehearse init failed: " + r.describe());
}

namespace {
std::string query_with(const std::string& db, const std::string& sql, bool writable) {
  sqlite3* h = nullptr;
  std::string uri = "file:" + db + (writable ? "?mode=rw" : "?mode=ro");
  const int flags = (writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_URI;
  if (sqlite3_open_v2(uri.c_str(), &h, flags, nullptr) != SQLITE_OK) {
    std::string e = h ? sqlite3_errmsg(h) : "out of memory";
    sqlite3_close(h);
    throw std::runtime_error("open " + db + ": " + e);
  }
  sqlite3_busy_timeout(h, 10000);
  sqlite3_stmt* st = nullptr;
  std::string out;
  int rc = sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
    }
  }
  std::string e = sqlite3_errmsg(h);
  sqlite3_finalize(st);
  sqlite3_close(h);
  if (rc != SQLITE_OK) throw std::runtime_error(db + ": " + sql + ": " + e);
  return out;
}
}  // namespace

std::string query(const std::string& db, const std::string& sql) {
  return query_with(db, sql, false);
}

std::string query_rw(const std::string& db, const std::string& sql) {
  return query_with(db, sql, true);
}

void copy_dir(const std::string& src, const std::string& dst) {
  RunResult r = run({"cp", "-a", "--", src, dst}, {.cwd = "", .timeout = 600s});
  if (r.exit_code != 0) throw std::runtime_error("cp -a failed: " + r.describe());
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool wait_for_port(int port, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return false;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        return ok;
      },
      timeout);
}

// ---- sshd ----------------------------------------------------------------------

SshServer::SshServer(const std::string& dir) : dir_(dir) {
  ::mkdir(dir_.c_str(), 0700);
  for (const auto& [key, type] : std::vector<std::pair<std::string, std::string>>{
           {"host_key", "ed25519"}, {"user_key", "ed25519"}}) {
    RunResult r = run(
        {"ssh-keygen", "-q", "-t", type, "-N", "", "-C", "rehearse-test", "-f", dir_ + "/" + key});
    if (r.exit_code != 0) throw std::runtime_error("ssh-keygen: " + r.describe());
  }
  write_text(dir_ + "/authorized_keys", read_file(dir_ + "/user_key.pub"), 0600);
  port_ = free_port();
  std::string host_pub = read_file(dir_ + "/host_key.pub");
  host_pub = host_pub.substr(0, host_pub.find(" rehearse-test"));
  write_text(dir_ + "/known_hosts", "[127.0.0.1]:" + std::to_string(port_) + " " + host_pub + "\n",
             0600);
  write_text(dir_ + "/sshd_config",
             "ListenAddress 127.0.0.1\n"
             "Port " +
                 std::to_string(port_) +
                 "\n"
                 "HostKey " +
                 dir_ +
                 "/host_key\n"
                 "AuthorizedKeysFile " +
                 dir_ +
                 "/authorized_keys\n"
                 "PidFile " +
                 dir_ +
                 "/sshd.pid\n"
                 "PermitRootLogin prohibit-password\n"
                 "PasswordAuthentication no\n"
                 "KbdInteractiveAuthentication no\n"
                 "UsePAM no\n"
                 "StrictModes no\n"
                 "Subsystem sftp internal-sftp\n"
                 "LogLevel VERBOSE\n",
             0600);
  ::mkdir("/run/sshd", 0755);  // privilege separation directory (Debian)
  proc_ = std::make_unique<Process>(std::vector<std::string>{
      "sh", "-c",
      "exec /usr/sbin/sshd -D -e -f '" + dir_ + "/sshd_config' >'" + dir_ + "/sshd.log' 2>&1"});
  if (!wait_for_port(port_, 20s)) {
    throw std::runtime_error("sshd did not start on port " + std::to_string(port_) + ": " + log());
  }
}

SshServer::~SshServer() {
  if (proc_) {
    ::kill(proc_->pid(), SIGTERM);
    wait_until([&] { return proc_->exited(); }, 10s);
    proc_.reset();  // SIGKILLs if still there
  }
}

std::vector<std::string> SshServer::ssh_options() const {
  return {"-o", "IdentityFile=" + dir_ + "/user_key",
          "-o", "UserKnownHostsFile=" + dir_ + "/known_hosts",
          "-o", "StrictHostKeyChecking=yes",
          "-o", "BatchMode=yes",
          "-o", "IdentitiesOnly=yes",
          "-o", "ConnectTimeout=10"};
}

std::string SshServer::ssh_command() const {
  std::string cmd = "ssh -p " + std::to_string(port_);
  for (const auto& o : ssh_options()) cmd += " " + o;
  return cmd;
}

std::string SshServer::log() const {
  try {
    return read_file(dir_ + "/sshd.log");
  } catch (const std::exception&) {
    return "(no log)";
  }
}

// ---- rsync daemon ----------------------------------------------------------------

RsyncDaemon::RsyncDaemon(const std::string& dir,
                         const std::vector<std::pair<std::string, std::string>>& modules,
                         const std::string& user)
    : dir_(dir) {
  ::mkdir(dir_.c_str(), 0700);
  port_ = free_port();
  std::string conf = "address = 127.0.0.1\nport = " + std::to_string(port_) +
                     "\nuse chroot = no\nlog file = " + dir_ + "/rsyncd.log\npid file = " + dir_ +
                     "/rsyncd.pid\n";
  for (const auto& [name, path] : modules) {
    conf += "[" + name + "]\n  path = " + path + "\n  read only = yes\n  uid = " + user +
            "\n  gid = " + (user == "root" ? "root" : "nogroup") + "\n";
  }
  write_text(dir_ + "/rsyncd.conf", conf, 0600);
  proc_ = std::make_unique<Process>(std::vector<std::string>{"rsync", "--daemon", "--no-detach",
                                                             "--config=" + dir_ + "/rsyncd.conf"});
  if (!wait_for_port(port_, 20s)) {
    throw std::runtime_error("rsync daemon did not start: " + log());
  }
}

RsyncDaemon::~RsyncDaemon() {
  if (proc_) {
    ::kill(proc_->pid(), SIGTERM);
    wait_until([&] { return proc_->exited(); }, 10s);
    proc_.reset();
  }
}

std::string RsyncDaemon::log() const {
  try {
    return read_file(dir_ + "/rsyncd.log");
  } catch (const std::exception&) {
    return "(no log)";
  }
}

}  // namespace workflow
