#include "harness/faults.h"

#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace rehearse {

void crash_point(const char* point, const std::string& label) {
  // Read on every call: points are reached a handful of times per run.
  const char* spec = std::getenv("REHEARSE_FAULT");
  if (!spec || !*spec) return;
  const char* at = std::strchr(spec, '@');
  const size_t len = at ? static_cast<size_t>(at - spec) : std::strlen(spec);
  if (std::strlen(point) != len || std::strncmp(spec, point, len) != 0) return;
  if (at && label != at + 1) return;
  ::raise(SIGKILL);
}

}  // namespace rehearse
