# shellcheck shell=bash
# The workloads. Each wl_X runs on system $CUR_SYS, checks its own result
# and records medians through `measure`. A workload that does not apply to
# a system returns without recording (the report prints n/a).

# measure "KEY..." N FN ARGS...: runs FN N times; FN prints one number per
# key. FN runs in its own errexit subshell, so any failing command inside
# it fails the measurement; the error is recorded under each key.
measure() {
  local -a keys vals
  read -r -a keys <<<"$1"
  local n=$2 i k out rc errf=$TMP/measure.err
  shift 2
  declare -A series=()
  for ((i = 0; i < n; i++)); do
    set +e
    out=$(set -e; "$@" 2>"$errf")
    rc=$?
    set -e
    cat "$errf" >&2
    if ((rc != 0)) || [[ -z $out ]]; then
      local why
      why=$(grep -v '^\[bench' "$errf" | tail -3 | tr '\n' ' ')
      log "FAIL ${keys[*]} on $CUR_SYS: ${why:-exit $rc}"
      for k in "${keys[@]}"; do record_fail "$k" "$CUR_SYS" "${why:-exit $rc}"; done
      touch "$TMP/measure.failed"
      umount_sys "$CUR_SYS"
      return 1
    fi
    read -r -a vals <<<"$out"
    for k in "${!keys[@]}"; do series[$k]+=" ${vals[$k]}"; done
  done
  for k in "${!keys[@]}"; do
    # shellcheck disable=SC2086
    record "${keys[$k]}" "$CUR_SYS" ${series[$k]}
    log "$CUR_SYS ${keys[$k]}:${series[$k]}"
  done
}

timed() { # timed CMD...: seconds of wall time, output to /dev/null
  local t0 t1
  t0=$(now)
  "$@" >/dev/null
  t1=$(now)
  elapsed "$t0" "$t1"
}

# ---- W1: sequential read, cold and warm -------------------------------------

w1_cold_once() { drop_caches; bio seqread "$R/big1g" --expect-size "$((BIG_MB << 20))"; }
w1_warm_once() {
  cat "$R/big1g" >/dev/null
  bio seqread "$R/big1g" --expect-size "$((BIG_MB << 20))"
}

wl_W1() {
  mount_fresh "$CUR_SYS"
  [[ $(bio sha256 "$R/big1g") == "$BIG_SHA" ]] || die "big1g reads back wrong on $CUR_SYS"
  measure w1_cold "$(runs_for fast)" w1_cold_once
  measure w1_warm "$(runs_for fast)" w1_warm_once
  umount_sys "$CUR_SYS"
}

# ---- W2: random 4 KiB reads, warm, fio --------------------------------------

fio_iops() {
  fio --name=w2 --filename="$R/big1g" --readonly --rw=randread --bs=4k --ioengine=psync \
    --numjobs="$1" --group_reporting --time_based --runtime="$FIO_SECS" --invalidate=0 \
    --output-format=json 2>"$TMP/fio.err" | python3 -c '
import json, sys
r = json.load(sys.stdin)["jobs"][0]
if r["error"] or r["read"]["io_bytes"] == 0:
    sys.exit("fio: error %s, %d bytes read" % (r["error"], r["read"]["io_bytes"]))
print(round(r["read"]["iops"]))'
}

wl_W2() {
  mount_fresh "$CUR_SYS"
  cat "$R/big1g" >/dev/null
  measure w2_j1 "$(runs_for fast)" fio_iops 1
  measure w2_j4 "$(runs_for fast)" fio_iops 4
  umount_sys "$CUR_SYS"
}

# ---- W3: first 4 KiB write into big lower files -------------------------------

w3_once() {
  local restore=() f before ms1 g1 ms4 g4
  [[ $CUR_SYS == native ]] && restore=(--restore)
  mount_fresh "$CUR_SYS"
  before=$(disk_bytes "$STORE")
  f=$(modify_path big1g)
  ms1=$(bio firstwrite "$f" --ref "$LOWER/big1g" "${restore[@]}")
  g1=$(($(disk_bytes "$STORE") - before))
  before=$(disk_bytes "$STORE")
  f=$(modify_path big4g)
  ms4=$(bio firstwrite "$f" --ref "$LOWER/big4g" "${restore[@]}")
  g4=$(($(disk_bytes "$STORE") - before))
  umount_sys "$CUR_SYS"
  echo "$ms1 $g1 $ms4 $g4"
}

wl_W3() {
  measure "w3_1g_ms w3_1g_growth w3_4g_ms w3_4g_growth" "$(runs_for slow)" w3_once
}

# ---- W3b: sequential read after 1,000 random 4 KiB writes ---------------------

w3b_once() {
  local f size before u_cold u_warm t_cold t_warm growth
  size=$((BIG_MB << 20))
  mount_fresh "$CUR_SYS"
  f=$(modify_path big1g)
  drop_caches
  u_cold=$(bio seqread "$f" --expect-size "$size")
  u_warm=$(bio seqread "$f" --expect-size "$size")
  before=$(disk_bytes "$STORE")
  bio randwrite "$f" --ref "$LOWER/big1g" --count 1000 --verify >/dev/null
  growth=$(($(disk_bytes "$STORE") - before))
  drop_caches
  t_cold=$(bio seqread "$f" --expect-size "$size")
  t_warm=$(bio seqread "$f" --expect-size "$size")
  if [[ $CUR_SYS == native ]]; then
    bio randwrite "$f" --ref "$LOWER/big1g" --count 1000 --restore-only >/dev/null
  fi
  umount_sys "$CUR_SYS"
  python3 -c 'import sys; a = [float(x) for x in sys.argv[1:]]
print(f"{a[2] / a[0]:.3f} {a[3] / a[1]:.3f} {a[2]:.1f}", end=" ")' "$u_cold" "$u_warm" "$t_cold" "$t_warm"
  echo "$growth"
}

wl_W3b() {
  measure "w3b_ratio_cold w3b_ratio_warm w3b_touched_cold w3b_growth" "$(runs_for slow)" w3b_once
}

# ---- W4: sequential write of a new file + fsync ---------------------------------

w4_once() {
  local mbps
  mount_fresh "$CUR_SYS"
  mbps=$(bio seqwrite "$W/w4.bin" "$((W4_MB << 20))")
  umount_sys "$CUR_SYS"
  echo "$mbps"
}

wl_W4() { measure w4 "$(runs_for slow)" w4_once; }

# ---- W5: many small files; ls -lR of the lower tree ---------------------------

w5_once() {
  local create find_s stat_s n
  mount_fresh "$CUR_SYS"
  create=$(bio create "$W/w5" "$W5_FILES" 100)
  find "$W/w5" -type f >/dev/null
  find_s=$(timed find "$W/w5" -type f)
  n=$(find "$W/w5" -type f | wc -l)
  ((n == W5_FILES)) || die "find saw $n files, expected $W5_FILES"
  stat_s=$(bio statall "$W/w5" --expect "$W5_FILES")
  umount_sys "$CUR_SYS"
  echo "$create $find_s $stat_s"
}

lslr_once() {
  local s n
  [[ $1 == cold ]] && drop_caches
  [[ $1 == warm ]] && ls -lR "$R/tree" >/dev/null
  s=$(timed ls -lR "$R/tree")
  n=$(ls -lR "$R/tree" | grep -c '^-')
  ((n == TREE_FILES)) || die "ls -lR saw $n files, expected $TREE_FILES"
  echo "$s"
}

wl_W5() {
  measure "w5_create w5_find w5_stat" "$(runs_for slow)" w5_once || true
  mount_fresh "$CUR_SYS"
  measure w5_lslr_cold "$(runs_for slow)" lslr_once cold
  measure w5_lslr_warm "$(runs_for fast)" lslr_once warm
  umount_sys "$CUR_SYS"
}

# ---- W6: SQLite schema change + batched update of a lower database ------------

w6_once() {
  local db s
  mount_fresh "$CUR_SYS"
  if [[ $CUR_SYS == native ]]; then
    db=$W/app.db
    cp "$LOWER/db/app.db" "$db"
  else
    db=$MNT/db/app.db
  fi
  s=$(bio sqlite "$db" "$1" "$DB_ROWS")
  umount_sys "$CUR_SYS"
  echo "$s"
}

wl_W6() {
  measure w6_wal "$(runs_for slow)" w6_once wal || true
  measure w6_delete "$(runs_for slow)" w6_once delete
}

# ---- W7: layers (cowfs only) ----------------------------------------------------

rewind_once() {
  local files=$1 s
  mount_fresh cowfs
  "$COWFS" checkpoint --store "$STORE" base >/dev/null
  bio mkfiles "$MNT/w7" "$files" "$((W7_MB << 20))"
  sync -f "$MNT"
  s=$(timed "$COWFS" rewind --store "$STORE" base)
  [[ ! -e $MNT/w7 ]] || die "rewound files still visible"
  [[ -d $MNT/tree/a0 ]] || die "lower tree gone after rewind"
  umount_sys cowfs
  echo "$s"
}

# find + lstat of the whole tree right after a remount: the FUSE caches are
# empty, the backing filesystems' are warm, so this is cowfs' own lookup cost.
layered_find_once() {
  local n
  remount_sys cowfs
  find "$LOWER/tree" "$STORE" -printf '%s\n' >/dev/null
  timed find "$MNT/tree" -printf '%s %i\n'
  n=$(find "$MNT/tree" -type f | wc -l)
  ((n == $1)) || die "find saw $n files through the layers, expected $1"
}

make_layers() {
  local i j d
  for ((i = 1; i <= LAYERS; i++)); do
    for j in 0 1 2; do
      d=$MNT/tree/a$((j * 3 % 10))/b$((i % 10))
      echo "layer $i" >>"$d/f$(printf %05d $(((i * 7 + j) % (TREE_FILES / 100))))"
    done
    echo "new in layer $i" >"$MNT/tree/a$((i % 10))/b0/new$i"
    "$COWFS" checkpoint --store "$STORE" "L$i" >/dev/null
  done
}

wl_W7() {
  [[ $CUR_SYS == cowfs ]] || return 0
  measure w7_rewind_a "$(runs_for slow)" rewind_once "$W7_FILES_A" || true
  measure w7_rewind_b "$(runs_for slow)" rewind_once "$W7_FILES_B" || true
  mount_fresh cowfs
  measure w7_find_1 "$(runs_for fast)" layered_find_once "$TREE_FILES"
  make_layers
  measure w7_find_50 "$(runs_for fast)" layered_find_once "$((TREE_FILES + LAYERS))"
  umount_sys cowfs
  python3 - "$OUT/raw.jsonl" <<'EOF' >>"$OUT/raw.jsonl"
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("system") == "cowfs" and "runs" in r:
        rows[r["key"]] = r["runs"]
one, many = rows.get("w7_find_1"), rows.get("w7_find_50")
if one and many:
    print(json.dumps({"key": "w7_layers_ratio", "system": "cowfs",
                      "runs": [statistics.median(many) / statistics.median(one)]}))
EOF
}

# ---- the harness: shared by W8, H1 and H2 ---------------------------------------

# rh WS ARGS...: rehearse on workspace WS. Its stderr (progress, notes) goes
# to $OUT/rehearse.log, and its tail to stderr when it fails.
rh() {
  local ws=$1 rc=0
  shift
  echo "== $(date +%T) rehearse -C $ws $*" >>"$OUT/rehearse.log"
  "$REHEARSE" -C "$ws" "$@" 2>>"$OUT/rehearse.log" || rc=$?
  if ((rc != 0)); then
    tail -n 5 "$OUT/rehearse.log" >&2
    echo "rehearse $* failed (exit $rc)" >&2
  fi
  return "$rc"
}

# ws_init WS LOWER STEPS SQLITE: a workspace in WS (made empty by ws_done
# first); its mountpoint is registered for cleanup, since `rehearse run`
# mounts there.
ws_init() {
  local ws=$1
  mkdir -p "$ws"
  rh "$ws" init --lower "$2" --mountpoint "$ws/mnt" --steps "$3" --sqlite "$4" >/dev/null
  register_mount "$ws/mnt"
}

# ws_done WS: unmounted and removed (also after a failed measurement).
ws_done() {
  local ws=$1
  [[ -e $ws ]] || return 0
  if mountpoint -q "$ws/mnt" 2>/dev/null; then
    "$REHEARSE" -C "$ws" umount >/dev/null 2>&1 || true
    force_umount "$ws/mnt"
  fi
  unregister_mount "$ws/mnt"
  rm -rf --one-file-system "$ws"
}

harness_skip_reason() {
  [[ -n ${REHEARSE:-} && -x $REHEARSE ]] || { echo "rehearse not built"; return; }
}

# report_check WS EXPECT [VERSION]: every one of EXPECT increments has a
# successful run; prints "SECONDS COMMITTED" of VERSION (default: the last).
report_check() {
  local ws=$1 n=$2 v=${3:-}
  rh "$ws" report --json | bio report --expect "$n" ${v:+--version "$v"}
}

# ---- W8: the demo upgrade, rehearse run vs --in-place ---------------------------

w8_skip_reason() {
  compgen -G "$REPO/steps/*/*" >/dev/null || { echo "no steps in $REPO/steps"; return; }
  [[ -n ${REHEARSE:-} && -x $REHEARSE ]] || { echo "rehearse not built"; return; }
  [[ -x $REPO/scripts/make-demo-prod.sh ]] || { echo "no scripts/make-demo-prod.sh"; return; }
  "$REHEARSE" run --help 2>/dev/null | grep -q -- --in-place || { echo "rehearse run has no --in-place"; return; }
}

w8_increments() { find "$REPO/steps" -mindepth 1 -maxdepth 1 -type d | wc -l; }

# The edit of the edit-rerun loop: a comment appended to the last step of
# the last increment (its checksum changes, its effect does not).
w8_edit_last_step() {
  local steps=$1 last f
  last=$(find "$steps" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)
  f=$(find "$steps/$last" -maxdepth 1 -type f ! -name '.*' -printf '%f\n' | sort | tail -n 1)
  [[ -n $last && -n $f ]] || die "no step to edit in $steps"
  case $f in
    *.sql) echo "-- bench: edited at $(now)" >>"$steps/$last/$f" ;;
    *) echo "# bench: edited at $(now)" >>"$steps/$last/$f" ;;
  esac
}

# The demo snapshot (scripts/make-demo-prod.sh, $LOWER/w8prod, built with
# the lowers). cowfs reads it through the read-only bind mount; native runs
# --in-place on a copy of it, made for each measurement. The peers run the
# same --in-place pipeline on the snapshot through a fresh mount of theirs:
# what any overlay, kernel or FUSE, costs this upgrade, so that cowfs' gap
# to native reads against what the transport itself costs. On cowfs, the
# first run is followed by one turn of the edit-rerun loop: edit the last
# increment's step and `run` again, which rewinds to the checkpoint before
# that increment and reruns it alone.
w8_once() {
  local ws=$TMP/w8/$CUR_SYS n s s2 t_edit out committed prod
  n=$(w8_increments)
  if [[ $CUR_SYS != cowfs ]]; then
    ws_done "$ws"
    mkdir -p "$ws"
    if [[ $CUR_SYS == native ]]; then
      cp -a "$LOWER/w8prod" "$ws/prod"
      prod=$ws/prod
    else
      mount_fresh "$CUR_SYS"
      prod=$MNT/w8prod
    fi
    ws_init "$ws" "$prod" "$REPO/steps" var/filestorage/Data.sqlite
    sync
    s=$(timed rh "$ws" run --in-place --yes)
    report_check "$ws" "$n" >/dev/null
    rh "$ws" report --json >"$OUT/w8-report-$CUR_SYS.json"
    ws_done "$ws"
    [[ $CUR_SYS == native ]] || umount_sys "$CUR_SYS"
    echo "$s"
    return
  fi
  ws_done "$ws"
  mkdir -p "$ws"
  cp -a "$REPO/steps" "$ws/steps"
  ws_init "$ws" "$LOWER/w8prod" "$ws/steps" var/filestorage/Data.sqlite
  sync
  s=$(timed rh "$ws" run)
  report_check "$ws" "$n" >/dev/null
  rh "$ws" report --json >"$OUT/w8-report-$CUR_SYS.json"
  w8_edit_last_step "$ws/steps"
  t_edit=$(now)
  sync
  s2=$(timed rh "$ws" run)
  out=$(report_check "$ws" "$n")
  read -r _ committed <<<"$out"
  python3 -c 'import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))' "$committed" "$t_edit" ||
    die "the edited last increment was not run again (committed $committed, edited $t_edit)"
  ws_done "$ws"
  python3 -c 'import sys; print(sys.argv[1], sys.argv[2], f"{float(sys.argv[2]) / float(sys.argv[1]):.3f}")' "$s" "$s2"
}

# One run per system: a million-object upgrade is a long measurement in
# itself, and three of them would take the full run past half an hour.
wl_W8() {
  local why
  why=$(w8_skip_reason)
  if [[ -n $why ]]; then
    [[ $CUR_SYS == cowfs ]] && echo "SKIP: W8 rehearse not built / no steps ($why)" | tee -a "$OUT/skips.txt"
    return 0
  fi
  if [[ $CUR_SYS != cowfs ]]; then
    measure w8 1 w8_once
  else
    measure "w8 w8_edit w8_edit_ratio" 1 w8_once
  fi
}

# ---- H1/H2: batched SQL through the harness on a big table ----------------------

# The one statement of every H step: +1 on every row of the batch. The
# harness binds :lo and :hi to the first and the last key of each batch
# (both included).
H_SQL='UPDATE content SET n = n + 1 WHERE id BETWEEN :lo AND :hi;'

# h_steps NAME INCREMENTS: a steps folder of INCREMENTS increments 1.0,
# 2.0, ..., each one batched step; made once per run; prints its path.
h_steps() {
  local dir=$TMP/h-steps/$1 i
  if [[ ! -d $dir ]]; then
    for ((i = 1; i <= $2; i++)); do
      mkdir -p "$dir/$i.0"
      printf -- '-- rehearse:batch table=content key=id size=%d\n-- bench: n + 1 on every row, one transaction per batch\n%s\n' \
        "$H_BATCH" "$H_SQL" >"$dir/$i.0/10-bump.sql"
    done
  fi
  echo "$dir"
}

# H1 on native: the same statement in the same batches, one transaction
# each, by the sqlite3 shell on a copy of the database; then, to tell the
# harness' cost from cowfs', the step by `rehearse run --in-place` on
# another copy (h1_inplace). On cowfs: `rehearse run` of one increment
# holding the batched step, on the lower's database (the run includes
# mounting). Dirty pages are flushed before each timing.
h1_once() {
  local ws=$TMP/h1/$CUR_SYS steps s s2 db script=$TMP/h1-native.sql
  steps=$(h_steps h1 1)
  ws_done "$ws"
  if [[ $CUR_SYS == native ]]; then
    [[ -f $script ]] || bio batchscript "$steps/1.0/10-bump.sql" --rows "$H_ROWS" --size "$H_BATCH" >"$script"
    mkdir -p "$ws/prod/harness"
    db=$ws/content.db
    cp "$LOWER/harness/content.db" "$db"
    cp "$LOWER/harness/content.db" "$ws/prod/harness/content.db"
    sync
    s=$(timed sqlite3 -bail "$db" ".read $script")
    bio checkcontent "$db" --rows "$H_ROWS" --n 1 >/dev/null
    ws_init "$ws" "$ws/prod" "$steps" harness/content.db
    sync
    s2=$(timed rh "$ws" run --in-place --yes)
    report_check "$ws" 1 >/dev/null
    bio checkcontent "$ws/prod/harness/content.db" --rows "$H_ROWS" --n 1 >/dev/null
    ws_done "$ws"
    echo "$s $s2"
    return
  fi
  ws_init "$ws" "$LOWER" "$steps" harness/content.db
  sync
  s=$(timed rh "$ws" run)
  report_check "$ws" 1 >/dev/null
  bio checkcontent "$ws/mnt/harness/content.db" --rows "$H_ROWS" --n 1 >/dev/null
  ws_done "$ws"
  echo "$s"
}

wl_H1() {
  [[ $CUR_SYS == native || $CUR_SYS == cowfs ]] || return 0
  local why
  why=$(harness_skip_reason)
  if [[ -n $why ]]; then
    [[ $CUR_SYS == cowfs ]] && echo "SKIP: H1 ($why)" | tee -a "$OUT/skips.txt"
    return 0
  fi
  if [[ $CUR_SYS == native ]]; then
    measure "h1 h1_inplace" "$(runs_for slow)" h1_once
  else
    measure h1 "$(runs_for slow)" h1_once
  fi
}

# H2 (cowfs): `rehearse run` of five increments, then `rehearse rerun` of
# the last one. Prints the full run, the last increment's time in it (the
# journal's), the rerun, the rerun's overhead over that increment (the
# issue's figure) and over its own time in the rerun (the harness' part).
h2_once() {
  local ws=$TMP/h2/cowfs steps full inc rerun own out
  steps=$(h_steps h2 5)
  ws_done "$ws"
  ws_init "$ws" "$LOWER" "$steps" harness/content.db
  sync
  full=$(timed rh "$ws" run)
  out=$(report_check "$ws" 5 5.0)
  read -r inc _ <<<"$out"
  bio checkcontent "$ws/mnt/harness/content.db" --rows "$H_ROWS" --n 5 >/dev/null
  sync
  rerun=$(timed rh "$ws" rerun 5.0)
  out=$(report_check "$ws" 5 5.0)
  read -r own _ <<<"$out"
  # n = 5 again: the rerun started from the 4.0 checkpoint.
  bio checkcontent "$ws/mnt/harness/content.db" --rows "$H_ROWS" --n 5 >/dev/null
  ws_done "$ws"
  python3 -c 'import sys; full, inc, rerun, own = map(float, sys.argv[1:])
print(f"{full:.4f} {inc:.4f} {rerun:.4f} {rerun - inc:.4f} {rerun - own:.4f}")' \
    "$full" "$inc" "$rerun" "$own"
}

wl_H2() {
  [[ $CUR_SYS == cowfs ]] || return 0
  local why
  why=$(harness_skip_reason)
  if [[ -n $why ]]; then
    echo "SKIP: H2 ($why)" | tee -a "$OUT/skips.txt"
    return 0
  fi
  measure "h2_full h2_inc h2_rerun h2_overhead h2_rerun_harness" "$(runs_for slow)" h2_once
}

# ---- W9: PostgreSQL on the mount ------------------------------------------------

W9_PGBIN=/usr/lib/postgresql/15/bin
W9_PORT=5449
W9_MIGRATION="ALTER TABLE pgbench_accounts ADD COLUMN note text;
UPDATE pgbench_accounts SET note = 'migrated ' || aid WHERE aid % 10 = 0;
CREATE INDEX pgbench_accounts_note ON pgbench_accounts (note);"

w9_skip_reason() {
  [[ -x $W9_PGBIN/pg_ctl ]] || { echo "PostgreSQL 15 is not installed"; return; }
  command -v pgbench >/dev/null || { echo "pgbench is not installed"; return; }
  [[ $CUR_SYS == native || $CUR_SYS == cowfs || $CUR_SYS == overlayfs ]] ||
    echo "W9 runs on native, cowfs and overlayfs"
}

w9_sock() { echo "$TMP/w9sock"; }
w9_pg() { runuser -u postgres -- "$W9_PGBIN/pg_ctl" "$@"; }
w9_psql() { psql -v ON_ERROR_STOP=1 -q -At -h "$(w9_sock)" -p "$W9_PORT" -U postgres "$@"; }

w9_start() {
  local data=$1
  mkdir -p "$(w9_sock)"
  chown postgres "$(w9_sock)"
  w9_pg -D "$data" -l "$(w9_sock)/w9-$CUR_SYS.log" -o "-k $(w9_sock) -p $W9_PORT -c listen_addresses=''" \
    -w start >/dev/null
}
w9_stop() { w9_pg -D "$1" -m fast -w stop >/dev/null; }

# w9_make_cluster DIR: DIR/pgdata, owned by postgres, initialised by pgbench.
w9_make_cluster() {
  local dir=$1
  mkdir -p "$dir/pgdata"
  chmod 755 "$TMP" "$TMP/lower-src" "$dir"
  chown postgres "$dir/pgdata"
  chmod 700 "$dir/pgdata"
  runuser -u postgres -- "$W9_PGBIN/initdb" -D "$dir/pgdata" --data-checksums -A trust \
    -U postgres >/dev/null
  CUR_SYS=build w9_start "$dir/pgdata"
  pgbench -i -q -s "$W9_SCALE" -h "$(w9_sock)" -p "$W9_PORT" -U postgres postgres >/dev/null 2>&1
  w9_psql -c "CHECKPOINT"
  w9_stop "$dir/pgdata"
}

# One system: the server on the data directory (a copy for native, the
# lower's through the mount for the overlays), pgbench for W9_SECS, then the
# migration; prints "TPS MIGRATION_SECONDS GROWTH_BYTES".
w9_once() {
  local data before tps mig growth
  mount_fresh "$CUR_SYS"
  if [[ $CUR_SYS == native ]]; then
    cp -a "$LOWER/w9/pgdata" "$W/pgdata"
    data=$W/pgdata
  else
    data=$MNT/w9/pgdata
  fi
  sync
  before=$(disk_bytes "$STORE")
  w9_start "$data"
  tps=$(pgbench -n -c 4 -j 2 -T "$W9_SECS" -h "$(w9_sock)" -p "$W9_PORT" -U postgres postgres 2>&1 |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | tail -n 1)
  [[ -n $tps ]] || { w9_stop "$data"; die "pgbench printed no tps"; }
  mig=$(timed w9_psql -c "$W9_MIGRATION")
  [[ $(w9_psql -c "SELECT count(note) FROM pgbench_accounts") == $((W9_SCALE * 10000)) ]] ||
    { w9_stop "$data"; die "the migration did not update 10% of the rows"; }
  w9_stop "$data"
  growth=$(($(disk_bytes "$STORE") - before))
  umount_sys "$CUR_SYS"
  echo "$tps $mig $growth"
}

# One run per system: a minute of pgbench plus a migration of a 750 MB
# cluster each; native's growth is what the copy grew by.
wl_W9() {
  local why
  why=$(w9_skip_reason)
  if [[ -n $why ]]; then
    [[ $CUR_SYS == cowfs ]] && echo "SKIP: W9 ($why)" | tee -a "$OUT/skips.txt"
    return 0
  fi
  measure "w9_tps w9_migration w9_growth" 1 w9_once
}
