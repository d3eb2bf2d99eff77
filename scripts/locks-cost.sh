#!/usr/bin/env bash
# Issue 17: what recording futex wake-ups (the wake-up sampler of `rprof record --off-cpu` as
# root, crates/record/src/locks.rs) costs, on the workload where it costs most:
# fixtures/bench_futex.c (two threads handing a turn over a mutex and a condition variable:
# every round a futex wait and a futex wake in each thread). Median wall time of N runs of the
# workload alone, under `rprof record --off-cpu` without the wake-up sampler, and with it; the
# wake-ups recorded; profile sizes. Prints a markdown table (docs/benchmarks.md keeps it).
#
# "Without" runs rprof in a private mount namespace where tracefs shows no events (an empty
# directory bound over /sys/kernel/tracing): the wake-up sampler cannot be opened, exactly as
# on a system without the tracepoint; nothing else changes. Needs root (unshare, mount).
#
# Environment: N [5] runs, ROUNDS [50000], RPROF [target/release/rprof], WORKLOAD [the futex
# hand-over] another command to measure instead, as one string split at spaces.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${N:-5}
ROUNDS=${ROUNDS:-50000}
RPROF=${RPROF:-$REPO/target/release/rprof}
[ -x "$RPROF" ] || { echo "locks-cost: build rprof first (cargo build --release)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "locks-cost: needs root (the wake-up sampler, unshare)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -g -o "$WORK/bench_futex" fixtures/bench_futex.c -lpthread
mkdir -p "$WORK/no-tracefs/events"
cd "$WORK"
if [ -n "${WORKLOAD:-}" ]; then
    read -ra CMD <<<"$WORKLOAD"
    LABEL=$WORKLOAD
else
    CMD=(./bench_futex "$ROUNDS")
    LABEL="bench_futex $ROUNDS rounds"
fi

wall() {
    local a b
    a=$(date +%s.%N)
    "$@" >last.out 2>last.err
    b=$(date +%s.%N)
    echo "$b - $a" | bc
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A result lost
# The samples a run lost and the switch records that did not pair up, from its messages.
lost_of() {
    local n unpaired
    n=$(grep -o '[0-9]* lost samples' last.err | grep -o '^[0-9]*' || echo "-")
    unpaired=$(grep -o '[0-9]* context-switch records did not pair up' last.err | grep -o '^[0-9]*' || true)
    if [ -n "$unpaired" ]; then echo "$n (+$unpaired unpaired)"; else echo "$n"; fi
}
run() {
    local name=$1
    shift
    local times=() losses=()
    for _ in $(seq "$N"); do
        times+=("$(wall "$@")")
        losses+=("$(lost_of)")
    done
    result[$name]=$(printf '%s\n' "${times[@]}" | median)
    lost[$name]=$(IFS=';'; echo "${losses[*]}" | sed 's/;/; /g')
}
without() {
    unshare -m sh -c 'mount --bind "$0" /sys/kernel/tracing && exec "$@"' \
        "$WORK/no-tracefs" "$@"
}
run alone "${CMD[@]}"
run "rprof record --off-cpu, no wake-ups" without "$RPROF" record --off-cpu -o n.data -- "${CMD[@]}"
run "rprof record --off-cpu (wake-ups)" "$RPROF" record --off-cpu -o w.data -- "${CMD[@]}"
wakes=$("$RPROF" report --locks --json -i w.data | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(l["wakes"] or 0 for l in d["locks"] + d["other_waits"]), d["wakers_recorded"])')
nowakes=$("$RPROF" report --locks --json -i n.data | python3 -c '
import json, sys
print(json.load(sys.stdin)["wakers_recorded"])')

echo "Workload: $LABEL; N=$N, median wall seconds"
echo
echo "| run | wall s | vs alone | lost samples, run by run |"
echo "|---|---|---|---|"
for name in alone "rprof record --off-cpu, no wake-ups" "rprof record --off-cpu (wake-ups)"; do
    printf '| %s | %.2f | %.2fx | %s |\n' "$name" "${result[$name]}" \
        "$(echo "${result[$name]} / ${result[alone]}" | bc -l)" "${lost[$name]}"
done
echo
echo "Last runs: wake calls on waited-for words recorded: ${wakes% *} (wakers_recorded:" \
    "${wakes#* }; without: $nowakes). Profile sizes: $(stat -c %s n.data) bytes without," \
    "$(stat -c %s w.data) bytes with."
