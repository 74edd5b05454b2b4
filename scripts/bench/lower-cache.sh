#!/usr/bin/env bash
# W10 (reads only): the blob store of the demo on an sshfs lower with added
# latency, read through cowfs with and without the lower cache, against the
# same blobs on a local lower.
#
#   scripts/bench/lower-cache.sh [--objects N] [--delay-ms D] [--scratch DIR]
#
# Makes the demo's production (scripts/make-demo-prod.sh, N objects: one
# blob per 20), serves it with an sshd on 127.0.0.1 behind a TCP proxy that
# delays every byte by D ms each way (default 5; this kernel has no
# sch_netem, so tc netem cannot be used), mounts it with sshfs -o ro, and
# times reading every blob (cat > /dev/null, one process) through:
#   sshfs            the sshfs mount itself
#   cowfs-nocache    cowfs over sshfs, no --lower-cache
#   cowfs-cold       cowfs over sshfs, a new --lower-cache
#   cowfs-warm       the same cache after the store is reset and remounted
#   cowfs-local      cowfs over a local copy of the blobs (the reference)
# Every measurement uses fresh sshfs and cowfs mounts (no page cache of an
# earlier one). Prints one line per case and the ratio warm/local.
# Needs root. Uses COWFS (default REPO/build/cowfs).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
COWFS=${COWFS:-$REPO/build/cowfs}
OBJECTS=20000 DELAY=5 SCRATCH=/var/tmp
while (($#)); do
  case $1 in
    --objects) OBJECTS=$2; shift ;;
    --delay-ms) DELAY=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "lower-cache.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $COWFS ]] || { echo "lower-cache.sh: no cowfs at $COWFS (set COWFS)" >&2; exit 2; }

W=$(mktemp -d "$SCRATCH/cowfs-w10.XXXXXX")
PIDS=()
cleanup() {
  local m
  for m in "$W"/mnt "$W"/remote; do
    mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

"$REPO/scripts/make-demo-prod.sh" "$W/prod" --objects "$OBJECTS" >/dev/null
BLOBS=$W/prod/var/blobstorage
NBLOBS=$(find "$BLOBS" -type f -name '*.blob' | wc -l)
BYTES=$(du -sb "$BLOBS" | cut -f1)
mkdir -p "$W/ssh" "$W/remote" "$W/mnt" /run/sshd
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ssh-keygen -q -t ed25519 -N "" -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$W/ssh/user_key"
cp "$W/ssh/user_key.pub" "$W/ssh/authorized_keys"
SSHD_PORT=$(free_port) PROXY_PORT=$(free_port)
cat >"$W/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $SSHD_PORT
HostKey $W/ssh/host_key
AuthorizedKeysFile $W/ssh/authorized_keys
PidFile $W/ssh/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -D -e -f "$W/ssh/sshd_config" 2>"$W/ssh/sshd.log" &
PIDS+=($!)
python3 "$BENCH_DIR/delay-proxy.py" "$PROXY_PORT" "$SSHD_PORT" "$DELAY" &
PIDS+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
  sleep 0.1
done

sshfs_mount() {
  sshfs -o ro -p "$PROXY_PORT" -o "IdentityFile=$W/ssh/user_key" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR \
    "root@127.0.0.1:$BLOBS" "$W/remote"
}
sshfs_umount() { fusermount3 -u "$W/remote"; }
read_all() { # DIR: seconds to read every blob
  local t0 t1
  t0=$(date +%s.%N)
  find "$1" -type f -name '*.blob' -exec cat {} + >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
cowfs_mount() { # STORE LOWER [args...]
  local store=$1 lower=$2
  shift 2
  "$COWFS" mount --store "$store" --lower "$lower" "$@" "$W/mnt"
}
fetched() { "$COWFS" layers --store "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["lower_cache"]["fetched_bytes"])'; }

report() { printf '%-14s %8.2f s  %s\n' "$1" "$2" "$3"; }
echo "W10 reads: $NBLOBS blobs, $BYTES bytes (demo, $OBJECTS objects), ${DELAY} ms added each way"

sshfs_mount
T_SSHFS=$(read_all "$W/remote")
sshfs_umount
report sshfs "$T_SSHFS" ""

sshfs_mount
cowfs_mount "$W/s-nocache" "$W/remote"
T_NOCACHE=$(read_all "$W/mnt")
"$COWFS" umount "$W/mnt"
sshfs_umount
report cowfs-nocache "$T_NOCACHE" ""

sshfs_mount
cowfs_mount "$W/s-cache" "$W/remote" --lower-cache "$W/cache"
T_COLD=$(read_all "$W/mnt")
F_COLD=$(fetched "$W/s-cache")
"$COWFS" umount "$W/mnt"
sshfs_umount
report cowfs-cold "$T_COLD" "fetched $F_COLD bytes"

sshfs_mount
"$COWFS" reset --store "$W/s-cache" >/dev/null
cowfs_mount "$W/s-cache" "$W/remote" --lower-cache "$W/cache"
T_WARM=$(read_all "$W/mnt")
F_WARM=$(fetched "$W/s-cache")
"$COWFS" umount "$W/mnt"
sshfs_umount
report cowfs-warm "$T_WARM" "fetched $F_WARM bytes (after reset and remount)"

cowfs_mount "$W/s-local" "$BLOBS"
T_LOCAL=$(read_all "$W/mnt")
"$COWFS" umount "$W/mnt"
report cowfs-local "$T_LOCAL" ""

printf 'warm/local %.2f (target <= 1.3), cold/nocache %.2f (target <= 1.0)\n' \
  "$(echo "$T_WARM / $T_LOCAL" | bc -l)" "$(echo "$T_COLD / $T_NOCACHE" | bc -l)"
