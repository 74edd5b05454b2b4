#!/usr/bin/env bash
# The harness issues' benchmarks: a batched update through `rehearse run`
# against sqlite3 on a native copy (H1), `rehearse rerun` of the last of
# five increments against the full run (H2), and the demo upgrade through
# `rehearse run` against --in-place with one turn of the edit-rerun loop
# (W8). Same options as run.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --only H1,H2,W8 --systems native,cowfs "$@"
