#!/usr/bin/env bash
# Issue 11: what `rprof record --off-cpu` costs on a program that switches all the time:
# fixtures/bench_pingpong.c (two threads passing a byte over two pipes, about two context
# switches per round). Median wall time of N runs of the workload alone, under `rprof record`,
# under `rprof record --off-cpu`, and under perf recording the same thing (the context-switches
# event at period 1 with dwarf stacks of the same size, plus switch records); and the records
# each lost at default settings. Prints a markdown table (docs/benchmarks.md keeps the result).
#
# Environment: N [3] runs, ROUNDS [50000] ping-pong rounds, RPROF [target/release/rprof],
# STACK [8192] perf's dwarf stack size (rprof's off-CPU sampler copies 8 KiB), WORKLOAD [the
# ping-pong] another command to measure instead, as one string split at spaces (e.g. the rg
# search of scripts/bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${N:-3}
ROUNDS=${ROUNDS:-50000}
STACK=${STACK:-8192}
RPROF=${RPROF:-$REPO/target/release/rprof}
[ -x "$RPROF" ] || { echo "offcpu-cost: build rprof first (cargo build --release)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -g -o "$WORK/pingpong" fixtures/bench_pingpong.c -lpthread
cd "$WORK"

# Prints the wall seconds of "$@" (stdout and stderr of the command go to last.out/last.err).
wall() {
    local a b
    a=$(date +%s.%N)
    "$@" >last.out 2>last.err
    b=$(date +%s.%N)
    echo "$b - $a" | bc
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

if [ -n "${WORKLOAD:-}" ]; then
    read -ra CMD <<<"$WORKLOAD"
    LABEL=$WORKLOAD
else
    CMD=(./pingpong "$ROUNDS")
    LABEL="pingpong $ROUNDS rounds"
fi
switches=$(perf stat -x, -e context-switches -- "${CMD[@]}" 2>&1 >/dev/null | awk -F, '/context-switches/ {print $1}')
declare -A result lost
# The records a run lost, from its messages (last.err).
lost_of() {
    case $1 in
        rprof*)
            local n unpaired
            n=$(grep -o '[0-9]* lost samples' last.err | grep -o '^[0-9]*' || echo "?")
            unpaired=$(grep -o '[0-9]* context-switch records did not pair up' last.err | grep -o '^[0-9]*' || true)
            if [ -n "$unpaired" ]; then echo "$n (+$unpaired unpaired switches)"; else echo "$n"; fi
            ;;
        perf*)
            local n
            n=$(grep -o 'lost [0-9]* chunks\|Lost [0-9]* events' last.err | head -1 || true)
            if [ -n "$n" ]; then echo "$n"; else echo 0; fi
            ;;
    esac
}
run() {
    local name=$1
    shift
    local times=() losses=()
    for _ in $(seq "$N"); do
        times+=("$(wall "$@")")
        losses+=("$(lost_of "$name")")
    done
    result[$name]=$(printf '%s\n' "${times[@]}" | median)
    lost[$name]=$(IFS=';'; echo "${losses[*]}" | sed 's/;/; /g')
    if [ "$name" = alone ]; then lost[$name]="-"; fi
}
run alone "${CMD[@]}"
run "rprof record" "$RPROF" record -o r.data -- "${CMD[@]}"
run "rprof record --off-cpu" "$RPROF" record --off-cpu -o o.data -- "${CMD[@]}"
run "perf record (switches, dwarf,$STACK)" perf record -o p.data -e context-switches -c 1 \
    --switch-events --call-graph "dwarf,$STACK" -- "${CMD[@]}"
size_o=$(stat -c %s o.data)
size_p=$(stat -c %s p.data)

echo "$LABEL: $switches context switches (perf stat), median of $N runs"
echo
echo "| recording | wall (s) | slowdown | lost, run by run |"
echo "|---|---:|---:|---|"
for name in alone "rprof record" "rprof record --off-cpu" "perf record (switches, dwarf,$STACK)"; do
    printf '| %s | %.2f | %.2fx | %s |\n' "$name" "${result[$name]}" \
        "$(echo "${result[$name]} / ${result[alone]}" | bc -l)" "${lost[$name]}"
done
echo
echo "profile sizes: rprof --off-cpu $((size_o / 1024)) KiB, perf.data $((size_p / 1024)) KiB"
