#!/usr/bin/env bash
# The chunked copy-up issue's benchmark: first write into big lower files
# and reading a file after scattered writes, against every system.
# Same options as run.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --only W3,W3b "$@"
