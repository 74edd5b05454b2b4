// Db / Stmt: a thin RAII wrapper over the SQLite C API, shared by the
// journal and the SQL runners. Errors throw DbError carrying SQLite's
// message (the runners turn it into a step failure; the CLI into one line).
//
// Ownership: Db owns the connection, Stmt owns a prepared statement and must
// not outlive its Db. Not thread-safe: one thread per Db.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace rehearse {

class DbError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt& bind(int i, double v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind(int i, const char* v) { return bind(i, std::string(v)); }
  Stmt& bind_null(int i);
  // True while a row is available; false when done. Throws on error.
  bool step();
  void reset();
  int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::string text(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  sqlite3_stmt* raw() const { return s_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
};

class Db {
 public:
  // Opens (creating if `create`) the database at path; sets a busy timeout
  // so a concurrent reader does not turn into a spurious failure.
  static Db open(const std::string& path, bool create, bool readonly = false);
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  ~Db();

  void exec(const std::string& sql);
  Stmt prepare(const std::string& sql);
  // The first column of the first row, or nullopt when there is no row.
  std::optional<int64_t> query_int(const std::string& sql);
  std::optional<std::string> query_text(const std::string& sql);
  bool has_table(const std::string& name);
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }
  std::string error() const { return sqlite3_errmsg(db_); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE in the constructor, ROLLBACK unless commit() was called.
class Transaction {
 public:
  explicit Transaction(Db& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Db& db_;
  bool done_ = false;
};

// For a run of many small transactions by one writer (a batched step): the
// database in WAL mode with synchronous=NORMAL, its lock held throughout.
// A commit then appends to the WAL without a sync; the WAL is synced at each
// checkpoint (every 16,384 pages) and when the guard switches back. A killed
// process loses nothing committed; a crash of the machine (or of cowfs) may
// lose the last commits before a checkpoint, each whole with its cursor, so
// a resumed step redoes them. Other connections wait until the guard is
// gone. Only a database in a rollback-journal mode (DELETE, TRUNCATE,
// PERSIST) is switched, and switched back; the mode it had is recorded in
// the database (_rehearse_batch_mode) first, so that the next guard on a
// database left in WAL by a kill switches it back.
class BatchMode {
 public:
  explicit BatchMode(Db& db);
  ~BatchMode();
  BatchMode(const BatchMode&) = delete;
  BatchMode& operator=(const BatchMode&) = delete;

 private:
  Db& db_;
  std::string restore_;  // the journal mode to return to; empty: none
  int64_t synchronous_ = 2;
};

}  // namespace rehearse
