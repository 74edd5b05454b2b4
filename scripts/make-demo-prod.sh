#!/usr/bin/env bash
# Generates the production snapshot of the demo application, a small
# content-management system:
#
#   DIR/var/filestorage/Data.sqlite   `content`: N objects (path, type, title,
#                                     body, workflow state, timestamps, blob)
#   DIR/var/blobstorage/0x<id>.blob   one blob per 20 objects, 1 KiB to 1 MiB,
#                                     in the flat layout that the upgrade
#                                     (steps/2.0) moves to a hashed layout
#   DIR/var/blobstorage/.layout       "flat"
#
#   scripts/make-demo-prod.sh DIR [--objects N]     (default N = 100000)
#
# The snapshot is a function of N only: two runs with the same N give
# byte-identical files. It is built in a staging directory beside DIR and
# renamed into place, so DIR is either absent or complete. DIR must not
# exist, or be an empty directory.
set -euo pipefail

die() {
  echo "make-demo-prod: $*" >&2
  exit 2
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
  DIR="" OBJECTS=100000
  while (($#)); do
    case $1 in
      --objects)
        (($# >= 2)) || die "--objects needs a number; e.g. --objects 20000"
        OBJECTS=$2
        shift
        ;;
      --objects=*) OBJECTS=${1#--objects=} ;;
      -h | --help) usage; exit 0 ;;
      -*) die "unknown option '$1'; see --help" ;;
      *)
        [[ -z $DIR ]] || die "one DIR only (got '$DIR' and '$1'); see --help"
        DIR=$1
        ;;
    esac
    shift
  done
  [[ -n $DIR ]] || die "missing DIR; usage: make-demo-prod.sh DIR [--objects N]"
  if ! [[ $OBJECTS =~ ^[0-9]{1,9}$ ]] || ((OBJECTS < 20)); then
    die "--objects '$OBJECTS' is not a number from 20 to 999999999"
  fi
  if [[ -e $DIR ]]; then
    [[ -d $DIR ]] || die "$DIR exists and is not a directory; choose another DIR"
    [[ -z $(ls -A "$DIR") ]] || die "$DIR already exists and is not empty; remove it or choose another DIR"
  fi
  command -v python3 >/dev/null || die "python3 is missing; run scripts/install-deps.sh"
}

STAGE=""
cleanup() {
  if [[ -n $STAGE && -d $STAGE ]]; then rm -rf "$STAGE"; fi
}

generate() {
  python3 - "$1" "$OBJECTS" <<'PY'
import hashlib, os, sqlite3, sys

root, n = sys.argv[1], int(sys.argv[2])
fs_dir = os.path.join(root, "var", "filestorage")
blob_dir = os.path.join(root, "var", "blobstorage")
os.makedirs(fs_dir)
os.makedirs(blob_dir)

M64 = (1 << 64) - 1
def mix(x):  # splitmix64: a fixed, portable hash of an integer
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)

WORDS = ("site archive board budget meeting policy report project review staff "
         "student course faculty library research grant event news press release "
         "workflow portal folder document image file link page collection topic "
         "annual quarterly draft final minutes agenda summary proposal contract "
         "invoice schedule survey results plan strategy vision mission guide").split()
SENTENCES = []
for s in range(4096):
    h = mix(s + 1)
    k = 6 + h % 9
    words = [WORDS[(mix(h + i) >> 7) % len(WORDS)] for i in range(k)]
    SENTENCES.append(" ".join(words).capitalize() + ".")
SECTIONS = ["news", "events", "library", "projects", "people", "about"]
TYPES = ["Document", "News Item", "Event", "File", "Image"]
STATES = ["published"] * 6 + ["private"] * 2 + ["pending", "retracted"]
EPOCH = 1262304000  # 2010-01-01

def blob_size(i):  # 1 KiB .. 1 MiB, most of them small
    u = (mix(i * 7 + 3) >> 11) / float(1 << 53)
    return int(1024 * 1024 ** (u ** 4))

def row(i):
    h = mix(i)
    sec = SECTIONS[h % len(SECTIONS)]
    folder = "f%03d" % ((h >> 8) % 500)
    ptype = "File" if i % 20 == 0 else TYPES[(h >> 20) % 4]
    title = SENTENCES[(h >> 24) % 4096][:-1][:60]
    body = " ".join(SENTENCES[(mix(h + j) >> 13) % 4096] for j in range(3 + (h >> 40) % 7))
    state = STATES[(h >> 44) % len(STATES)]
    created = EPOCH + i * 3000 + (h >> 48) % 3000
    modified = created + (h >> 32) % (86400 * 400)
    blob = "0x%08x.blob" % i if i % 20 == 0 else None
    return (i, "/site/%s/%s/doc-%d" % (sec, folder, i), ptype, title, body, state,
            created, modified, blob)

db = sqlite3.connect(os.path.join(fs_dir, "Data.sqlite"), isolation_level=None)
db.executescript("""
PRAGMA page_size = 4096;
PRAGMA journal_mode = DELETE;
CREATE TABLE content(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  portal_type TEXT NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  created INTEGER NOT NULL,
  modified INTEGER NOT NULL,
  blob TEXT
);
CREATE TABLE site(key TEXT PRIMARY KEY, value TEXT NOT NULL);
""")
db.execute("BEGIN")
db.executemany("INSERT INTO site VALUES(?, ?)",
               [("name", "Demo Site"), ("objects", str(n)), ("schema", "1")])
step = 20000
for lo in range(1, n + 1, step):
    db.executemany("INSERT INTO content VALUES(?,?,?,?,?,?,?,?,?)",
                   (row(i) for i in range(lo, min(lo + step, n + 1))))
    print("\r  objects %d/%d" % (min(lo + step - 1, n), n), end="", file=sys.stderr, flush=True)
db.execute("COMMIT")
db.close()
print(file=sys.stderr)

total = 0
count = n // 20
for k, i in enumerate(range(20, n + 1, 20), 1):
    size = blob_size(i)
    data = hashlib.shake_256(b"demo-blob-%d" % i).digest(size)
    with open(os.path.join(blob_dir, "0x%08x.blob" % i), "wb") as f:
        f.write(data)
    total += size
    if k % 500 == 0 or k == count:
        print("\r  blobs %d/%d (%d MiB)" % (k, count, total >> 20), end="", file=sys.stderr,
              flush=True)
with open(os.path.join(blob_dir, ".layout"), "w") as f:
    f.write("flat\n")
print(file=sys.stderr)
PY
}

main() {
  parse_args "$@"
  local parent base
  parent=$(dirname -- "$DIR")
  base=$(basename -- "$DIR")
  mkdir -p -- "$parent"
  STAGE=$(mktemp -d "$parent/.$base.partial-XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  echo "make-demo-prod: generating $OBJECTS objects in $DIR" >&2
  generate "$STAGE"
  chmod 0755 "$STAGE"
  if [[ -d $DIR ]]; then rmdir -- "$DIR"; fi
  mv -T -- "$STAGE" "$DIR"
  STAGE=""
  echo "make-demo-prod: $(du -sh -- "$DIR" | cut -f1) in $DIR" >&2
}

main "$@"
