#include "harness/db.h"

namespace rehearse {

namespace {
void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK) throw DbError(std::string(what) + ": " + sqlite3_errmsg(db));
}
}  // namespace

Stmt& Stmt::bind(int i, int64_t v) {
  check(db_, sqlite3_bind_int64(s_, i, v), "bind");
  return *this;
}

Stmt& Stmt::bind(int i, double v) {
  check(db_, sqlite3_bind_double(s_, i, v), "bind");
  return *this;
}

Stmt& Stmt::bind(int i, const std::string& v) {
  check(db_, sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT),
        "bind");
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  check(db_, sqlite3_bind_null(s_, i), "bind");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string msg = sqlite3_errmsg(db_);
  sqlite3_reset(s_);
  throw DbError(msg);
}

void Stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::string Stmt::text(int col) const {
  const unsigned char* t = sqlite3_column_text(s_, col);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(s_, col)))
           : std::string();
}

Db Db::open(const std::string& path, bool create, bool readonly) {
  sqlite3* db = nullptr;
  int flags =
      readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0));
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw DbError("cannot open " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_extended_result_codes(db, 0);
  return Db(db);
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    sqlite3_close(db_);
    db_ = o.db_;
    o.db_ = nullptr;
  }
  return *this;
}

Db::~Db() { sqlite3_close(db_); }

void Db::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    throw DbError(msg);
  }
}

Stmt Db::prepare(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) throw DbError(sqlite3_errmsg(db_));
  return Stmt(db_, s);
}

std::optional<int64_t> Db::query_int(const std::string& sql) {
  Stmt s = prepare(sql);
  if (!s.step() || s.is_null(0)) return std::nullopt;
  return s.int64(0);
}

std::optional<std::string> Db::query_text(const std::string& sql) {
  Stmt s = prepare(sql);
  if (!s.step() || s.is_null(0)) return std::nullopt;
  return s.text(0);
}

bool Db::has_table(const std::string& name) {
  Stmt s = prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?");
  s.bind(1, name);
  return s.step();
}

Transaction::Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

BatchMode::BatchMode(Db& db) : db_(db) {
  if (db_.query_text("PRAGMA journal_mode") != "delete") return;
  db_.exec("PRAGMA locking_mode=EXCLUSIVE");
  db_.exec("PRAGMA journal_mode=PERSIST");
  switched_ = true;
}

BatchMode::~BatchMode() {
  if (!switched_) return;
  // NORMAL lets the lock go at the next access, which the read below is;
  // back in DELETE mode the kept journal is removed.
  sqlite3_exec(db_.raw(),
               "PRAGMA locking_mode=NORMAL; PRAGMA journal_mode=DELETE; "
               "SELECT count(*) FROM sqlite_master",
               nullptr, nullptr, nullptr);
}

}  // namespace rehearse
