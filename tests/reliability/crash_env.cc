#include "tests/reliability/crash_env.h"

#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace cowfs_rel {

using namespace cowfs_it;
using namespace std::chrono_literals;

CrashEnv::CrashEnv(const std::string& prefix,
                   const std::function<void(const std::string&)>& populate,
                   std::vector<std::string> extra_args, std::string store)
    : extra_args_(std::move(extra_args)) {
  ::umask(022);
  tmp_ = std::make_unique<TempDir>(prefix);
  src_ = tmp_->mkdir("lower-src");
  populate(src_);
  lower_ = tmp_->mkdir("lower");
  bind_ = std::make_unique<ReadOnlyBind>(src_, lower_);
  lower_manifest_ = Manifest::take(lower_);
  store_ = store.empty() ? tmp_->sub("store") : store;
  mnt_ = tmp_->mkdir("mnt");
}

CrashEnv::~CrashEnv() {
  mount_.reset();
  bind_.reset();
  tmp_.reset();
}

MountSpec CrashEnv::spec() const { return MountSpec{store_, {lower_}, mnt_, extra_args_, {}}; }

void CrashEnv::mount_now() {
  mount_.reset();
  mount_ = std::make_unique<CowfsMount>(spec());
}

std::string CrashEnv::unmount() {
  if (!mount_) return "";
  std::string p = mount_->unmount();
  mount_.reset();
  return p;
}

void CrashEnv::kill_only() {
  std::vector<pid_t> pids = cowfs_daemons(mnt_);
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
  for (pid_t pid : pids) wait_until([&] { return !process_alive(pid); }, 10s);
}

std::string CrashEnv::kill_daemon() {
  kill_only();
  std::string said;
  if (is_mounted(mnt_)) {
    RunResult r = run({cowfs_bin(), "umount", mnt_}, {.cwd = "", .timeout = 30s});
    if (r.exit_code != 0 || is_mounted(mnt_)) said = r.describe();
    if (is_mounted(mnt_)) {
      run({"fusermount3", "-u", "-z", mnt_}, {.cwd = "", .timeout = 10s});
      force_unmount(mnt_);
    }
  }
  if (mount_) (void)mount_->unmount();  // only bookkeeping now
  mount_.reset();
  return said;
}

std::string CrashEnv::lower_changes() const {
  return diff(lower_manifest_, Manifest::take(lower_), kEverything);
}

std::vector<std::pair<std::string, std::string>> CrashEnv::stack() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(store_ + "/stack");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string id, created, label;
    ls >> id >> created >> label;
    out.emplace_back(id, label);
  }
  return out;
}

Manifest CrashEnv::layer(const std::string& id) const {
  return Manifest::take(store_ + "/layers/" + id);
}

}  // namespace cowfs_rel
