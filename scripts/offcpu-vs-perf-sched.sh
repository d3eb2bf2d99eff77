#!/usr/bin/env bash
# Issue 11: compares rprof's per-thread on-CPU and off-CPU times (`rprof record --off-cpu`,
# `rprof report --threads --json`) with `perf sched timehist` on the same run of
# fixtures/off_cpu.c: perf sched records the scheduler tracepoints system-wide while rprof
# records the fixture, so both see the very same execution.
#
# perf's figures per thread: run time = sum of "run time"; off-CPU = sum of "wait time" +
# "sch delay" (from switch-out to switch-in). perf sched timehist (perf 6.1) loses the last
# interval of a thread that exits (its final sched_switch is shown as task ":-1[-1]"), so the
# same recording's sched:sched_switch tracepoints (`perf script`) are also summed directly:
# from a thread's creation (sched_process_fork) or switch-out (prev_pid) to its next switch-in
# (next_pid) off the CPU, and the other way round on it. Prints a markdown table
# (docs/benchmarks.md keeps the result) and exits 1 when rprof and the tracepoints differ by
# more than 5 % (plus 2 ms) of a thread's lifetime.
#
# Needs root (perf sched records tracepoints) and perf. Environment: RPROF [target/release/rprof,
# else target/debug/rprof], KEEP=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RPROF=${RPROF:-}
if [ -z "$RPROF" ]; then
    if [ -x target/release/rprof ]; then RPROF=$REPO/target/release/rprof; else RPROF=$REPO/target/debug/rprof; fi
fi
[ -x "$RPROF" ] || { echo "offcpu-vs-perf-sched: build rprof first (cargo build --release)" >&2; exit 2; }
command -v perf >/dev/null || { echo "offcpu-vs-perf-sched: perf is not installed" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "offcpu-vs-perf-sched: run as root (perf sched records tracepoints)" >&2; exit 2; }

WORK=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "scratch: $WORK" >&2; else trap 'rm -rf "$WORK"' EXIT; fi
gcc -O1 -g -o "$WORK/off_cpu" fixtures/off_cpu.c -lpthread
cd "$WORK"
perf sched record -q -o sched.data -- "$RPROF" record --off-cpu -o rprof.data -- ./off_cpu \
    >fixture.out 2>record.err
perf sched timehist -i sched.data >timehist.txt 2>/dev/null
perf script -i sched.data -F time,event,trace 2>/dev/null \
    | grep -E 'sched:sched_switch|sched:sched_process_fork' >switches.txt
"$RPROF" report -i rprof.data --threads --json >report.json

python3 - "$WORK" <<'EOF'
import json, re, sys
work = sys.argv[1]
truth = {}
for line in open(f"{work}/fixture.out"):
    f = line.split()
    if len(f) == 6 and f[0] == "thread":
        truth[int(f[2])] = (f[1], int(f[3]))
line_re = re.compile(r"\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
perf = {}
for line in open(f"{work}/timehist.txt"):
    m = line_re.search(line)
    if not m:
        continue
    tid = int(m.group(1))
    wait, delay, run = (float(m.group(i)) * 1e6 for i in (3, 4, 5))
    off, on = perf.get(tid, (0.0, 0.0))
    perf[tid] = (off + wait + delay, on + run)
# The tracepoints: per tid, time off and on the CPU between its first and last switch.
sw_re = re.compile(r"^\s*([\d.]+):\s+sched:sched_switch:.*prev_pid=(\d+) .*next_pid=(\d+) ")
fork_re = re.compile(r"^\s*([\d.]+):\s+sched:sched_process_fork:.*child_pid=(\d+)")
last = {}
trace = {}
for line in open(f"{work}/switches.txt"):
    f = fork_re.search(line)
    if f:
        # A new thread is off the CPU (runnable) from its creation to its first switch-in.
        last[int(f.group(2))] = (float(f.group(1)) * 1e9, True)
        continue
    m = sw_re.search(line)
    if not m:
        continue
    t = float(m.group(1)) * 1e9
    prev, nxt = int(m.group(2)), int(m.group(3))
    for tid, out in ((prev, True), (nxt, False)):
        if tid == 0:
            continue
        off, on = trace.get(tid, (0.0, 0.0))
        if tid in last:
            then, was_out = last[tid]
            if was_out and not out:
                off += t - then
            elif not was_out and out:
                on += t - then
        trace[tid] = (off, on)
        last[tid] = (t, out)
report = json.load(open(f"{work}/report.json"))
rows, worst = [], 0.0
for t in report["threads"]:
    if "cpu_ns" not in t or t["tid"] not in perf:
        continue
    tid = t["tid"]
    name = truth.get(tid, (t["name"], 0))[0]
    p_off, p_on = perf[tid]
    t_off, t_on = trace.get(tid, (0.0, 0.0))
    life = t["wall_ns"]
    d_off = abs(t["off_cpu_ns"] - t_off)
    d_on = abs(t["cpu_ns"] - t_on)
    share = max(d_off, d_on) / max(life, 1)
    worst = max(worst, max(d_off, d_on) - 2e6 - 0.05 * life)
    rows.append((name, tid, life, t["cpu_ns"], t_on, p_on, t["off_cpu_ns"], t_off, p_off, share))
ms = lambda ns: f"{ns / 1e6:.1f}"
print("| thread | lifetime | on-CPU: rprof | tracepoints | timehist | off-CPU: rprof | tracepoints | timehist | rprof vs tracepoints |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, tid, life, on, t_on, p_on, off, t_off, p_off, share in rows:
    print(f"| {name} | {ms(life)} ms | {ms(on)} | {ms(t_on)} | {ms(p_on)} | {ms(off)} | {ms(t_off)} | {ms(p_off)} | {100 * share:.2f} % |")
if not rows:
    print("no thread of the fixture in both recordings", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if worst > 0 else 0)
EOF
