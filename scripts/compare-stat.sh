#!/usr/bin/env bash
# Runs `perf stat` and `rprof stat` side by side on the same commands and prints both counts
# for the software events both can count on this machine (no hardware PMU needed):
#   task-clock, context-switches, cpu-migrations, page-faults, minor-faults, major-faults,
#   sched:sched_switch (tracepoint; needs root or a readable tracefs).
#
# Usage: scripts/compare-stat.sh [-r N] [COMMAND...]
#   Without COMMAND it builds the stat fixtures and compares a set of workloads.
#   RPROF=path/to/rprof selects the binary (default: target/debug/rprof, built if missing).
# Both tools run each command N times (default 5) and report the mean; the last column is
# rprof relative to perf. perf is only used here, for comparison: rprof never calls it.
set -euo pipefail

repeat=5
if [[ "${1:-}" == "-r" ]]; then
    repeat="$2"
    shift 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
rprof="${RPROF:-$root/target/debug/rprof}"
if [[ ! -x "$rprof" ]]; then
    (cd "$root" && cargo build --quiet --bin rprof)
fi
command -v perf >/dev/null || { echo "compare-stat: perf is not installed" >&2; exit 1; }

events="task-clock,context-switches,cpu-migrations,page-faults,minor-faults,major-faults"
if "$rprof" stat -e sched:sched_switch -- true 2>/dev/null; then
    events="$events,sched:sched_switch"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Prints "event value" lines from a -x, output (value is the mean with -r).
parse() {
    awk -F, 'NF >= 5 && $3 != "" { print $3, $1 }' "$1"
}

compare() {
    local label="$1"
    shift
    perf stat -x, -r "$repeat" -e "$events" -o "$work/perf.csv" -- "$@" >/dev/null 2>&1 || true
    "$rprof" stat -x, -r "$repeat" -e "$events" -o "$work/rprof.csv" -- "$@" >/dev/null 2>&1 || true
    printf '\n== %s  (%s runs)\n' "$label" "$repeat"
    printf '%-22s %16s %16s %9s\n' event perf rprof rprof/perf
    join <(parse "$work/perf.csv" | sort) <(parse "$work/rprof.csv" | sort) |
        while read -r event p r; do
            ratio="-"
            if [[ "$p" =~ ^[0-9.]+$ && "$r" =~ ^[0-9.]+$ ]]; then
                ratio=$(awk -v p="$p" -v r="$r" 'BEGIN { if (p > 0) printf "%.3f", r / p; else print (r == 0 ? "=" : "-") }')
            fi
            printf '%-22s %16s %16s %9s\n' "$event" "$p" "$r" "$ratio"
        done
}

if [[ $# -gt 0 ]]; then
    compare "$*" "$@"
    exit 0
fi

for f in stat_pages stat_sleep stat_threads; do
    gcc -O1 -o "$work/$f" "$root/fixtures/$f.c" -lpthread
done
compare "touch 5000 pages" "$work/stat_pages" 5000
compare "sleep 1 ms x 100" "$work/stat_sleep" 100
compare "4 threads: sleeps and pages" "$work/stat_threads" 4 20 200
compare "sh -c 'ls -R /usr/include'" sh -c 'ls -R /usr/include >/dev/null'
compare "sleep 0.05" sleep 0.05
