#include "harness/disk.h"

#include <sys/statvfs.h>

namespace rehearse {

std::optional<int64_t> free_bytes(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

bool error_says_disk_full(const std::string& error) {
  for (const char* needle :
       {"No space left on device", "database or disk is full", "ENOSPC", "Disk quota exceeded"}) {
    if (error.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::optional<std::string> full_disk_cause(const std::vector<std::string>& dirs,
                                           const std::string& error) {
  for (const auto& d : dirs) {
    auto free = free_bytes(d);
    if (free && *free < kFullBelowBytes) {
      return "the disk holding " + d + " is full (" + std::to_string(*free / 1024) +
             " KiB free); free some space and run again";
    }
  }
  if (error_says_disk_full(error)) return "the disk is full; free some space and run again";
  return std::nullopt;
}

}  // namespace rehearse
