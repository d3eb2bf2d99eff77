#!/usr/bin/env bash
# Profiles the recorder with rprof itself (issue 13): an outer `rprof record` records an inner
# `rprof record` that records ripgrep (the rg workload of scripts/bench.sh, with full debug
# info). Prints where the inner recorder's CPU time goes (`rprof report --pid`) and writes its
# flame graph. Not part of CI; needs root (the inner recorder samples kernel stacks) and the
# ripgrep that scripts/bench.sh installs into its cache.
#
# Usage: scripts/self-profile.sh [SVG]     (default: docs/img/recorder-rg.svg)
# Environment: SELF_FREQ [4999] the outer recorder's frequency; SELF_INNER [the rprof just built]
# the recorder profiled (another build, to compare); SELF_WARM [3] recordings of rg that fill the
# inner recorder's own name cache first (0: a first recording, no cache); BENCH_CACHE as in
# bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SVG=${1:-$REPO/docs/img/recorder-rg.svg}
FREQ=${SELF_FREQ:-4999}
CACHE=${BENCH_CACHE:-$HOME/.cache/rprof-bench}
RG=$CACHE/ripgrep/bin/rg
if [ ! -x "$RG" ]; then
    echo "self-profile.sh: $RG is missing; run scripts/bench.sh once (it installs ripgrep)" >&2
    exit 2
fi
CORPUS=$(rustc --print sysroot)/share/doc/rust/html
if [ ! -d "$CORPUS" ]; then
    echo "self-profile.sh: $CORPUS is missing (the Rust HTML documentation is the corpus)" >&2
    exit 2
fi

cargo build --release --locked -p rprof 2>&1 | tail -1 >&2
RPROF=$REPO/target/release/rprof
INNER=${SELF_INNER:-$RPROF}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$RG" --no-ignore --hidden --count-matches zzz "$CORPUS" >/dev/null 2>&1 || true # warm the cache
# The inner recorder's name cache, filled as a user's would be after a few recordings of rg.
INNER_CACHE=$W/names
WARM=${SELF_WARM:-3}
if [ "$WARM" -eq 0 ]; then INNER_CACHE=off; fi
for _ in $(seq "$WARM"); do
    RPROF_CACHE_DIR=$INNER_CACHE "$INNER" record -o "$W/warm.data" -- \
        "$RG" --no-ignore --hidden --count-matches '[A-Z][a-z]+(Error|Iter)[a-z]*\(' "$CORPUS" \
        >/dev/null 2>&1
done

# The inner recorder writes its pid first, so that the outer profile can be cut to it (the
# outer recording also holds ripgrep's own samples: its cgroup events see the inner command).
"$RPROF" record -F "$FREQ" -o "$W/self.data" -- sh -c 'echo $$ >"$1"; shift; exec "$@"' sh \
    "$W/inner.pid" env RPROF_CACHE_DIR="$INNER_CACHE" "$INNER" record -o "$W/inner.data" -- \
    "$RG" --no-ignore --hidden --count-matches '[A-Z][a-z]+(Error|Iter)[a-z]*\(' "$CORPUS" \
    >/dev/null
PID=$(cat "$W/inner.pid")
echo "## Where \`rprof record\` spends its CPU time recording rg (outer: rprof record -F $FREQ)"
echo
echo '```'
"$RPROF" report -i "$W/self.data" --pid "$PID" --top 25 --width 110 --color never
echo '```'
echo
echo '```'
"$RPROF" report -i "$W/self.data" --pid "$PID" --sort total --top ${SELF_TOP:-25} --width 110 --color never
echo '```'
mkdir -p "$(dirname "$SVG")"
"$RPROF" flame -i "$W/self.data" --pid "$PID" --title "rprof record recording rg" -o "$SVG"
echo "flame graph: $SVG" >&2
