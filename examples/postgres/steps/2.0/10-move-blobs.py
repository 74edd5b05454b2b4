#!/usr/bin/env python3
"""Moves the document blobs from blobs/flat/ to blobs/ab/cd/<sha256>.bin and
points their rows at the new place.

Called again (exit 75) until every document has moved: each call moves up to
BATCH blobs, then updates their rows in one transaction. Safe to repeat at
any point: a blob already at its new place is not moved again, and a row is
only updated once its blob is there."""
import os
import subprocess
import sys

BATCH = 500
db = os.environ["REHEARSE_DATABASE"]


def psql(sql, stdin=None):
    r = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-At", db, "-c", sql],
                       input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("psql failed: " + r.stderr.strip())
    return r.stdout


total = int(psql("SELECT count(*) FROM documents"))
rows = [line.split("|") for line in psql(
    "SELECT id, path, sha256 FROM documents WHERE path LIKE 'blobs/flat/%%' "
    "ORDER BY id LIMIT %d" % BATCH).splitlines() if line]
moved = []
for doc_id, path, sha in rows:
    target = "blobs/%s/%s/%s.bin" % (sha[:2], sha[2:4], sha)
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(path, target)
    moved.append("(%d,'%s')" % (int(doc_id), target))
if moved:
    psql("UPDATE documents d SET path = v.path FROM (VALUES %s) AS v(id, path) "
         "WHERE d.id = v.id" % ",".join(moved))
left = int(psql("SELECT count(*) FROM documents WHERE path LIKE 'blobs/flat/%'"))
fd = int(os.environ["REHEARSE_PROGRESS_FD"])
os.write(fd, ("%d %d blobs moved\n" % (total - left, total)).encode())
print("moved %d blobs, %d left" % (len(moved), left))
sys.exit(int(os.environ["REHEARSE_MORE_EXIT"]) if left else 0)
