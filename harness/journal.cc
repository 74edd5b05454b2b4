#include "harness/journal.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "harness/version.h"

namespace rehearse {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

Journal Journal::open(const std::string& path) { return open_at(path, kJournalSchema); }

namespace {

bool is_damage(const std::string& what) {
  return what.find("file is not a database") != std::string::npos ||
         what.find("malformed") != std::string::npos || what.find("corrupt") != std::string::npos ||
         what.find("no such table") != std::string::npos;
}

DbError damaged(const std::string& path, const std::string& what) {
  return DbError("the journal " + path + " is damaged (" + what +
                 "); rehearse does not repair it, since a guess could lose the record of what "
                 "the data holds: restore it from a backup, or move it aside and start over " +
                 "with `rehearse init` in a new workspace");
}

}  // namespace

Journal Journal::open_at(const std::string& path, int target) {
  try {
    Journal j(Db::open(path, true));
    // WAL: readers (`status` while a run is going) never block the runner.
    j.db_.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON");
    // The journal is small (rows per run and step): a full structural check
    // costs milliseconds and catches garbage written into its pages.
    auto check = j.db_.query_text("PRAGMA quick_check");
    if (check.value_or("") != "ok") throw damaged(path, check.value_or("no result"));
    j.migrate(target);
    if (target == kJournalSchema) {
      for (const char* t : {"runs", "step_runs", "partial", "commits", "commit_steps", "applied",
                            "intent", "events", "snapshots"}) {
        if (!j.db_.has_table(t)) throw damaged(path, std::string("table ") + t + " is missing");
      }
    }
    return j;
  } catch (const DbError& e) {
    const std::string what = e.what();
    if (what.rfind("the journal ", 0) == 0) throw;
    if (is_damage(what)) throw damaged(path, what);
    throw DbError("the journal " + path + ": " + what);
  }
}

int Journal::schema_version() { return static_cast<int>(*db_.query_int("PRAGMA user_version")); }

void Journal::migrate(int target) {
  int current = schema_version();
  if (current > kJournalSchema) {
    const char* file = sqlite3_db_filename(db_.raw(), "main");
    throw DbError("the journal " + std::string(file ? file : "") + " has schema " +
                  std::to_string(current) + ", newer than this rehearse understands (" +
                  std::to_string(kJournalSchema) +
                  "); use the newer rehearse that wrote it (nothing was changed)");
  }
  for (const auto& m : journal_migrations()) {
    if (m.version <= current || m.version > target) continue;
    Transaction t(db_);
    db_.exec(m.sql);
    db_.exec("PRAGMA user_version = " + std::to_string(m.version));
    t.commit();
  }
}

// ---- runs --------------------------------------------------------------------

int64_t Journal::begin_run(const std::string& command, bool in_place) {
  auto s = db_.prepare("INSERT INTO runs(command, pid, started, in_place) VALUES(?,?,?,?)");
  s.bind(1, command).bind(2, static_cast<int64_t>(::getpid())).bind(3, now_seconds());
  s.bind(4, in_place ? 1 : 0);
  s.step();
  return db_.last_insert_rowid();
}

void Journal::end_run(int64_t id, const std::string& outcome, const std::string& error) {
  auto s = db_.prepare("UPDATE runs SET finished=?, outcome=?, error=? WHERE id=?");
  s.bind(1, now_seconds()).bind(2, outcome).bind(3, error).bind(4, id);
  s.step();
}

int Journal::close_stale_runs() {
  Transaction t(db_);
  db_.exec(
      "UPDATE runs SET outcome='interrupted', error='the process stopped before finishing' "
      "WHERE outcome='running'");
  int n = db_.changes();
  db_.exec("UPDATE step_runs SET outcome='interrupted' WHERE outcome='running'");
  t.commit();
  return n;
}

namespace {
RunRecord run_from(Stmt& s) {
  RunRecord r;
  r.id = s.int64(0);
  r.command = s.text(1);
  r.pid = s.int64(2);
  r.started = s.real(3);
  if (!s.is_null(4)) r.finished = s.real(4);
  r.outcome = s.text(5);
  r.error = s.text(6);
  r.in_place = s.int64(7) != 0;
  return r;
}
constexpr const char* kRunCols = "id, command, pid, started, finished, outcome, error, in_place";
}  // namespace

std::vector<RunRecord> Journal::runs(int limit) {
  auto s = db_.prepare(std::string("SELECT ") + kRunCols + " FROM runs ORDER BY id DESC LIMIT ?");
  s.bind(1, limit);
  std::vector<RunRecord> out;
  while (s.step()) out.push_back(run_from(s));
  std::reverse(out.begin(), out.end());
  return out;
}

std::optional<RunRecord> Journal::last_run() {
  auto s = db_.prepare(std::string("SELECT ") + kRunCols + " FROM runs ORDER BY id DESC LIMIT 1");
  if (!s.step()) return std::nullopt;
  return run_from(s);
}

// ---- step runs -----------------------------------------------------------------

int64_t Journal::begin_step_run(int64_t run_id, const std::string& version, const std::string& step,
                                const std::string& kind, const std::string& checksum,
                                const std::string& log_path) {
  auto s = db_.prepare(
      "INSERT INTO step_runs(run_id, version, step, kind, checksum, started, log_path) "
      "VALUES(?,?,?,?,?,?,?)");
  s.bind(1, run_id).bind(2, version).bind(3, step).bind(4, kind).bind(5, checksum);
  s.bind(6, now_seconds()).bind(7, log_path);
  s.step();
  return db_.last_insert_rowid();
}

void Journal::end_step_run(int64_t id, const std::string& outcome, int64_t duration_ms,
                           int64_t items, int64_t exit_code, const std::string& error,
                           const std::string& tail) {
  auto s = db_.prepare(
      "UPDATE step_runs SET outcome=?, duration_ms=?, items=?, exit_code=?, error=?, "
      "output_tail=? WHERE id=?");
  s.bind(1, outcome).bind(2, duration_ms).bind(3, items).bind(4, exit_code).bind(5, error);
  s.bind(6, tail).bind(7, id);
  s.step();
}

namespace {
constexpr const char* kStepRunCols =
    "id, run_id, version, step, kind, outcome, error, output_tail, log_path, started, "
    "duration_ms, items, exit_code";
StepRunRecord step_run_from(Stmt& s) {
  StepRunRecord r;
  r.id = s.int64(0);
  r.run_id = s.int64(1);
  r.version = s.text(2);
  r.step = s.text(3);
  r.kind = s.text(4);
  r.outcome = s.text(5);
  r.error = s.text(6);
  r.output_tail = s.text(7);
  r.log_path = s.text(8);
  r.started = s.real(9);
  r.duration_ms = s.int64(10);
  r.items = s.int64(11);
  r.exit_code = s.int64(12);
  return r;
}
}  // namespace

std::vector<StepRunRecord> Journal::step_runs(int64_t run_id) {
  auto s = db_.prepare(std::string("SELECT ") + kStepRunCols +
                       " FROM step_runs WHERE run_id=? ORDER BY id");
  s.bind(1, run_id);
  std::vector<StepRunRecord> out;
  while (s.step()) out.push_back(step_run_from(s));
  return out;
}

std::optional<StepRunRecord> Journal::last_failure(const std::string& version) {
  auto s = db_.prepare(std::string("SELECT ") + kStepRunCols +
                       " FROM step_runs WHERE version=? AND outcome='failed' ORDER BY id DESC "
                       "LIMIT 1");
  s.bind(1, version);
  if (!s.step()) return std::nullopt;
  return step_run_from(s);
}

// ---- partial -------------------------------------------------------------------

std::optional<std::string> Journal::partial_version() {
  return db_.query_text("SELECT version FROM partial LIMIT 1");
}

std::vector<StepRecord> Journal::partial_steps() {
  auto s = db_.prepare(
      "SELECT step, kind, checksum, duration_ms, items, calls, done FROM partial ORDER BY step");
  std::vector<StepRecord> out;
  while (s.step()) {
    StepRecord r;
    r.step = s.text(0);
    r.kind = s.text(1);
    r.checksum = s.text(2);
    r.duration_ms = s.int64(3);
    r.items = s.int64(4);
    r.calls = s.int64(5);
    r.done = s.int64(6) != 0;
    out.push_back(r);
  }
  return out;
}

void Journal::add_partial(const std::string& version, const StepRecord& seg) {
  Transaction t(db_);
  // Only one increment is ever in progress; a leftover of another version
  // would be a bug in the caller.
  auto other = db_.prepare("SELECT version FROM partial WHERE version<>? LIMIT 1");
  other.bind(1, version);
  if (other.step()) throw DbError("journal: partial rows of " + other.text(0) + " remain");
  auto s = db_.prepare(
      "INSERT INTO partial(version, step, kind, checksum, done, duration_ms, items, calls) "
      "VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(version, step) DO UPDATE SET "
      "checksum=?4, done=?5, duration_ms=duration_ms+?6, items=?7, calls=calls+?8");
  s.bind(1, version).bind(2, seg.step).bind(3, seg.kind).bind(4, seg.checksum);
  s.bind(5, seg.done ? 1 : 0).bind(6, seg.duration_ms).bind(7, seg.items).bind(8, seg.calls);
  s.step();
  t.commit();
}

void Journal::clear_partial() { db_.exec("DELETE FROM partial"); }

// ---- applied -------------------------------------------------------------------

std::vector<AppliedIncrement> Journal::applied() {
  auto s = db_.prepare("SELECT version, state, commit_id, layer FROM applied");
  std::vector<AppliedIncrement> out;
  while (s.step()) {
    AppliedIncrement a;
    a.version = s.text(0);
    a.state = s.text(1);
    if (!s.is_null(2)) a.commit_id = s.int64(2);
    a.layer = s.text(3);
    out.push_back(a);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    auto va = Version::parse(a.version), vb = Version::parse(b.version);
    if (va && vb) return *va < *vb;
    return a.version < b.version;
  });
  return out;
}

int64_t Journal::mark_committing(const std::string& version, int64_t run_id,
                                 const std::string& layer) {
  Transaction t(db_);
  auto steps = partial_steps();
  int64_t total = 0;
  for (const auto& st : steps) total += st.duration_ms;
  auto c = db_.prepare(
      "INSERT INTO commits(version, run_id, committed, duration_ms, layer) VALUES(?,?,?,?,?)");
  c.bind(1, version).bind(2, run_id).bind(3, now_seconds()).bind(4, total).bind(5, layer);
  c.step();
  int64_t id = db_.last_insert_rowid();
  auto cs = db_.prepare(
      "INSERT INTO commit_steps(commit_id, step, kind, checksum, duration_ms, items, calls) "
      "VALUES(?,?,?,?,?,?,?)");
  for (const auto& st : steps) {
    cs.reset();
    cs.bind(1, id).bind(2, st.step).bind(3, st.kind).bind(4, st.checksum);
    cs.bind(5, st.duration_ms).bind(6, st.items).bind(7, st.calls);
    cs.step();
  }
  auto a = db_.prepare(
      "INSERT OR REPLACE INTO applied(version, state, commit_id, layer) "
      "VALUES(?, 'committing', ?, ?)");
  a.bind(1, version).bind(2, id).bind(3, layer);
  a.step();
  db_.exec("DELETE FROM partial");
  t.commit();
  return id;
}

void Journal::mark_applied(const std::string& version) {
  auto s = db_.prepare("UPDATE applied SET state='applied' WHERE version=? AND state='committing'");
  s.bind(1, version);
  s.step();
}

void Journal::drop_applied(const std::string& version) {
  auto s = db_.prepare("DELETE FROM applied WHERE version=?");
  s.bind(1, version);
  s.step();
}

void Journal::decide_store_op(const std::vector<std::string>& drop_versions, const Intent& intent) {
  Transaction t(db_);
  auto d = db_.prepare("DELETE FROM applied WHERE version=?");
  for (const auto& v : drop_versions) {
    d.reset();
    d.bind(1, v);
    d.step();
  }
  db_.exec("DELETE FROM partial");
  auto s = db_.prepare("INSERT OR REPLACE INTO intent(id, op, label) VALUES(1, ?, ?)");
  s.bind(1, intent.op).bind(2, intent.label);
  s.step();
  t.commit();
}

std::optional<Intent> Journal::intent() {
  auto s = db_.prepare("SELECT op, label FROM intent WHERE id=1");
  if (!s.step()) return std::nullopt;
  return Intent{s.text(0), s.text(1)};
}

void Journal::clear_intent() { db_.exec("DELETE FROM intent"); }

void Journal::stamp(const std::string& version, const std::string& layer, int64_t run_id) {
  Transaction t(db_);
  db_.exec("DELETE FROM applied; DELETE FROM partial");
  auto s = db_.prepare(
      "INSERT INTO applied(version, state, commit_id, layer) VALUES(?, 'stamped', NULL, ?)");
  s.bind(1, version).bind(2, layer);
  s.step();
  auto e = db_.prepare("INSERT INTO events(run_id, at, kind, detail) VALUES(?,?,?,?)");
  e.bind(1, run_id).bind(2, now_seconds()).bind(3, "stamp").bind(4, "declared version " + version);
  e.step();
  t.commit();
}

// ---- commits -------------------------------------------------------------------

std::vector<StepRecord> Journal::commit_steps(int64_t commit_id) {
  auto s = db_.prepare(
      "SELECT step, kind, checksum, duration_ms, items, calls FROM commit_steps "
      "WHERE commit_id=? ORDER BY step");
  s.bind(1, commit_id);
  std::vector<StepRecord> out;
  while (s.step()) {
    StepRecord r;
    r.step = s.text(0);
    r.kind = s.text(1);
    r.checksum = s.text(2);
    r.duration_ms = s.int64(3);
    r.items = s.int64(4);
    r.calls = s.int64(5);
    r.done = true;
    out.push_back(r);
  }
  return out;
}

std::vector<CommitRecord> Journal::commits() {
  auto s = db_.prepare(
      "SELECT id, version, run_id, committed, duration_ms, layer FROM commits ORDER BY id");
  std::vector<CommitRecord> out;
  while (s.step()) {
    CommitRecord c;
    c.id = s.int64(0);
    c.version = s.text(1);
    c.run_id = s.int64(2);
    c.committed = s.real(3);
    c.duration_ms = s.int64(4);
    c.layer = s.text(5);
    out.push_back(c);
  }
  for (auto& c : out) c.steps = commit_steps(c.id);
  return out;
}

std::optional<CommitRecord> Journal::commit(int64_t id) {
  auto s = db_.prepare(
      "SELECT id, version, run_id, committed, duration_ms, layer FROM commits WHERE id=?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  CommitRecord c;
  c.id = s.int64(0);
  c.version = s.text(1);
  c.run_id = s.int64(2);
  c.committed = s.real(3);
  c.duration_ms = s.int64(4);
  c.layer = s.text(5);
  c.steps = commit_steps(c.id);
  return c;
}

void Journal::event(int64_t run_id, const std::string& kind, const std::string& detail) {
  auto e = db_.prepare("INSERT INTO events(run_id, at, kind, detail) VALUES(?,?,?,?)");
  e.bind(1, run_id).bind(2, now_seconds()).bind(3, kind).bind(4, detail);
  e.step();
}

int64_t Journal::add_snapshot(const SnapshotRecord& r) {
  auto s = db_.prepare(
      "INSERT INTO snapshots(taken, source, mirror, bytes, files) VALUES(?, ?, ?, ?, ?)");
  s.bind(1, r.taken).bind(2, r.source).bind(3, r.mirror).bind(4, r.bytes).bind(5, r.files);
  s.step();
  return db_.last_insert_rowid();
}

std::vector<SnapshotRecord> Journal::snapshots() {
  auto s = db_.prepare("SELECT id, taken, source, mirror, bytes, files FROM snapshots ORDER BY id");
  std::vector<SnapshotRecord> out;
  while (s.step()) {
    SnapshotRecord r;
    r.id = s.int64(0);
    r.taken = s.real(1);
    r.source = s.text(2);
    r.mirror = s.text(3);
    r.bytes = s.int64(4);
    r.files = s.int64(5);
    out.push_back(r);
  }
  return out;
}

}  // namespace rehearse
