#!/usr/bin/env python3
"""2.0 — move the blobs from the flat layout to a hashed one.

Before: var/blobstorage/0x<id>.blob, one directory with every blob in it.
After:  var/blobstorage/<h[0:2]>/<h[2:4]>/<h>.blob, h = sha256 of the
content (identical files share one name), and content.blob holds the
new relative path.

This is a long step written in the "call me again" style: each call
moves blobs for about DEMO_BLOB_CALL_SECONDS (default 2) and exits 75
(REHEARSE_MORE_EXIT) while there is more to do; its position lives in
the REHEARSE_STATE file. DEMO_BLOB_BATCH (default 200) blobs are moved
per batch; DEMO_BLOB_SLEEP_MS (default 0) pauses after each batch, to
imitate a slow blob store (the kill -9 tests use it). Every batch is made safe to repeat, so a kill
at any point only repeats work:

  1. hash the batch's old files and save the planned moves in the state
     file (write aside, rename);
  2. rename each old file to its new name (identical files share one name,
     so a rename may land on a blob already moved: same content);
  3. one transaction: point content.blob at the new names;
  4. save the state with the batch done.

A restart with planned moves in the state redoes 2-4 first. A blob that
the database names but the blob store does not have fails the step,
naming the object: that is a production problem to fix, not to skip.
"""
import hashlib
import json
import os
import sqlite3
import sys
import time

BLOBS = "var/blobstorage"
BATCH = int(os.environ.get("DEMO_BLOB_BATCH", "200"))
SLEEP = int(os.environ.get("DEMO_BLOB_SLEEP_MS", "0")) / 1000.0
MORE = int(os.environ.get("REHEARSE_MORE_EXIT", "75"))


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"10-move-blobs: {name} is not set; run this step with rehearse")
    return value


def progress(done, total, message=""):
    fd = os.environ.get("REHEARSE_PROGRESS_FD")
    if fd:
        try:
            os.write(int(fd), f"{done} {total} {message}\n".encode())
        except OSError:
            pass  # progress is informative only


def load_state(path):
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    return json.loads(text) if text else None


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path):
    h = hashlib.sha256()
    # Unbuffered: a buffered open asks whether the file is a terminal, one
    # more round trip to a remote or FUSE blob store per blob.
    with open(path, "rb", buffering=0) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def apply_moves(db, moves):
    """Steps 2 and 3 of a batch; safe to repeat.

    Every check is left to the rename itself: on a blob store reached over
    a network (or a FUSE snapshot) each stat is a round trip, and this loop
    runs once per blob."""
    made = set()
    for oid, old, new in moves:
        src, dst = os.path.join(BLOBS, old), os.path.join(BLOBS, new)
        parent = os.path.dirname(dst)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        try:
            # Over a blob already moved under this hash (same content), the
            # rename leaves the same file behind.
            os.rename(src, dst)
        except FileNotFoundError:
            if not os.path.exists(dst):
                sys.exit(f"10-move-blobs: object {oid}: neither {src} nor {dst} exists; "
                         "the blob store lost this blob")
    db.execute("BEGIN IMMEDIATE")
    db.executemany("UPDATE content SET blob = ? WHERE id = ?",
                   [(new, oid) for oid, _, new in moves])
    db.execute("COMMIT")


def plan_batch(db, after):
    rows = db.execute(
        "SELECT id, blob FROM content WHERE id > ? AND blob IS NOT NULL "
        "AND instr(blob, '/') = 0 ORDER BY id LIMIT ?", (after, BATCH)).fetchall()
    moves = []
    for oid, old in rows:
        src = os.path.join(BLOBS, old)
        try:
            h = sha256_file(src)
        except FileNotFoundError:
            sys.exit(f"10-move-blobs: object {oid} names blob {src}, which does not exist; "
                     "restore it in production (or clear content.blob) and rerun")
        moves.append([oid, old, f"{h[0:2]}/{h[2:4]}/{h}.blob"])
    return moves


def main():
    db_path, state_path = env("REHEARSE_SQLITE"), env("REHEARSE_STATE")
    budget = float(os.environ.get("DEMO_BLOB_CALL_SECONDS", "2"))
    if not os.path.isdir(BLOBS):
        sys.exit(f"10-move-blobs: no {BLOBS} under {os.getcwd()}; is this the demo site?")
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    state = load_state(state_path)
    if state is None:
        total = db.execute("SELECT count(*) FROM content WHERE blob IS NOT NULL").fetchone()[0]
        done = db.execute("SELECT count(*) FROM content WHERE instr(blob, '/') > 0").fetchone()[0]
        state = {"after": 0, "done": done, "total": total, "pending": []}
        save_state(state_path, state)
    if state["pending"]:
        apply_moves(db, state["pending"])
        state["after"] = state["pending"][-1][0]
        state["done"] += len(state["pending"])
        state["pending"] = []
        save_state(state_path, state)

    start = time.monotonic()
    while True:
        progress(state["done"], state["total"], "blobs moved")
        moves = plan_batch(db, state["after"])
        if not moves:
            break
        state["pending"] = moves
        save_state(state_path, state)
        apply_moves(db, moves)
        state["after"] = moves[-1][0]
        state["done"] += len(moves)
        state["pending"] = []
        save_state(state_path, state)
        if SLEEP:
            time.sleep(SLEEP)
        if time.monotonic() - start >= budget:
            progress(state["done"], state["total"], "blobs moved")
            return MORE

    with open(os.path.join(BLOBS, ".layout"), "w", encoding="utf-8") as f:
        f.write("sha256-2x2\n")
    print(f"moved {state['done']} blobs to the hashed layout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
