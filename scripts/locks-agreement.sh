#!/usr/bin/env bash
# Issue 17: rprof's lock rows against the fixtures' own counts. fixtures/locks.c (global
# mutex `order_book`) and fixtures/locks_rust.rs (a std Mutex in an Arc) count their contended
# acquisitions themselves (a failed trylock before the blocking lock); each is recorded N times
# with `rprof record --off-cpu` and the top row of `rprof report --locks --json` is printed
# beside the program's count. Prints a markdown table (docs/benchmarks.md keeps it).
#
# Environment: N [10] runs per fixture, RPROF [target/release/rprof].
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${N:-10}
RPROF=${RPROF:-$REPO/target/release/rprof}
[ -x "$RPROF" ] || { echo "locks-agreement: build rprof first (cargo build --release)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
gcc -O1 -g -o "$WORK/locks" fixtures/locks.c -lpthread
rustc -C opt-level=2 -C debuginfo=2 --edition 2021 -o "$WORK/locks_rust" fixtures/locks_rust.rs
cd "$WORK"
echo "| fixture | run | hand count | rprof contended | rprof waits | wake calls | threads | wait ms | name |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
for fixture in locks:order_book locks_rust:book; do
    exe=${fixture%%:*}
    lock=${fixture##*:}
    for run in $(seq "$N"); do
        hand=$("$RPROF" record --off-cpu -o p.data -- "./$exe" 2>/dev/null |
            awk -v n="$lock" '$1 == "contended" && $2 == n {print $3}')
        row=$("$RPROF" report --locks --json -i p.data | python3 -c '
import json, sys
top = json.load(sys.stdin)["locks"][0]
print(top["contended"], top["waits"], top["wakes"], top["threads"],
      round(top["wait_ns"] / 1e6), top["name"], sep=" | ")')
        echo "| $exe | $run | $hand | $row |"
    done
done
