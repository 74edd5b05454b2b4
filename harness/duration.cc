#include "harness/duration.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace rehearse {

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) {
    return std::nullopt;
  }
  char* end = nullptr;
  double n = std::strtod(text.c_str(), &end);
  std::string unit(end);
  double ms_per = 0;
  if (unit.empty() || unit == "s") {
    ms_per = 1000;
  } else if (unit == "ms") {
    ms_per = 1;
  } else if (unit == "m") {
    ms_per = 60000;
  } else if (unit == "h") {
    ms_per = 3600000;
  } else {
    return std::nullopt;
  }
  double ms = n * ms_per;
  // Upper bound: a year, far beyond any step and far from overflow.
  if (!std::isfinite(ms) || ms < 1 || ms > 365.0 * 24 * 3600000) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s % 3600 >= 60) out += std::to_string(s % 3600 / 60) + "m";
  if (s % 60 != 0 || out.empty()) out += std::to_string(s % 60) + "s";
  return out;
}

}  // namespace rehearse
