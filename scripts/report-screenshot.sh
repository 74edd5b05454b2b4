#!/usr/bin/env bash
# Makes the README's picture of the report page: a screenshot of the page
# `scripts/demo.sh` writes, taken by headless Chromium.
#
#   scripts/report-screenshot.sh [--page PAGE] [--out PNG] [--width W] [--height H]
#
#   --page PAGE   the report page (default demo/report.html, from scripts/demo.sh)
#   --out PNG     where the screenshot goes (default docs/report.png)
#   --width W     window width in pixels (default 1200)
#   --height H    window height in pixels (default 2000: the whole demo page)
#
# Needs Debian's `chromium` (scripts/install-deps.sh installs it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=report-screenshot

die() {
  echo "$ME: $*" >&2
  exit "${EXIT_CODE:-1}"
}
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
need_value() { (($# >= 2)) || EXIT_CODE=2 die "$1 needs a value; see --help"; }

PAGE=$ROOT/demo/report.html OUT=$ROOT/docs/report.png WIDTH=1200 HEIGHT=2000
while (($#)); do
  case $1 in
    --page) need_value "$@"; PAGE=$2; shift ;;
    --out) need_value "$@"; OUT=$2; shift ;;
    --width) need_value "$@"; WIDTH=$2; shift ;;
    --height) need_value "$@"; HEIGHT=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) EXIT_CODE=2 die "unknown argument '$1'; see --help" ;;
  esac
  shift
done
[[ $WIDTH =~ ^[0-9]{3,4}$ && $HEIGHT =~ ^[0-9]{3,5}$ ]] ||
  EXIT_CODE=2 die "--width/--height must be pixel counts (e.g. 1200 and 1900)"
command -v chromium >/dev/null || die "chromium is missing; run scripts/install-deps.sh"
[[ -f $PAGE ]] || die "no report page at $PAGE; run scripts/demo.sh first (or give --page)"
PAGE=$(realpath -- "$PAGE")
mkdir -p -- "$(dirname -- "$OUT")"
OUT=$(realpath -m -- "$OUT")

PROFILE=$(mktemp -d "${TMPDIR:-/tmp}/$ME-XXXXXX")
trap 'rm -rf -- "$PROFILE"' EXIT
# Chromium's own chatter (D-Bus, GPU) goes to a log shown only on failure.
if ! timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$PROFILE" --window-size="$WIDTH,$HEIGHT" --screenshot="$PROFILE/shot.png" \
  "file://$PAGE" >"$PROFILE/log" 2>&1; then
  tail -n 5 "$PROFILE/log" >&2
  die "chromium could not take the screenshot (see above)"
fi
[[ -s $PROFILE/shot.png ]] || die "chromium wrote no screenshot"
mv -f -- "$PROFILE/shot.png" "$OUT"
echo "$OUT"
