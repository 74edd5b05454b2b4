// Batched SQL steps: one transaction per window, the cursor in the same
// transaction.
#include <chrono>
#include <limits>

#include "harness/journal.h"
#include "harness/runner.h"

namespace rehearse {

std::optional<Window> next_window(Db& db, const BatchSpec& spec, int64_t lo, int64_t max) {
  if (lo > max) return std::nullopt;
  const std::string t = "\"" + spec.table + "\"", k = "\"" + spec.key + "\"";
  // The first key at or after lo: windows start on real rows, so sparse
  // keys do not produce empty batches.
  auto first = db.prepare("SELECT " + k + " FROM " + t + " WHERE " + k + " >= ? AND " + k +
                          " <= ? ORDER BY " + k + " LIMIT 1");
  first.bind(1, lo).bind(2, max);
  if (!first.step()) return std::nullopt;
  Window w;
  w.lo = first.int64(0);
  auto last = db.prepare("SELECT " + k + " FROM " + t + " WHERE " + k + " >= ? AND " + k +
                         " <= ? ORDER BY " + k + " LIMIT 1 OFFSET ?");
  last.bind(1, w.lo).bind(2, max).bind(3, spec.size - 1);
  w.hi = last.step() ? last.int64(0) : max;
  auto count = db.prepare("SELECT count(*) FROM " + t + " WHERE " + k + " BETWEEN ? AND ?");
  count.bind(1, w.lo).bind(2, w.hi);
  count.step();
  w.rows = count.int64(0);
  return w;
}

namespace {

struct Cursor {
  bool exists = false;
  std::string checksum;
  int64_t next_lo = 0, max_key = 0, total = 0, done_rows = 0, batches = 0;
  bool finished = false;
};

Cursor load_cursor(Db& db, const std::string& version, const std::string& step) {
  Cursor c;
  auto s = db.prepare(
      "SELECT checksum, next_lo, max_key, total, done_rows, batches, finished FROM "
      "_rehearse_cursor WHERE version=? AND step=?");
  s.bind(1, version).bind(2, step);
  if (!s.step()) return c;
  c.exists = true;
  c.checksum = s.text(0);
  c.next_lo = s.int64(1);
  c.max_key = s.int64(2);
  c.total = s.int64(3);
  c.done_rows = s.int64(4);
  c.batches = s.int64(5);
  c.finished = s.int64(6) != 0;
  return c;
}

}  // namespace

StepResult run_batch_step(const Step& step, const StepEnv& env) {
  StepResult r;
  if (!env.sqlite || !step.batch) {
    return {Outcome::kFailed, "batched step without a database or header", "", 0, 0, 0};
  }
  const BatchSpec& spec = *step.batch;
  append_log(env.log_path,
             "== batched step " + step.name + " at " + std::to_string(now_seconds()) + "\n");
  try {
    std::string sql = read_text_file(step.path);
    Db db = Db::open(*env.sqlite, false);
    ensure_data_tables(db);
    SqlWatch watch(db, env);
    Cursor c = load_cursor(db, env.version, step.name);
    if (c.exists && c.checksum != step.checksum) {
      throw DbError(
          "the saved cursor belongs to an earlier version of this step; rerun the "
          "increment (rehearse rerun " +
          env.version + ")");
    }
    if (!c.exists) {
      // The range and the total are fixed once, with the cursor: resuming
      // walks the same range whatever the step did to the table since.
      Transaction t(db);
      auto range = db.prepare("SELECT min(\"" + spec.key + "\"), max(\"" + spec.key +
                              "\"), count(*) FROM \"" + spec.table + "\"");
      range.step();
      bool empty = range.is_null(0);
      c.next_lo = empty ? 0 : range.int64(0);
      c.max_key = empty ? -1 : range.int64(1);
      c.total = range.int64(2);
      auto ins = db.prepare(
          "INSERT INTO _rehearse_cursor(version, step, checksum, next_lo, max_key, total, "
          "finished) VALUES(?,?,?,?,?,?,?)");
      ins.bind(1, env.version).bind(2, step.name).bind(3, step.checksum).bind(4, c.next_lo);
      ins.bind(5, c.max_key).bind(6, c.total).bind(7, empty ? 1 : 0);
      ins.step();
      t.commit();
      c.exists = true;
      c.finished = empty;
      c.checksum = step.checksum;
      append_log(env.log_path, "range [" + std::to_string(c.next_lo) + ", " +
                                   std::to_string(c.max_key) + "], " + std::to_string(c.total) +
                                   " rows, batches of " + std::to_string(spec.size) + "\n");
    } else {
      append_log(env.log_path, "resuming at key " + std::to_string(c.next_lo) + " after " +
                                   std::to_string(c.batches) + " batches\n");
    }
    if (env.progress) env.progress->progress(c.done_rows, c.total);
    BatchMode batch_mode(db);
    auto advance = db.prepare(
        "UPDATE _rehearse_cursor SET next_lo=?, done_rows=done_rows+?, batches=batches+1, "
        "finished=? WHERE version=? AND step=?");
    auto mark_done =
        db.prepare("UPDATE _rehearse_cursor SET finished=1 WHERE version=? AND step=?");
    try {
      while (!c.finished) {
        if (watch.should_end()) {
          if (watch.timed_out()) throw DbError("");  // reworded below
          r.outcome = Outcome::kInterrupted;
          break;
        }
        Transaction t(db);
        auto w = next_window(db, spec, c.next_lo, c.max_key);
        if (!w) {
          mark_done.reset();
          mark_done.bind(1, env.version).bind(2, step.name);
          mark_done.step();
          t.commit();
          c.finished = true;
          break;
        }
        exec_statements(db, sql, *w);
        bool last = w->hi >= c.max_key;
        int64_t next = last ? c.max_key : w->hi + 1;  // hi < max, so no overflow
        advance.reset();
        advance.bind(1, next).bind(2, w->rows).bind(3, last ? 1 : 0);
        advance.bind(4, env.version).bind(5, step.name);
        advance.step();
        t.commit();
        c.next_lo = next;
        c.done_rows += w->rows;
        c.batches += 1;
        c.finished = last;
        if (env.progress) env.progress->progress(c.done_rows, c.total);
      }
    } catch (const DbError&) {
      if (!watch.timed_out()) throw;
      throw DbError(watch.timeout_error());  // the batch's transaction rolled back
    }
    r.items = c.done_rows;
    append_log(env.log_path, std::string(c.finished ? "finished" : "stopped") + " after " +
                                 std::to_string(c.batches) + " batches, " +
                                 std::to_string(c.done_rows) + " rows\n");
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
