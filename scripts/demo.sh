#!/usr/bin/env bash
# The README's first command: the whole rehearsal of the demo upgrade.
#
#   scripts/demo.sh [--objects N] [--dir DIR]
#
#   --objects N   size of the generated production (default 100000 objects)
#   --dir DIR     where the demo lives (default ./demo): DIR/prod is the
#                 production snapshot (generated once, reused), DIR/ws the
#                 rehearsal workspace (made afresh each time, kept afterwards
#                 so you can explore it: rehearse -C DIR/ws status)
#
# It installs what is missing, builds, generates production, checksums it,
# creates a workspace, mounts, runs the whole upgrade (steps/) with
# progress, prints `report` and `diff`, reruns the last increment, writes
# the report page (DIR/report.html), resets, and checksums production again:
# the two must match; its last line is the report page's path. Mounts are
# removed on exit, error or Ctrl-C.
#
# Environment: BUILD_DIR (default build), JOBS (default nproc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=demo

die() {
  echo "$ME: $*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

parse_args() {
  OBJECTS=100000 DIR=$ROOT/demo
  while (($#)); do
    case $1 in
      --objects) (($# >= 2)) || die "--objects needs a number"; OBJECTS=$2; shift ;;
      --dir) (($# >= 2)) || die "--dir needs a directory"; DIR=$2; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1'; see --help" ;;
    esac
    shift
  done
  if ! [[ $OBJECTS =~ ^[0-9]{1,9}$ ]] || ((OBJECTS < 20)); then
    die "--objects '$OBJECTS' must be a number of at least 20"
  fi
  mkdir -p -- "$DIR"
  DIR=$(cd "$DIR" && pwd)
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
  [[ -x $COWFS ]] || die "the build made no $COWFS; see the cmake output above"
  [[ -x $REHEARSE ]] || die "the build made no $REHEARSE (the rehearse harness); see harness/"
  local cmd
  for cmd in init mount umount plan run rerun report diff reset exec; do
    "$REHEARSE" "$cmd" --help >/dev/null 2>&1 || die "this rehearse has no '$cmd' command yet; the demo needs it"
  done
  export REHEARSE_COWFS=$COWFS
}

# Everything observable about production: names, types, sizes, modes,
# owners, link counts, symlink targets, mtimes, ctimes and content (a
# read-only bind keeps even the ctimes).
checksum_prod() {
  (cd "$PROD" && find . -printf '%p %y %s %m %U:%G %n %T@ %C@ %l\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

make_prod() {
  local have=""
  if [[ -f $PROD/var/filestorage/Data.sqlite ]]; then
    have=$(sqlite3 "file:$PROD/var/filestorage/Data.sqlite?mode=ro" \
      "SELECT value FROM site WHERE key = 'objects'" 2>/dev/null || true)
  fi
  if [[ $have == "$OBJECTS" ]]; then
    say "production snapshot: $PROD ($OBJECTS objects, generated earlier)"
    return
  fi
  if [[ -e $PROD ]]; then
    echo "$ME: $PROD has ${have:-an unknown number of} objects, not $OBJECTS: generating it again"
    rm -rf --one-file-system -- "$PROD"
  fi
  say "generating the production snapshot: $PROD ($OBJECTS objects)"
  "$ROOT/scripts/make-demo-prod.sh" "$PROD" --objects "$OBJECTS"
}

unmount_all() {
  if mountpoint -q -- "$MNT" 2>/dev/null; then
    "$REHEARSE" -C "$WS" umount >/dev/null 2>&1 || "$COWFS" umount "$MNT" 2>/dev/null ||
      fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  [[ -n ${REHEARSE:-} && -n ${MNT:-} ]] && unmount_all
  if ((rc != 0)); then echo "$ME: stopped (exit $rc); mounts removed, production untouched" >&2; fi
  exit "$rc"
}

fresh_workspace() {
  say "a fresh workspace: $WS"
  unmount_all
  rm -rf --one-file-system -- "$WS"
  mkdir -p -- "$WS"
  "$REHEARSE" -C "$WS" init --lower "$PROD" --mountpoint "$MNT" --steps "$ROOT/steps" \
    --sqlite var/filestorage/Data.sqlite
  "$REHEARSE" -C "$WS" mount
  "$REHEARSE" -C "$WS" plan
}

# The last line of `rehearse diff [V]`: "N added, N changed, N deleted, N renamed; B bytes ...".
diff_summary() {
  local out
  if out=$("$REHEARSE" -C "$WS" diff ${1:+"$1"}); then
    tail -n 1 <<<"$out"
  else
    echo "(rehearse diff failed: see above)"
  fi
}

sql() { "$REHEARSE" -C "$WS" exec -- sqlite3 var/filestorage/Data.sqlite "$@"; }

rehearse_upgrade() {
  say "run the whole upgrade (through the copy-on-write mount)"
  "$REHEARSE" -C "$WS" run
  say "report: how long each increment took, i.e. the production downtime"
  "$REHEARSE" -C "$WS" report
  say "diff: what the rehearsal changed (production itself is untouched)"
  local v
  for v in 1.0 1.1 2.0 2.1 ""; do
    printf '%-4s %s\n' "${v:-all}" "$(diff_summary "$v")"
  done
  say "the application's view after the upgrade (rehearse exec runs a command in the mount)"
  sql "SELECT c.id, c.path, t.title, c.blob FROM content c JOIN content_text t USING(id)
       WHERE c.blob IS NOT NULL LIMIT 3"
  echo "blob layout: $("$REHEARSE" -C "$WS" exec -- cat var/blobstorage/.layout)"
  say "rerun the last increment alone (the edit-rerun loop: earlier ones are not replayed)"
  "$REHEARSE" -C "$WS" rerun 2.1
  "$REHEARSE" -C "$WS" status
  say "the report page: timeline, downtime, changes, history, the rerun compared with run #1"
  REPORT_PAGE=$DIR/report.html
  "$REHEARSE" -C "$WS" report --html "$REPORT_PAGE" --compare 1
}

reset_and_prove() {
  say "reset: back to production in one command, whatever the data size"
  time "$REHEARSE" -C "$WS" reset
  sql "SELECT 'schema ' || value FROM site WHERE key = 'schema'"
  "$REHEARSE" -C "$WS" umount
  say "production is untouched"
  local after
  after=$(checksum_prod)
  if [[ $after != "$BEFORE" ]]; then
    echo "$ME: PRODUCTION CHANGED: checksum $BEFORE before, $after after" >&2
    exit 1
  fi
  echo "checksums before and after match: $after"
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
  echo "report page: $REPORT_PAGE"
}

main "$@"
