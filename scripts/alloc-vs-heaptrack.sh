#!/usr/bin/env bash
# Compares the totals of `rprof record --alloc` with heaptrack's on the same program
# (issue 14): calls to allocation functions, temporary allocations, peak heap and leaked
# bytes. The issue's bar: calls equal for malloc-only code, leaked and peak within 1 %.
#
# Usage: scripts/alloc-vs-heaptrack.sh [PROGRAM ARGS...]    (as root)
#   Default PROGRAM: fixtures/alloc.c (the tests' designed profile), built here.
#   RPROF=path/to/rprof selects the binary (default: target/debug/rprof).
# heaptrack is only used here, for comparison: rprof never calls it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
rprof="${RPROF:-$root/target/debug/rprof}"
[[ -x "$rprof" ]] || (cd "$root" && cargo build --quiet --bin rprof)
[[ "$(id -u)" == 0 ]] || { echo "alloc-vs-heaptrack: run as root (uprobes, BPF)" >&2; exit 1; }
command -v heaptrack >/dev/null || { echo "alloc-vs-heaptrack: heaptrack is not installed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ $# -eq 0 ]]; then
    gcc -g -O2 -o "$work/alloc" "$root/fixtures/alloc.c"
    set -- "$work/alloc"
fi

"$rprof" record --alloc -o "$work/a.data" -- "$@" 2>"$work/rprof.err" >/dev/null
"$rprof" report --json -i "$work/a.data" >"$work/a.json"
heaptrack -o "$work/ht" "$@" >/dev/null 2>&1
heaptrack_print "$work/ht.zst" >"$work/ht.txt" 2>/dev/null

# heaptrack_print's summary: "calls to allocation functions: N (...)", sizes like 34.78M
# (powers of 1000).
ht() { grep -m1 "^$1" "$work/ht.txt" | sed "s/^$1: //; s/ .*//"; }
bytes() {
    awk -v v="$1" 'BEGIN { n = v + 0; u = substr(v, length(v));
        m = (u == "K") ? 1e3 : (u == "M") ? 1e6 : (u == "G") ? 1e9 : 1; printf "%.0f", n * m }'
}
rp() { python3 -c "import json,sys; print(json.load(open('$work/a.json'))['summary']['$1'])"; }

row() { # name rprof heaptrack
    awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {
        d = (b == 0) ? 0 : (a - b) * 100 / b; printf "| %s | %d | %d | %+.2f %% |\n", n, a, b, d }'
}
echo "| | rprof | heaptrack | difference |"
echo "|---|---:|---:|---:|"
row "calls to allocation functions" "$(rp alloc_calls)" "$(ht 'calls to allocation functions')"
row "temporary allocations" "$(rp temporary_calls)" "$(ht 'temporary memory allocations')"
row "peak heap (bytes)" "$(rp peak_bytes)" "$(bytes "$(ht 'peak heap memory consumption')")"
row "leaked (bytes)" "$(rp leaked_bytes)" "$(bytes "$(ht 'total memory leaked')")"
echo
echo "rprof lost records: $(rp lost); heaptrack sizes are rounded to 3 or 4 digits by heaptrack_print"
