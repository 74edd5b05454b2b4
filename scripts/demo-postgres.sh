#!/usr/bin/env bash
# The rehearsal of an application that keeps its state in PostgreSQL and a
# directory of blobs: the server runs on the copy-on-write mount.
#
#   scripts/demo-postgres.sh [--rows N] [--dir DIR]
#
#   --rows N   size of the generated production (default 1000000 rows over
#              customers, orders and events, and one blob per 500 rows)
#   --dir DIR  where the demo lives (default ./demo-postgres): DIR/prod is
#              production (a PostgreSQL 15 cluster in pgdata/, owned by
#              postgres, and blobs/flat/), generated once and reused; DIR/ws
#              is the workspace, made afresh each time and kept afterwards
#
# It installs what is missing, builds, generates production, checksums it,
# creates a workspace whose [[service]] runs PostgreSQL on the mount and
# whose .sql steps run against it (examples/postgres/steps: an ALTER with a
# default, a batched backfill, an index build, a blob move that updates
# rows, a verification), runs the upgrade, reports, reruns one increment,
# resets, and checksums production again: the two must match. Needs root
# (the server runs as postgres). Mounts and servers are stopped on exit,
# error or Ctrl-C.
#
# Environment: BUILD_DIR (default build), JOBS (default nproc), PGPORT_DEMO
# (the port number in the socket's name, default 5441; no TCP listener).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=demo-postgres
PGBIN=/usr/lib/postgresql/15/bin
PORT=${PGPORT_DEMO:-5441}

die() {
  echo "$ME: $*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

parse_args() {
  ROWS=1000000 DIR=$ROOT/demo-postgres
  while (($#)); do
    case $1 in
      --rows) (($# >= 2)) || die "--rows needs a number"; ROWS=$2; shift ;;
      --dir) (($# >= 2)) || die "--dir needs a directory"; DIR=$2; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1'; see --help" ;;
    esac
    shift
  done
  if ! [[ $ROWS =~ ^[0-9]{1,9}$ ]] || ((ROWS < 1000)); then
    die "--rows '$ROWS' must be a number of at least 1000"
  fi
  [[ $(id -u) == 0 ]] || die "needs root: the server runs as the postgres user"
  mkdir -p -- "$DIR"
  DIR=$(cd "$DIR" && pwd)
  chmod 755 "$DIR"
  PROD=$DIR/prod WS=$DIR/ws MNT=$DIR/ws/mnt
}

build() {
  say "install and build"
  bash "$ROOT/scripts/install-deps.sh"
  local build=${BUILD_DIR:-build}
  [[ $build == /* ]] || build=$ROOT/$build
  cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target cowfs rehearse -j "${JOBS:-$(nproc)}" >/dev/null
  COWFS=$build/cowfs REHEARSE=$build/harness/rehearse
  [[ -x $COWFS && -x $REHEARSE ]] || die "the build made no cowfs/rehearse; see the cmake output"
  export REHEARSE_COWFS=$COWFS
}

checksum_prod() {
  (cd "$PROD" && find . -printf '%p %y %s %m %T@\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

# A throwaway server on production's cluster, only while generating it.
GEN_SOCK=""
gen_psql() { psql -v ON_ERROR_STOP=1 -q -At -h "$GEN_SOCK" -p "$PORT" -U postgres "$@"; }
gen_stop() {
  if [[ -n $GEN_SOCK ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PROD/pgdata" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf -- "$GEN_SOCK"
    GEN_SOCK=""
  fi
}

make_prod() {
  if [[ -f $PROD/.rows && $(cat "$PROD/.rows") == "$ROWS" ]]; then
    say "production: $PROD ($ROWS rows, generated earlier)"
    return
  fi
  rm -rf --one-file-system -- "$PROD"
  say "generating production: $PROD ($ROWS rows, $((ROWS / 500)) blobs)"
  mkdir -p "$PROD/pgdata" "$PROD/blobs/flat"
  chmod 755 "$PROD"
  chown postgres:postgres "$PROD/pgdata"
  chmod 700 "$PROD/pgdata"
  runuser -u postgres -- "$PGBIN/initdb" -D "$PROD/pgdata" --data-checksums -A trust -U postgres \
    >/dev/null
  GEN_SOCK=$(mktemp -d /tmp/demo-postgres-sock.XXXXXX)
  chown postgres "$GEN_SOCK"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PROD/pgdata" -l "$GEN_SOCK/log" \
    -o "-k $GEN_SOCK -p $PORT -c listen_addresses=''" -w start >/dev/null
  local customers=$((ROWS / 10)) orders=$((ROWS * 6 / 10)) events=$((ROWS * 3 / 10))
  local docs=$((ROWS / 500))
  gen_psql <<SQL
CREATE TABLE customers(id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE orders(id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers,
                    qty int NOT NULL, price_cents int NOT NULL, created timestamptz NOT NULL);
CREATE TABLE events(id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL,
                    at timestamptz NOT NULL);
CREATE TABLE documents(id bigint PRIMARY KEY, order_id bigint NOT NULL, path text NOT NULL,
                       sha256 text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.org'
  FROM generate_series(1, $customers) g;
INSERT INTO orders SELECT g, 1 + g % $customers, 1 + g % 7, 100 + (g * 37) % 9900,
  timestamptz '2020-01-01' + g * interval '1 minute' FROM generate_series(1, $orders) g;
INSERT INTO events SELECT g, 1 + g % $orders, (ARRAY['created','paid','shipped'])[1 + g % 3],
  timestamptz '2020-01-01' + g * interval '2 minutes' FROM generate_series(1, $events) g;
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX events_order ON events(order_id);
SQL
  # The blobs: deterministic content, 1 KiB to 64 KiB.
  python3 - "$PROD/blobs/flat" "$docs" >"$GEN_SOCK/documents.csv" <<'PY'
import hashlib, sys
out, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    seed = hashlib.sha256(b"doc %d" % i).digest()
    data = (seed * (32 + i % 2016))[: 1024 + (i * 997) % 64512]
    name = "doc-%06d.bin" % i
    with open("%s/%s" % (out, name), "wb") as f:
        f.write(data)
    print("%d,%d,blobs/flat/%s,%s" % (i, 1 + i * 7, name, hashlib.sha256(data).hexdigest()))
PY
  gen_psql -c "\\copy documents FROM '$GEN_SOCK/documents.csv' WITH (FORMAT csv)"
  gen_psql -c "VACUUM ANALYZE"
  gen_stop
  echo "$ROWS" >"$PROD/.rows"
  du -sh "$PROD/pgdata" "$PROD/blobs"
}

unmount_all() {
  if mountpoint -q -- "$MNT" 2>/dev/null; then
    "$REHEARSE" -C "$WS" umount >/dev/null 2>&1 || fusermount3 -u -z "$MNT" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  gen_stop
  [[ -n ${REHEARSE:-} && -n ${MNT:-} ]] && unmount_all
  if ((rc != 0)); then echo "$ME: stopped (exit $rc); servers and mounts stopped" >&2; fi
  exit "$rc"
}

fresh_workspace() {
  say "a fresh workspace: $WS"
  unmount_all
  rm -rf --one-file-system -- "$WS"
  mkdir -p -- "$WS"
  "$REHEARSE" -C "$WS" init --lower "$PROD" --mountpoint "$MNT" \
    --steps "$ROOT/examples/postgres/steps"
  cat >>"$WS/rehearse.toml" <<TOML

# .sql steps run in the server below, which serves the mount.
database = "postgresql:///postgres?host={run}&port=$PORT&user=postgres"

[[service]]
name = "db"
start = "$PGBIN/pg_ctl -D {root}/pgdata -o \"-k {run} -p $PORT -c listen_addresses=''\" -w start"
stop = "$PGBIN/pg_ctl -D {root}/pgdata -m fast -w stop"
ready = "$PGBIN/pg_isready -q -h {run} -p $PORT"
flush = "psql -h {run} -p $PORT -U postgres -Atc CHECKPOINT"
user = "postgres"
TOML
  cat "$WS/rehearse.toml"
  "$REHEARSE" -C "$WS" plan
}

psql_ws() {
  "$REHEARSE" -C "$WS" exec -- psql -At -h "$WS/.rehearse/run" -p "$PORT" -U postgres -c "$1"
}

rehearse_upgrade() {
  say "run the whole upgrade (the server runs on the copy-on-write mount)"
  "$REHEARSE" -C "$WS" run
  say "report: how long each increment took"
  "$REHEARSE" -C "$WS" report
  say "diff: what the rehearsal wrote into the store"
  "$REHEARSE" -C "$WS" diff | tail -n 1
  say "the application's view after the upgrade"
  psql_ws "SELECT id, status, total_cents FROM orders ORDER BY id LIMIT 3"
  psql_ws "SELECT id, path FROM documents ORDER BY id LIMIT 2"
  say "rerun one increment alone (rewind to before 1.1, the server recovers, 1.1 runs again)"
  "$REHEARSE" -C "$WS" rerun 1.1
  say "run again: the increments after 1.1 follow"
  "$REHEARSE" -C "$WS" run
  "$REHEARSE" -C "$WS" status
}

reset_and_prove() {
  say "reset: back to production"
  time "$REHEARSE" -C "$WS" reset
  psql_ws "SELECT count(*) AS orders_without_the_new_column FROM information_schema.columns
           WHERE table_name = 'orders' AND column_name = 'status'"
  "$REHEARSE" -C "$WS" umount
  say "production is untouched"
  local after
  after=$(checksum_prod)
  if [[ $after != "$BEFORE" ]]; then
    echo "$ME: PRODUCTION CHANGED: checksum $BEFORE before, $after after" >&2
    exit 1
  fi
  echo "checksums of production (pgdata and blobs) before and after match: $after"
}

main() {
  parse_args "$@"
  build
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  make_prod
  say "checksum production"
  BEFORE=$(checksum_prod)
  echo "$BEFORE  ($(du -sh -- "$PROD" | cut -f1))"
  fresh_workspace
  rehearse_upgrade
  reset_and_prove
  say "done: explore with \`$REHEARSE -C $WS status|history|report\`"
}

main "$@"
