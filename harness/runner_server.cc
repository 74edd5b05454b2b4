// SQL and batched steps against a database server (engine.h): the same
// contract as the SQLite runners (runner.h), with the bookkeeping tables in
// the server's database.
//
// A SQL step: one transaction holding every statement and the step's
// "finished" mark. A batched step: one transaction per window holding the
// window's statements and the cursor's advance, so a kill of rehearse (or of
// the server) loses at most the window in flight, and no committed window
// runs twice. MariaDB commits DDL implicitly, so there a step that fails
// after a DDL statement keeps it until the increment's rollback rewinds it.
// Ctrl-C and --step-timeout are checked between statements and windows; the
// timeout also limits each statement inside the server, and Ctrl-C cancels
// the statement running in it (CancelOnStop).
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "harness/engine.h"
#include "harness/journal.h"
#include "harness/runner.h"

namespace rehearse {

namespace {

using Clock = std::chrono::steady_clock;

void ensure_server_tables(Engine& e) {
  e.exec(
      "CREATE TABLE IF NOT EXISTS _rehearse_version(id INT PRIMARY KEY CHECK (id = 1), "
      "version VARCHAR(200) NOT NULL, updated DOUBLE PRECISION NOT NULL)");
  e.exec(
      "CREATE TABLE IF NOT EXISTS _rehearse_cursor(version VARCHAR(200) NOT NULL, "
      "step VARCHAR(200) NOT NULL, checksum VARCHAR(200) NOT NULL, next_lo BIGINT, "
      "max_key BIGINT, total BIGINT NOT NULL DEFAULT 0, done_rows BIGINT NOT NULL DEFAULT 0, "
      "batches BIGINT NOT NULL DEFAULT 0, finished INT NOT NULL DEFAULT 0, "
      "PRIMARY KEY(version, step))");
}

bool is_transaction_control(const std::string& stmt) {
  size_t i = 0;
  // Leading comments and blanks.
  for (;;) {
    while (i < stmt.size() && std::isspace(static_cast<unsigned char>(stmt[i]))) ++i;
    if (stmt.compare(i, 2, "--") == 0) {
      i = stmt.find('\n', i);
      if (i == std::string::npos) return false;
    } else if (stmt.compare(i, 2, "/*") == 0) {
      i = stmt.find("*/", i);
      if (i == std::string::npos) return false;
      i += 2;
    } else {
      break;
    }
  }
  std::string word;
  while (i < stmt.size() && std::isalpha(static_cast<unsigned char>(stmt[i]))) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(stmt[i++])));
  }
  return word == "BEGIN" || word == "COMMIT" || word == "END" || word == "ROLLBACK" ||
         word == "SAVEPOINT" || word == "RELEASE" || word == "START";
}

std::vector<std::string> step_statements(const Step& step, bool batched) {
  auto stmts = split_statements(read_text_file(step.path));
  for (const auto& s : stmts) {
    if (is_transaction_control(s)) {
      throw DbError(
          "steps must not control transactions (BEGIN/COMMIT/ROLLBACK); the harness "
          "runs each step (or batch) in one transaction");
    }
    if (!batched && mentions_window(s)) {
      throw DbError("unknown parameter :lo/:hi (only batched steps get :lo/:hi)");
    }
  }
  return stmts;
}

// Keeps the server's statement limit at what is left of the step's time.
class Deadline {
 public:
  Deadline(Engine& e, const StepEnv& env) : e_(e), env_(env) {
    if (env.timeout) at_ = Clock::now() + *env.timeout;
  }
  bool passed() const { return at_ && Clock::now() >= *at_; }
  bool stopped() const { return env_.stop && env_.stop->load(); }
  void before_statement() {
    if (!at_) return;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*at_ - Clock::now());
    e_.set_statement_timeout(std::max(left, std::chrono::milliseconds(1)));
  }
  void tick() {
    if (env_.progress) env_.progress->tick();
  }

 private:
  Engine& e_;
  const StepEnv& env_;
  std::optional<Clock::time_point> at_;
};

// While it lives, a Ctrl-C (env.stop) cancels the statement running on e,
// so that rehearse stops within moments instead of when a long statement
// ends. The stop flag is set by a signal handler, which cannot wake a
// thread: the watcher looks at it every 50 ms. Declared after the Engine,
// so that it is gone before the Engine is.
class CancelOnStop {
 public:
  CancelOnStop(Engine& e, const StepEnv& env) {
    if (env.stop == nullptr) return;
    watcher_ = std::thread([this, &e, stop = env.stop] {
      std::unique_lock l(mu_);
      while (!done_) {
        if (stop->load()) {
          l.unlock();
          e.cancel();
          return;
        }
        wake_.wait_for(l, std::chrono::milliseconds(50));
      }
    });
  }
  ~CancelOnStop() {
    {
      std::lock_guard l(mu_);
      done_ = true;
    }
    wake_.notify_all();
    if (watcher_.joinable()) watcher_.join();
  }
  CancelOnStop(const CancelOnStop&) = delete;
  CancelOnStop& operator=(const CancelOnStop&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable wake_;
  bool done_ = false;  // guarded by mu_
  std::thread watcher_;
};

std::string cursor_where(Engine& e, const std::string& version, const std::string& step) {
  return " WHERE version=" + e.quote_literal(version) + " AND step=" + e.quote_literal(step);
}

StepResult failed(const StepEnv& env, const std::string& what) {
  StepResult r;
  if (env.stop && env.stop->load()) {
    r.outcome = Outcome::kInterrupted;
    append_log(env.log_path, "interrupted\n");
    return r;
  }
  r.outcome = Outcome::kFailed;
  r.error = what;
  r.tail = what;
  append_log(env.log_path, "error: " + what + "\n");
  return r;
}

// Rolls back an open transaction when a statement throws; a dead
// connection makes the ROLLBACK fail too, which changes nothing.
class ServerTransaction {
 public:
  explicit ServerTransaction(Engine& e) : e_(e) { e_.exec(e_.begin_statement()); }
  ~ServerTransaction() {
    if (open_) {
      try {
        e_.exec("ROLLBACK");
      } catch (const DbError&) {
      }
    }
  }
  ServerTransaction(const ServerTransaction&) = delete;
  ServerTransaction& operator=(const ServerTransaction&) = delete;
  void commit() {
    e_.exec("COMMIT");
    open_ = false;
  }

 private:
  Engine& e_;
  bool open_ = true;
};

}  // namespace

bool server_step_finished(const std::string& url, const std::string& version,
                          const std::string& step) {
  auto e = connect_engine(url);
  ensure_server_tables(*e);
  auto f = e->query_int("SELECT finished FROM _rehearse_cursor" + cursor_where(*e, version, step));
  return f && *f != 0;
}

void server_write_data_version(const std::string& url, const std::string& version) {
  auto e = connect_engine(url);
  ensure_server_tables(*e);
  ServerTransaction t(*e);
  e->exec("DELETE FROM _rehearse_version");
  e->exec("INSERT INTO _rehearse_version(id, version, updated) VALUES(1, " +
          e->quote_literal(version) + ", " + std::to_string(now_seconds()) + ")");
  e->exec("DELETE FROM _rehearse_cursor WHERE version=" + e->quote_literal(version));
  t.commit();
}

std::optional<std::string> server_read_data_version(const std::string& url) {
  try {
    auto e = connect_engine(url);
    auto rows = e->query("SELECT version FROM _rehearse_version WHERE id=1");
    if (rows.empty() || rows[0].empty()) return std::nullopt;
    return rows[0][0];
  } catch (const DbError&) {
    return std::nullopt;
  }
}

StepResult run_server_sql_step(const Step& step, const StepEnv& env) {
  StepResult r;
  append_log(env.log_path, "== sql step " + step.name + " on " + redact_url(*env.database) +
                               " at " + std::to_string(now_seconds()) + "\n");
  std::optional<Deadline> dl;
  try {
    auto stmts = step_statements(step, false);
    auto e = connect_engine(*env.database);
    ensure_server_tables(*e);
    auto done = e->query_int("SELECT finished FROM _rehearse_cursor" +
                             cursor_where(*e, env.version, step.name));
    if (done && *done != 0) {
      append_log(env.log_path, "already finished inside the data; not run again\n");
      return r;
    }
    dl.emplace(*e, env);
    CancelOnStop cancel_on_stop(*e, env);
    ServerTransaction t(*e);
    for (const auto& s : stmts) {
      if (dl->passed()) throw DbError(timeout_message(*env.timeout));
      if (dl->stopped()) throw DbError("interrupted");
      dl->before_statement();
      e->exec(s);
      dl->tick();
    }
    e->exec("DELETE FROM _rehearse_cursor" + cursor_where(*e, env.version, step.name));
    e->exec("INSERT INTO _rehearse_cursor(version, step, checksum, finished) VALUES(" +
            e->quote_literal(env.version) + ", " + e->quote_literal(step.name) + ", " +
            e->quote_literal(step.checksum) + ", 1)");
    t.commit();
    append_log(env.log_path, "committed\n");
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    if (dl && dl->passed() && env.timeout) what = timeout_message(*env.timeout);
    return failed(env, what);
  }
  return r;
}

StepResult run_server_batch_step(const Step& step, const StepEnv& env) {
  StepResult r;
  if (!step.batch) return failed(env, "batched step without a header");
  const BatchSpec& spec = *step.batch;
  append_log(env.log_path, "== batched step " + step.name + " on " + redact_url(*env.database) +
                               " at " + std::to_string(now_seconds()) + "\n");
  std::optional<Deadline> dl;
  try {
    auto stmts = step_statements(step, true);
    auto e = connect_engine(*env.database);
    ensure_server_tables(*e);
    const std::string where = cursor_where(*e, env.version, step.name);
    const std::string t = e->quote_ident(spec.table), k = e->quote_ident(spec.key);
    auto rows = e->query(
        "SELECT checksum, next_lo, max_key, total, done_rows, batches, finished FROM "
        "_rehearse_cursor" +
        where);
    int64_t next_lo = 0, max_key = -1, total = 0, done_rows = 0, batches = 0;
    bool finished = false;
    auto num = [](const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0LL; };
    if (!rows.empty()) {
      if (rows[0][0].value_or("") != step.checksum) {
        throw DbError(
            "the saved cursor belongs to an earlier version of this step; rerun the "
            "increment (rehearse rerun " +
            env.version + ")");
      }
      next_lo = num(rows[0][1]);
      max_key = num(rows[0][2]);
      total = num(rows[0][3]);
      done_rows = num(rows[0][4]);
      batches = num(rows[0][5]);
      finished = num(rows[0][6]) != 0;
      append_log(env.log_path, "resuming at key " + std::to_string(next_lo) + " after " +
                                   std::to_string(batches) + " batches\n");
    } else {
      // Range and total fixed once, with the cursor, as for SQLite.
      ServerTransaction tx(*e);
      auto range = e->query("SELECT min(" + k + "), max(" + k + "), count(*) FROM " + t);
      bool empty = range.empty() || !range[0][0];
      next_lo = empty ? 0 : num(range[0][0]);
      max_key = empty ? -1 : num(range[0][1]);
      total = range.empty() ? 0 : num(range[0][2]);
      finished = empty;
      e->exec(
          "INSERT INTO _rehearse_cursor(version, step, checksum, next_lo, max_key, total, "
          "finished) VALUES(" +
          e->quote_literal(env.version) + ", " + e->quote_literal(step.name) + ", " +
          e->quote_literal(step.checksum) + ", " + std::to_string(next_lo) + ", " +
          std::to_string(max_key) + ", " + std::to_string(total) + ", " + (empty ? "1" : "0") +
          ")");
      tx.commit();
      append_log(env.log_path, "range [" + std::to_string(next_lo) + ", " +
                                   std::to_string(max_key) + "], " + std::to_string(total) +
                                   " rows, batches of " + std::to_string(spec.size) + "\n");
    }
    if (env.progress) env.progress->progress(done_rows, total);
    dl.emplace(*e, env);
    CancelOnStop cancel_on_stop(*e, env);
    while (!finished) {
      if (dl->passed()) throw DbError(timeout_message(*env.timeout));
      if (dl->stopped()) {
        r.outcome = Outcome::kInterrupted;
        break;
      }
      ServerTransaction tx(*e);
      dl->before_statement();
      // The window: up to `size` rows from the first key at or after next_lo.
      auto lo = e->query_int("SELECT " + k + " FROM " + t + " WHERE " + k +
                             " >= " + std::to_string(next_lo) + " AND " + k +
                             " <= " + std::to_string(max_key) + " ORDER BY " + k + " LIMIT 1");
      if (!lo) {
        e->exec("UPDATE _rehearse_cursor SET finished=1" + where);
        tx.commit();
        finished = true;
        break;
      }
      auto hi =
          e->query_int("SELECT " + k + " FROM " + t + " WHERE " + k + " >= " + std::to_string(*lo) +
                       " AND " + k + " <= " + std::to_string(max_key) + " ORDER BY " + k +
                       " LIMIT 1 OFFSET " + std::to_string(spec.size - 1));
      const int64_t w_hi = hi ? *hi : max_key;
      const int64_t w_rows =
          e->query_int("SELECT count(*) FROM " + t + " WHERE " + k + " BETWEEN " +
                       std::to_string(*lo) + " AND " + std::to_string(w_hi))
              .value_or(0);
      for (const auto& s : stmts) {
        dl->before_statement();
        e->exec(bind_window(s, *lo, w_hi));
      }
      const bool last = w_hi >= max_key;
      const int64_t next = last ? max_key : w_hi + 1;
      e->exec("UPDATE _rehearse_cursor SET next_lo=" + std::to_string(next) +
              ", done_rows=done_rows+" + std::to_string(w_rows) +
              ", batches=batches+1, finished=" + (last ? "1" : "0") + where);
      tx.commit();
      next_lo = next;
      done_rows += w_rows;
      batches += 1;
      finished = last;
      if (env.progress) env.progress->progress(done_rows, total);
      dl->tick();
    }
    r.items = done_rows;
    append_log(env.log_path, std::string(finished ? "finished" : "stopped") + " after " +
                                 std::to_string(batches) + " batches, " +
                                 std::to_string(done_rows) + " rows\n");
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    if (dl && dl->passed() && env.timeout) what = timeout_message(*env.timeout);
    return failed(env, what);
  }
  return r;
}

}  // namespace rehearse
