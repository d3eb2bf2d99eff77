#!/usr/bin/env bash
# The cost of allocation profiling (issue 14): the slowdown of a malloc-heavy program
# (fixtures/bench_alloc.c: 1,000,000 small malloc/free pairs by default) under
# `rprof record --alloc` at the default sampling, heaptrack and `valgrind --tool=dhat`, and
# the records rprof lost. Prints a Markdown table (docs/benchmarks.md keeps one).
#
# Usage: scripts/bench-alloc.sh [CALLS] [RUNS]    (as root: rprof places uprobes)
#   RPROF=path/to/rprof selects the binary (default: target/debug/rprof, built if missing;
#   its allocation recorder is optimized in the dev profile too, see Cargo.toml).
#   heaptrack and valgrind are only used here, for comparison; a missing one is left out.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
rprof="${RPROF:-$root/target/debug/rprof}"
calls="${1:-1000000}"
runs="${2:-3}"
if [[ ! -x "$rprof" ]]; then
    (cd "$root" && cargo build --quiet --bin rprof)
fi
[[ "$(id -u)" == 0 ]] || { echo "bench-alloc: run as root (uprobes, BPF)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -g -O2 -o "$work/bench_alloc" "$root/fixtures/bench_alloc.c"
bin="$work/bench_alloc"

# Best wall time (seconds) of RUNS runs of "$@".
best() {
    local best=""
    for _ in $(seq "$runs"); do
        local start end t
        start=$(date +%s.%N)
        "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
        end=$(date +%s.%N)
        t=$(echo "$end - $start" | bc -l)
        if [[ -z "$best" ]] || (( $(echo "$t < $best" | bc -l) )); then best="$t"; fi
    done
    printf '%.3f' "$best"
}

base=$(best "$bin" "$calls")
echo "| tool | wall s (best of $runs) | × baseline | notes |"
echo "|---|---:|---:|---|"
echo "| none | $base | 1.0 | $calls malloc/free pairs |"
ratio() { printf '%.1f' "$(echo "$1 / $base" | bc -l)"; }

t=$(best "$rprof" record --alloc -o "$work/a.data" -- "$bin" "$calls")
summary=$(grep -o 'allocations: .*' "$work/stderr" | head -1)
lost=$(grep -o 'dropped [0-9]* records' "$work/stderr" | grep -o '[0-9]*' || echo 0)
# The target's own time under the probes: its first to its last allocator call.
span=$("$rprof" report --json -i "$work/a.data" |
    python3 -c 'import json, sys; print("%.3f" % (json.load(sys.stdin)["summary"]["duration_ns"] / 1e9))')
echo "| rprof record --alloc | $t | $(ratio "$t") | target's calls span $span s ($(ratio "$span") ×); ${lost:-0} records lost; $summary |"

if command -v heaptrack >/dev/null; then
    t=$(best heaptrack -o "$work/ht" "$bin" "$calls")
    echo "| heaptrack | $t | $(ratio "$t") | writes the trace, analysis not included |"
fi
if command -v valgrind >/dev/null; then
    t=$(best valgrind -q --tool=dhat --dhat-out-file="$work/dhat.json" "$bin" "$calls")
    echo "| valgrind --tool=dhat | $t | $(ratio "$t") | |"
fi
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $(uname -r)"
