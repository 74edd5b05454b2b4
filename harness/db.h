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

// For a run of many small transactions by one writer (a batched step):
// holds the database's lock for the whole run and keeps one rollback journal
// open instead of creating, syncing the directory of and deleting one per
// transaction. Durability is unchanged (every commit still syncs the journal
// and the database); other connections wait until the guard is gone. Only a
// database in the default journal mode (DELETE) is switched, and switched
// back; WAL and the others are left as they are.
class BatchMode {
 public:
  explicit BatchMode(Db& db);
  ~BatchMode();
  BatchMode(const BatchMode&) = delete;
  BatchMode& operator=(const BatchMode&) = delete;

 private:
  Db& db_;
  bool switched_ = false;
};

}  // namespace rehearse
