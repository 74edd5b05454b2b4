#include "cowfs/core/mount_checks.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace cowfs {

std::string canonical_path(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (ec) return path;
  return std::filesystem::weakly_canonical(abs, ec).lexically_normal().string();
}

bool path_within(const std::string& inner, const std::string& outer) {
  if (inner == outer) return true;
  std::string prefix = outer.ends_with('/') ? outer : outer + "/";
  return inner.starts_with(prefix);
}

namespace {

bool dir_has_entries(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return false;
  bool any = false;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      any = true;
      break;
    }
  }
  ::closedir(d);
  return any;
}

}  // namespace

std::optional<std::string> check_mount_request(const MountRequest& req) {
  if (req.lowers.empty()) return "no lower given; pass --lower DIR (the production snapshot)";
  if (req.store.empty()) return "no store given; pass --store DIR";
  const std::string store = canonical_path(req.store);
  const std::string mnt = canonical_path(req.mountpoint);
  std::vector<std::string> lowers;
  for (const auto& l : req.lowers) {
    struct stat st {};
    if (::stat(l.c_str(), &st) < 0) {
      return "lower " + l + " cannot be used: " + std::strerror(errno) +
             "; check the path (is the production mount up?)";
    }
    if (!S_ISDIR(st.st_mode))
      return "lower " + l + " is not a directory; give the directory that holds the data";
    lowers.push_back(canonical_path(l));
  }
  struct stat mst {};
  if (::stat(req.mountpoint.c_str(), &mst) < 0) {
    return "mountpoint " + req.mountpoint + " cannot be used: " + std::strerror(errno) +
           "; create it with mkdir first";
  }
  if (!S_ISDIR(mst.st_mode)) return "mountpoint " + req.mountpoint + " is not a directory";
  for (size_t i = 0; i < lowers.size(); ++i) {
    const auto& l = lowers[i];
    const auto& given = req.lowers[i];
    if (path_within(store, l)) {
      return "store " + req.store + " is inside lower " + given +
             "; put the store outside production data";
    }
    if (path_within(l, store)) {
      return "lower " + given + " is inside store " + req.store +
             "; use a separate store directory";
    }
    if (path_within(mnt, l)) {
      return "mountpoint " + req.mountpoint + " is inside lower " + given +
             "; mount somewhere outside production data";
    }
    if (path_within(l, mnt)) {
      return "lower " + given + " is inside mountpoint " + req.mountpoint +
             "; the mount would hide it, choose another mountpoint";
    }
  }
  if (path_within(mnt, store)) {
    return "mountpoint " + req.mountpoint + " is inside store " + req.store +
           "; mount somewhere outside the store";
  }
  if (path_within(store, mnt)) {
    return "store " + req.store + " is inside mountpoint " + req.mountpoint +
           "; keep the store outside the mount";
  }
  if (!req.allow_nonempty && dir_has_entries(req.mountpoint)) {
    return "mountpoint " + req.mountpoint +
           " is not empty; use an empty directory or pass -o nonempty";
  }
  return std::nullopt;
}

}  // namespace cowfs
