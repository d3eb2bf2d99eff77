#!/usr/bin/env bash
# Regenerates the captured perf record streams in fixtures/captures/ that crates/record's unit
# tests replay without a kernel (see crates/record/src/capture.rs for the file layout).
#
# Each capture is a real `rprof record` run with RPROF_CAPTURE=FILE in its environment, which
# makes the recorder write every round of raw records it drains. Needs a machine where
# `rprof record` works (perf_event_paranoid <= 2 for your own processes, or root). Stacks are
# copied short (dwarf,1024 or less) and rates kept modest so each file stays well under 1 MiB.
#
# Usage: scripts/capture.sh            (then check `ls -l fixtures/captures` and run
#                                       `cargo test -p rprof-record`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/captures
work=${TMPDIR:-/tmp}/rprof-capture
mkdir -p "$out" "$work"
cargo build --locked --quiet
rprof=$PWD/target/debug/rprof
for fixture in record_threads record_forkexec; do
    gcc -O1 -g -o "$work/$fixture" "fixtures/$fixture.c" -lpthread -lm
done

# Records "$@" into $out/$1.cap, and writes what the live recording counted to $out/$1.counts
# (samples, threads, processes, lost: the replay tests expect the same from the capture).
capture() {
    local name=$1
    shift
    RPROF_CAPTURE="$out/$name.cap" "$rprof" record -o "$work/$name.data" "$@" \
        2>"$work/$name.stderr" >/dev/null
    local summary
    summary=$(grep '^rprof: recorded' "$work/$name.stderr")
    echo "$summary" | sed -E 's/.*: ([0-9]+) samples?, ([0-9]+) threads?, ([0-9]+) process(es)?, ([0-9]+) lost samples?.*/samples=\1\nthreads=\2\nprocesses=\3\nlost=\5/' \
        >"$out/$name.counts"
    echo "$out/$name.cap: $(stat -c %s "$out/$name.cap") bytes; $summary"
}

# A launched program with threads: main + alpha, beta, gamma (about 0.12 s of CPU).
capture threads -F 499 --call-graph dwarf,1024 -- "$work/record_threads" 0.2
# fork + exec: a forked child and a child that execs the same program as `record_forkexec exec`.
capture forkexec -F 99 --call-graph dwarf,1024 -- "$work/record_forkexec"
# An exec-heavy loop: a shell that runs /bin/true 100 times, sampled at a high rate so that some
# samples land inside execve.
capture execloop -F 20000 --call-graph dwarf,256 -- \
    sh -c 'i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done'
# LOST records: a one-page ring buffer per CPU and a high rate on three busy threads.
capture lost -m 1 -F 20000 --call-graph dwarf,1024 -- "$work/record_threads" 0.05
