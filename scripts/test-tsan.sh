#!/usr/bin/env bash
# The ThreadSanitizer job (scripts/test.sh runs it after the normal build and
# tests; `scripts/test.sh --tsan` runs it alone). Builds with clang in
# build-tsan, with -Wthread-safety -Werror (the lock rules, see
# cowfs/sys/thread_annotations.h) and -fsanitize=thread, then runs under
# ThreadSanitizer, in CI (the default) a subset chosen to fit CI's time:
#   - every unit test (tests/cowfs: OverlayRaceTest and the rest);
#   - the integration suite (about 5 minutes under TSAN on 2 cores);
#   - the differential tester's first FSDIFF_SEEDS (default 4) CI seeds:
#     under TSAN a seed takes about 23 s, 20 times its usual time.
# With --full: every test of every label, fsdiff's 120 CI seeds and the soak
# sequences that found bugs (several hours on 2 cores).
#
# A race is a failure wherever it happens: in a test binary, in a cowfs
# daemon a test mounted, in rehearse. Every process writes its reports to a
# directory of its own (log_path), which must be empty at the end.
#
# Environment: TSAN_BUILD_DIR (default build-tsan), JOBS (default nproc),
# FSDIFF_SEEDS.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${TSAN_BUILD_DIR:-build-tsan}"
jobs="${JOBS:-$(nproc)}"
full=0
if [[ ${1:-} == --full ]]; then full=1; fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREHEARSE_WERROR=ON \
  -DREHEARSE_TSAN=ON -DCMAKE_CXX_COMPILER=clang++
cmake --build "$build_dir" -j "$jobs"

reports="$(mktemp -d)"
logs="$(mktemp -d)"
trap 'rm -rf "$reports" "$logs"' EXIT
# Suppressions: only where TSAN cannot see the ordering (see the file for why).
export TSAN_OPTIONS="log_path=$reports/tsan halt_on_error=0 second_deadlock_stack=1 suppressions=$root/scripts/tsan.supp"

rc=0
echo "== ThreadSanitizer: unit tests"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" -LE '.' 2>&1 |
  tee "$logs/unit.log" || rc=1
if ((full)); then
  echo "== ThreadSanitizer: every labelled test (one at a time)"
  ctest --test-dir "$build_dir" --output-on-failure -j 1 -L '.' 2>&1 |
    tee "$logs/labelled.log" || rc=1
else
  echo "== ThreadSanitizer: integration suite (one at a time)"
  ctest --test-dir "$build_dir" --output-on-failure -j 1 -L integration 2>&1 |
    tee "$logs/integration.log" || rc=1
  echo "== ThreadSanitizer: fsdiff CI seeds"
  FSDIFF_SEEDS="${FSDIFF_SEEDS:-4}" ctest --test-dir "$build_dir" --output-on-failure -j 1 \
    -R '^Fsdiff\.RandomSequences$' 2>&1 | tee "$logs/fsdiff.log" || rc=1
fi

shopt -s nullglob
found=("$reports"/tsan.*)
if ((${#found[@]} > 0)); then
  echo "== ThreadSanitizer reported ${#found[@]} process(es) with warnings:" >&2
  for f in "${found[@]}"; do
    echo "--- $f" >&2
    cat "$f" >&2
  done
  rc=1
fi

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
  echo "test-tsan.sh: no tests were run" >&2
  exit 1
fi
echo
echo "ThreadSanitizer: $((total - failed)) of $total tests passed, ${#found[@]} process(es) reported races"
exit "$rc"
