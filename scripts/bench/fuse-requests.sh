#!/usr/bin/env bash
# Counts the FUSE requests the kernel sends while a command runs, by opcode,
# from the kernel's fuse tracepoints (every FUSE mount of the machine counts:
# run it when nothing else uses one).
#
#   scripts/bench/fuse-requests.sh [--mount DIR] CMD [ARGS...]
#
# --mount DIR counts only the requests of the FUSE mount at DIR (by the
# tracepoints' connection, the mount's device), so other mounts may be busy.
#
# Prints the command's wall time, then "COUNT OPCODE" lines, most first.
# Needs root and tracefs (mounted on /sys/kernel/tracing if it is not).
set -euo pipefail

dev=""
if [[ ${1:-} == --mount ]]; then
  (($# >= 2)) || { echo "fuse-requests.sh: --mount needs a directory" >&2; exit 2; }
  mountpoint -q "$2" || { echo "fuse-requests.sh: $2 is not a mount point" >&2; exit 2; }
  # The kernel's dev_t: major << 20 | minor.
  dev=$(( $(stat -c %Hd "$2") << 20 | $(stat -c %Ld "$2") ))
  shift 2
fi
if (($# == 0)); then
  echo "usage: fuse-requests.sh CMD [ARGS...]" >&2
  exit 2
fi
T=/sys/kernel/tracing
if [[ ! -d $T/events/fuse ]]; then
  mountpoint -q "$T" || mount -t tracefs nodev "$T"
fi
if [[ ! -d $T/events/fuse/fuse_request_send ]]; then
  echo "fuse-requests.sh: this kernel has no fuse tracepoints ($T/events/fuse); use a newer kernel" >&2
  exit 1
fi
event=$T/events/fuse/fuse_request_send/enable
filter=$T/events/fuse/fuse_request_send/filter
stop() {
  echo 0 >"$T/tracing_on"
  echo 0 >"$event"
  echo 0 >"$filter"
}
trap stop EXIT
echo 0 >"$T/tracing_on"
echo >"$T/trace"
# 20 bytes or so per request: room for a few million.
echo 65536 >"$T/buffer_size_kb"
if [[ -n $dev ]]; then echo "connection == $dev" >"$filter"; else echo 0 >"$filter"; fi
echo 1 >"$event"
echo 1 >"$T/tracing_on"
start=$(date +%s%N)
rc=0
"$@" >/dev/null || rc=$?
end=$(date +%s%N)
stop
printf 'time %d.%03d s (exit %d)\n' $(((end - start) / 1000000000)) $((((end - start) / 1000000) % 1000)) "$rc"
if grep -q 'LOST' "$T/trace"; then echo "warning: the trace buffer overflowed; counts are low" >&2; fi
grep -o 'opcode [0-9]* ([A-Z_0-9]*)' "$T/trace" | sed 's/.*(\(.*\))/\1/' | sort | uniq -c | sort -rn
