#include "harness/version.h"

#include <charconv>

namespace rehearse {

std::optional<Version> Version::parse(const std::string& text) {
  Version v;
  size_t pos = 0;
  while (true) {
    size_t dot = text.find('.', pos);
    std::string_view part(text.data() + pos, (dot == std::string::npos ? text.size() : dot) - pos);
    if (part.empty() || part.size() > 18) return std::nullopt;
    unsigned long long value = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (ec != std::errc() || end != part.data() + part.size()) return std::nullopt;
    v.parts_.push_back(value);
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return v;
}

std::string Version::str() const {
  std::string out;
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (i) out += '.';
    out += std::to_string(parts_[i]);
  }
  return out;
}

}  // namespace rehearse
