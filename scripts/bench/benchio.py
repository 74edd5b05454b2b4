#!/usr/bin/env python3
"""I/O kernels of the benchmark: each times itself in-process (no fork or
interpreter start-up inside the measurement), checks its own result and
prints ONE number on stdout. Errors go to stderr with a non-zero exit.

Also builds the lowers (tree, SQLite databases) and their manifests, writes
the sqlite3 script of a batched step and reads `rehearse report --json`.
stdlib only.
"""
import argparse
import hashlib
import json
import os
import random
import sqlite3
import stat
import sys
import time

MIB = 1 << 20
BLOCK = 4096


def die(msg):
    print(f"benchio: {msg}", file=sys.stderr)
    sys.exit(1)


def pattern(seed, size):
    """Deterministic, incompressible-enough bytes."""
    return random.Random(seed).randbytes(size)


def sha256_file(path, bs=MIB):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bs)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---- read / write kernels -------------------------------------------------


def cmd_seqread(a):
    """Reads the whole file in 1 MiB blocks; prints MB/s."""
    buf = bytearray(MIB)
    total = 0
    t0 = time.perf_counter()
    fd = os.open(a.file, os.O_RDONLY)
    try:
        while True:
            n = os.readv(fd, [buf])
            if n == 0:
                break
            total += n
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    if a.expect_size is not None and total != a.expect_size:
        die(f"read {total} bytes from {a.file}, expected {a.expect_size}")
    print(f"{total / dt / 1e6:.1f}")


def cmd_sha256(a):
    print(sha256_file(a.file))


def cmd_firstwrite(a):
    """open(O_WRONLY) + one 4 KiB pwrite at offset 0 + close; prints ms.
    Checks: first block is the new data, the next block and the size are the
    reference's. --restore writes the reference block back (native only)."""
    new = pattern("firstwrite", BLOCK)
    t0 = time.perf_counter()
    fd = os.open(a.file, os.O_WRONLY)
    try:
        if os.pwrite(fd, new, 0) != BLOCK:
            die("short write")
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    with open(a.ref, "rb") as r:
        ref_head = r.read(2 * BLOCK)
    ref_size = os.stat(a.ref).st_size
    with open(a.file, "rb") as f:
        head = f.read(2 * BLOCK)
    if head[:BLOCK] != new:
        die(f"{a.file}: first block does not read back")
    if head[BLOCK:] != ref_head[BLOCK:]:
        die(f"{a.file}: second block changed")
    if os.stat(a.file).st_size != ref_size:
        die(f"{a.file}: size changed")
    if a.restore:
        fd = os.open(a.file, os.O_WRONLY)
        os.pwrite(fd, ref_head[:BLOCK], 0)
        os.close(fd)
    print(f"{dt * 1e3:.3f}")


def rand_offsets(size, count, seed):
    rng = random.Random(seed)
    return [rng.randrange(size // BLOCK) * BLOCK for _ in range(count)]


def cmd_randwrite(a):
    """COUNT random 4 KiB pwrites (fixed seed) into FILE; prints seconds.
    --verify: the whole file must hash like REF patched with the writes.
    --restore-only: write REF's blocks back instead (native only)."""
    size = os.stat(a.file).st_size
    offs = rand_offsets(size, a.count, a.seed)
    if a.restore_only:
        restore_blocks(a.file, a.ref, offs)
        print("0")
        return
    data = pattern("randwrite", BLOCK)
    t0 = time.perf_counter()
    fd = os.open(a.file, os.O_WRONLY)
    try:
        for off in offs:
            os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    if a.verify:
        touched = set(offs)
        h = hashlib.sha256()
        with open(a.ref, "rb") as r:
            pos = 0
            while True:
                b = bytearray(r.read(MIB))
                if not b:
                    break
                for o in range(0, len(b), BLOCK):
                    if pos + o in touched:
                        b[o:o + BLOCK] = data
                h.update(b)
                pos += len(b)
        if sha256_file(a.file) != h.hexdigest():
            die(f"{a.file}: content after random writes is wrong")
    print(f"{dt:.4f}")


def restore_blocks(path, ref, offs):
    with open(ref, "rb") as r, open(path, "r+b") as f:
        for off in sorted(set(offs)):
            r.seek(off)
            f.seek(off)
            f.write(r.read(BLOCK))


def cmd_seqwrite(a):
    """Writes a new file of SIZE bytes in 1 MiB blocks, fsync, close;
    prints MB/s. Checks the content by reading it back."""
    block = pattern("seqwrite", MIB)
    n = a.size // MIB
    t0 = time.perf_counter()
    fd = os.open(a.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for _ in range(n):
            if os.write(fd, block) != MIB:
                die("short write")
        os.fsync(fd)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    want = hashlib.sha256()
    for _ in range(n):
        want.update(block)
    if os.stat(a.file).st_size != n * MIB or sha256_file(a.file) != want.hexdigest():
        die(f"{a.file}: content does not read back")
    print(f"{n * MIB / dt / 1e6:.1f}")


# ---- metadata kernels -----------------------------------------------------


def cmd_create(a):
    """Creates FILES files of 1 KiB spread over DIRS new directories;
    prints seconds. Checks the count by walking."""
    data = pattern("create", 1024)
    t0 = time.perf_counter()
    os.mkdir(a.dir)
    for d in range(a.dirs):
        os.mkdir(os.path.join(a.dir, f"d{d:03d}"))
    for i in range(a.files):
        p = os.path.join(a.dir, f"d{i % a.dirs:03d}", f"f{i:06d}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    dt = time.perf_counter() - t0
    n = sum(len(fs) for _, _, fs in os.walk(a.dir))
    if n != a.files:
        die(f"{a.dir}: {n} files after create, expected {a.files}")
    print(f"{dt:.4f}")


def cmd_statall(a):
    """lstat of every file under DIR (list taken first, untimed), run
    twice, the second timed (warm); prints seconds. Checks the count."""
    paths = [os.path.join(r, f) for r, _, fs in os.walk(a.dir) for f in fs]
    if a.expect is not None and len(paths) != a.expect:
        die(f"{a.dir}: {len(paths)} files, expected {a.expect}")
    for p in paths:
        os.lstat(p)
    t0 = time.perf_counter()
    for p in paths:
        os.lstat(p)
    print(f"{time.perf_counter() - t0:.4f}")


def cmd_mkfiles(a):
    """FILES files totalling BYTES under DIR (untimed setup for rewind)."""
    each = a.bytes // a.files
    block = pattern("mkfiles", min(each, MIB))
    os.makedirs(a.dir, exist_ok=True)
    for i in range(a.files):
        with open(os.path.join(a.dir, f"f{i:06d}"), "wb") as f:
            left = each
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))


# ---- SQLite ---------------------------------------------------------------


def cmd_mkdb(a):
    if os.path.exists(a.db):
        os.unlink(a.db)
    con = sqlite3.connect(a.db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " value INTEGER NOT NULL, payload TEXT NOT NULL)")
    con.execute("CREATE INDEX items_value ON items(value)")
    rng = random.Random(6)
    with con:
        con.executemany(
            "INSERT INTO items VALUES(?,?,?,?)",
            ((i, f"item-{i}", rng.randrange(1000000), "x" * 80 + str(i))
             for i in range(1, a.rows + 1)))
    con.close()


def cmd_sqlite(a):
    """ALTER TABLE ADD COLUMN, then UPDATE every row in batches of BATCH
    rows per transaction, in the given journal mode; prints seconds.
    Checks integrity_check and that every row got its new value."""
    t0 = time.perf_counter()
    con = sqlite3.connect(a.db, isolation_level=None)
    mode = con.execute(f"PRAGMA journal_mode={a.mode}").fetchone()[0]
    if mode.lower() != a.mode.lower():
        die(f"journal_mode {a.mode} refused (got {mode})")
    con.execute("ALTER TABLE items ADD COLUMN flag INTEGER")
    (top,) = con.execute("SELECT max(id) FROM items").fetchone()
    for lo in range(1, top + 1, a.batch):
        con.execute("BEGIN")
        con.execute("UPDATE items SET flag = value % 7 WHERE id BETWEEN ? AND ?",
                    (lo, lo + a.batch - 1))
        con.execute("COMMIT")
    if a.mode.lower() == "wal":
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    dt = time.perf_counter() - t0
    con = sqlite3.connect(a.db)
    ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    (n,) = con.execute("SELECT count(*) FROM items WHERE flag = value % 7").fetchone()
    con.close()
    if ok != "ok":
        die(f"{a.db}: integrity_check says {ok}")
    if n != a.rows:
        die(f"{a.db}: {n} rows updated, expected {a.rows}")
    print(f"{dt:.4f}")


# ---- harness workloads (H1, H2, W8) ----------------------------------------


def cmd_mkcontent(a):
    """The harness benchmarks' database: content(id, n, body ~100 bytes),
    ids 1..ROWS without gaps, n = 0 everywhere, rollback journal."""
    if os.path.exists(a.db):
        os.unlink(a.db)
    con = sqlite3.connect(a.db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE content(id INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
                " body TEXT NOT NULL)")
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo".split()
    rng = random.Random(8)

    def body(i):
        text = f"object {i}: " + " ".join(rng.choice(words) for _ in range(16))
        return (text + " " + "." * 100)[:100]

    with con:
        con.executemany("INSERT INTO content VALUES(?, 0, ?)",
                        ((i, body(i)) for i in range(1, a.rows + 1)))
    con.close()


def step_body(path):
    """A batched step's SQL without its leading comment block."""
    lines = open(path).read().splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip()


def cmd_batchscript(a):
    """The SQL of a batched step as the harness runs it on ids 1..ROWS
    without gaps: windows [lo, hi] of SIZE keys (both ends included), one
    transaction each. Prints a script for the sqlite3 shell."""
    body = step_body(a.step)
    if ":lo" not in body and ":hi" not in body:
        die(f"{a.step}: no :lo/:hi in the step")
    out = [".bail on"]
    for lo in range(1, a.rows + 1, a.size):
        hi = min(lo + a.size - 1, a.rows)
        sql = body.replace(":lo", str(lo)).replace(":hi", str(hi))
        out += ["BEGIN;", sql, "COMMIT;"]
    print("\n".join(out))


def cmd_checkcontent(a):
    """integrity_check, and every one of ROWS rows has n = N; prints the
    number of rows checked."""
    con = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    rows, lo, hi = con.execute("SELECT count(*), min(n), max(n) FROM content").fetchone()
    con.close()
    if ok != "ok":
        die(f"{a.db}: integrity_check says {ok}")
    if rows != a.rows or lo != a.n or hi != a.n:
        die(f"{a.db}: {rows} rows with n in [{lo}, {hi}], expected {a.rows} rows with n = {a.n}")
    print(rows)


def cmd_report(a):
    """Reads `rehearse report --json` on stdin; checks that every increment
    of the plan has a successful run (and that there are EXPECT of them);
    prints the duration in seconds of increment VERSION (default: the last)
    and its commit time."""
    r = json.load(sys.stdin)
    incs = r["increments"]
    if r.get("never_run"):
        die(f"increments never run: {', '.join(r['never_run'])}")
    if a.expect is not None and len(incs) != a.expect:
        die(f"{len(incs)} increments in the report, expected {a.expect}")
    if not incs:
        die("no increment in the report")
    inc = incs[-1]
    if a.version:
        match = [i for i in incs if i["version"] == a.version]
        if not match:
            die(f"no increment {a.version} in the report")
        inc = match[0]
    print(f"{inc['duration_ms'] / 1000:.4f} {inc['committed']:.3f}")


# ---- lowers ---------------------------------------------------------------


def cmd_mktree(a):
    """FILES small files in a 10x10 directory tree."""
    per = a.files // 100
    for i in range(10):
        for j in range(10):
            d = os.path.join(a.dir, f"a{i}", f"b{j}")
            os.makedirs(d)
            for k in range(per):
                with open(os.path.join(d, f"f{k:05d}"), "w") as f:
                    f.write(f"file {i}/{j}/{k}\n")


def walk_entries(root):
    for r, ds, fs in os.walk(root):
        ds.sort()
        for name in sorted(ds + fs):
            yield os.path.join(r, name)


def cmd_manifest(a):
    """One line per entry: path and lstat (incl. ctime, which any data or
    metadata change moves); with --content also a sha256 of each file.
    Prints the manifest's own sha256 and writes the manifest to --save."""
    lines = []
    for p in walk_entries(a.dir):
        st = os.lstat(p)
        rel = os.path.relpath(p, a.dir)
        line = (f"{rel}\t{st.st_mode:o}\t{st.st_uid}:{st.st_gid}\t{st.st_size}\t"
                f"{st.st_nlink}\t{st.st_ino}\t{st.st_mtime_ns}\t{st.st_ctime_ns}")
        if a.content and stat.S_ISREG(st.st_mode):
            line += "\t" + sha256_file(p)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if a.save:
        with open(a.save, "w") as f:
            f.write(text)
    print(hashlib.sha256(text.encode()).hexdigest())


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("seqread")
    s.add_argument("file")
    s.add_argument("--expect-size", type=int)
    s = sub.add_parser("sha256")
    s.add_argument("file")
    s = sub.add_parser("firstwrite")
    s.add_argument("file")
    s.add_argument("--ref", required=True)
    s.add_argument("--restore", action="store_true")
    s = sub.add_parser("randwrite")
    s.add_argument("file")
    s.add_argument("--ref", required=True)
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--verify", action="store_true")
    s.add_argument("--restore-only", action="store_true")
    s = sub.add_parser("seqwrite")
    s.add_argument("file")
    s.add_argument("size", type=int)
    s = sub.add_parser("create")
    s.add_argument("dir")
    s.add_argument("files", type=int)
    s.add_argument("dirs", type=int)
    s = sub.add_parser("statall")
    s.add_argument("dir")
    s.add_argument("--expect", type=int)
    s = sub.add_parser("mkfiles")
    s.add_argument("dir")
    s.add_argument("files", type=int)
    s.add_argument("bytes", type=int)
    s = sub.add_parser("mkdb")
    s.add_argument("db")
    s.add_argument("rows", type=int)
    s = sub.add_parser("sqlite")
    s.add_argument("db")
    s.add_argument("mode", choices=["wal", "delete"])
    s.add_argument("rows", type=int)
    s.add_argument("--batch", type=int, default=1000)
    s = sub.add_parser("mkcontent")
    s.add_argument("db")
    s.add_argument("rows", type=int)
    s = sub.add_parser("batchscript")
    s.add_argument("step")
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s = sub.add_parser("checkcontent")
    s.add_argument("db")
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--n", type=int, required=True)
    s = sub.add_parser("report")
    s.add_argument("--expect", type=int)
    s.add_argument("--version")
    s = sub.add_parser("mktree")
    s.add_argument("dir")
    s.add_argument("files", type=int)
    s = sub.add_parser("manifest")
    s.add_argument("dir")
    s.add_argument("--content", action="store_true")
    s.add_argument("--save")

    a = p.parse_args()
    try:
        globals()["cmd_" + a.cmd](a)
    except OSError as e:
        die(f"{a.cmd}: {e}")
    except sqlite3.Error as e:
        die(f"{a.cmd}: sqlite: {e}")
    except (ValueError, KeyError) as e:
        die(f"{a.cmd}: bad input: {e}")


if __name__ == "__main__":
    main()
