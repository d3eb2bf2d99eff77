#!/usr/bin/env bash
# Builds rprof and a small C example, records the example, and prints the report.
# Installs gcc first if the machine lacks it (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v gcc >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq gcc
fi
cargo build --release --locked
out=$(mktemp -d)
gcc -O2 -g -fomit-frame-pointer -o "$out/example" fixtures/example.c -lpthread -lm
./target/release/rprof record -o "$out/rprof.data" -- "$out/example"
./target/release/rprof report -i "$out/rprof.data" --top 15
./target/release/rprof flame -i "$out/rprof.data" -o "$out/flame.svg"
echo "flame graph: $out/flame.svg"
