#!/usr/bin/env bash
# FUSE requests per operation and wall time of the everyday workloads on a
# cowfs mount (issue 18's table): a warm `find -type f` and a warm `ls -lR`
# of a lower tree of FILES files in 200 directories, `tar -x` of FILES
# 1 KiB files into the mount, and the W6 SQLite update of ROWS rows
# (rollback journal, a commit per 1,000 rows). Each is run RUNS times;
# prints the median wall time and the median count of each opcode, and in
# parentheses that count per file (per commit for SQLite).
#
#   scripts/bench/requests.sh [--cowfs BIN] [--files N] [--rows N] [--runs N] [--dir DIR]
#
# Needs root (the kernel's fuse tracepoints, see fuse-requests.sh). Counts
# only this mount's requests; another process dropping the kernel's caches
# (echo 2 >/proc/sys/vm/drop_caches) makes the warm counts high.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COWFS=$ROOT/build/cowfs FILES=20000 ROWS=200000 RUNS=3 DIR=""
while (($#)); do
  case $1 in
    --cowfs) COWFS=$2; shift ;;
    --files) FILES=$2; shift ;;
    --rows) ROWS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --dir) DIR=$2; shift ;;
    *) echo "requests.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $COWFS ]] || { echo "requests.sh: no cowfs at $COWFS (--cowfs BIN)" >&2; exit 2; }
DIR=${DIR:-$(mktemp -d /tmp/requests-XXXXXX)}
mkdir -p "$DIR"
FR=$ROOT/scripts/bench/fuse-requests.sh
BIO=$ROOT/scripts/bench/benchio.py
LOWER=$DIR/lower MNT=$DIR/mnt STORE=$DIR/store
cleanup() {
  mountpoint -q "$MNT" && { "$COWFS" umount "$MNT" 2>/dev/null || umount -l "$MNT"; }
  rm -rf --one-file-system -- "$DIR"
}
trap cleanup EXIT

# The lower: FILES files of 1 KiB in 200 directories, a tarball of as many
# new ones, and a ROWS-row database.
mkdir -p "$LOWER/tree" "$LOWER/db" "$DIR/src"
python3 - "$LOWER/tree" "$DIR/src/new" "$FILES" <<'EOF'
import os, sys
tree, new, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for root in (tree, new):
    for i in range(n):
        d = os.path.join(root, f"d{i % 200:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
            f.write(bytes([i % 251]) * 1024)
EOF
tar -C "$DIR/src" -cf "$DIR/new.tar" new
python3 "$BIO" mkdb "$LOWER/db/app.db" "$ROWS" >/dev/null

mount_fresh() {
  mountpoint -q "$MNT" && "$COWFS" umount "$MNT"
  rm -rf "$STORE"
  mkdir -p "$MNT" "$STORE"
  "$COWFS" mount --store "$STORE" --lower "$LOWER" "$MNT" >/dev/null
}

# One workload: label, divisor, setup command (not counted), command.
declare -A COUNTS
measure() {
  local label=$1 per=$2 setup=$3 cmd=$4 i out times=()
  local -A all=()
  for ((i = 0; i < RUNS; i++)); do
    eval "$setup"
    out=$("$FR" --mount "$MNT" bash -c "$cmd")
    times+=("$(awk '/^time/ {print $2}' <<<"$out")")
    while read -r n op; do all[$op]+="$n "; done < <(grep FUSE_ <<<"$out")
  done
  local t
  t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
  printf '%-28s %8s s ' "$label" "$t"
  local op med line=""
  for op in $(printf '%s\n' "${!all[@]}" | sort); do
    med=$(printf '%s\n' ${all[$op]} | sort -n | sed -n "$(((RUNS + 1) / 2))p")
    # Runs where an opcode did not occur count as 0.
    (($(wc -w <<<"${all[$op]}") < RUNS)) && med=$(printf '%s\n' ${all[$op]} 0 | sort -n | head -1)
    line+=$(awk -v n="$med" -v d="$per" -v op="${op#FUSE_}" 'BEGIN { printf " %s %d (%.3g)", op, n, n / d }')
  done
  echo "${line:- (none)}"
}

echo "requests per operation (median of $RUNS), cowfs $COWFS, $FILES files, $ROWS rows"
mount_fresh
find "$MNT/tree" -type f >/dev/null
ls -lR "$MNT/tree" >/dev/null
measure "find -type f | wc -l, warm" "$FILES" ":" "find '$MNT/tree' -type f | wc -l"
measure "ls -lR, warm" "$FILES" ":" "ls -lR '$MNT/tree'"
measure "tar -x $FILES files" "$FILES" "mount_fresh" "tar -C '$MNT' -xf '$DIR/new.tar'"
measure "SQLite UPDATE, per commit" "$((ROWS / 1000))" "mount_fresh" \
  "python3 '$BIO' sqlite '$MNT/db/app.db' delete '$ROWS'"
