#!/usr/bin/env bash
# The README's first command: build, generate a small production snapshot,
# mount it copy-on-write, change it, checkpoint, rewind, and prove that
# production was never written.
#
# When the rehearse harness is built (harness issue), `scripts/demo.sh`
# runs the whole rehearsal of the demo upgrade instead; see the README.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD_DIR:-build}"

bash scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target cowfs -j "$(nproc)" >/dev/null
cowfs="$root/$build/cowfs"

work="$(mktemp -d /tmp/rehearse-demo-XXXXXX)"
mnt="$work/mnt"
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then
    "$cowfs" umount "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "production snapshot in $work/prod"
mkdir -p "$work/prod/var/filestorage" "$work/prod/var/blobstorage" "$mnt"
sqlite3 "$work/prod/var/filestorage/Data.sqlite" <<'SQL'
CREATE TABLE content(id INTEGER PRIMARY KEY, path TEXT, title TEXT, body BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO content SELECT i, '/site/doc-' || i, 'Document ' || i, randomblob(1000) FROM n;
SQL
for i in $(seq 1 200); do head -c $((i * 512)) /dev/urandom >"$work/prod/var/blobstorage/blob-$i"; done
manifest() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum); }
before="$(manifest "$work/prod")"
du -sh "$work/prod"

say "mount it copy-on-write"
"$cowfs" mount --store "$work/store" --lower "$work/prod" "$mnt"
ls -l "$mnt/var/filestorage"

say "an upgrade step rewrites part of the 27 MB database: only touched chunks are stored"
sqlite3 "$mnt/var/filestorage/Data.sqlite" "ALTER TABLE content ADD COLUMN state TEXT DEFAULT 'published';
  UPDATE content SET title = upper(title) WHERE id <= 500; PRAGMA integrity_check;"
"$cowfs" layers --store "$work/store"

say "checkpoint, break things, rewind"
"$cowfs" checkpoint --store "$work/store" 1.0
rm -rf "$mnt/var/blobstorage"
sqlite3 "$mnt/var/filestorage/Data.sqlite" "DROP TABLE content;"
echo "after a bad step: $(ls "$mnt/var" | tr '\n' ' ')"
time "$cowfs" rewind --store "$work/store" 1.0
echo "rewound: $(ls "$mnt/var/blobstorage" | wc -l) blobs, $(sqlite3 "$mnt/var/filestorage/Data.sqlite" \
  "SELECT count(*) FROM content WHERE title GLOB 'DOCUMENT*'") upgraded titles"
"$cowfs" diff --store "$work/store"

say "reset and unmount"
"$cowfs" reset --store "$work/store"
"$cowfs" umount "$mnt"

say "production is untouched"
after="$(manifest "$work/prod")"
if [[ "$before" == "$after" ]]; then
  echo "checksums before and after match: $after"
else
  echo "PRODUCTION CHANGED" >&2
  exit 1
fi
