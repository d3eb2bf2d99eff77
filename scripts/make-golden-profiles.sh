#!/usr/bin/env bash
# Regenerates the saved profiles under fixtures/profiles/ that the report and flame tests read,
# then (with --bless) rewrites the expected outputs under fixtures/golden/{report,flame,diff}.
#
#   scripts/make-golden-profiles.sh            # synthetic + recorded profiles
#   scripts/make-golden-profiles.sh --bless    # ... and rewrite the golden files from them
#
# basic/interrupted/empty.rprof are synthetic (crates/report/src/synth.rs): byte-for-byte the
# same on every run. shares/threads/regress-*.rprof are real recordings of fixtures/report_*.c
# and fixtures/regress.c by `rprof record` (needs perf_event_open: root, or kernel.perf_event_paranoid <= 1), so they
# change with every run and the golden files must be blessed after remaking them.
set -euo pipefail
cd "$(dirname "$0")/.."

out=fixtures/profiles
mkdir -p "$out"

# Deterministic synthetic profiles.
cargo run --quiet -p rprof-report --example make_profiles -- "$out"

# Real recordings of the fixture programs with designed shares.
cargo build --quiet --bin rprof
rprof=target/debug/rprof
bin=target/fixtures
mkdir -p "$bin"
for name in report_shares report_threads; do
    gcc -O2 -g -fomit-frame-pointer -o "$bin/$name" "fixtures/$name.c" -lpthread -lm
done
"$rprof" record -o "$out/shares.rprof" -- "$bin/report_shares"
"$rprof" record -o "$out/threads.rprof" -- "$bin/report_threads"
# The same program with its off-CPU blocks: the timeline's page test reads it.
"$rprof" record --off-cpu -o "$out/threads-offcpu.rprof" -- "$bin/report_threads"
chmod 644 "$out"/*.rprof
# The designed regression of rprof diff: BASE and NEW runs of one program.
gcc -O2 -g -fomit-frame-pointer -o "$bin/regress" fixtures/regress.c
"$rprof" record -o "$out/regress-base.rprof" -- "$bin/regress" base
"$rprof" record -o "$out/regress-new.rprof" -- "$bin/regress" new

if [ "${1:-}" = "--bless" ]; then
    RPROF_BLESS=1 cargo test --quiet --test it -- report:: flame:: diff::
fi
