#!/usr/bin/env bash
# Fuzzes the profile reader (crates/profile/fuzz) for a bounded time:
#
#   scripts/fuzz-profile.sh [SECONDS]      # default 60
#
# Builds the libFuzzer target on stable Rust with the flags cargo-fuzz would pass (no nightly,
# no cargo-fuzz needed), starts from the committed seeds (crates/profile/fuzz/seeds: the saved
# profiles of fixtures/profiles and structural mutations of them) plus whatever earlier runs
# found (crates/profile/fuzz/corpus/profile, not committed), and stops after SECONDS. A crash
# leaves its input in crates/profile/fuzz/artifacts/ and makes this script exit non-zero;
# replay it with: crates/profile/fuzz/target/x86_64-unknown-linux-gnu/release/profile FILE
set -euo pipefail
seconds=${1:-60}
case "$seconds" in
    '' | *[!0-9]*)
        echo "fuzz-profile.sh: SECONDS must be a whole number, not '$seconds'" >&2
        exit 2
        ;;
esac
cd "$(dirname "$0")/../crates/profile/fuzz"
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --quiet --release --target "$target"
mkdir -p corpus/profile artifacts
"target/$target/release/profile" corpus/profile seeds \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=artifacts/ -print_final_stats=1
