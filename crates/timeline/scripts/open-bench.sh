#!/usr/bin/env bash
# Measures the timeline page of a synthetic input (default 100 threads x 10 s): time to render
# it and its size (the `synthetic` example, release build), then the time headless Chromium
# takes to open it, as the median of N runs of `chromium --dump-dom` (browser start included)
# and the page's own time from navigation to its first drawing (`data-ready-ms`, browser start
# excluded), and how long one drawing of the whole view takes (`data-draw-ms`). The figures and budget are in docs/benchmarks.md ("Timeline").
#
#   crates/timeline/scripts/open-bench.sh [THREADS [SECONDS [N]]]
set -euo pipefail
cd "$(dirname "$0")/../../.."
threads=${1:-100}
seconds=${2:-10}
n=${3:-5}
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "open-bench: chromium is not installed (apt-get install -y chromium)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
page=$scratch/timeline.html
cargo run --quiet --release -p rprof-timeline --example synthetic -- "$page" "$threads" "$seconds"
walls=()
readies=()
draws=()
for _ in $(seq "$n"); do
    profile_dir=$(mktemp -d -p "$scratch")
    start=$(date +%s%N)
    dom=$(timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --disable-dev-shm-usage --user-data-dir="$profile_dir" \
        --dump-dom "file://$page" 2>/dev/null)
    end=$(date +%s%N)
    body=$(grep -o '<body[^>]*>' <<<"$dom")
    case $body in *data-ready-ms=*) ;; *) echo "open-bench: the page did not finish drawing: $body" >&2; exit 1 ;; esac
    case $body in *data-error=*) echo "open-bench: the page failed: $body" >&2; exit 1 ;; esac
    walls+=($(( (end - start) / 1000000 )))
    readies+=("$(sed 's/.*data-ready-ms="\([0-9.]*\)".*/\1/' <<<"$body")")
    draws+=("$(sed 's/.*data-draw-ms="\([0-9.]*\)".*/\1/' <<<"$body")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "chromium --dump-dom, median of $n: $(median "${walls[@]}") ms (runs: ${walls[*]})"
echo "page load to first drawing (data-ready-ms), median of $n: $(median "${readies[@]}") ms (runs: ${readies[*]})"
echo "one drawing of the whole recording (data-draw-ms, what a zoom or pan redraws), median of $n: $(median "${draws[@]}") ms (runs: ${draws[*]})"
