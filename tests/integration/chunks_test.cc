// Chunked copy-up through a real mount: a big SQLite database that lives in
// the lower is updated in place; the store grows by the touched chunks only.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

constexpr int kRows = 200'000;
constexpr int kRowBytes = 1000;  // about 200 MiB of database

void exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : "?";
    sqlite3_free(msg);
    throw std::runtime_error(sql + ": " + m);
  }
}

std::string one(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sqlite3_errmsg(db));
  }
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  return out;
}

struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open " + path);
    sqlite3_busy_timeout(db, 5000);
  }
  ~Db() { sqlite3_close(db); }
};

class ChunksTest : public CowfsTest {
 protected:
  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    Db d(root + "/big.db");
    exec(d.db, "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;");
    exec(d.db, "CREATE TABLE content(id INTEGER PRIMARY KEY, body BLOB, n INTEGER)");
    exec(d.db, "BEGIN");
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(d.db, "INSERT INTO content VALUES(?, randomblob(?), 0)", -1, &st, nullptr);
    for (int i = 1; i <= kRows; ++i) {
      sqlite3_bind_int(st, 1, i);
      sqlite3_bind_int(st, 2, kRowBytes);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec(d.db, "COMMIT");
  }
  std::chrono::milliseconds test_timeout() const override { return 240s; }

  void update(const std::string& mode) {
    Db d(mnt("big.db"));
    EXPECT_EQ(one(d.db, "PRAGMA journal_mode=" + mode), mode == "wal" ? "wal" : "delete");
    // 10,000 updates of the oldest rows, 100 per transaction: an upgrade
    // step touching one region of a big database.
    for (int t = 0; t < 100; ++t) {
      exec(d.db, "BEGIN");
      for (int i = 0; i < 100; ++i) {
        int id = 1 + t * 100 + i;
        exec(d.db, "UPDATE content SET n = n + 1 WHERE id = " + std::to_string(id));
      }
      exec(d.db, "COMMIT");
    }
    EXPECT_EQ(one(d.db, "PRAGMA integrity_check"), "ok");
  }
};

TEST_F(ChunksTest, BigLowerDatabaseUpdatedInPlaceStaysSmallInTheStore) {
  if (reference_mode()) GTEST_SKIP() << "measures the store";
  const off_t size = stat_or_throw(lower("big.db")).st_size;
  ASSERT_GT(size, 150 << 20);
  update("delete");
  update("wal");
  {
    Db d(mnt("big.db"));
    EXPECT_EQ(one(d.db, "SELECT sum(n) FROM content"), "20000");
  }
  remount();
  {
    Db d(mnt("big.db"));
    EXPECT_EQ(one(d.db, "PRAGMA integrity_check"), "ok");
    EXPECT_EQ(one(d.db, "SELECT sum(n) FROM content"), "20000");
  }
  const int64_t used = disk_usage(store());
  EXPECT_LT(used, size / 5) << "store holds " << used << " bytes of a " << size << "-byte file";
  Db lower_db(lower("big.db"));
  EXPECT_EQ(one(lower_db.db, "SELECT sum(n) FROM content"), "0");
}

TEST_F(ChunksTest, FirstSmallWriteIntoABigFileCostsAChunk) {
  if (reference_mode()) GTEST_SKIP() << "measures the store";
  const int64_t before = disk_usage(store());
  Fd fd = open_or_throw(mnt("big.db"), O_WRONLY);
  pwrite_all(fd.get(), "x", 100 << 20);
  ASSERT_EQ(::fsync(fd.get()), 0);
  fd.reset();
  EXPECT_LT(disk_usage(store()) - before, 256 << 10);
  remount();
  Fd r = open_or_throw(mnt("big.db"), O_RDONLY);
  EXPECT_EQ(pread_exact(r.get(), 100 << 20, 1), "x");
}

}  // namespace
}  // namespace cowfs_it
