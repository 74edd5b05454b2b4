#include "cowfs/core/whiteout.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "cowfs/sys/syscalls.h"

namespace cowfs {

std::vector<std::string> redirect_names(const std::string& redirect) {
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < redirect.size()) {
    size_t slash = redirect.find('/', pos);
    if (slash == std::string::npos) slash = redirect.size();
    std::string name = redirect.substr(pos, slash - pos);
    if (!name.empty() && name != ".") names.push_back(std::move(name));
    pos = slash + 1;
  }
  return names;
}

Status Whiteouts::init(int whiteouts_dirfd, dev_t store_dev) {
  dirfd_ = whiteouts_dirfd;
  dev_ = store_dev;
  auto entries = sys::read_dir(dirfd_);
  if (!entries) return Errno{entries.error()};
  WriterLock lock(mu_);
  for (const auto& e : *entries) {
    if (e.name.size() < 2 || e.name[0] != 'w') continue;
    inos_.insert(e.ino);
    current_ = std::max(current_, std::stoi(e.name.substr(1)));
  }
  if (current_ < 0) return add_sentinel();
  return {};
}

Status Whiteouts::add_sentinel() {
  int next = current_ + 1;
  std::string name = "w" + std::to_string(next);
  auto fd = sys::open_at(dirfd_, name.c_str(), O_WRONLY | O_CREAT, 0000);
  if (!fd) return Errno{fd.error()};
  auto st = sys::stat_fd(fd->get());
  if (!st) return Errno{st.error()};
  COWFS_TRY(sys::fsync_fd(fd->get()));
  inos_.insert(st->st_ino);
  current_ = next;
  return {};
}

bool Whiteouts::is_whiteout(const struct stat& st) const {
  if (!S_ISREG(st.st_mode) || st.st_dev != dev_) return false;
  ReaderLock lock(mu_);
  return inos_.contains(st.st_ino);
}

bool Whiteouts::is_whiteout_ino(ino_t ino) const {
  ReaderLock lock(mu_);
  return inos_.contains(ino);
}

Status Whiteouts::make(int dirfd, const char* name) {
  WriterLock lock(mu_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string sentinel = "w" + std::to_string(current_);
    Status s = sys::link_at(dirfd_, sentinel.c_str(), dirfd, name, 0);
    if (s.ok() || s.error() != EMLINK) return s;
    COWFS_TRY(add_sentinel());
  }
  return Errno{EMLINK};
}

}  // namespace cowfs
