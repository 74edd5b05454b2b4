// A SQLite database that lives in the lower, rewritten through the mount in
// rollback-journal and WAL mode, must pass PRAGMA integrity_check before and
// after a remount, while the lower's copy stays untouched.
#include <sqlite3.h>

#include <stdexcept>

#include "tests/integration/fixture.h"

namespace cowfs_it {
namespace {

class Db {
 public:
  explicit Db(const std::string& path, int flags = SQLITE_OPEN_READWRITE) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_URI, nullptr) != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      throw std::runtime_error("sqlite open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string m = msg ? msg : "?";
      sqlite3_free(msg);
      throw std::runtime_error("sqlite: " + m + " in: " + sql);
    }
  }

  // First column of the first row, as text ("" if no row).
  std::string one(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
    }
    std::string out;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(st, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    } else if (rc != SQLITE_DONE) {
      std::string m = sqlite3_errmsg(db_);
      sqlite3_finalize(st);
      throw std::runtime_error("sqlite step: " + m + " in: " + sql);
    }
    sqlite3_finalize(st);
    return out;
  }

  // n rows into t2 in one transaction, ids from first.
  void insert_batch(int first, int n) {
    exec("BEGIN");
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "INSERT INTO t2(id, v, n) VALUES (?, ?, ?)", -1, &st, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
    }
    for (int i = first; i < first + n; ++i) {
      std::string v = "value-" + std::to_string(i) + std::string(static_cast<size_t>(i % 97), 'p');
      sqlite3_bind_int(st, 1, i);
      sqlite3_bind_text(st, 2, v.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(st, 3, i * 3);
      if (sqlite3_step(st) != SQLITE_DONE) {
        std::string m = sqlite3_errmsg(db_);
        sqlite3_finalize(st);
        throw std::runtime_error("sqlite insert: " + m);
      }
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec("COMMIT");
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteTest : public CowfsTest {
 protected:
  static constexpr int kLowerRows = 2000;

  void populate_lower(int index, const std::string& root) override {
    CowfsTest::populate_lower(index, root);
    if (index != 0) return;
    for (const char* mode : {"DELETE", "WAL"}) {
      std::string name = std::string(mode) == "WAL" ? "/wal.db" : "/app.db";
      Db db(root + name, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
      db.exec(std::string("PRAGMA journal_mode=") + mode);
      db.exec(
          "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB);"
          "BEGIN;"
          "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
          std::to_string(kLowerRows) +
          ") INSERT INTO items SELECT i, 'item-' || i, zeroblob(300) FROM c;"
          "COMMIT;"
          "CREATE INDEX items_name ON items(name);");
    }
  }

  // The whole exercise on one database through the mount.
  void exercise(const std::string& file, const std::string& mode) {
    const std::string path = mnt(file);
    {
      Db db(path);
      EXPECT_EQ(db.one("PRAGMA journal_mode=" + mode), mode == "DELETE" ? "delete" : "wal");
      db.exec("PRAGMA synchronous=FULL");
      EXPECT_EQ(db.one("SELECT count(*) FROM items"), std::to_string(kLowerRows));
      db.exec("CREATE TABLE t2(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)");
      for (int b = 0; b < 5; ++b) db.insert_batch(b * 2000, 2000);
      db.exec("CREATE INDEX t2_v ON t2(v)");
      db.exec("UPDATE items SET name = name || '-updated' WHERE id % 7 = 0");
      db.exec("DELETE FROM items WHERE id % 11 = 0");
      // A rolled-back transaction leaves nothing behind.
      db.exec("BEGIN; DELETE FROM t2; UPDATE items SET payload = NULL; ROLLBACK;");
      EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
      check_content(db);
    }
    if (mode == "WAL") {
      // A reader keeps its snapshot while a writer commits (shared-memory
      // index: needs shared writable mmap and locks on the -shm file).
      Db writer(path);
      Db reader(path);
      reader.exec("BEGIN");
      EXPECT_EQ(reader.one("SELECT count(*) FROM t2"), "10000");
      writer.insert_batch(10000, 10);
      EXPECT_EQ(reader.one("SELECT count(*) FROM t2"), "10000");
      reader.exec("COMMIT");
      EXPECT_EQ(reader.one("SELECT count(*) FROM t2"), "10010");
      writer.exec("DELETE FROM t2 WHERE id >= 10000");
      writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } else {
      Db db(path);
      db.exec("VACUUM");  // rewrites the whole file
      EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
    }
    remount();
    {
      Db db(path);
      EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok") << "after remount";
      EXPECT_EQ(db.one("PRAGMA journal_mode"), mode == "DELETE" ? "delete" : "wal");
      check_content(db);
      db.insert_batch(20000, 100);  // still writable
      EXPECT_EQ(db.one("SELECT count(*) FROM t2"), "10100");
    }
    // The lower's copy: unchanged and still sound (read in place, immutable).
    Db orig("file:" + lower(file) + "?immutable=1", SQLITE_OPEN_READONLY);
    EXPECT_EQ(orig.one("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(orig.one("SELECT count(*) FROM items"), std::to_string(kLowerRows));
    EXPECT_EQ(orig.one("SELECT count(*) FROM sqlite_master WHERE name = 't2'"), "0");
  }

  void check_content(Db& db) {
    EXPECT_EQ(db.one("SELECT count(*) FROM t2"), "10000");
    EXPECT_EQ(db.one("SELECT sum(n) FROM t2"), std::to_string(3LL * 9999 * 10000 / 2));
    EXPECT_EQ(db.one("SELECT v FROM t2 WHERE id = 4321"),
              "value-4321" + std::string(4321 % 97, 'p'));
    int deleted = kLowerRows / 11;
    EXPECT_EQ(db.one("SELECT count(*) FROM items"), std::to_string(kLowerRows - deleted));
    EXPECT_EQ(db.one("SELECT name FROM items WHERE id = 14"), "item-14-updated");
    EXPECT_EQ(db.one("SELECT count(*) FROM items WHERE payload IS NULL"), "0");
  }
};

TEST_F(SqliteTest, RollbackJournalDatabaseFromTheLower) { exercise("app.db", "DELETE"); }

TEST_F(SqliteTest, WalDatabaseFromTheLower) { exercise("wal.db", "WAL"); }

TEST_F(SqliteTest, SwitchLowerDatabaseFromRollbackToWal) {
  {
    Db db(mnt("app.db"));
    EXPECT_EQ(db.one("PRAGMA journal_mode=WAL"), "wal");
    db.exec("CREATE TABLE t2(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)");
    db.insert_batch(0, 5000);
    EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  }
  remount();
  Db db(mnt("app.db"));
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.one("SELECT count(*) FROM t2"), "5000");
  EXPECT_EQ(db.one("PRAGMA journal_mode"), "wal");
}

}  // namespace
}  // namespace cowfs_it
