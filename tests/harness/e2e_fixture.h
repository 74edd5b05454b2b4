// End-to-end fixture: the rehearse CLI on a generated production snapshot
// behind a read-only bind mount, with real cowfs mounts.
//
// The snapshot (built once per test binary): data/app.db, a SQLite database
// with kRows rows in `content`, and blobs/ with kBlobs small files. It is
// bind-mounted read-only and checksummed once; every test's TearDown checks
// the checksums again (the lowers stay byte-identical) and unmounts its
// workspace whatever happened (the guard forces it).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/harness/test_util.h"

namespace rehearse_test {

inline constexpr int kRows = 100000;
inline constexpr int kBlobs = 2000;

struct CliResult {
  int exit_code = -1;
  std::string out, err;
  std::string describe() const {
    return "exit " + std::to_string(exit_code) + "\nstdout:\n" + out + "\nstderr:\n" + err;
  }
};

// The first column of the first row of sql on the database at path, opened
// read-only ("ERROR ..." when the query fails).
std::string sqlite_query(const std::string& path, const std::string& sql);

// A rehearse process running in the background with stdout read as it comes.
class Background {
 public:
  // extra_env: KEY=VALUE entries added to the inherited environment (e.g.
  // REHEARSE_FAULT for the crash tests).
  explicit Background(const std::vector<std::string>& argv,
                      const std::vector<std::string>& extra_env = {});
  ~Background();  // SIGKILLs and reaps if still running
  pid_t pid() const { return pid_; }
  // Reads available stdout (non-blocking) and returns everything so far.
  const std::string& out();
  CliResult wait();
  void kill9();
  // Sends sig without waiting.
  void signal(int sig);
  const std::string& err() {
    out();
    return err_;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  bool done_ = false;
  int status_ = 0;
};

class RehearseE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  // rehearse -C WORKSPACE args...
  CliResult rehearse(const std::vector<std::string>& args,
                     const std::vector<std::string>& extra_env = {});
  std::vector<std::string> argv(const std::vector<std::string>& args) const;
  // Writes the standard steps (1.0 sql+exec, 1.1 batched+exec, 1.2 sql+exec).
  void write_standard_steps(int batch_size = 5000);
  // Small, fast steps whose every effect is countable (the crash and
  // reliability tests):
  //   1.0 10-schema.sql  batch_log(step, lo UNIQUE) and calls tables
  //       20-count.sh    appends "1.0" to calls.txt in the mount
  //   1.1 10-batch.sql   4 batches over content, one batch_log row each
  //       20-count.sh    appends "1.1" to calls.txt
  //   1.2 10-last.sql    one row in calls
  void write_mini_steps();
  // Everything the mini steps did is there exactly once, the journal has
  // each of 1.0..1.2 applied once (labels 1.0..1.2, no repair suffix), and
  // its commit history has 1.0 once, 1.1 and 1.2 commits_above_1_0 times.
  void expect_mini_done_exactly_once(int commits_above_1_0 = 1);
  void step(const std::string& rel, const std::string& body, bool exec = false);
  // One SQL query against the mount's database (read-only, first column).
  std::string query(const std::string& sql);
  std::string status_json();
  // One query against the workspace's journal.db (read-only), first column
  // of the first row.
  std::string journal_query(const std::string& sql);
  std::string journal_path() const { return tmp_->sub(".rehearse/journal.db"); }
  // JSON events of type `event` in a --json output, as raw lines.
  static std::vector<std::string> events(const std::string& out, const std::string& event);
  bool mounted() const;

  std::string ws() const { return tmp_->path(); }
  std::string mnt(const std::string& rel = "") const {
    return rel.empty() ? tmp_->sub("mnt") : tmp_->sub("mnt/" + rel);
  }
  std::string steps() const { return tmp_->sub("steps"); }
  static std::string lower() { return lower_; }

 private:
  static std::string lower_src_, lower_;
  static std::unique_ptr<TempDir> suite_tmp_;
  static std::map<std::string, std::string> manifest_;
  std::unique_ptr<TempDir> tmp_;
};

std::map<std::string, std::string> manifest(const std::string& root);

}  // namespace rehearse_test
