# shellcheck shell=bash
# Shared plumbing of the benchmark: logging, dependencies, build, the temp
# area and its cleanup, the lowers, mounting each system, timing and
# recording results. Sourced by run.sh; expects BENCH_DIR and REPO set.

SYSTEMS_ALL=(native cowfs overlayfs fuse-overlayfs unionfs-fuse)
PEERS=(overlayfs fuse-overlayfs unionfs-fuse)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
bio() { python3 "$BENCH_DIR/benchio.py" "$@"; }

# ---- dependencies and build -------------------------------------------------

ensure_packages() {
  local want=(fio fuse-overlayfs unionfs-fuse gnuplot-nox sqlite3 fuse3 psmisc) missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]}; install them as root"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sets COWFS and REHEARSE (empty when it does not build) and exports
# REHEARSE_COWFS, the cowfs that rehearse mounts with.
build_binaries() {
  local bdir="$REPO/build-bench"
  if [[ -n ${COWFS:-} ]]; then
    [[ -x $COWFS ]] || die "COWFS=$COWFS is not an executable"
  else
    log "building cowfs (Release) in $bdir"
    cmake -S "$REPO" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$bdir.log" 2>&1 ||
      die "cmake failed, see $bdir.log"
    nice -n 19 ninja -j1 -C "$bdir" cowfs >>"$bdir.log" 2>&1 || die "building cowfs failed, see $bdir.log"
    COWFS=$bdir/cowfs
  fi
  export REHEARSE_COWFS=$COWFS
  # rehearse only serves W8 (which also needs the demo steps), H1 and H2:
  # don't build it for nothing.
  local need_rehearse=0
  [[ " ${WORKLOADS[*]} " == *" H1 "* || " ${WORKLOADS[*]} " == *" H2 "* ]] && need_rehearse=1
  [[ " ${WORKLOADS[*]} " == *" W8 "* ]] && compgen -G "$REPO/steps/*/*" >/dev/null && need_rehearse=1
  if ((need_rehearse == 0)); then
    REHEARSE=${REHEARSE:-}
  elif [[ -z ${REHEARSE:-} ]]; then
    if [[ -f $bdir/build.ninja ]] && nice -n 19 ninja -j1 -C "$bdir" rehearse >>"$bdir.log" 2>&1; then
      REHEARSE=$bdir/harness/rehearse
    else
      log "rehearse does not build yet (see $bdir.log); W8, H1 and H2 will be skipped"
    fi
  fi
}

# ---- temp area, mount registry, cleanup -------------------------------------

# Every mount we make is listed in $TMP/mounts so that cleanup (on exit,
# error or Ctrl-C) can undo exactly ours, newest first.
setup_tmp() {
  local free_gb
  free_gb=$(df -P --block-size=1G "$SCRATCH" | awk 'NR==2 {print $4}')
  ((free_gb >= NEED_GB)) || die "need ${NEED_GB} GiB free in $SCRATCH, have ${free_gb} (see --scratch)"
  TMP=$(mktemp -d "$SCRATCH/cowfs-bench.XXXXXX")
  : >"$TMP/mounts"
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM
}

register_mount() { echo "$1" >>"$TMP/mounts"; }
unregister_mount() { grep -vxF "$1" "$TMP/mounts" >"$TMP/mounts.new" || true; mv "$TMP/mounts.new" "$TMP/mounts"; }

force_umount() {
  local m=$1 i
  mountpoint -q "$m" || return 0
  for i in 1 2 3 4 5; do
    umount "$m" 2>/dev/null && return 0
    sleep 0.5
  done
  log "lazy unmount of $m"
  umount -l "$m"
}

cleanup() {
  local rc=$? m
  trap - EXIT INT TERM
  if [[ -n ${TMP:-} && -d $TMP ]]; then
    if [[ -s $TMP/mounts ]]; then
      while read -r m; do
        [[ -n $m ]] && force_umount "$m"
      done < <(tac "$TMP/mounts")
    fi
    rm -rf --one-file-system "$TMP"
  fi
  exit "$rc"
}

# ---- caches, timing, sizes --------------------------------------------------

drop_caches() {
  sync -f "$TMP" 2>/dev/null || true
  echo 3 >/proc/sys/vm/drop_caches
}

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.4f}')" "$1" "$2"; }
disk_bytes() { sync -f "$1" 2>/dev/null || true; du -sB1 "$1" | cut -f1; }

# Fast runs are repeated RUNS times; slow ones only once in --quick mode.
runs_for() { if [[ $1 == slow && $QUICK == 1 ]]; then echo 1; else echo "$RUNS"; fi; }

# ---- results ----------------------------------------------------------------

# record KEY SYSTEM VALUE... : one JSON line per measurement series.
record() {
  local key=$1 sys=$2
  shift 2
  python3 - "$key" "$sys" "$@" >>"$OUT/raw.jsonl" <<'EOF'
import json, sys
print(json.dumps({"key": sys.argv[1], "system": sys.argv[2],
                  "runs": [float(v) for v in sys.argv[3:]]}))
EOF
}

record_fail() {
  printf '{"key": "%s", "system": "%s", "error": %s}\n' "$1" "$2" \
    "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1][:200]))' "$3")" >>"$OUT/raw.jsonl"
}

# ---- lowers -----------------------------------------------------------------

# The lowers, built once and shared by every system, seen only through a
# read-only bind mount ($LOWER). Content manifest kept for the final check.
# With H1/H2: harness/content.db; with W8: the demo snapshot in w8prod/.
build_lowers() {
  local src=$TMP/lower-src
  mkdir -p "$src/db"
  log "building lowers: ${BIG_MB} MiB + ${HUGE_MB} MiB files, ${TREE_FILES}-file tree, ${DB_ROWS}-row db"
  head -c "$((BIG_MB << 20))" /dev/urandom >"$src/big1g"
  head -c "$((HUGE_MB << 20))" /dev/urandom >"$src/big4g"
  bio mktree "$src/tree" "$TREE_FILES"
  bio mkdb "$src/db/app.db" "$DB_ROWS"
  if [[ " ${WORKLOADS[*]} " == *" H1 "* || " ${WORKLOADS[*]} " == *" H2 "* ]]; then
    log "building lowers: ${H_ROWS}-row content table for H1/H2"
    mkdir -p "$src/harness"
    bio mkcontent "$src/harness/content.db" "$H_ROWS"
  fi
  if [[ " ${WORKLOADS[*]} " == *" W8 "* && -z $(w8_skip_reason) ]]; then
    log "building lowers: demo production snapshot, ${W8_OBJECTS} objects, for W8"
    "$REPO/scripts/make-demo-prod.sh" "$src/w8prod" --objects "$W8_OBJECTS" >/dev/null 2>"$TMP/demo-prod.log" ||
      { tr '\r' '\n' <"$TMP/demo-prod.log" | tail -n 5 >&2; die "make-demo-prod.sh failed"; }
    log "$(tail -n 1 "$TMP/demo-prod.log")"
  fi
  if [[ " ${WORKLOADS[*]} " == *" W9 "* ]]; then
    log "building lowers: a PostgreSQL cluster, pgbench scale ${W9_SCALE}, checksums on, for W9"
    w9_make_cluster "$src/w9"
  fi
  LOWER=$TMP/lower
  mkdir -p "$LOWER"
  mount --bind "$src" "$LOWER"
  register_mount "$LOWER"
  mount -o remount,bind,ro "$LOWER"
  touch "$LOWER/.probe" 2>/dev/null && die "read-only bind mount of the lower is writable"
  BIG_SHA=$(bio sha256 "$LOWER/big1g")
  LOWER_META=$(bio manifest "$LOWER" --save "$TMP/lower.meta")
  LOWER_CONTENT=$(bio manifest "$LOWER" --content)
}

# After every workload: any change of the lower (data, metadata, names)
# moves its lstat manifest (ctime included). Fails the whole run.
check_lower() {
  local now_meta
  now_meta=$(bio manifest "$LOWER" --save "$TMP/lower.meta.now")
  if [[ $now_meta != "$LOWER_META" ]]; then
    diff "$TMP/lower.meta" "$TMP/lower.meta.now" | head -20 >&2 || true
    die "LOWER CHANGED after $1 on $2"
  fi
}

check_lower_content() {
  [[ $(bio manifest "$LOWER" --content) == "$LOWER_CONTENT" ]] || die "LOWER CONTENT CHANGED"
  log "lower content unchanged (sha256 of every file)"
}

# ---- systems ----------------------------------------------------------------

# mount_fresh SYS: an empty store/upper, mounted. Sets:
#   R      where the lower's files are read
#   W      where new files are written
#   STORE  what grows with copy-ups (store or upper dir)
#   MNT    the mountpoint (empty for native)
mount_fresh() {
  local sys=$1 base=$TMP/sys/$1
  umount_sys "$sys"
  rm -rf --one-file-system "$base"
  mkdir -p "$base/mnt" "$base/store" "$base/work"
  MNT=$base/mnt STORE=$base/store R=$MNT W=$MNT
  case $sys in
    native)
      MNT="" R=$LOWER W=$base/store
      ;;
    cowfs)
      rmdir "$STORE"
      "$COWFS" mount --store "$STORE" --lower "$LOWER" "$MNT" ${COWFS_OPTS:-}
      ;;
    overlayfs)
      mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$STORE,workdir=$base/work" "$MNT"
      ;;
    fuse-overlayfs)
      # (it warns about every mount option it ignores; keep only real errors)
      fuse-overlayfs -o "lowerdir=$LOWER,upperdir=$STORE,workdir=$base/work" "$MNT" \
        2> >(grep -v 'unknown argument ignored' 1>&2)
      ;;
    unionfs-fuse)
      unionfs-fuse -o cow,use_ino,suid,dev,hide_meta_files "$STORE=RW:$LOWER=RO" "$MNT"
      ;;
    *) die "unknown system $sys" ;;
  esac
  if [[ -n $MNT ]]; then
    register_mount "$MNT"
    mountpoint -q "$MNT" || die "$sys did not mount at $MNT"
  fi
}

# Remount with the same store (caches of the FUSE mount are gone).
remount_sys() {
  local sys=$1 base=$TMP/sys/$1
  [[ $sys == cowfs ]] || die "remount_sys: cowfs only"
  "$COWFS" umount "$base/mnt"
  unregister_mount "$base/mnt"
  "$COWFS" mount --store "$base/store" --lower "$LOWER" "$base/mnt" ${COWFS_OPTS:-}
  register_mount "$base/mnt"
}

umount_sys() {
  local sys=$1 m=$TMP/sys/$1/mnt
  mountpoint -q "$m" 2>/dev/null || return 0
  case $sys in
    cowfs) "$COWFS" umount "$m" || force_umount "$m" ;;
    *) force_umount "$m" ;;
  esac
  unregister_mount "$m"
}

# A writable copy of a lower file for the native baseline (made once, kept
# identical to the lower by the workloads that touch it); for the overlays,
# the file through the mount.
modify_path() {
  local rel=$1
  if [[ $CUR_SYS != native ]]; then
    echo "$MNT/$rel"
    return
  fi
  local copy=$TMP/native-copy/$rel
  if [[ ! -f $copy ]]; then
    mkdir -p "$(dirname "$copy")"
    cp --sparse=never "$LOWER/$rel" "$copy"
  fi
  echo "$copy"
}
