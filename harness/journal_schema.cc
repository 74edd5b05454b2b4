// The journal's ordered schema upgrades. Append only: a released migration
// is never edited, because journals in the field already went through it.
#include "harness/journal.h"

namespace rehearse {

const std::vector<Migration>& journal_migrations() {
  static const std::vector<Migration> m = {
      {1, "initial schema", R"sql(
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  command TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  outcome TEXT NOT NULL DEFAULT 'running',
  error TEXT NOT NULL DEFAULT '',
  in_place INTEGER NOT NULL DEFAULT 0);
CREATE TABLE step_runs(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id),
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  kind TEXT NOT NULL,
  checksum TEXT NOT NULL,
  started REAL NOT NULL,
  outcome TEXT NOT NULL DEFAULT 'running',
  duration_ms INTEGER NOT NULL DEFAULT 0,
  items INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  output_tail TEXT NOT NULL DEFAULT '',
  log_path TEXT NOT NULL DEFAULT '');
CREATE TABLE partial(
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  kind TEXT NOT NULL,
  checksum TEXT NOT NULL,
  done INTEGER NOT NULL DEFAULT 0,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  items INTEGER NOT NULL DEFAULT 0,
  calls INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(version, step));
CREATE TABLE commits(
  id INTEGER PRIMARY KEY,
  version TEXT NOT NULL,
  run_id INTEGER NOT NULL,
  committed REAL NOT NULL,
  duration_ms INTEGER NOT NULL,
  layer TEXT NOT NULL);
CREATE TABLE commit_steps(
  commit_id INTEGER NOT NULL REFERENCES commits(id),
  step TEXT NOT NULL,
  kind TEXT NOT NULL,
  checksum TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  items INTEGER NOT NULL,
  calls INTEGER NOT NULL,
  PRIMARY KEY(commit_id, step));
CREATE TABLE applied(
  version TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK(state IN ('committing','applied','stamped')),
  commit_id INTEGER REFERENCES commits(id),
  layer TEXT NOT NULL);
CREATE TABLE intent(
  id INTEGER PRIMARY KEY CHECK(id = 1),
  op TEXT NOT NULL,
  label TEXT NOT NULL);
)sql"},
      // Schema 2: events for `status`/`history`, and an index for the
      // per-version failure lookup that `status` and `run` do.
      {2, "events table and step_runs index", R"sql(
CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  run_id INTEGER,
  at REAL NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX step_runs_by_version ON step_runs(version, outcome);
)sql"},
      // Schema 3: the snapshots of production each refresh made, so runs on
      // different snapshots can be told apart and compared.
      {3, "snapshots table", R"sql(
CREATE TABLE snapshots(
  id INTEGER PRIMARY KEY,
  taken REAL NOT NULL,
  source TEXT NOT NULL,
  mirror TEXT NOT NULL,
  bytes INTEGER NOT NULL DEFAULT 0,
  files INTEGER NOT NULL DEFAULT 0);
)sql"},
  };
  return m;
}

}  // namespace rehearse
