#!/usr/bin/env bash
# Times the same function of the same program with `rprof latency`, bpftrace (uprobe +
# uretprobe) and `perf probe` + `perf record` + `perf script`, next to the program's own
# measurement of each call, and measures what one probed call costs under each tool.
#
# Usage: scripts/latency-vs-bpftrace.sh       (as root: all three tools place uprobes)
#   RPROF=path/to/rprof selects the binary (default: target/debug/rprof, built if missing).
#   Debian 12: `apt-get install bpftrace linux-perf`; a tool that is missing is left out.
#
# Workload: fixtures/latency.c `main`: 1,000 calls of timed_call, 900 × 0.2 ms, 90 × 2 ms,
# 10 × 10 ms. Cost: fixtures/latency.c `empty`: 200,000 calls of an empty function; the
# cost of a probed call is the fixture's ns per call with the probes minus without.
# Prints a Markdown table (docs/benchmarks.md keeps one). bpftrace and perf are only used
# here, for comparison: rprof never calls them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
rprof="${RPROF:-$root/target/debug/rprof}"
if [[ ! -x "$rprof" ]]; then
    (cd "$root" && cargo build --quiet --bin rprof)
fi
[[ "$(id -u)" == 0 ]] || { echo "latency-vs-bpftrace: run as root (uprobes)" >&2; exit 1; }

work="$(mktemp -d)"
cleanup() {
    if command -v perf >/dev/null; then
        perf probe -q -d 'probe_latency:*' 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

gcc -g -O2 -o "$work/latency" "$root/fixtures/latency.c" -lpthread
bin="$work/latency"

# "count min p50 p90 p99 p99.9 max" (ns) of a file with one duration per line.
percentiles() {
    sort -n "$1" | awk '{ v[NR] = $1 }
        function q(p,  r) { r = int(p * NR); if (r < p * NR) r++; if (r < 1) r = 1; return v[r] }
        END { if (NR == 0) { print "0 - - - - - -"; exit }
              printf "%d %d %d %d %d %d %d\n", NR, v[1], q(0.5), q(0.9), q(0.99), q(0.999), v[NR] }'
}

row() { # name, then "count min p50 p90 p99 p99.9 max" in ns
    local name="$1"
    shift
    read -r n min p50 p90 p99 p999 max <<<"$*"
    us() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1000 }'; }
    echo "| $name | $n | $(us "$min") | $(us "$p50") | $(us "$p90") | $(us "$p99") | $(us "$p999") | $(us "$max") |"
}

echo "| tool | calls | min µs | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |"
echo "|---|---|---|---|---|---|---|---|"

# The program's own measurement, under rprof.
"$rprof" latency --json timed_call -- "$bin" main "$work/truth-rprof" >"$work/rprof.json"
row "fixture's own (under rprof)" "$(percentiles "$work/truth-rprof")"
python3 - "$work/rprof.json" <<'EOF' >"$work/rprof.row"
import json, sys
f = json.load(open(sys.argv[1]))["functions"][0]
print(f["count"], f["min_ns"], f["p50_ns"], f["p90_ns"], f["p99_ns"], f["p999_ns"], f["max_ns"])
EOF
row "rprof latency" "$(cat "$work/rprof.row")"

if command -v bpftrace >/dev/null; then
    bpftrace -q -o "$work/bpftrace.out" -e "
        uprobe:$bin:timed_call { @s[tid] = nsecs; }
        uretprobe:$bin:timed_call /@s[tid]/ { printf(\"%llu\n\", nsecs - @s[tid]); delete(@s[tid]); }
        END { clear(@s); }" -c "$bin main $work/truth-bpftrace" >/dev/null 2>&1
    grep -E '^[0-9]+$' "$work/bpftrace.out" >"$work/bpftrace.ns" || true
    row "fixture's own (under bpftrace)" "$(percentiles "$work/truth-bpftrace")"
    row "bpftrace uprobe/uretprobe" "$(percentiles "$work/bpftrace.ns")"
fi

if command -v perf >/dev/null && perf probe -q -x "$bin" --add 'latency=timed_call' 2>/dev/null \
    && perf probe -q -x "$bin" --add 'latency_ret=timed_call%return' 2>/dev/null; then
    perf record -q -o "$work/perf.data" -e 'probe_latency:latency' -e 'probe_latency:latency_ret__return' \
        -- "$bin" main "$work/truth-perf" 2>/dev/null
    # Pair per thread in time order: "comm tid [cpu] time: event:".
    perf script -i "$work/perf.data" -F tid,time,event 2>/dev/null | awk '
        { tid = $1; t = $2; sub(":", "", t); split(t, p, "."); ns = p[1] * 1000000000 + p[2] * 1000 }
        $3 ~ /latency_ret/ { if (tid in s) { print ns - s[tid]; delete s[tid] } ; next }
        $3 ~ /latency/ { s[tid] = ns }' >"$work/perf.ns"
    row "fixture's own (under perf)" "$(percentiles "$work/truth-perf")"
    row "perf probe + perf script" "$(percentiles "$work/perf.ns")"
fi

# The cost of a probed call: the empty function's ns per call with and without probes.
echo
echo "| cost of one probed call (entry + return) | ns per call of an empty function | added |"
echo "|---|---|---|"
"$bin" empty "$work/e0"
base="$(cat "$work/e0")"
echo "| no probes | $base | - |"
"$rprof" latency --no-calibrate empty_call -- "$bin" empty "$work/e1" 2>/dev/null
echo "| rprof latency | $(cat "$work/e1") | $(( $(cat "$work/e1") - base )) |"
"$rprof" latency empty_call -- "$bin" empty "$work/e1c" 2>"$work/calib.txt" >/dev/null
echo "| rprof latency's own estimate (calibration at startup) | - | $(grep -o 'about [0-9.]*[nuµm]*s' "$work/calib.txt" | head -1) |"
if command -v bpftrace >/dev/null; then
    bpftrace -q -e "uprobe:$bin:empty_call { @s[tid] = nsecs; }
        uretprobe:$bin:empty_call /@s[tid]/ { @d = hist(nsecs - @s[tid]); delete(@s[tid]); }
        END { clear(@s); clear(@d); }" -c "$bin empty $work/e2" >/dev/null 2>&1
    echo "| bpftrace | $(cat "$work/e2") | $(( $(cat "$work/e2") - base )) |"
fi
if command -v perf >/dev/null && perf probe -q -x "$bin" --add 'empty=empty_call' 2>/dev/null \
    && perf probe -q -x "$bin" --add 'empty_ret=empty_call%return' 2>/dev/null; then
    perf record -q -o "$work/perf-empty.data" -e 'probe_latency:empty' -e 'probe_latency:empty_ret__return' \
        -- "$bin" empty "$work/e3" >/dev/null 2>&1
    echo "| perf record (probe events) | $(cat "$work/e3") | $(( $(cat "$work/e3") - base )) |"
fi
