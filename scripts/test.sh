#!/usr/bin/env bash
# Runs every check a commit must pass: formatting, clippy, and the whole test suite
# (unit tests and the integration tests that drive the real rprof binary on fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# A test that cannot run on this machine (not root, no PMU, ...) appends "SKIP test: reason" to
# this file instead of passing silently; the count is printed after the run.
RPROF_SKIP_LOG=$(mktemp)
export RPROF_SKIP_LOG
trap 'rm -f "$RPROF_SKIP_LOG"' EXIT
cargo test --workspace --locked
skipped=$(wc -l <"$RPROF_SKIP_LOG")
echo "rprof tests skipped on this machine: $skipped"
cat "$RPROF_SKIP_LOG"
