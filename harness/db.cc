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

namespace {

// Pages of an index are scattered over the file and change again in every
// batch; a checkpoint rewrites each one, so the fewer checkpoints, the fewer
// writes of the same pages. 64 MiB of WAL with 4 KiB pages, where SQLite's
// default checkpoints every 1,000 pages.
constexpr int kCheckpointPages = 16384;

// The modes a batched step leaves for WAL and returns to; MEMORY and OFF
// are someone's deliberate choice, and WAL is already what it wants.
bool is_rollback_journal(const std::string& mode) {
  return mode == "delete" || mode == "truncate" || mode == "persist";
}

}  // namespace

BatchMode::BatchMode(Db& db) : db_(db) {
  const std::string mode = db_.query_text("PRAGMA journal_mode").value_or("");
  std::optional<std::string> before;
  if (mode == "wal" && db_.has_table("_rehearse_batch_mode")) {
    // A batched step was stopped before it could switch back.
    before = db_.query_text("SELECT journal_mode FROM _rehearse_batch_mode");
  } else if (is_rollback_journal(mode)) {
    // Recorded first, so that a kill in WAL mode is switched back by the
    // step's resumption.
    Transaction t(db_);
    db_.exec(
        "CREATE TABLE IF NOT EXISTS _rehearse_batch_mode(journal_mode TEXT NOT NULL);"
        "DELETE FROM _rehearse_batch_mode");
    auto ins = db_.prepare("INSERT INTO _rehearse_batch_mode VALUES(?)");
    ins.bind(1, mode);
    ins.step();
    t.commit();
    before = mode;
  }
  if (!before || !is_rollback_journal(*before)) return;
  synchronous_ = db_.query_int("PRAGMA synchronous").value_or(2);
  // Holding the lock before entering WAL keeps the WAL index in memory: no
  // -shm file, which a network mount may not map.
  db_.exec("PRAGMA locking_mode=EXCLUSIVE");
  if (db_.query_text("PRAGMA journal_mode=WAL") != "wal") {
    db_.exec("PRAGMA locking_mode=NORMAL; DELETE FROM _rehearse_batch_mode");
    return;
  }
  db_.exec("PRAGMA synchronous=NORMAL");
  db_.exec("PRAGMA wal_autocheckpoint=" + std::to_string(kCheckpointPages));
  restore_ = *before;
}

BatchMode::~BatchMode() {
  if (restore_.empty()) return;
  try {
    db_.exec("PRAGMA synchronous=" + std::to_string(synchronous_));
    // Out of WAL first: a connection that entered it holding the lock
    // cannot let go before. The switch checkpoints and syncs the database.
    if (db_.query_text("PRAGMA journal_mode=" + restore_) != restore_) return;
    // The write lets the lock go (NORMAL applies at the next access).
    db_.exec("PRAGMA locking_mode=NORMAL; DELETE FROM _rehearse_batch_mode");
  } catch (const DbError&) {
    // Left in WAL with the record: the step's next run switches back.
  }
}

}  // namespace rehearse
