#!/usr/bin/env bash
# The layers issue's benchmark: rewind cost and lookups through 50 layers
# (cowfs only). Same options as run.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --only W7 --systems cowfs "$@"
