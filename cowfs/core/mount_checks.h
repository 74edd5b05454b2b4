// Checks of a mount request made before anything is created or mounted, so
// bad input gets one clear message and leaves no trace.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace cowfs {

struct MountRequest {
  std::string store;
  std::vector<std::string> lowers;  // top first
  std::string mountpoint;
  bool allow_nonempty = false;
};

// Canonical absolute form of path; a path that does not exist yet is
// resolved through its nearest existing ancestor.
std::string canonical_path(const std::string& path);

// True when inner is outer or lies below it (both canonical).
bool path_within(const std::string& inner, const std::string& outer);

// nullopt when the request is sound; otherwise one line saying what is wrong
// and how to fix it.
std::optional<std::string> check_mount_request(const MountRequest& req);

}  // namespace cowfs
