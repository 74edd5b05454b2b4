#!/usr/bin/env bash
# Builds rehearse and runs every test: the unlabelled (unit) tests in
# parallel, then every labelled suite (integration, reliability, ...: real FUSE
# mounts, which need root for the read-only bind mounts of their lowers) one
# test at a time; then the ThreadSanitizer job (scripts/test-tsan.sh: a clang
# build with -Wthread-safety and -fsanitize=thread, its CI subset of the
# tests). Exits non-zero if anything fails.
#
#   scripts/test.sh                 all of it (CI)
#   scripts/test.sh --tsan          only the ThreadSanitizer job, CI subset
#   scripts/test.sh --tsan-full     only the ThreadSanitizer job, every test
#   COWFS_IO=dev scripts/test.sh    every test on /dev/fuse instead of io_uring
#
# As root it turns on FUSE over io_uring (the fuse module's enable_uring) so
# that mounts use it (cowfs mount --io auto); CI then also runs the
# integration suite on /dev/fuse (COWFS_IO=dev), so both transports are
# covered.
#
# Environment: BUILD_DIR (default build), JOBS (default nproc), COWFS_IO.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"

bash scripts/install-deps.sh
uring_param=/sys/module/fuse/parameters/enable_uring
if ((EUID == 0)); then
  modprobe fuse 2>/dev/null || true
  if [[ -w $uring_param ]]; then echo 1 >"$uring_param"; fi
fi
case "${1:-}" in
  --tsan) exec bash scripts/test-tsan.sh ;;
  --tsan-full) exec bash scripts/test-tsan.sh --full ;;
esac
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREHEARSE_WERROR=ON
cmake --build "$build_dir" -j "$jobs"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

rc=0
echo "== unit tests (in parallel)"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" -LE '.' 2>&1 |
  tee "$logs/unit.log" || rc=1
echo "== integration and other labelled tests (one at a time)"
ctest --test-dir "$build_dir" --output-on-failure -j 1 -L '.' 2>&1 |
  tee "$logs/integration.log" || rc=1
if [[ -z ${COWFS_IO:-} && $(cat "$uring_param" 2>/dev/null) == Y ]]; then
  echo "== the integration suite again on /dev/fuse (COWFS_IO=dev)"
  COWFS_IO=dev ctest --test-dir "$build_dir" --output-on-failure -j 1 -L integration 2>&1 |
    tee "$logs/integration-dev.log" || rc=1
fi

# One summary line for both runs, in ctest's words.
total=0
failed=0
for log in "$logs"/*.log; do
  line="$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)"
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=$((failed + BASH_REMATCH[1]))
    total=$((total + BASH_REMATCH[2]))
  fi
done
if ((total == 0)); then
  echo "test.sh: no tests were run" >&2
  exit 1
fi
if ((failed > 0)); then rc=1; fi
echo
echo "== ThreadSanitizer job"
bash scripts/test-tsan.sh || rc=1
echo
echo "$(((total - failed) * 100 / total))% tests passed, $failed tests failed out of $total"
exit "$rc"
