// SQL steps, the target-database bookkeeping shared by SQL and batched steps,
// and the dispatch.
#include <fstream>
#include <regex>

#include "harness/duration.h"
#include "harness/journal.h"
#include "harness/runner.h"

namespace rehearse {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kDone:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kInterrupted:
      return "interrupted";
  }
  return "?";
}

StepResult run_step(const Step& step, const StepEnv& env) {
  switch (step.kind) {
    case StepKind::kSql:
      return env.database ? run_server_sql_step(step, env) : run_sql_step(step, env);
    case StepKind::kBatchSql:
      return env.database ? run_server_batch_step(step, env) : run_batch_step(step, env);
    case StepKind::kExec:
      return run_exec_step(step, env);
  }
  return {Outcome::kFailed, "unknown step kind", "", 0, 0, 0};
}

void ensure_data_tables(Db& db) {
  db.exec(
      "CREATE TABLE IF NOT EXISTS _rehearse_version(id INTEGER PRIMARY KEY CHECK(id=1), "
      "version TEXT NOT NULL, updated REAL NOT NULL);"
      "CREATE TABLE IF NOT EXISTS _rehearse_cursor(version TEXT NOT NULL, step TEXT NOT NULL, "
      "checksum TEXT NOT NULL, next_lo INTEGER, max_key INTEGER, total INTEGER NOT NULL "
      "DEFAULT 0, done_rows INTEGER NOT NULL DEFAULT 0, batches INTEGER NOT NULL DEFAULT 0, "
      "finished INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(version, step))");
}

bool step_finished_in_data(const std::string& sqlite, const std::string& version,
                           const std::string& step) {
  Db db = Db::open(sqlite, false);
  if (!db.has_table("_rehearse_cursor")) return false;
  auto s = db.prepare("SELECT finished FROM _rehearse_cursor WHERE version=? AND step=?");
  s.bind(1, version).bind(2, step);
  return s.step() && s.int64(0) != 0;
}

void write_data_version(const std::string& sqlite, const std::string& version) {
  Db db = Db::open(sqlite, false);
  ensure_data_tables(db);
  Transaction t(db);
  auto s = db.prepare(
      "INSERT OR REPLACE INTO _rehearse_version(id, version, updated) "
      "VALUES(1, ?, ?)");
  s.bind(1, version).bind(2, now_seconds());
  s.step();
  auto d = db.prepare("DELETE FROM _rehearse_cursor WHERE version=?");
  d.bind(1, version);
  d.step();
  t.commit();
}

std::optional<std::string> read_data_version(const std::string& sqlite) {
  try {
    Db db = Db::open(sqlite, false, true);
    if (!db.has_table("_rehearse_version")) return std::nullopt;
    return db.query_text("SELECT version FROM _rehearse_version WHERE id=1");
  } catch (const DbError&) {
    return std::nullopt;
  }
}

namespace {

bool is_transaction_control(const char* sql) {
  static const std::regex re(R"(^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b)",
                             std::regex::icase);
  return std::regex_search(sql, re);
}

}  // namespace

std::string timeout_message(std::chrono::milliseconds limit) {
  return "timed out after " + format_duration(limit) + " (--step-timeout " +
         format_duration(limit) + ")";
}

SqlWatch::SqlWatch(Db& db, const StepEnv& env)
    : db_(db), env_(env), last_tick_(std::chrono::steady_clock::now()) {
  if (env.timeout) deadline_ = last_tick_ + *env.timeout;
  // Every 1000 virtual machine instructions: a clock read is cheap next to
  // that, and the reaction to Ctrl-C or the deadline stays in milliseconds.
  sqlite3_progress_handler(db_.raw(), 1000, &SqlWatch::handler, this);
}

SqlWatch::~SqlWatch() { sqlite3_progress_handler(db_.raw(), 0, nullptr, nullptr); }

bool SqlWatch::should_end() {
  auto now = std::chrono::steady_clock::now();
  if (deadline_ && now >= *deadline_) timed_out_ = true;
  if (env_.progress && now - last_tick_ >= std::chrono::seconds(1)) {
    last_tick_ = now;
    env_.progress->tick();
  }
  return timed_out_ || stopped();
}

int SqlWatch::handler(void* self) { return static_cast<SqlWatch*>(self)->should_end() ? 1 : 0; }

std::string SqlWatch::timeout_error() const { return timeout_message(*env_.timeout); }

void exec_statements(Db& db, const std::string& sql, const std::optional<Window>& w) {
  const char* tail = sql.c_str();
  while (tail && *tail) {
    sqlite3_stmt* raw = nullptr;
    const char* next = nullptr;
    if (sqlite3_prepare_v2(db.raw(), tail, -1, &raw, &next) != SQLITE_OK) {
      throw DbError(db.error());
    }
    if (!raw) {  // whitespace or a comment
      tail = next;
      continue;
    }
    Stmt st(db.raw(), raw);
    if (is_transaction_control(sqlite3_sql(raw))) {
      throw DbError(
          "steps must not control transactions (BEGIN/COMMIT/ROLLBACK); the harness "
          "runs each step (or batch) in one transaction");
    }
    int n = sqlite3_bind_parameter_count(raw);
    for (int i = 1; i <= n; ++i) {
      const char* name = sqlite3_bind_parameter_name(raw, i);
      std::string pname = name ? name : "?";
      if (w && pname == ":lo") {
        st.bind(i, w->lo);
      } else if (w && pname == ":hi") {
        st.bind(i, w->hi);
      } else {
        throw DbError("unknown parameter " + pname +
                      (w ? " (only :lo and :hi are bound)" : " (only batched steps get :lo/:hi)"));
      }
    }
    while (st.step()) {
    }
    tail = next;
  }
}

void append_log(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
}

StepResult run_sql_step(const Step& step, const StepEnv& env) {
  StepResult r;
  if (!env.sqlite) return {Outcome::kFailed, "no sqlite database configured", "", 0, 0, 0};
  append_log(env.log_path,
             "== sql step " + step.name + " at " + std::to_string(now_seconds()) + "\n");
  try {
    if (step_finished_in_data(*env.sqlite, env.version, step.name)) {
      append_log(env.log_path, "already finished inside the data; not run again\n");
      return r;
    }
    std::string sql = read_text_file(step.path);
    Db db = Db::open(*env.sqlite, false);
    ensure_data_tables(db);
    SqlWatch watch(db, env);
    try {
      Transaction t(db);
      exec_statements(db, sql, std::nullopt);
      auto c = db.prepare(
          "INSERT OR REPLACE INTO _rehearse_cursor(version, step, checksum, finished) "
          "VALUES(?,?,?,1)");
      c.bind(1, env.version).bind(2, step.name).bind(3, step.checksum);
      c.step();
      t.commit();
    } catch (const DbError&) {
      if (!watch.timed_out()) throw;
      throw DbError(watch.timeout_error());
    }
    r.items = 0;
    append_log(env.log_path, "committed\n");
  } catch (const std::exception& e) {
    if (env.stop && env.stop->load()) {
      r.outcome = Outcome::kInterrupted;
      append_log(env.log_path, "interrupted\n");
      return r;
    }
    r.outcome = Outcome::kFailed;
    r.error = e.what();
    r.tail = r.error;
    append_log(env.log_path, "error: " + r.error + "\n");
  }
  return r;
}

}  // namespace rehearse
