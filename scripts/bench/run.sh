#!/usr/bin/env bash
# cowfs benchmark: the same workloads on a plain directory (native), cowfs,
# kernel overlayfs, fuse-overlayfs and unionfs-fuse; one table of medians
# with cowfs' ratios to native and to the best peer, targets PASS/MISS,
# $OUT/results.json and $OUT/results.png (and $OUT/rehearse.log, the
# harness' own output in W8, H1, H2).
#
#   scripts/bench/run.sh [--quick] [--only W1,W3,...] [--systems native,cowfs,...]
#                        [--runs N] [--out DIR] [--h-rows N] [--w8-objects N]
#                        [--scratch DIR]
#
# Workloads: W1 sequential read, W2 random reads, W3 first write into big
# files, W3b reads after scattered writes, W4 sequential write, W5 small
# files and ls -lR, W6 SQLite update, W7 layers (cowfs), W8 the demo
# upgrade through `rehearse run` vs --in-place, and one turn of the
# edit-rerun loop (cowfs), H1 a batched UPDATE through `rehearse run` vs the
# same batches in sqlite3, H2 `rehearse rerun` of the last of five
# increments vs the full run (cowfs), W9 PostgreSQL on the mount (pgbench
# TPS, a migration, the store's growth; native, cowfs and overlayfs only).
# --h-rows and --w8-objects override the
# sizes of H1/H2 (rows) and W8 (demo objects). --scratch DIR puts the
# lowers, stores and copies under DIR instead of /var/tmp: point it at a
# freshly made filesystem to measure without the history of the host's.
#
# Needs root (mounts, drop_caches). Installs fio, fuse-overlayfs,
# unionfs-fuse and gnuplot-nox with apt if missing. Builds cowfs (and
# rehearse, for W8, H1, H2) in Release in REPO/build-bench unless COWFS=path
# (and REHEARSE=path) is set.
# Every mount is made under SCRATCH/cowfs-bench.*, lowers behind a
# read-only bind mount, and everything is unmounted and removed on exit,
# error or Ctrl-C. A lower that changes fails the run (exit 1); so does a
# failed check on native or cowfs. Peers' failures are shown in the table.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"
# shellcheck source=workloads.sh
source "$BENCH_DIR/workloads.sh"

WORKLOADS_ALL=(W1 W2 W3 W3b W4 W5 W6 W7 W8 H1 H2 W9)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
  QUICK=0 RUNS=3 OUT="$REPO/build-bench/bench-results" OPT_H_ROWS="" OPT_W8_OBJECTS=""
  SCRATCH=/var/tmp
  WORKLOADS=("${WORKLOADS_ALL[@]}") SYSTEMS=("${SYSTEMS_ALL[@]}")
  while (($#)); do
    case $1 in
      --quick) QUICK=1 ;;
      --only) IFS=, read -r -a WORKLOADS <<<"$2"; shift ;;
      --systems) IFS=, read -r -a SYSTEMS <<<"$2"; shift ;;
      --runs) RUNS=$2; shift ;;
      --out) OUT=$2; shift ;;
      --h-rows) OPT_H_ROWS=$2; shift ;;
      --w8-objects) OPT_W8_OBJECTS=$2; shift ;;
      --scratch) SCRATCH=$2; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
  done
  local w s
  for w in "${WORKLOADS[@]}"; do
    [[ " ${WORKLOADS_ALL[*]} " == *" $w "* ]] || die "unknown workload '$w' (one of ${WORKLOADS_ALL[*]})"
  done
  for s in "${SYSTEMS[@]}"; do
    [[ " ${SYSTEMS_ALL[*]} " == *" $s "* ]] || die "unknown system '$s' (one of ${SYSTEMS_ALL[*]})"
  done
  [[ -z $OPT_H_ROWS || $OPT_H_ROWS =~ ^[1-9][0-9]*$ ]] || die "--h-rows '$OPT_H_ROWS' is not a positive number"
  [[ -z $OPT_W8_OBJECTS || $OPT_W8_OBJECTS =~ ^[1-9][0-9]*$ ]] || die "--w8-objects '$OPT_W8_OBJECTS' is not a positive number"
  [[ -d $SCRATCH && -w $SCRATCH ]] || die "--scratch '$SCRATCH' is not a writable directory"
}

# Sizes: the issue's in full mode, smaller in --quick (the table says so).
set_sizes() {
  if ((QUICK)); then
    BIG_MB=256 HUGE_MB=1024 W4_MB=256 W5_FILES=5000 TREE_FILES=10000 DB_ROWS=50000
    W7_MB=256 W7_FILES_A=500 W7_FILES_B=2500 LAYERS=50 FIO_SECS=1 NEED_GB=8
  else
    BIG_MB=1024 HUGE_MB=4096 W4_MB=1024 W5_FILES=20000 TREE_FILES=100000 DB_ROWS=200000
    W7_MB=1024 W7_FILES_A=2000 W7_FILES_B=10000 LAYERS=50 FIO_SECS=4 NEED_GB=24
  fi
  # The harness issues: 1,000,000 rows (H1, H2) and demo objects (W8).
  H_ROWS=$((QUICK ? 200000 : 1000000)) H_BATCH=1000 W8_OBJECTS=$((QUICK ? 20000 : 1000000))
  H_ROWS=${OPT_H_ROWS:-$H_ROWS} W8_OBJECTS=${OPT_W8_OBJECTS:-$W8_OBJECTS}
  # W9: a pgbench cluster (scale 50 is ~750 MB); native runs on a copy.
  W9_SCALE=$((QUICK ? 10 : 50)) W9_SECS=$((QUICK ? 10 : 60))
  [[ " ${WORKLOADS[*]} " == *" W9 "* ]] && NEED_GB=$((NEED_GB + W9_SCALE * 6 / 100 + 1))
  # W8's snapshot is ~2.6 KiB per object (blobs included), and native copies it.
  [[ " ${WORKLOADS[*]} " == *" W8 "* ]] && NEED_GB=$((NEED_GB + W8_OBJECTS * 6 / 1000000 + 1))
  return 0
}

write_meta() {
  python3 - "$@" >"$OUT/meta.json" <<'EOF'
import json, sys
kv = dict(a.split("=", 1) for a in sys.argv[1:])
for k in list(kv):
    if kv[k].isdigit():
        kv[k] = int(kv[k])
kv["systems"] = kv["systems"].split(",")
kv["workloads"] = kv["workloads"].split(",")
print(json.dumps(kv, indent=1))
EOF
}

# cowfs keeps one fd per inode the kernel knows, so RLIMIT_NOFILE caps the
# tree it can serve. Raise it where we may (needs CAP_SYS_RESOURCE); the
# table header states the limit every system ran with.
raise_nofile() {
  local limit=${BENCH_NOFILE:-1048576}
  if ! (ulimit -Hn "$limit") 2>/dev/null; then
    log "cannot raise RLIMIT_NOFILE to $limit (no CAP_SYS_RESOURCE); running with $(ulimit -Hn)"
    limit=$(ulimit -Hn)
  fi
  ulimit -Hn "$limit"
  ulimit -Sn "$limit"
  NOFILE=$limit
}


# One workload on one system, in an errexit subshell that always unmounts.
run_one() {
  local wl=$1 sys=$2 rc
  log "---- $wl on $sys"
  set +e
  (
    set -e
    CUR_SYS=$sys
    trap 'umount_sys "$CUR_SYS"' EXIT
    "wl_$wl"
  )
  rc=$?
  set -e
  umount_sys "$sys"
  check_lower "$wl" "$sys"
  if ((rc != 0)) || [[ -e $TMP/measure.failed ]]; then
    log "$wl on $sys FAILED (exit $rc)"
    [[ -e $TMP/measure.failed ]] || record_fail "${wl,,}" "$sys" "workload aborted (exit $rc)"
    [[ $sys == native || $sys == cowfs ]] && FAILED=1
  fi
  rm -f "$TMP/measure.failed"
  return 0
}

main() {
  parse_args "$@"
  set_sizes
  [[ $(id -u) -eq 0 ]] || die "run as root (mounts, drop_caches)"
  raise_nofile
  ensure_packages
  build_binaries
  mkdir -p "$OUT"
  rm -f "$OUT/raw.jsonl" "$OUT/skips.txt" "$OUT/rehearse.log"
  : >"$OUT/raw.jsonl"
  setup_tmp
  local started=$SECONDS wl sys
  build_lowers
  write_meta quick="$QUICK" runs="$RUNS" big_mb="$BIG_MB" huge_mb="$HUGE_MB" w4_mb="$W4_MB" \
    w5_files="$W5_FILES" tree_files="$TREE_FILES" db_rows="$DB_ROWS" w7_mb="$W7_MB" \
    w7_files_a="$W7_FILES_A" w7_files_b="$W7_FILES_B" layers="$LAYERS" fio_secs="$FIO_SECS" \
    h_rows="$H_ROWS" h_batch="$H_BATCH" w8_objects="$W8_OBJECTS" \
    w9_scale="$W9_SCALE" w9_secs="$W9_SECS" \
    systems="$(IFS=,; echo "${SYSTEMS[*]}")" workloads="$(IFS=,; echo "${WORKLOADS[*]}")" \
    nofile="$NOFILE" kernel="$(uname -r)" cowfs="$COWFS" date="$(date -Is)" \
    commit="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
  FAILED=0
  for wl in "${WORKLOADS[@]}"; do
    for sys in "${SYSTEMS[@]}"; do
      run_one "$wl" "$sys"
    done
  done
  check_lower_content
  log "measured in $((SECONDS - started)) s"
  python3 "$BENCH_DIR/report.py" "$OUT"
  ((FAILED == 0)) || die "a check failed on native or cowfs (see FAIL above)"
}

main "$@"
