// How user-visible xattr names map to names stored on store layers.
//
// cowfs keeps its own markers in "user.cowfs.*". A user's own xattr in that
// namespace is stored as "user.cowfs.u.<rest>", so it can never be taken
// for a marker and a marker is never listed to the user. Lowers are not
// ours: their names pass through unchanged.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cowfs::xattr_names {

inline constexpr std::string_view kOurs = "user.cowfs.";
inline constexpr std::string_view kEscaped = "user.cowfs.u.";

inline std::string to_store(std::string_view user_name) {
  if (user_name.starts_with(kOurs)) {
    return std::string(kEscaped) + std::string(user_name.substr(kOurs.size()));
  }
  return std::string(user_name);
}

// nullopt for cowfs' own markers, which the user never sees.
inline std::optional<std::string> from_store(std::string_view stored) {
  if (stored.starts_with(kEscaped)) {
    return std::string(kOurs) + std::string(stored.substr(kEscaped.size()));
  }
  if (stored.starts_with(kOurs)) return std::nullopt;
  return std::string(stored);
}

}  // namespace cowfs::xattr_names
