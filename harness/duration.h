// Durations on the command line (--step-timeout 30s): a positive number with
// an optional unit, ms | s | m | h (no unit = seconds), e.g. 500ms, 30s, 1.5m.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace rehearse {

// nullopt when text is not a positive duration.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

// The canonical form people read back in messages: "30s", "1m30s", "500ms".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace rehearse
