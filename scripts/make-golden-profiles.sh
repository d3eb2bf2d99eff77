#!/usr/bin/env bash
# Regenerates the saved profiles under fixtures/profiles/ that the report and flame golden tests
# read, then (with --bless) rewrites the expected outputs under fixtures/golden/.
#
#   scripts/make-golden-profiles.sh            # synthetic profiles only
#   scripts/make-golden-profiles.sh --bless    # ... and rewrite the golden files from them
set -euo pipefail
cd "$(dirname "$0")/.."

out=fixtures/profiles
mkdir -p "$out"

# Deterministic synthetic profiles (designed workloads, see crates/report/src/synth.rs).
cargo run --quiet -p rprof-report --example make_profiles -- "$out"

if [ "${1:-}" = "--bless" ]; then
    RPROF_BLESS=1 cargo test --quiet --test it -- report:: flame::
fi
