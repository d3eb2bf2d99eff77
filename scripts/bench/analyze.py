#!/usr/bin/env python3
"""Helpers for scripts/bench.sh: parse what the profilers wrote, and turn the raw
measurements (a TSV of `workload figure tool run value` lines) into markdown tables.

Subcommands (all print to stdout):
  folded FILE                 samples, share reaching `main`, share reaching a root
                              (`main` or a thread entry: start_thread/clone/clone3)
  samply-samples FILE         number of samples in a samply profile (.json or .json.gz)
  perf-stats FILE             samples, lost samples, throttle events from `perf report --stats`
  rprof-json FILE             samples, lost, throttled from `rprof report --json`
  top10 RPROF_JSON PERF_REPORT  overlap of the two top-10 self function lists
  table RESULTS.tsv           the markdown result tables
Nothing here measures anything: it only reads files that bench.sh wrote.
"""
import gzip
import json
import re
import statistics
import sys
from collections import defaultdict

ROOT_FRAMES = {"start_thread", "clone", "clone3", "__clone", "__clone3"}


def strip_frame(frame):
    # Perf's collapse marks kernel frames `_[k]`, inlined ones `_[i]`; rprof marks nothing.
    frame = re.sub(r"_\[[kijw]\]$", "", frame)
    return frame


def folded(path):
    total = with_main = with_root = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            # The first frame is the thread/process name in both rprof's and perf's folded output.
            frames = [strip_frame(x) for x in stack.split(";")[1:]]
            total += n
            if "main" in frames:
                with_main += n
                with_root += n
            elif ROOT_FRAMES.intersection(frames):
                with_root += n
    if total == 0:
        print("0 nan nan")
    else:
        print(f"{total} {with_main / total:.4f} {with_root / total:.4f}")


def samply_samples(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        profile = json.load(f)
    total = 0
    for thread in profile.get("threads", []):
        samples = thread.get("samples", {})
        if "length" in samples:
            total += samples["length"]
        elif "stack" in samples:
            total += len(samples["stack"])
        elif "data" in samples:
            total += len(samples["data"])
    print(total)


def perf_stats(path):
    """`perf report --stats` output: per-event section has SAMPLE and LOST_SAMPLES counts."""
    samples = lost = throttle = None
    agg_samples = agg_lost_records = 0
    in_event = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.rstrip().endswith("stats:") and "Aggregated" not in line:
                in_event = True
                continue
            m = re.match(r"\s*(\w+) events:\s+(\d+)", line)
            if not m:
                continue
            kind, n = m.group(1), int(m.group(2))
            if in_event:
                if kind == "SAMPLE":
                    samples = (samples or 0) + n
                elif kind == "LOST_SAMPLES":
                    lost = (lost or 0) + n
            else:
                if kind == "SAMPLE":
                    agg_samples = n
                elif kind == "THROTTLE":
                    throttle = n
                elif kind == "LOST":
                    agg_lost_records = n
    if samples is None:
        samples = agg_samples
    print(f"{samples} {lost or 0} {throttle or 0} {agg_lost_records}")


def rprof_json(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    print(f"{d.get('samples', 0)} {d.get('lost', 0)} {d.get('throttled', 0)} {d.get('truncated', 0)}")


def norm_name(name):
    name = name.strip()
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)  # Rust legacy hash (perf keeps it)
    name = re.sub(r"(\.(part|isra|constprop|cold|lto_priv)(\.\d+)?)+$", "", name)  # GCC clones
    # glibc gives its memmove/memcpy implementations two names at one address; profilers pick
    # either name for the same code.
    name = re.sub(r"^__memmove_", "__memcpy_", name)
    return name


def top10(rprof_path, perf_path):
    with open(rprof_path, encoding="utf-8") as f:
        d = json.load(f)
    funcs = sorted(d.get("functions", []), key=lambda x: -x.get("self", 0))
    r = [norm_name(x["name"]) for x in funcs if x.get("self", 0) > 0][:10]
    p = []
    with open(perf_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"\s*[\d.]+%\s+\[[.kgu]\]\s+(.*?)(\s{2,}|$)", line)
            if m:
                p.append(norm_name(m.group(1)))
            if len(p) == 10:
                break
    common = len(set(r) & set(p))
    # Short profiles can have fewer than 10 functions with samples: compare what there is.
    print(f"{common} {min(len(r), len(p))} {len(r)} {len(p)}")
    print("rprof: " + " | ".join(r))
    print("perf:  " + " | ".join(p))


# ---------------------------------------------------------------- tables


def load(path):
    data = defaultdict(list)  # (workload, key) -> [values]
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            wl, key, _run, value = parts
            try:
                data[(wl, key)].append(float(value))
            except ValueError:
                pass
    return data


def med(data, wl, key):
    v = data.get((wl, key))
    return statistics.median(v) if v else None


def fmt(x, digits=2, unit=""):
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    return f"{x:.{digits}f}{unit}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}×"


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(path):
    data = load(path)
    wls = []
    for wl, _ in data:
        if wl not in wls and wl != "large":
            wls.append(wl)
    runs = {wl: len(data.get((wl, "alone.wall"), [])) for wl in wls}
    out = []
    w = out.append

    w("### 1. Recording overhead (median wall / CPU seconds; × = ratio to the workload alone)\n")
    w("| workload | runs | alone | rprof record | perf dwarf (8 KiB) | perf dwarf,64000 | samply | **rprof ÷ perf dwarf** | **rprof ÷ perf dwarf,64000** | **rprof ÷ samply** |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("wall", "cpu"):
        for wl in wls:
            a = med(data, wl, f"alone.{kind}")
            cells = []
            for tool in ("rprof", "perf8k", "perf64k", "samply"):
                t = med(data, wl, f"{tool}.record.{kind}")
                cells.append(f"{fmt(t)} s ({ratio(t, a)})" if t is not None else "n/a")
            r = med(data, wl, f"rprof.record.{kind}")
            w(f"| {wl} ({kind}) | {runs[wl]} | {fmt(a)} s | " + " | ".join(cells) + " | "
              + " | ".join(ratio(r, med(data, wl, f"{p}.record.{kind}")) for p in ("perf8k", "perf64k", "samply")) + " |")
    w("")
    w("CPU seconds over the runs, min–max (the spread behind the medians above):\n")
    w("| workload | alone | rprof record | perf dwarf (8 KiB) | perf dwarf,64000 | samply | rprof at samply's settings |")
    w("|---|---|---|---|---|---|---|")
    for wl in wls:
        cells = []
        for key in ("alone", "rprof.record", "perf8k.record", "perf64k.record", "samply.record", "rprofS.record"):
            v = data.get((wl, f"{key}.cpu"))
            cells.append(f"{min(v):.2f}–{max(v):.2f}" if v else "n/a")
        w(f"| {wl} | " + " | ".join(cells) + " |")
    w("")
    w("Peak RSS of the recorder (median, MiB; the largest process of the tree: the profiler or the workload):\n")
    w("| workload | alone | rprof record | perf dwarf (8 KiB) | perf dwarf,64000 | samply | rprof at samply's settings |")
    w("|---|---|---|---|---|---|---|")
    for wl in wls:
        cells = []
        for key in ("alone", "rprof.record", "perf8k.record", "perf64k.record", "samply.record", "rprofS.record"):
            v = med(data, wl, f"{key}.maxrss_kb")
            cells.append(fmt(None if v is None else v / 1024, 1))
        w(f"| {wl} | " + " | ".join(cells) + " |")
    w("")
    w("rprof at samply's settings (`--no-kernel --call-graph dwarf,32000`: user stacks only, 32000-byte copies, as samply 0.13 samples) against samply:\n")
    w("| workload | rprof default (CPU) | rprof at samply's settings (CPU) | samply (CPU) | **rprof at samply's settings ÷ samply** (CPU / wall) | truncated stacks at 32000 bytes |")
    w("|---|---|---|---|---|---|")
    for wl in wls:
        a = med(data, wl, "alone.cpu")
        r, rs, sm = (med(data, wl, f"{t}.record.cpu") for t in ("rprof", "rprofS", "samply"))
        rsw, smw = med(data, wl, "rprofS.record.wall"), med(data, wl, "samply.record.wall")
        tr = med(data, wl, "rprofS.truncated_share")
        w(f"| {wl} | {fmt(r)} s ({ratio(r, a)}) | {fmt(rs)} s ({ratio(rs, a)}) | {fmt(sm)} s ({ratio(sm, a)}) | {ratio(rs, sm)} / {ratio(rsw, smw)} | {pct(tr)} |")
    w("")

    w("### 2. Time to a flame graph (median wall seconds)\n")
    w("rprof with its name cache filled by one earlier recording of the workload (the default, as on a second recording of a program), and without it (`RPROF_CACHE_DIR=off`: every name read from the binaries, as on a first recording):\n")
    w("| workload | alone | rprof record | of which outside the recorded run (setup, naming at exit) | rprof flame | **rprof total** (× alone) | rprof total without the name cache (× alone) | perf record dwarf,64000 | perf script + collapse + flamegraph | **perf total** (× alone) | **rprof ÷ perf** | post-processing only: rprof ÷ perf |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl in wls:
        a = med(data, wl, "alone.wall")
        rr, rf = med(data, wl, "rprof.record.wall"), med(data, wl, "rprof.flame.wall")
        ra = med(data, wl, "rprof.after_exit.wall")
        pr, pf = med(data, wl, "perf64k.record.wall"), med(data, wl, "perf64k.flame.wall")
        rt = med(data, wl, "rprof.total.wall")
        rc = med(data, wl, "rprofC.total.wall")
        pt = med(data, wl, "perf64k.total.wall")
        w(f"| {wl} | {fmt(a)} | {fmt(rr)} | {fmt(ra)} | {fmt(rf)} | {fmt(rt)} ({ratio(rt, a)}) | {fmt(rc)} ({ratio(rc, a)}) | {fmt(pr)} | {fmt(pf)} | {fmt(pt)} ({ratio(pt, a)}) | {ratio(rt, pt)} | {ratio(rf, pf, 3)} |")
    w("")

    w("### 3. Profile size (median bytes per sample)\n")
    w("| workload | rprof | rprof at samply's settings | perf dwarf (8 KiB) | perf dwarf,64000 | samply (gzip, no symbols) | **perf dwarf ÷ rprof** | **perf dwarf,64000 ÷ rprof** | **samply ÷ rprof** |")
    w("|---|---|---|---|---|---|---|---|---|")
    for wl in wls:
        vals = {t: med(data, wl, f"{t}.bytes_per_sample") for t in ("rprof", "rprofS", "perf8k", "perf64k", "samply")}
        r = vals["rprof"]
        w(f"| {wl} | {fmt(vals['rprof'], 0)} | {fmt(vals['rprofS'], 0)} | {fmt(vals['perf8k'], 0)} | {fmt(vals['perf64k'], 0)} | {fmt(vals['samply'], 0)} | "
          f"{ratio(vals['perf8k'], r, 0)} | {ratio(vals['perf64k'], r, 0)} | {ratio(vals['samply'], r, 1)} |")
    w("")

    lost_wls = [wl for wl in wls if any(k[0] == wl and k[1].startswith("lost.") for k in data)]
    if lost_wls:
        w("### 4. Lost samples (median over runs; lost ÷ (samples + lost))\n")
        w("| workload | frequency | rprof samples | rprof lost | perf dwarf (8 KiB) samples | perf lost | perf dwarf,65528 samples | perf lost | rprof throttled | perf throttle events (8 KiB / 65528) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        freqs = sorted({k[1].split(".")[1] for k in data if k[1].startswith("lost.")}, key=int)
        for wl in lost_wls:
            for fq in freqs:
                cells = []
                for tool in ("rprof", "perf8k", "perf65k"):
                    s = med(data, wl, f"lost.{fq}.{tool}.samples")
                    l = med(data, wl, f"lost.{fq}.{tool}.lost")
                    share = None if s is None or l is None or s + l == 0 else l / (s + l)
                    cells.append(f"{fmt(s, 0)} | {fmt(l, 0)} ({pct(share)})")
                th = med(data, wl, f"lost.{fq}.rprof.throttled")
                pth8 = med(data, wl, f"lost.{fq}.perf8k.throttled")
                pth = med(data, wl, f"lost.{fq}.perf65k.throttled")
                w(f"| {wl} | {fq} Hz | " + " | ".join(cells) + f" | {fmt(th, 0)} | {fmt(pth8, 0)} / {fmt(pth, 0)} |")
        w("")

    w("### 5. Stack quality (median share of samples)\n")
    w("| workload | rprof: reaches `main` | perf dwarf,64000: reaches `main` | rprof: reaches `main` or a thread entry | perf: reaches `main` or a thread entry | **rprof − perf (root)** | top-10 self functions in common with `perf report` (of those both have) |")
    w("|---|---|---|---|---|---|---|")
    for wl in wls:
        rm_, pm = med(data, wl, "rprof.main_share"), med(data, wl, "perf64k.main_share")
        rr, pr = med(data, wl, "rprof.root_share"), med(data, wl, "perf64k.root_share")
        diff = "n/a" if rr is None or pr is None else f"{100 * (rr - pr):+.1f} pt"
        t, n = med(data, wl, "top10.common"), med(data, wl, "top10.compared")
        w(f"| {wl} | {pct(rm_)} | {pct(pm)} | {pct(rr)} | {pct(pr)} | {diff} | {fmt(t, 0)} / {fmt(n, 0)} |")
    w("")

    if any(k[0] == "large" for k in data):
        w("### 6. Post-processing a large profile (one run each; wall seconds, peak RSS)\n")
        w("| profile | samples | file size | command | wall | CPU | peak RSS | samples per second |")
        w("|---|---|---|---|---|---|---|---|")
        for tool, label, steps in (
            ("rprof", "rprof.data", (("report", "rprof report"), ("flame", "rprof flame -o x.svg"))),
            ("perf", "perf.data (dwarf, 8 KiB)", (("report", "perf report --stdio"), ("flame", "perf script | inferno-collapse-perf | inferno-flamegraph"))),
        ):
            s = med(data, "large", f"{tool}.samples")
            size = med(data, "large", f"{tool}.bytes")
            for step, cmd in steps:
                wall = med(data, "large", f"{tool}.{step}.wall")
                cpu = med(data, "large", f"{tool}.{step}.cpu")
                rss = med(data, "large", f"{tool}.{step}.maxrss_kb")
                rate = None if not wall or s is None else s / wall
                w(f"| {label} | {fmt(s, 0)} | {fmt(None if size is None else size / 1e6, 1)} MB | `{cmd.replace('|', chr(92) + '|')}` | {fmt(wall)} s | {fmt(cpu)} s | "
                  f"{fmt(None if rss is None else rss / 1024, 1)} MiB | {fmt(rate, 0)} |")
        for step in ("report", "flame"):
            rw, pw = med(data, "large", f"rprof.{step}.wall"), med(data, "large", f"perf.{step}.wall")
            rs, ps = med(data, "large", "rprof.samples"), med(data, "large", "perf.samples")
            if None not in (rw, pw, rs, ps) and rw and pw:
                w(f"\n{step}: rprof processes {ratio(rs / rw, ps / pw, 1)} as many samples per second as perf; "
                  f"peak RSS rprof ÷ perf = {ratio(med(data, 'large', f'rprof.{step}.maxrss_kb'), med(data, 'large', f'perf.{step}.maxrss_kb'))}")
        w("")
    print("\n".join(out))


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "folded":
        folded(argv[2])
    elif cmd == "samply-samples":
        samply_samples(argv[2])
    elif cmd == "perf-stats":
        perf_stats(argv[2])
    elif cmd == "rprof-json":
        rprof_json(argv[2])
    elif cmd == "top10":
        top10(argv[2], argv[3])
    elif cmd == "table":
        table(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
