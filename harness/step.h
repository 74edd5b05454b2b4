// Step discovery: STEPS/<VERSION>/<step files> → an ordered list of
// increments, each with its steps in file-name order and their kinds.
//
// Rules (anything else is refused with a DiscoveryError naming the path, and
// nothing runs):
//  * a version directory's name is a dotted number (version.h); two names with
//    the same value ("1.10" and "1.010") are duplicates;
//  * an increment holds at least one step; sub-directories are not steps;
//  * `*.sql` is SQL (needs `sqlite` in rehearse.toml); with a header line
//    `-- rehearse:batch table=T key=K size=N` in its leading comment block it
//    is a batched step whose body must use :lo and/or :hi; a plain step must
//    not use them;
//  * any other file with a run bit is an executable step;
//  * names starting with '.' are ignored (editor files, .gitkeep); top-level
//    regular files (a README) are ignored too.
//
// A step's checksum (FNV-1a 64 of its content, hex) is what the journal
// compares to notice edited steps; it is not a security measure.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/version.h"

namespace rehearse {

class DiscoveryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class StepKind { kSql, kBatchSql, kExec };
const char* kind_name(StepKind k);  // "sql", "batch", "exec"

struct BatchSpec {
  std::string table;
  std::string key;
  int64_t size = 0;
};

struct Step {
  std::string name;  // file name, e.g. "20-backfill.sql"
  std::string path;  // absolute
  StepKind kind = StepKind::kExec;
  std::string checksum;
  std::optional<BatchSpec> batch;
};

struct Increment {
  Version version;
  std::string dir;  // absolute path of steps/<dir name>
  std::vector<Step> steps;
  // The cowfs layer label and journal key: the canonical version text.
  std::string label() const { return version.str(); }
};

// Increments in version order. Throws DiscoveryError.
std::vector<Increment> discover_steps(const std::string& steps_dir, bool have_sqlite);

// Parses the batch header of a .sql step's text: nullopt when there is none;
// throws DiscoveryError (mentioning `path`) when it is malformed.
std::optional<BatchSpec> parse_batch_header(const std::string& sql, const std::string& path);

std::string checksum_text(const std::string& data);
std::string checksum_file(const std::string& path);   // throws DiscoveryError
std::string read_text_file(const std::string& path);  // throws std::runtime_error

}  // namespace rehearse
