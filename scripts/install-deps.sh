#!/usr/bin/env bash
# Installs what building, testing and demoing rehearse needs on Debian 12.
# Harmless when everything is present: it only calls apt-get for what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  clang  # the ThreadSanitizer and -Wthread-safety build (scripts/test-tsan.sh)
  libfuse3-dev fuse3 liburing-dev
  libcli11-dev libspdlog-dev libfmt-dev libsqlite3-dev sqlite3
  libgtest-dev libgmock-dev libtomlplusplus-dev
  attr rsync util-linux procps psmisc coreutils findutils
  sshfs openssh-server openssh-client
  python3
  # Database servers on the mount (services, server engines): the tests start
  # their own servers, never the ones Debian sets up.
  postgresql-15 postgresql-client-15 libpq-dev mariadb-server mariadb-client libmariadb-dev
  # The report page is checked in headless Chromium (tests, docs/report.png).
  chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root or install them" >&2
    exit 1
  fi
  sudo=sudo
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# One apt at a time on a shared machine.
lock=()
if command -v flock >/dev/null; then lock=(flock /tmp/rehearse-apt.lock); fi
$sudo "${lock[@]}" apt-get update -qq
$sudo "${lock[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts (and enables) the servers it installs. The tests run their
# own, on sockets in their temporary directories with no TCP listener, so
# the system's servers are not needed: stop them rather than leave two
# database servers competing for memory on a CI machine.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  $sudo systemctl disable --now postgresql mariadb >/dev/null 2>&1 || true
fi
