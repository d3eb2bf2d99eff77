#!/usr/bin/env bash
# Runs every check a commit must pass: formatting, clippy, and the whole test suite
# (unit tests and the integration tests that drive the real rprof binary on fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
