#!/usr/bin/env bash
# Refreshes the local mirror of production with rsync, then resets the
# rehearsal (layers made on an older snapshot are no longer meaningful).
#
#   scripts/refresh-prod.sh [-C WORKSPACE] --from SRC [--to MIRROR] [options]
#
#   --from SRC             production: a local directory, HOST:PATH (over ssh),
#                          or rsync://HOST[:PORT]/MODULE[/PATH]
#   --to MIRROR            the mirror to refresh (default: the workspace's top
#                          lower, from WORKSPACE/rehearse.toml)
#   -C WORKSPACE           the rehearse workspace (default: the current directory
#                          if it has a rehearse.toml)
#   --umount               unmount the workspace first instead of refusing
#   --blobs-existing-only  in the blob directory, refresh only the files the
#                          mirror already has (rsync --existing semantics), for
#                          mirrors that keep their blobs on a network mount
#   --blob-dir REL         the blob directory inside the mirror (default
#                          var/blobstorage)
#   -z, --compress         compress over the network
#   -e, --rsh CMD          remote shell for HOST:PATH (default: ssh in batch mode)
#   --no-reset             leave the rehearsal as it is (not recommended)
#
# Safety: the new snapshot is built in a staging directory beside MIRROR
# (unchanged files are hard links into the old mirror, rsync --link-dest),
# checked (file list against the source, `PRAGMA quick_check` on SQLite
# databases), then swapped with MIRROR in one rename. Whatever fails
# (unreachable source, wrong path, full disk, rsync error, Ctrl-C), the
# previous mirror is left exactly as it was and the staging copy is removed.
#
# Environment: REHEARSE (the rehearse binary; default build/harness/rehearse,
# then PATH).
set -euo pipefail

ME=refresh-prod
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "$ME: $*" >&2
  exit "${EXIT_CODE:-1}"
}
usage_error() { EXIT_CODE=2 die "$@"; }
say() { echo "$ME: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
  WS="" SRC="" MIRROR="" UMOUNT=0 EXISTING_ONLY=0 BLOB_DIR=var/blobstorage
  COMPRESS=() RSH="ssh -o BatchMode=yes -o ConnectTimeout=10" RESET=1
  while (($#)); do
    case $1 in
      -C) need_value "$@"; WS=$2; shift ;;
      --from) need_value "$@"; SRC=$2; shift ;;
      --to) need_value "$@"; MIRROR=$2; shift ;;
      --umount) UMOUNT=1 ;;
      --blobs-existing-only) EXISTING_ONLY=1 ;;
      --blob-dir) need_value "$@"; BLOB_DIR=${2%/}; shift ;;
      -z | --compress) COMPRESS=(--compress) ;;
      -e | --rsh) need_value "$@"; RSH=$2; shift ;;
      --no-reset) RESET=0 ;;
      -h | --help) usage; exit 0 ;;
      *) usage_error "unknown argument '$1'; see --help" ;;
    esac
    shift
  done
  [[ -n $SRC ]] || usage_error "missing --from SRC (a directory, HOST:PATH or rsync://...); see --help"
  [[ $BLOB_DIR != /* && $BLOB_DIR != *..* && -n $BLOB_DIR ]] ||
    usage_error "--blob-dir '$BLOB_DIR' must be a relative path inside the mirror"
}

need_value() { (($# >= 2)) || usage_error "$1 needs a value; see --help"; }

# ---- workspace ---------------------------------------------------------------

# Sets WS_MNT and WS_TOP_LOWER from WS/rehearse.toml (empty without a workspace).
load_workspace() {
  WS_MNT="" WS_TOP_LOWER=""
  if [[ -z $WS && -f rehearse.toml ]]; then WS=.; fi
  if [[ -z $WS ]]; then
    [[ -n $MIRROR ]] || usage_error "no workspace here (no rehearse.toml) and no --to MIRROR; pass -C WORKSPACE or --to MIRROR"
    return
  fi
  [[ -f $WS/rehearse.toml ]] ||
    usage_error "$WS is not a rehearse workspace (no rehearse.toml); pass the right -C or run rehearse init"
  WS=$(cd "$WS" && pwd)
  local out
  out=$(python3 - "$WS/rehearse.toml" <<'PY'
import os, sys, tomllib
path = sys.argv[1]
base = os.path.dirname(path)
try:
    with open(path, "rb") as f:
        t = tomllib.load(f)
except Exception as e:
    sys.exit(f"{path}: {e}")
lowers = t.get("lowers") or []
mnt = t.get("mountpoint") or ""
if not lowers or not mnt:
    sys.exit(f"{path} has no lowers or no mountpoint")
abs_ = lambda p: os.path.normpath(os.path.join(base, p))
print(abs_(mnt))
print(abs_(lowers[0]))
PY
) || usage_error "cannot read $WS/rehearse.toml; fix it or pass --to MIRROR"
  WS_MNT=$(sed -n 1p <<<"$out")
  WS_TOP_LOWER=$(sed -n 2p <<<"$out")
  if [[ -z $MIRROR ]]; then MIRROR=$WS_TOP_LOWER; fi
}

find_rehearse() {
  if [[ -n ${REHEARSE:-} ]]; then
    [[ -x $REHEARSE ]] || die "REHEARSE=$REHEARSE is not executable; unset it or fix the path"
  elif [[ -x $ROOT/build/harness/rehearse ]]; then
    REHEARSE=$ROOT/build/harness/rehearse
  elif command -v rehearse >/dev/null; then
    REHEARSE=$(command -v rehearse)
  else
    die "rehearse is not built (no build/harness/rehearse, none on PATH); run scripts/demo.sh or set REHEARSE"
  fi
}

check_not_mounted() {
  [[ -n $WS_MNT ]] || return 0
  mountpoint -q -- "$WS_MNT" 2>/dev/null || return 0
  if ((!UMOUNT)); then
    die "the workspace is mounted at $WS_MNT; run \`rehearse -C $WS umount\` first, or pass --umount"
  fi
  say "unmounting $WS_MNT"
  "$REHEARSE" -C "$WS" umount || die "could not unmount $WS_MNT; stop what uses it (fuser -vm $WS_MNT) and retry"
  if mountpoint -q -- "$WS_MNT"; then die "$WS_MNT is still mounted; stop what uses it (fuser -vm $WS_MNT) and retry"; fi
}

# ---- source ------------------------------------------------------------------

# Sets SRC_KIND (local, ssh, daemon) and SRC_URL (with a trailing slash).
classify_source() {
  case $SRC in
    rsync://*) SRC_KIND=daemon ;;
    /* | ./* | ../*) SRC_KIND=local ;;
    *:*) SRC_KIND=ssh ;;
    *) SRC_KIND=local ;;
  esac
  if [[ $SRC_KIND == local ]]; then
    [[ -e $SRC ]] || die "--from $SRC does not exist; check the path"
    [[ -d $SRC ]] || die "--from $SRC is not a directory; give the directory that holds production's data"
    [[ -r $SRC && -x $SRC ]] || die "--from $SRC is not readable; run as a user who can read it"
    SRC=$(cd "$SRC" && pwd)
  fi
  SRC_URL=${SRC%/}/
}

probe_source() {
  local err rc=0
  case $SRC_KIND in
    ssh)
      local host=${SRC%%:*} path=${SRC#*:}
      # shellcheck disable=SC2086  # RSH is a command line, split on purpose
      err=$($RSH "$host" test -d "'${path:-.}'" 2>&1) || rc=$?
      if ((rc == 255)); then
        die "cannot reach $host over ssh (${err##*$'\n'}); check the host name, the network and your ssh key (or --rsh)"
      elif ((rc != 0)); then
        die "$path is not a directory on $host; check the path in --from"
      fi
      ;;
    daemon)
      err=$(rsync --list-only --contimeout=15 --timeout=30 "$SRC_URL" 2>&1 >/dev/null) || rc=$?
      case $rc in
        0) ;;
        10 | 35) die "cannot reach the rsync daemon at $SRC (${err%%$'\n'*}); check the host, the port and that rsync --daemon runs" ;;
        5) die "the rsync daemon refused $SRC (${err%%$'\n'*}); check the module name in --from" ;;
        23) die "$SRC does not exist on the rsync daemon; check the path in --from" ;;
        *) die "cannot list $SRC (rsync exit $rc: ${err%%$'\n'*}); check --from" ;;
      esac
      ;;
  esac
}

# ---- sync --------------------------------------------------------------------

STAGING="" SWAPPED_OLD=""
cleanup() {
  if [[ -n $STAGING && -e $STAGING ]]; then rm -rf --one-file-system -- "$STAGING"; fi
  if [[ -n $SWAPPED_OLD && -e $SWAPPED_OLD ]]; then rm -rf --one-file-system -- "$SWAPPED_OLD"; fi
}

# RSYNC: the common command; LINK: hard links to the old mirror's unchanged files.
rsync_base() {
  RSYNC=(rsync -aH --numeric-ids --timeout=120 "${COMPRESS[@]}")
  if [[ $SRC_KIND == ssh ]]; then RSYNC+=(-e "$RSH"); fi
  LINK=()
  if [[ -d $MIRROR ]]; then LINK=(--link-dest="$MIRROR"); fi
}

# Runs rsync with progress; on failure explains it and exits (staging is
# removed by the trap, the mirror was never touched).
run_rsync() {
  local log rc=0
  log=$(mktemp)
  "$@" 2> >(tee "$log" >&2) || rc=$?
  wait  # for tee
  if ((rc != 0)); then
    local why
    why=$(grep -v '^rsync error: some files' "$log" | grep -m1 -i 'error\|failed\|denied\|no space' || tail -n1 "$log")
    rm -f "$log"
    if grep -qi 'no space left\|disk quota' <<<"$why" || ((rc == 11)); then
      die "the disk holding $MIRROR is full ($(df -h --output=avail "$(dirname "$MIRROR")" | tail -1 | tr -d ' ') free); free space and rerun — the previous mirror is unchanged"
    fi
    die "rsync failed (exit $rc: ${why:-see above}); the previous mirror at $MIRROR is unchanged"
  fi
  rm -f "$log"
}

# Fails early, before transferring, when the new data cannot fit.
check_space() {
  local need avail dir stats
  dir=$(dirname "$MIRROR")
  stats=$("${RSYNC[@]}" --delete "${LINK[@]}" --dry-run --stats "${FILTER[@]}" "$SRC_URL" "$STAGING/" 2>/dev/null) || return 0
  need=$(sed -n 's/^Total transferred file size: \([0-9,]*\).*/\1/p' <<<"$stats" | tr -d ,)
  avail=$(($(df -k --output=avail "$dir" | tail -1) * 1024))
  if [[ -n $need ]] && ((need > avail)); then
    die "the refresh needs $((need >> 20)) MiB of new data but only $((avail >> 20)) MiB are free in $dir; free space (or --to a bigger disk) and rerun — the previous mirror is unchanged"
  fi
}

sync_to_staging() {
  local parent base
  parent=$(dirname "$MIRROR")
  base=$(basename "$MIRROR")
  mkdir -p -- "$parent"
  STAGING=$(mktemp -d "$parent/.$base.refresh-XXXXXX")
  rsync_base
  FILTER=()
  if ((EXISTING_ONLY)); then FILTER=(--exclude="/$BLOB_DIR/**"); fi
  check_space
  say "syncing $SRC into a staging copy of $MIRROR"
  run_rsync "${RSYNC[@]}" --delete "${LINK[@]}" --info=progress2,stats1 "${FILTER[@]}" "$SRC_URL" "$STAGING/"
  if ((EXISTING_ONLY)) && [[ -d $MIRROR/$BLOB_DIR ]]; then
    local list
    list=$(mktemp)
    (cd "$MIRROR" && find "$BLOB_DIR" \( -type f -o -type l \) -print) >"$list"
    say "refreshing the $(wc -l <"$list") files the mirror has in $BLOB_DIR"
    run_rsync "${RSYNC[@]}" "${LINK[@]}" --info=progress2,stats1 --ignore-missing-args \
      --files-from="$list" "$SRC_URL" "$STAGING/"
    rm -f "$list"
  fi
}

# The staging copy must list the same files as the source (quick check:
# size and mtime), and every SQLite database in it must pass quick_check.
verify_staging() {
  local changes
  say "checking the new snapshot"
  # A second pass settles what the first could not (a directory whose file
  # was replaced can keep the time of the copy, off by less than a second,
  # which only a nanosecond comparison sees); a third, dry, pass must then
  # find no difference at all.
  "${RSYNC[@]}" --delete --modify-window=-1 "${FILTER[@]}" "$SRC_URL" "$STAGING/" ||
    die "could not compare the new snapshot with $SRC; the previous mirror is unchanged"
  changes=$("${RSYNC[@]}" --delete --modify-window=-1 --dry-run --itemize-changes "${FILTER[@]}" \
    "$SRC_URL" "$STAGING/" 2>&1) ||
    die "could not compare the new snapshot with $SRC; the previous mirror is unchanged"
  [[ -z $changes ]] ||
    die "production changed while it was copied ($(wc -l <<<"$changes") files differ, e.g. ${changes%%$'\n'*}); rerun when it is quiet — the previous mirror is unchanged"
  python3 - "$STAGING" <<'PY' || die "the new snapshot has a damaged SQLite database (see above); rerun (was production writing it?) — the previous mirror is unchanged"
import os, sqlite3, sys, urllib.parse
bad = 0
for dirpath, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        if not name.endswith((".sqlite", ".sqlite3", ".db")):
            continue
        path = os.path.join(dirpath, name)
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                continue
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro&immutable=1"
        result = sqlite3.connect(uri, uri=True).execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            print(f"refresh-prod: {path}: {result}", file=sys.stderr)
            bad += 1
sys.exit(1 if bad else 0)
PY
}

# Swaps staging and mirror in one renameat2(RENAME_EXCHANGE); falls back to
# two renames where the filesystem cannot exchange.
switch_mirror() {
  if [[ ! -e $MIRROR ]]; then
    mv -T -- "$STAGING" "$MIRROR"
    STAGING=""
    return
  fi
  python3 - "$STAGING" "$MIRROR" <<'PY' || { mv -T -- "$MIRROR" "$STAGING.old" && mv -T -- "$STAGING" "$MIRROR" && mv -T -- "$STAGING.old" "$STAGING"; }
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if libc.renameat2(AT_FDCWD, os.fsencode(sys.argv[1]), AT_FDCWD, os.fsencode(sys.argv[2]),
                  RENAME_EXCHANGE) != 0:
    sys.exit(1)
PY
  # STAGING now holds the previous mirror.
  SWAPPED_OLD=$STAGING
  STAGING=""
  chmod --reference="$SWAPPED_OLD" -- "$MIRROR" 2>/dev/null || true
  rm -rf --one-file-system -- "$SWAPPED_OLD"
  SWAPPED_OLD=""
}

reset_workspace() {
  [[ -n $WS ]] || return 0
  if ((!RESET)); then
    say "--no-reset: the rehearsal's layers were made on the previous snapshot; run \`rehearse -C $WS reset\` before trusting them"
    return
  fi
  if [[ ! -d $WS/.rehearse/store ]]; then
    say "the workspace was never mounted: nothing to reset"
    return
  fi
  [[ $MIRROR == "$WS_TOP_LOWER" ]] || say "note: $MIRROR is not the workspace's top lower ($WS_TOP_LOWER); resetting anyway"
  say "resetting the rehearsal"
  "$REHEARSE" -C "$WS" reset ||
    die "the mirror is refreshed but \`rehearse -C $WS reset\` failed; run it by hand"
}

main() {
  parse_args "$@"
  command -v rsync >/dev/null || die "rsync is missing; run scripts/install-deps.sh"
  command -v python3 >/dev/null || die "python3 is missing; run scripts/install-deps.sh"
  load_workspace
  if [[ -n $WS ]]; then find_rehearse; fi
  MIRROR=$(realpath -m -- "$MIRROR")
  [[ ! -e $MIRROR || -d $MIRROR ]] || usage_error "--to $MIRROR is not a directory; give the mirror directory"
  classify_source
  if [[ $SRC_KIND == local ]] && [[ $SRC == "$MIRROR" || $MIRROR == "$SRC"/* || $SRC == "$MIRROR"/* ]]; then
    usage_error "--from $SRC and the mirror $MIRROR overlap; the mirror must be a separate directory"
  fi
  check_not_mounted
  trap cleanup EXIT
  trap 'say "interrupted; the previous mirror is unchanged"; exit 130' INT TERM HUP
  probe_source
  sync_to_staging
  verify_staging
  switch_mirror
  say "mirror $MIRROR refreshed from $SRC ($(du -sh -- "$MIRROR" | cut -f1))"
  reset_workspace
}

main "$@"
