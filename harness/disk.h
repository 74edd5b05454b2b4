// Full-disk diagnosis for failed steps.
//
// A step that hits ENOSPC fails in its own words ("database or disk is
// full", "No space left on device", or just a non-zero exit). The harness
// names the cause: when the error says so, or when one of the filesystems
// the step writes to (the store's top layer, the real data in place) has
// almost no space left (below kFullBelowBytes), the failure message says
// which directory is full and how much is free. Checked before the rollback,
// which frees the space again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rehearse {

inline constexpr int64_t kFullBelowBytes = 1 << 20;

// Free bytes for unprivileged writers on the filesystem holding path.
std::optional<int64_t> free_bytes(const std::string& path);

// Does the error text itself report a full disk?
bool error_says_disk_full(const std::string& error);

// "the disk holding DIR is full (N KiB free)..." for the first full one of
// dirs, or "the disk is full" when only the error says so; nullopt otherwise.
std::optional<std::string> full_disk_cause(const std::vector<std::string>& dirs,
                                           const std::string& error);

}  // namespace rehearse
