#!/usr/bin/env python3
"""2.1, after the split — prove that no object lost data.

Checks, and fails loudly (exit 1, the first offending objects named on
stderr) if any does not hold:
  * content and content_text have exactly the ids that were fingerprinted;
  * every object's fields, read back through the new tables, have the
    fingerprint 10-fingerprint.py recorded before the split;
  * every blob the database names exists in the hashed layout and its
    content still has the SHA-256 its name says; no flat-layout blob is
    left behind.
On success the fingerprint table is dropped.
"""
import hashlib
import os
import sqlite3
import sys

BLOBS = "var/blobstorage"
SHOW = 10


def digest(row):
    h = hashlib.sha256()
    for value in row:
        h.update(repr(value).encode())
        h.update(b"\x1f")
    return h.digest()


def progress(done, total, what):
    fd = os.environ.get("REHEARSE_PROGRESS_FD")
    if fd:
        try:
            os.write(int(fd), f"{done} {total} {what}\n".encode())
        except OSError:
            pass


def check_objects(db, problems):
    total = db.execute("SELECT count(*) FROM split_fingerprint").fetchone()[0]
    for what, sql in (
        ("missing from content", "SELECT id FROM split_fingerprint EXCEPT SELECT id FROM content"),
        ("missing from content_text",
         "SELECT id FROM split_fingerprint EXCEPT SELECT id FROM content_text"),
        ("not fingerprinted (appeared during the split)",
         "SELECT id FROM content EXCEPT SELECT id FROM split_fingerprint"),
    ):
        ids = [r[0] for r in db.execute(sql + " ORDER BY 1 LIMIT ?", (SHOW + 1,))]
        if ids:
            problems.append(f"objects {what}: {ids[:SHOW]}{' ...' if len(ids) > SHOW else ''}")
    cur = db.execute(
        "SELECT f.id, f.digest, c.path, c.portal_type, t.title, t.body, c.state, c.created, "
        "c.modified, c.language, c.blob FROM split_fingerprint f "
        "JOIN content c ON c.id = f.id JOIN content_text t ON t.id = f.id ORDER BY f.id")
    changed, done = [], 0
    while True:
        rows = cur.fetchmany(5000)
        if not rows:
            break
        changed += [r[0] for r in rows if digest(r[2:]) != r[1]]
        done += len(rows)
        progress(done, total, "objects verified")
    if changed:
        problems.append(f"{len(changed)} objects changed or lost data in the split: "
                        f"{changed[:SHOW]}{' ...' if len(changed) > SHOW else ''}")
    return total


def check_blobs(db, problems):
    rows = db.execute("SELECT id, blob FROM content WHERE blob IS NOT NULL ORDER BY id").fetchall()
    bad = []
    for done, (oid, rel) in enumerate(rows, 1):
        name = os.path.basename(rel)
        path = os.path.join(BLOBS, rel)
        if "/" not in rel:
            bad.append(f"{oid} (still in the flat layout: {rel})")
        else:
            # open() answers whether the blob is there; unbuffered, it does
            # not ask whether it is a terminal. Each question is a round
            # trip to a network or FUSE blob store, once per blob.
            try:
                h = hashlib.sha256()
                with open(path, "rb", buffering=0) as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                bad.append(f"{oid} (missing: {path})")
            else:
                if h.hexdigest() + ".blob" != name:
                    bad.append(f"{oid} (content of {path} does not match its name)")
        if done % 200 == 0 or done == len(rows):
            progress(done, len(rows), "blobs verified")
    flat = [n for n in os.listdir(BLOBS) if n.endswith(".blob")]
    if flat:
        problems.append(f"{len(flat)} blobs left in the flat layout: {sorted(flat)[:SHOW]}")
    if bad:
        problems.append(f"{len(bad)} objects lost their blob: {bad[:SHOW]}"
                        f"{' ...' if len(bad) > SHOW else ''}")
    return len(rows)


def main():
    db_path = os.environ.get("REHEARSE_SQLITE")
    if not db_path:
        sys.exit("30-verify: REHEARSE_SQLITE is not set; run this step with rehearse")
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'split_fingerprint'").fetchone():
        sys.exit("30-verify: no split_fingerprint table; 10-fingerprint.py must run first "
                 "(rehearse rerun 2.1)")
    problems = []
    objects = check_objects(db, problems)
    blobs = check_blobs(db, problems)
    if problems:
        more = f" (and {len(problems) - 1} more problems, below)" if len(problems) > 1 else ""
        print(f"VERIFICATION FAILED, the upgrade lost data: {problems[0]}{more}", file=sys.stderr)
        for p in problems[1:]:
            print(f"  - {p}", file=sys.stderr)
        return 1
    db.execute("DROP TABLE split_fingerprint")
    print(f"verified: {objects} objects and {blobs} blobs came through the upgrade intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
