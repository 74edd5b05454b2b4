// Batch windowing and the batched runner on a real SQLite file (no mount).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "harness/runner.h"
#include "tests/harness/test_util.h"

namespace rehearse {
namespace {

using rehearse_test::TempDir;
using rehearse_test::write_file;

std::vector<std::pair<int64_t, int64_t>> windows(Db& db, const BatchSpec& spec) {
  std::vector<std::pair<int64_t, int64_t>> out;
  auto max = db.query_int("SELECT max(id) FROM t");
  int64_t lo = *db.query_int("SELECT min(id) FROM t");
  while (auto w = next_window(db, spec, lo, *max)) {
    out.emplace_back(w->lo, w->hi);
    if (w->hi >= *max) break;
    lo = w->hi + 1;
  }
  return out;
}

TEST(BatchWindow, DenseKeys) {
  Db db = Db::open(":memory:", true);
  db.exec(
      "CREATE TABLE t(id INTEGER PRIMARY KEY); "
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<10) "
      "INSERT INTO t SELECT i FROM n");
  auto w = windows(db, {"t", "id", 4});
  EXPECT_EQ(w, (std::vector<std::pair<int64_t, int64_t>>{{1, 4}, {5, 8}, {9, 10}}));
}

TEST(BatchWindow, SparseKeysGiveFullBatches) {
  Db db = Db::open(":memory:", true);
  db.exec(
      "CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES(3),(100),(101),(5000),"
      "(5001),(900000)");
  auto w = windows(db, {"t", "id", 2});
  EXPECT_EQ(w, (std::vector<std::pair<int64_t, int64_t>>{{3, 100}, {101, 5000}, {5001, 900000}}));
  auto one = next_window(db, {"t", "id", 2}, 101, 900000);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->rows, 2);
}

TEST(BatchWindow, NothingLeft) {
  Db db = Db::open(":memory:", true);
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES(1),(2)");
  EXPECT_FALSE(next_window(db, {"t", "id", 10}, 3, 2));
  EXPECT_FALSE(next_window(db, {"t", "id", 10}, 3, 100));
}

TEST(ExecStatements, BindsOnlyWhatEachStatementNames) {
  Db db = Db::open(":memory:", true);
  db.exec(
      "CREATE TABLE t(id INTEGER PRIMARY KEY, a); CREATE TABLE log(lo, hi);"
      "INSERT INTO t(id) VALUES(1),(2),(3)");
  exec_statements(db,
                  "UPDATE t SET a = 1 WHERE id >= :lo; INSERT INTO log(hi) VALUES(:hi);"
                  "-- trailing comment\n",
                  Window{2, 3, 2});
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM t WHERE a = 1"), 2);
  EXPECT_EQ(*db.query_int("SELECT hi FROM log"), 3);
  EXPECT_THROW(exec_statements(db, "SELECT :other", Window{1, 2, 2}), DbError);
  EXPECT_THROW(exec_statements(db, "BEGIN; SELECT 1; COMMIT;", std::nullopt), DbError);
}

class BatchRunner : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = tmp_.sub("data.db");
    Db db = Db::open(db_path_, true);
    db.exec(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);"
        "CREATE TABLE batch_log(lo INTEGER UNIQUE, hi INTEGER);"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<1000) "
        "INSERT INTO t SELECT i, 0 FROM n");
    step_.name = "10-b.sql";
    step_.path = tmp_.sub("10-b.sql");
    write_file(step_.path,
               "-- rehearse:batch table=t key=id size=100\n"
               "UPDATE t SET v = v + 1 WHERE id BETWEEN :lo AND :hi;\n"
               "INSERT INTO batch_log VALUES(:lo, :hi);\n");
    step_.checksum = checksum_file(step_.path);
    step_.batch = BatchSpec{"t", "id", 100};
    step_.kind = StepKind::kBatchSql;
    env_.data_root = tmp_.path();
    env_.sqlite = db_path_;
    env_.version = "1.0";
    env_.log_path = tmp_.sub("log");
    env_.stop = &stop_;
  }
  TempDir tmp_;
  std::string db_path_;
  Step step_;
  StepEnv env_;
  std::atomic<bool> stop_{false};
};

TEST_F(BatchRunner, ResumesAtTheCursorWithoutRedoingBatches) {
  // The state a kill leaves after three committed batches: their effects and
  // the cursor, committed together.
  {
    Db db = Db::open(db_path_, false);
    ensure_data_tables(db);
  }
  {
    Db db = Db::open(db_path_, false);
    db.exec(
        "UPDATE t SET v = 1 WHERE id <= 300; INSERT INTO batch_log VALUES(1,100),(101,200),"
        "(201,300)");
    auto s = db.prepare(
        "INSERT INTO _rehearse_cursor(version, step, checksum, next_lo, max_key, total, "
        "done_rows, batches) VALUES('1.0', ?, ?, 301, 1000, 1000, 300, 3)");
    s.bind(1, step_.name).bind(2, step_.checksum);
    s.step();
  }
  StepResult r = run_batch_step(step_, env_);
  ASSERT_EQ(r.outcome, Outcome::kDone) << r.error;
  EXPECT_EQ(r.items, 1000);
  Db db = Db::open(db_path_, false);
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM batch_log"), 10);
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM t WHERE v = 1"), 1000);
  EXPECT_EQ(*db.query_int("SELECT batches FROM _rehearse_cursor"), 10);
  EXPECT_EQ(*db.query_int("SELECT finished FROM _rehearse_cursor"), 1);
  // Finished: a second call does nothing.
  r = run_batch_step(step_, env_);
  EXPECT_EQ(r.outcome, Outcome::kDone);
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM batch_log"), 10);
}

TEST_F(BatchRunner, LeavesTheJournalModeAsItWas) {
  StepResult r = run_batch_step(step_, env_);
  ASSERT_EQ(r.outcome, Outcome::kDone) << r.error;
  EXPECT_FALSE(std::filesystem::exists(db_path_ + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(db_path_ + "-journal"));
  Db db = Db::open(db_path_, false);
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "delete");
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM batch_log"), 10);
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM _rehearse_batch_mode"), 0);
  // The other rollback modes are a connection's setting, and come back too.
  db.exec("PRAGMA journal_mode=TRUNCATE");
  { BatchMode mode(db); }
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "truncate");
}

// Whether another connection can read the database right now.
bool readable_by_another(const std::string& path) {
  Db other = Db::open(path, false);
  sqlite3_busy_timeout(other.raw(), 0);
  try {
    other.query_int("SELECT count(*) FROM t");
    return true;
  } catch (const DbError&) {
    return false;
  }
}

TEST_F(BatchRunner, BatchModeHoldsTheDatabaseInWalMode) {
  Db db = Db::open(db_path_, false);
  {
    BatchMode mode(db);
    EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(*db.query_int("PRAGMA synchronous"), 1);  // NORMAL
    EXPECT_GT(*db.query_int("PRAGMA wal_autocheckpoint"), 1000);
    for (int i = 0; i < 2; ++i) {
      Transaction t(db);
      db.exec("UPDATE t SET v = v + 1 WHERE id <= 10");
      t.commit();
      EXPECT_TRUE(std::filesystem::exists(db_path_ + "-wal")) << "commit " << i;
      // The lock was held on entering WAL: the WAL index is in memory.
      EXPECT_FALSE(std::filesystem::exists(db_path_ + "-shm")) << "commit " << i;
      EXPECT_FALSE(readable_by_another(db_path_)) << "commit " << i;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(db_path_ + "-wal"));
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "delete");
  EXPECT_EQ(*db.query_int("PRAGMA synchronous"), 2);
  EXPECT_TRUE(readable_by_another(db_path_));
  EXPECT_EQ(*db.query_int("SELECT sum(v) FROM t"), 20);
}

TEST_F(BatchRunner, BatchModeSwitchesBackADatabaseAKillLeftInWal) {
  // The child commits in batch mode and dies without its destructors, as a
  // kill -9 would leave it.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Db db = Db::open(db_path_, false);
    BatchMode mode(db);
    db.exec("UPDATE t SET v = 7 WHERE id <= 10");
    ::_exit(db.query_text("PRAGMA journal_mode") == "wal" ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Db db = Db::open(db_path_, false);
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(*db.query_int("SELECT sum(v) FROM t"), 70);  // the commit survived the kill
  EXPECT_EQ(db.query_text("SELECT journal_mode FROM _rehearse_batch_mode"), "delete");
  { BatchMode mode(db); }
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "delete");
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM _rehearse_batch_mode"), 0);
  EXPECT_FALSE(std::filesystem::exists(db_path_ + "-wal"));
  EXPECT_EQ(*db.query_int("SELECT sum(v) FROM t"), 70);
}

TEST_F(BatchRunner, BatchModeLeavesAWalDatabaseAlone) {
  Db db = Db::open(db_path_, false);
  db.exec("PRAGMA journal_mode=WAL");
  {
    BatchMode mode(db);
    Transaction t(db);
    db.exec("UPDATE t SET v = v + 1");
    t.commit();
    EXPECT_TRUE(readable_by_another(db_path_));
    EXPECT_EQ(*db.query_int("PRAGMA synchronous"), 2);
  }
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "wal");
  EXPECT_FALSE(db.has_table("_rehearse_batch_mode"));
}

TEST_F(BatchRunner, StopFlagInterruptsBeforeTheNextBatch) {
  stop_ = true;
  StepResult r = run_batch_step(step_, env_);
  EXPECT_EQ(r.outcome, Outcome::kInterrupted);
  Db db = Db::open(db_path_, false);
  EXPECT_EQ(*db.query_int("SELECT count(*) FROM batch_log"), 0);
}

TEST_F(BatchRunner, FailureNamesTheError) {
  write_file(step_.path,
             "-- rehearse:batch table=t key=id size=100\n"
             "UPDATE nosuch SET v = 1 WHERE id BETWEEN :lo AND :hi;\n");
  step_.checksum = checksum_file(step_.path);
  StepResult r = run_batch_step(step_, env_);
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_NE(r.error.find("no such table: nosuch"), std::string::npos) << r.error;
}

TEST_F(BatchRunner, CursorOfAnEditedStepIsRefused) {
  {
    Db db = Db::open(db_path_, false);
    ensure_data_tables(db);
    db.exec(
        "INSERT INTO _rehearse_cursor(version, step, checksum, next_lo, max_key, total) "
        "VALUES('1.0', '10-b.sql', 'old', 1, 1000, 1000)");
  }
  StepResult r = run_batch_step(step_, env_);
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_NE(r.error.find("earlier version of this step"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace rehearse
