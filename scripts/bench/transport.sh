#!/usr/bin/env bash
# The FUSE transport's cost on request-bound workloads: the same cowfs over
# 20,000 files of 1 KiB in 200 directories, mounted with --io uring or
# --io dev, or the plain directory (native). Prints medians of 3 seconds:
# find -type f, ls -lR, stat of every file, tar -x of the 20,000 files,
# cat of them.
#
#   scripts/bench/transport.sh COWFS_BIN native|uring|dev [SCRATCH]
#
# Needs root for --io uring (the fuse module's enable_uring). The mount is
# unmounted and the scratch directory removed on exit, error or Ctrl-C.
set -euo pipefail
bin=$1 mode=$2 scratch=${3:-/var/tmp}
base="$scratch/cowfs-transport-$mode"
src="$scratch/cowfs-transport-src.tar"
cleanup() {
  if [[ $mode != native ]] && mountpoint -q "$base/mnt"; then
    "$bin" umount "$base/mnt" || umount -l "$base/mnt" || true
  fi
  rm -rf "$base"
}
trap cleanup EXIT
rm -rf "$base"
mkdir -p "$base/lower" "$base/mnt"
if [[ ! -f $src ]]; then
  tree="$scratch/cowfs-transport-src"
  for d in $(seq 1 200); do
    mkdir -p "$tree/d$d"
    for f in $(seq 1 100); do head -c 1024 /dev/urandom >"$tree/d$d/f$f"; done
  done
  tar -C "$tree" -cf "$src" . && rm -rf "$tree"
fi
tar -C "$base/lower" -xf "$src"
target="$base/lower"
if [[ $mode != native ]]; then
  "$bin" mount --io "$mode" --store "$base/store" --lower "$base/lower" "$base/mnt"
  target="$base/mnt"
fi
secs() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
measure() {
  local name=$1 a=() i
  shift
  for i in 1 2 3; do a+=("$(secs "$@")"); done
  echo "$name $(median "${a[@]}")"
}
find "$target" -type f >/dev/null
ls -lR "$target" >/dev/null
measure find_warm find "$target" -type f
measure ls_lR_warm ls -lR "$target"
measure stat_warm sh -c "find '$target' -type f -print0 | xargs -0 stat"
a=()
for i in 1 2 3; do
  mkdir -p "$target/x$i"
  a+=("$(secs tar -C "$target/x$i" -xf "$src")")
done
echo "create_20k $(median "${a[@]}")"
measure read_20k sh -c "cat '$target'/x1/d*/f*"
