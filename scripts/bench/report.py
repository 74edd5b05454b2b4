#!/usr/bin/env python3
"""Turns OUT/raw.jsonl (one line per measurement series) and OUT/meta.json
into the table (stdout and OUT/results.txt), OUT/results.json and the
ratio-to-native chart OUT/results.png (gnuplot). stdlib only."""
import json
import os
import statistics
import subprocess
import sys

SYSTEMS = ["native", "cowfs", "overlayfs", "fuse-overlayfs", "unionfs-fuse"]
PEERS = ["overlayfs", "fuse-overlayfs", "unionfs-fuse"]


def size(mb):
    return f"{mb // 1024} GiB" if mb >= 1024 and mb % 1024 == 0 else f"{mb} MiB"


def rows_spec(m):
    """(key, label, unit, higher_is_better, target). Targets: ("ratio>=", x)
    and ("ratio<=", x) on cowfs/native; ("abs<=", x) and ("abs<", x) on
    cowfs' own value."""
    big, huge, w4 = size(m["big_mb"]), size(m["huge_mb"]), size(m["w4_mb"])
    w5, tree, rows = f"{m['w5_files']:,}", f"{m['tree_files']:,}", f"{m['db_rows']:,}"
    w7, la, lb = size(m["w7_mb"]), f"{m['w7_files_a']:,}", f"{m['w7_files_b']:,}"
    w8 = f"{m['w8_objects']:,}" if "w8_objects" in m else "?"
    hr = f"{m['h_rows']:,}" if "h_rows" in m else "?"
    hb = f"{m['h_batch']:,}" if "h_batch" in m else "?"
    w9 = m.get("w9_scale", "?")
    w9s = m.get("w9_secs", "?")
    return [
        ("w1_cold", f"W1 seq read {big}, cold", "MB/s", True, ("ratio>=", 0.9)),
        ("w1_warm", f"W1 seq read {big}, warm", "MB/s", True, ("ratio>=", 0.8)),
        ("w2_j1", "W2 rand 4K read warm, 1 job", "IOPS", True, ("ratio>=", 0.9)),
        ("w2_j4", "W2 rand 4K read warm, 4 jobs", "IOPS", True, ("ratio>=", 0.9)),
        ("w3_1g_ms", f"W3 first 4K write, {big} file", "ms", False, None),
        ("w3_4g_ms", f"W3 first 4K write, {huge} file", "ms", False, ("abs<=", 20)),
        ("w3_1g_growth", f"W3 store growth, {big} file", "bytes", False, None),
        ("w3_4g_growth", f"W3 store growth, {huge} file", "bytes", False, None),
        ("w3b_ratio_cold", f"W3b read {big} after 1000 4K writes / untouched, cold", "x", True, None),
        ("w3b_ratio_warm", f"W3b read {big} after 1000 4K writes / untouched, warm", "x", True, None),
        ("w3b_touched_cold", f"W3b read {big} after 1000 4K writes, cold", "MB/s", True, None),
        ("w3b_growth", "W3b store growth after 1000 4K writes", "bytes", False, None),
        ("w4", f"W4 seq write new {w4} + fsync", "MB/s", True, ("ratio>=", 0.7)),
        ("w5_create", f"W5 create {w5} 1K files in 100 dirs", "s", False, ("ratio<=", 4)),
        ("w5_find", f"W5 find {w5} files, warm", "s", False, None),
        ("w5_stat", f"W5 stat {w5} files, warm", "s", False, None),
        ("w5_lslr_cold", f"W5 ls -lR {tree}-file lower tree, cold", "s", False, None),
        ("w5_lslr_warm", f"W5 ls -lR {tree}-file lower tree, warm", "s", False, ("ratio<=", 2)),
        ("w6_wal", f"W6 SQLite {rows} rows ALTER+UPDATE, WAL", "s", False, ("ratio<=", 1.5)),
        ("w6_delete", f"W6 SQLite {rows} rows ALTER+UPDATE, rollback", "s", False, ("ratio<=", 1.5)),
        ("w7_rewind_a", f"W7 rewind top layer, {w7} in {la} files", "s", False, ("abs<=", 0.2)),
        ("w7_rewind_b", f"W7 rewind top layer, {w7} in {lb} files", "s", False, ("abs<=", 0.2)),
        ("w7_find_1", f"W7 find+stat {tree} files, 1 layer", "s", False, None),
        ("w7_find_50", f"W7 find+stat {tree} files, {m['layers']} layers", "s", False, None),
        ("w7_layers_ratio", f"W7 find+stat {m['layers']} layers / 1 layer", "x", False, ("abs<=", 1.5)),
        ("w8", f"W8 demo upgrade, {w8} objects: rehearse run (others: --in-place)", "s",
         False, ("ratio<=", 1.3)),
        ("w8_edit", f"W8 edit last increment's step + run, {w8} objects", "s", False, None),
        ("w8_edit_ratio", "W8 edit-rerun run / first full run", "x", False, None),
        ("h1", f"H1 batched UPDATE {hr} rows by {hb}: rehearse run (native = sqlite3)", "s",
         False, ("ratio<=", 1.3)),
        ("h1_inplace", "H1 the same step by rehearse run --in-place on a native copy", "s",
         False, None),
        ("h2_full", f"H2 rehearse run, 5 increments x UPDATE {hr} rows", "s", False, None),
        ("h2_inc", "H2 increment 5.0 in the full run (journal)", "s", False, None),
        ("h2_rerun", "H2 rehearse rerun 5.0", "s", False, None),
        ("h2_overhead", "H2 rerun 5.0 - increment 5.0 in the full run", "s", False, ("abs<", 1.0)),
        ("h2_rerun_harness", "H2 rerun 5.0 - its own increment time", "s", False, None),
        ("w9_tps", f"W9 pgbench -c 4 -j 2 -T {w9s}, scale {w9}", "TPS", True, ("ratio>=", 0.7)),
        ("w9_migration", f"W9 ALTER ADD COLUMN + UPDATE 10% + CREATE INDEX, scale {w9}", "s",
         False, ("ratio<=", 1.3)),
        ("w9_growth", f"W9 store (upper, copy) growth, pgbench + migration", "bytes", False,
         ("overlayfs<=", 0.25)),
    ]


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "bytes":
        for u, f in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(v) >= f:
                return f"{v / f:.1f}{u}"
        return f"{v:.0f}B"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def load(out):
    meta = json.load(open(os.path.join(out, "meta.json")))
    runs, errors = {}, {}
    for line in open(os.path.join(out, "raw.jsonl")):
        r = json.loads(line)
        if "error" in r:
            errors.setdefault(r["key"], {})[r["system"]] = r["error"]
        else:
            runs.setdefault(r["key"], {})[r["system"]] = r["runs"]
    return meta, runs, errors


def verdict(target, cow, ratio, med=None):
    if target is None:
        return None, ""
    kind, x = target
    text = {"ratio>=": f"cowfs/native >= {x}", "ratio<=": f"cowfs/native <= {x}",
            "abs<=": f"cowfs <= {x}", "abs<": f"cowfs < {x}",
            "overlayfs<=": f"cowfs/overlayfs <= {x}"}[kind]
    v = ratio if kind.startswith("ratio") else cow
    if kind == "overlayfs<=":
        ov = (med or {}).get("overlayfs")
        v = cow / ov if cow is not None and ov else None
        kind = "abs<="
    if v is None:
        return "n/a", text
    ok = {"ratio>=": v >= x, "abs<": v < x}.get(kind, v <= x)
    return ("PASS" if ok else "MISS"), text


def build_rows(meta, runs, errors):
    out = []
    spec = rows_spec(meta)
    known = {s[0] for s in spec}
    for key in errors:  # workload-level aborts (key = "w1" ...)
        if key not in known:
            spec.append((key, f"{key.upper()} (workload aborted)", "", False, None))
    for key, label, unit, hib, target in spec:
        sr, se = runs.get(key, {}), errors.get(key, {})
        if not sr and not se:
            continue
        med = {s: statistics.median(v) for s, v in sr.items() if v}
        cow, nat = med.get("cowfs"), med.get("native")
        ratio = cow / nat if cow is not None and nat else None
        peers = {p: med[p] for p in PEERS if p in med}
        best = (max if hib else min)(peers, key=peers.get) if peers else None
        ratio_peer = cow / peers[best] if cow is not None and best and peers[best] else None
        v, ttext = verdict(target, cow, ratio, med)
        out.append({"key": key, "label": label, "unit": unit, "higher_is_better": hib,
                    "runs": sr, "median": med, "errors": se,
                    "cowfs_to_native": ratio, "best_peer": best,
                    "cowfs_to_best_peer": ratio_peer, "target": ttext, "verdict": v})
    return out


def table(meta, rows, skips):
    systems = [s for s in SYSTEMS if s in meta["systems"]]
    mode = ("QUICK mode: reduced sizes (shown in each row), slow rows 1 run"
            if meta["quick"] else "FULL mode: issue sizes")
    head = ["workload", "unit"] + systems + ["cowfs/nat", "cowfs/peer", "target", "result"]
    lines_ = []
    for r in rows:
        cells = [r["label"], r["unit"] + (" ^" if r["higher_is_better"] else "")]
        for s in systems:
            if s in r["median"]:
                cells.append(fmt(r["median"][s], r["unit"]))
            elif s in r["errors"]:
                cells.append("FAIL")
            elif r["key"].startswith(("w7", "w8", "h1", "h2")) and s != "cowfs":
                cells.append("n/a")
            else:
                cells.append("-")
        cells.append(fmt(r["cowfs_to_native"]) if r["cowfs_to_native"] is not None else "-")
        cp = r["cowfs_to_best_peer"]
        cells.append(f"{fmt(cp)} ({r['best_peer']})" if cp is not None else "-")
        cells += [r["target"], r["verdict"] or ""]
        lines_.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines_)]
    def row(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    text = [f"cowfs benchmark - {mode}; median of {meta['runs']} runs"
            f" (1 for slow rows in quick mode); commit {meta['commit']}, kernel {meta['kernel']},"
            f" RLIMIT_NOFILE {meta.get('nofile', '?')}",
            "unit ^ = higher is better; ratios are cowfs' value / the other's value;"
            " peer = best of overlayfs, fuse-overlayfs, unionfs-fuse",
            row(head), row(["-" * w for w in widths])]
    text += [row(c) for c in lines_]
    fails = [(r["label"], s, e) for r in rows for s, e in r["errors"].items()]
    if fails:
        text.append("")
        text += [f"FAIL {s}: {label}: {e}" for label, s, e in fails]
    text += [""] + skips if skips else []
    v = [r["verdict"] for r in rows if r["verdict"] in ("PASS", "MISS")]
    text.append(f"targets: {v.count('PASS')} PASS, {v.count('MISS')} MISS")
    return "\n".join(text) + "\n"


def chart(out, meta, rows):
    systems = [s for s in SYSTEMS[1:] if s in meta["systems"]]
    data = [r for r in rows if r["median"].get("native") and r["unit"] not in ("bytes", "x")
            and any(s in r["median"] for s in systems)]
    if not data or "native" not in meta["systems"]:
        return None
    dat = os.path.join(out, "results.dat")
    with open(dat, "w") as f:
        f.write("# key " + " ".join(systems) + "\n")
        for r in data:
            nat = r["median"]["native"]
            vals = [f"{r['median'][s] / nat:.4g}" if s in r["median"] else "NaN" for s in systems]
            f.write(r["key"] + " " + " ".join(vals) + "\n")
    png = os.path.join(out, "results.png")
    cols = " ".join(f"'{dat}' using {i + 2}:xtic(1) title '{s}'," for i, s in enumerate(systems))
    script = f"""
set terminal pngcairo size 1500,700 font ',10' noenhanced
set output '{png}'
set title 'value / native per workload ({"quick" if meta["quick"] else "full"} mode; time rows: lower is better, MB/s and IOPS rows: higher is better)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel 'ratio to native (log)'
set xtics rotate by -40 scale 0
set key top left
set grid ytics
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb 'black'
plot {cols.rstrip(',')}
"""
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        print(f"report: gnuplot failed: {e} {err.decode(errors='replace')}", file=sys.stderr)
        return None
    return png


def main():
    out = sys.argv[1]
    meta, runs, errors = load(out)
    rows = build_rows(meta, runs, errors)
    skp = os.path.join(out, "skips.txt")
    skips = open(skp).read().splitlines() if os.path.exists(skp) else []
    text = table(meta, rows, skips)
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write(text)
    png = chart(out, meta, rows)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "skips": skips, "png": png}, f, indent=1)
    sys.stdout.write(text)
    print(f"results: {os.path.join(out, 'results.json')}" + (f", chart: {png}" if png else ""))


if __name__ == "__main__":
    main()
