#!/usr/bin/env bash
# Measures rprof side by side with perf (Debian's linux-perf) and samply on this machine, in
# the same run, and prints markdown tables (medians of N runs, ratios against the peers) and
# the exact commands that produced them. docs/benchmarks.md keeps the results. Not part of CI.
#
# Figures (issue 6):
#   1. recording overhead: wall and CPU of the workload alone, under rprof record, perf record
#      --call-graph dwarf (and dwarf,64000), and samply record, all at the same frequency (and
#      rprof at samply's settings: --no-kernel --call-graph dwarf,32000);
#   2. time to a flame graph: rprof record + rprof flame vs perf record --call-graph dwarf,64000
#      + perf script + inferno-collapse-perf + inferno-flamegraph (what cargo-flamegraph runs);
#   3. profile bytes per sample: rprof.data vs perf.data vs samply's profile;
#   4. lost samples on the multi-threaded workload at the default frequency and at 10 kHz;
#   5. stack quality: share of samples whose stack reaches `main` (or a thread's entry), and
#      the top-10 self functions of rprof report vs perf report;
#   6. report and flame on a large profile (>= 100,000 samples): time and peak memory.
#
# Workloads: fixtures/bench_single.c (single-threaded), fixtures/bench_threads.c (4 threads
# on however many CPUs), and ripgrep (installed from crates.io with full debug info into the
# cache directory) searching the Rust toolchain's HTML documentation, or a generated corpus when
# the toolchain has no docs.
#
# Needs root (or sudo) for the sysctl that samply needs (kernel.perf_event_paranoid <= 1: set
# for samply's runs only, and restored on exit, whatever happens) and to install missing tools.
#
# Environment (defaults in brackets):
#   BENCH_N [5]            runs per measurement (medians are reported)
#   BENCH_FREQ [999]       sampling frequency for figures 1-3 and 5 (rprof's default)
#   BENCH_HIGH_FREQ [10000] the second frequency of figure 4, and the frequency of figure 6
#   BENCH_LARGE_SAMPLES [110000] samples wanted in figure 6's profile
#   BENCH_SINGLE_ROUNDS [60] bench_single's work;  BENCH_THREADS_SCALE [10] bench_threads' work
#   BENCH_WORKLOADS ["single threads rg"]  which workloads to run
#   BENCH_FIGURES ["4 6 alloc"]  optional parts: 4 (lost samples), 6 (large profile) and alloc (the
#                          cost of record --alloc against heaptrack and dhat: scripts/bench-alloc.sh,
#                          BENCH_ALLOC_CALLS [1000000] malloc/free pairs, appended to the report); figures
#                          1, 2, 3 and 5 come from the same runs and always run
#   BENCH_CACHE [~/.cache/rprof-bench]  where ripgrep is installed (kept between runs)
#   BENCH_KEEP [0]         1: keep the scratch directory (profiles, raw results)
#   BENCH_NICE [-10]       scheduling priority of the whole run (as root), to be disturbed less
#   BENCH_OUT              also write the markdown report to this file (and the raw
#                          measurements to FILE.tsv)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

N=${BENCH_N:-5}
FREQ=${BENCH_FREQ:-999}
HIGH_FREQ=${BENCH_HIGH_FREQ:-10000}
LARGE_SAMPLES=${BENCH_LARGE_SAMPLES:-110000}
SINGLE_ROUNDS=${BENCH_SINGLE_ROUNDS:-60}
THREADS_SCALE=${BENCH_THREADS_SCALE:-10}
WORKLOADS=${BENCH_WORKLOADS:-single threads rg}
FIGURES=${BENCH_FIGURES-4 6 alloc}
CACHE=${BENCH_CACHE:-$HOME/.cache/rprof-bench}
ANALYZE="python3 $REPO/scripts/bench/analyze.py"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
# Run ahead of whatever else the machine is doing (every tool and workload inherits it).
if [ "$(id -u)" -eq 0 ]; then renice -n "${BENCH_NICE:--10}" -p $$ >/dev/null; fi
log() { printf '\033[1m[bench %s]\033[0m %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
has_figure() { case " $FIGURES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ------------------------------------------------------------------ scratch space and sysctls

W=$(mktemp -d /tmp/rprof-bench.XXXXXX)
PARANOID_FILE=/proc/sys/kernel/perf_event_paranoid
PARANOID_ORIG=$(cat "$PARANOID_FILE")
cleanup() {
    local rc=$?
    if [ "$(cat "$PARANOID_FILE")" != "$PARANOID_ORIG" ]; then
        echo "$PARANOID_ORIG" | $sudo tee "$PARANOID_FILE" >/dev/null || true
        log "restored kernel.perf_event_paranoid=$PARANOID_ORIG"
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept scratch directory $W"
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
set_paranoid() { echo "$1" | $sudo tee "$PARANOID_FILE" >/dev/null; }

# ------------------------------------------------------------------ tools

need_apt() {   # need_apt COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    log "installing $2 (Debian)"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$2" >/dev/null
}
need_apt gcc gcc
need_apt perf linux-perf
need_apt python3 python3
[ -x /usr/bin/time ] || { log "installing time (Debian)"; $sudo apt-get update -qq && $sudo apt-get install -y -qq time >/dev/null; }
export PATH="$HOME/.cargo/bin:$PATH"
missing=()
command -v samply >/dev/null || missing+=(samply)
{ command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; } || missing+=(inferno)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with cargo (this takes minutes)"
    cargo install --locked "${missing[@]}"
fi
RG=$CACHE/ripgrep/bin/rg
if [[ " $WORKLOADS " == *" rg "* ]] && [ ! -x "$RG" ]; then
    log "installing ripgrep with full debug info into $CACHE/ripgrep (this takes minutes)"
    CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=none \
        cargo install --locked ripgrep --root "$CACHE/ripgrep"
fi

log "building rprof (release)"
cargo build --release --locked -p rprof 2>&1 | tail -1 >&2
RPROF=$REPO/target/release/rprof

# ------------------------------------------------------------------ workloads

gcc -O2 -g -fomit-frame-pointer -o "$W/bench_single" fixtures/bench_single.c
gcc -O2 -g -fomit-frame-pointer -pthread -o "$W/bench_threads" fixtures/bench_threads.c
# One array per workload: CMD_single, CMD_threads, CMD_rg.
CMD_single=("$W/bench_single" "$SINGLE_ROUNDS")
CMD_threads=("$W/bench_threads" "$THREADS_SCALE" 4)
if [[ " $WORKLOADS " == *" rg "* ]]; then
    CORPUS=$(rustc --print sysroot 2>/dev/null)/share/doc/rust/html
    if [ ! -d "$CORPUS" ]; then
        CORPUS=$W/corpus
        log "no Rust HTML docs: generating a 400 MB corpus in $CORPUS"
        python3 - "$CORPUS" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(6)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz_') for _ in range(rng.randint(2, 12))) for _ in range(5000)]
for d in range(40):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(25):
        with open(f"{root}/d{d}/f{f}.txt", "w") as out:
            out.write('\n'.join(' '.join(rng.choice(words) for _ in range(rng.randint(3, 16))) for _ in range(60000)))
EOF
    fi
    CMD_rg=("$RG" --no-ignore --hidden --count-matches '[A-Z][a-z]+(Error|Iter)[a-z]*\(' "$CORPUS")
    cat "$RG" "$CORPUS"/index.html >/dev/null 2>&1 || true
    $RG --no-ignore --hidden --count-matches zzz "$CORPUS" >/dev/null 2>&1 || true   # warm the page cache
fi

# ------------------------------------------------------------------ measuring

RESULTS=$W/results.tsv
COMMANDS=$W/commands.md
: >"$RESULTS"
: >"$COMMANDS"
declare -A SEEN
put() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
show_cmd() {   # the arguments as a shell command line, quoting only what needs it
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./,=:+%-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
    done
    printf '%s' "${out% }"
}
note_cmd() {   # note_cmd TEXT: the exact command, once per distinct text
    local text=$1
    text=${text//$W/\$W}
    text=${text//$REPO/.}
    text=$(sed -E 's#\$W/([a-z0-9]+)\.[0-9]+/#$W/\1.RUN/#g' <<<"$text")
    [ -n "${SEEN[$text]:-}" ] && return 0
    SEEN[$text]=1
    printf -- '- `%s`\n' "$text" >>"$COMMANDS"
}

# measure WORKLOAD KEY RUN CMD...: runs CMD (stdout and stderr to $W/out, $W/err), records
# KEY.wall (date +%s.%N around it), KEY.cpu (user+sys of CMD and everything it waited for,
# from /usr/bin/time) and KEY.maxrss_kb.
measure() {
    local wl=$1 key=$2 run=$3
    shift 3
    note_cmd "$(show_cmd "$@")"
    local t0 t1
    t0=$(date +%s.%N)
    if ! /usr/bin/time -f '%U %S %M' -o "$W/time" "$@" >"$W/out" 2>"$W/err"; then
        log "command failed: $*"
        tail -5 "$W/err" >&2
        return 1
    fi
    t1=$(date +%s.%N)
    local u s m
    read -r u s m < <(tail -1 "$W/time")
    put "$wl" "$key.wall" "$run" "$(calc "$t1 - $t0")"
    put "$wl" "$key.cpu" "$run" "$(calc "$u + $s")"
    put "$wl" "$key.maxrss_kb" "$run" "$m"
}
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
last() { grep -P "^$1\t$2\t$3\t" "$RESULTS" | tail -1 | cut -f4; }
bytes() { stat -c %s "$1"; }


# One run of everything figures 1, 2, 3 and 5 need, for workload $1, run number $2.
bench_run() {
    local wl=$1 run=$2
    local -n cmd=CMD_$wl
    local d=$W/$wl.$run
    mkdir -p "$d"

    measure "$wl" alone "$run" "${cmd[@]}"

    # rprof: record, then the flame graph; then (untimed) what the tables need.
    measure "$wl" rprof.record "$run" "$RPROF" record -F "$FREQ" -o "$d/rprof.data" -- "${cmd[@]}"
    measure "$wl" rprof.flame "$run" "$RPROF" flame -i "$d/rprof.data" -o "$d/rprof.svg"
    put "$wl" rprof.total.wall "$run" "$(calc "$(last "$wl" rprof.record.wall "$run") + $(last "$wl" rprof.flame.wall "$run")")"
    "$RPROF" report -i "$d/rprof.data" --json --no-inline >"$d/rprof.json"
    note_cmd "rprof report -i rprof.data --json --no-inline"
    local samples lost throttled truncated
    read -r samples lost throttled truncated < <($ANALYZE rprof-json "$d/rprof.json")
    put "$wl" rprof.samples "$run" "$samples"
    # What record spent outside the recorded run (starting the target with its samplers, then
    # naming every address and finishing the file): its wall time minus the recorded duration.
    put "$wl" rprof.after_exit.wall "$run" "$(calc "$(last "$wl" rprof.record.wall "$run") - $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["duration_ns"] / 1e9)' "$d/rprof.json")")"
    put "$wl" rprof.bytes_per_sample "$run" "$(calc "$(bytes "$d/rprof.data") / $samples")"
    "$RPROF" flame -i "$d/rprof.data" --folded -o - >"$d/rprof.folded"
    note_cmd "rprof flame -i rprof.data --folded -o -"
    local n main root
    read -r n main root < <($ANALYZE folded "$d/rprof.folded")
    put "$wl" rprof.main_share "$run" "$main"
    put "$wl" rprof.root_share "$run" "$root"

    # rprof without its name cache (a first recording of a binary): record, then the flame graph.
    measure "$wl" rprofC.record "$run" env RPROF_CACHE_DIR=off "$RPROF" record -F "$FREQ" -o "$d/rprofC.data" -- "${cmd[@]}"
    measure "$wl" rprofC.flame "$run" "$RPROF" flame -i "$d/rprofC.data" -o "$d/rprofC.svg"
    put "$wl" rprofC.total.wall "$run" "$(calc "$(last "$wl" rprofC.record.wall "$run") + $(last "$wl" rprofC.flame.wall "$run")")"

    # perf, its default DWARF stack copy (8 KiB).
    measure "$wl" perf8k.record "$run" perf record -q -F "$FREQ" --call-graph dwarf -o "$d/perf8k.data" -- "${cmd[@]}"
    perf report --stats -i "$d/perf8k.data" >"$d/perf8k.stats" 2>/dev/null
    read -r samples lost throttled _ < <($ANALYZE perf-stats "$d/perf8k.stats")
    put "$wl" perf8k.bytes_per_sample "$run" "$(calc "$(bytes "$d/perf8k.data") / $samples")"
    rm -f "$d/perf8k.data"

    # perf as cargo-flamegraph runs it, then the flame graph pipeline.
    measure "$wl" perf64k.record "$run" perf record -q -F "$FREQ" --call-graph dwarf,64000 -o "$d/perf64k.data" -- "${cmd[@]}"
    measure "$wl" perf64k.flame "$run" bash -o pipefail -c \
        "perf script -i $d/perf64k.data 2>/dev/null | inferno-collapse-perf | tee $d/perf64k.folded | inferno-flamegraph > $d/perf64k.svg"
    put "$wl" perf64k.total.wall "$run" "$(calc "$(last "$wl" perf64k.record.wall "$run") + $(last "$wl" perf64k.flame.wall "$run")")"
    perf report --stats -i "$d/perf64k.data" >"$d/perf64k.stats" 2>/dev/null
    note_cmd "perf report --stats -i perf.data"
    read -r samples lost throttled _ < <($ANALYZE perf-stats "$d/perf64k.stats")
    put "$wl" perf64k.bytes_per_sample "$run" "$(calc "$(bytes "$d/perf64k.data") / $samples")"
    read -r n main root < <($ANALYZE folded "$d/perf64k.folded")
    put "$wl" perf64k.main_share "$run" "$main"
    put "$wl" perf64k.root_share "$run" "$root"
    if [ "$run" = 1 ]; then
        perf report -i "$d/perf64k.data" --stdio --no-children -g none --sort symbol -q --percent-limit 0 \
            >"$d/perf.top" 2>/dev/null
        note_cmd "perf report -i perf.data --stdio --no-children -g none --sort symbol -q --percent-limit 0"
        $ANALYZE top10 "$d/rprof.json" "$d/perf.top" >"$d/top10"
        put "$wl" top10.common "$run" "$(head -1 "$d/top10" | cut -d' ' -f1)"
        put "$wl" top10.compared "$run" "$(head -1 "$d/top10" | cut -d' ' -f2)"
        { echo "**$wl**, top-10 self functions:"; echo; sed -n '2,3p' "$d/top10" | sed 's/^/    /'; echo; } >>"$W/top10.md"
    fi
    rm -f "$d/perf64k.data"

    # samply (needs perf_event_paranoid <= 1, restored right after and on exit).
    set_paranoid 1
    measure "$wl" samply.record "$run" samply record --save-only --rate "$FREQ" -o "$d/samply.json.gz" -- "${cmd[@]}"
    set_paranoid "$PARANOID_ORIG"
    samples=$($ANALYZE samply-samples "$d/samply.json.gz")
    put "$wl" samply.bytes_per_sample "$run" "$(calc "$(bytes "$d/samply.json.gz") / $samples")"

    # rprof at samply's settings (user space only, 32000-byte stack copies), to tell the cost
    # of the settings from the cost of the tool.
    measure "$wl" rprofS.record "$run" "$RPROF" record -F "$FREQ" --no-kernel --call-graph dwarf,32000 -o "$d/rprofS.data" -- "${cmd[@]}"
    "$RPROF" report -i "$d/rprofS.data" --json >"$d/rprofS.json"
    read -r samples lost throttled truncated < <($ANALYZE rprof-json "$d/rprofS.json")
    put "$wl" rprofS.bytes_per_sample "$run" "$(calc "$(bytes "$d/rprofS.data") / $samples")"
    put "$wl" rprofS.truncated_share "$run" "$(calc "$truncated / $samples")"

    rm -rf "$d"
}

# Figure 4: lost samples on the multi-threaded workload.
lost_run() {
    local fq=$1 run=$2
    local -n cmd=CMD_threads
    local d=$W/lost.$run
    mkdir -p "$d"
    local samples lost throttled truncated
    note_cmd "$(show_cmd "$RPROF" record -F "$fq" -o rprof.data -- "${cmd[@]}")"
    "$RPROF" record -F "$fq" -o "$d/rprof.data" -- "${cmd[@]}" >/dev/null 2>"$d/rprof.err"
    "$RPROF" report -i "$d/rprof.data" --json >"$d/rprof.json"
    read -r samples lost throttled truncated < <($ANALYZE rprof-json "$d/rprof.json")
    put threads "lost.$fq.rprof.samples" "$run" "$samples"
    put threads "lost.$fq.rprof.lost" "$run" "$lost"
    put threads "lost.$fq.rprof.throttled" "$run" "$throttled"
    local tool size
    for tool in perf8k perf65k; do
        size=; [ "$tool" = perf65k ] && size=,65528
        note_cmd "$(show_cmd perf record -q -F "$fq" --call-graph "dwarf$size" -o perf.data -- "${cmd[@]}")"
        perf record -q -F "$fq" --call-graph "dwarf$size" -o "$d/perf.data" -- "${cmd[@]}" >/dev/null 2>&1
        perf report --stats -i "$d/perf.data" >"$d/perf.stats" 2>/dev/null
        read -r samples lost throttled _ < <($ANALYZE perf-stats "$d/perf.stats")
        put threads "lost.$fq.$tool.samples" "$run" "$samples"
        put threads "lost.$fq.$tool.lost" "$run" "$lost"
        put threads "lost.$fq.$tool.throttled" "$run" "$throttled"
        rm -f "$d/perf.data"
    done
    rm -rf "$d"
}

# Figure 6: a large profile of the multi-threaded workload at HIGH_FREQ.
large_run() {
    local d=$W/large
    mkdir -p "$d"
    # Scale the workload from its measured CPU time so that it yields LARGE_SAMPLES samples.
    local cpu scale
    cpu=$(grep -P "^threads\talone.cpu\t" "$RESULTS" | cut -f4 | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}' || true)
    if [ -z "$cpu" ]; then
        measure threads alone 0 "$W/bench_threads" "$THREADS_SCALE" 4
        cpu=$(last threads alone.cpu 0)
    fi
    scale=$(calc "$THREADS_SCALE * $LARGE_SAMPLES / ($HIGH_FREQ * $cpu) * 1.15")
    scale=$(printf '%.1f' "$scale")
    log "figure 6: bench_threads $scale 4 at $HIGH_FREQ Hz"
    measure large rprof.record 1 "$RPROF" record -F "$HIGH_FREQ" -o "$d/rprof.data" -- "$W/bench_threads" "$scale" 4
    "$RPROF" report -i "$d/rprof.data" --json >"$d/rprof.json"
    local samples rest
    read -r samples rest < <($ANALYZE rprof-json "$d/rprof.json")
    put large rprof.samples 1 "$samples"
    put large rprof.bytes 1 "$(bytes "$d/rprof.data")"
    measure large rprof.report 1 "$RPROF" report -i "$d/rprof.data" --top 50
    measure large rprof.flame 1 "$RPROF" flame -i "$d/rprof.data" -o "$d/rprof.svg"
    rm -f "$d/rprof.data"
    # The peer: perf with its default DWARF stack copy (8 KiB; 64 KiB would need ~7 GB here).
    measure large perf.record 1 perf record -q -F "$HIGH_FREQ" --call-graph dwarf -o "$d/perf.data" -- "$W/bench_threads" "$scale" 4
    perf report --stats -i "$d/perf.data" >"$d/perf.stats" 2>/dev/null
    read -r samples rest < <($ANALYZE perf-stats "$d/perf.stats")
    put large perf.samples 1 "$samples"
    put large perf.bytes 1 "$(bytes "$d/perf.data")"
    measure large perf.report 1 bash -c "perf report -i $d/perf.data --stdio > /dev/null 2>&1"
    measure large perf.flame 1 bash -o pipefail -c \
        "perf script -i $d/perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > $d/perf.svg"
    rm -rf "$d"
}

START=$(date +%s)
log "scratch directory $W; N=$N, $FREQ Hz; workloads: $WORKLOADS"
# rprof's name cache (README, "rprof record"): its own, empty at the start, so that what the
# runs find in it is what this script put there. One unmeasured recording of each workload
# first, as a user who records the same program again would have made; the cold case (no
# cache at all: every name read from the binaries) is measured in every run as rprofC.
export RPROF_CACHE_DIR=$W/rprof-cache
for wl in $WORKLOADS; do
    declare -n warm=CMD_$wl
    note_cmd "$(show_cmd "$RPROF" record -F "$FREQ" -o rprof.data -- "${warm[@]}") (once per workload, unmeasured: fills the name cache)"
    "$RPROF" record -F "$FREQ" -o "$W/warm.data" -- "${warm[@]}" >/dev/null 2>&1
    unset -n warm
done
rm -f "$W/warm.data"
for run in $(seq 1 "$N"); do
    for wl in $WORKLOADS; do
        log "run $run/$N: $wl"
        bench_run "$wl" "$run"
    done
done
if has_figure 4; then
    for run in $(seq 1 "$N"); do
        for fq in "$FREQ" "$HIGH_FREQ"; do
            log "figure 4, run $run/$N: lost samples at $fq Hz"
            lost_run "$fq" "$run"
        done
    done
fi
has_figure 6 && large_run
END=$(date +%s)

# ------------------------------------------------------------------ report

report() {
    echo "## rprof vs perf vs samply — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB," \
        "Linux $(uname -r), container: $(systemd-detect-virt --container 2>/dev/null || echo none), VM: $(systemd-detect-virt --vm 2>/dev/null || echo unknown)," \
        "PMU: $(ls /sys/bus/event_source/devices/ | grep -qx cpu && echo yes || echo 'none (software cpu-clock events only)')," \
        "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Tools: $("$RPROF" --version) (built from the work tree at $(git -C "$REPO" describe --always --dirty)), $(perf version), $(cargo install --list | grep -E '^(samply|inferno) ' | tr -d : | paste -sd, | sed 's/,/, /g'), ripgrep $("$RG" --version 2>/dev/null | head -1 | cut -d' ' -f2)," \
        "gcc $(gcc -dumpfullversion), $(rustc --version | cut -d' ' -f1-2)."
    echo "Priority: the benchmark ran at nice $(nice) (BENCH_NICE) so that other work on the machine disturbs it less."
    echo "N=$N runs per figure, $FREQ Hz (figures 1-3, 5), $HIGH_FREQ Hz (figures 4, 6); took $((END - START)) s."
    echo
    echo "Workloads:"
    for wl in $WORKLOADS; do
        local arr="CMD_$wl[@]" c
        c=$(show_cmd "${!arr}")
        c=${c//$W/\$W}
        echo "- $wl: \`$c\`"
    done
    echo
    $ANALYZE table "$RESULTS"
    [ -f "$W/top10.md" ] && { echo "Top-10 self functions (run 1; rprof \`--no-inline\`, names normalized: GCC \`.part/.isra/.constprop/.cold\` suffixes and Rust hashes removed, glibc \`__memmove_*\` read as its alias \`__memcpy_*\`):"; echo; cat "$W/top10.md"; }
    echo "### Commands"
    echo
    echo "\$W is the scratch directory; every timed command ran under \`/usr/bin/time -f '%U %S %M'\` (CPU = user + sys of the command and its children, peak RSS) with wall time from \`date +%s.%N\` around it."
    echo
    cat "$COMMANDS"
}
if [ -n "${BENCH_OUT:-}" ]; then
    report | tee "$BENCH_OUT"
else
    report
fi
if [ -n "${BENCH_OUT:-}" ]; then cp "$RESULTS" "$BENCH_OUT.tsv"; fi
# Allocation profiling (issue 14): its own script, so that it can also run alone.
alloc_report() {
    echo
    echo "## Allocation profiling: record --alloc against heaptrack and valgrind --tool=dhat"
    echo
    echo "\`RPROF=$RPROF scripts/bench-alloc.sh ${BENCH_ALLOC_CALLS:-1000000} $N\`:"
    echo
    RPROF="$RPROF" "$REPO/scripts/bench-alloc.sh" "${BENCH_ALLOC_CALLS:-1000000}" "$N"
}
if has_figure alloc; then
    if [ -n "${BENCH_OUT:-}" ]; then alloc_report | tee -a "$BENCH_OUT"; else alloc_report; fi
fi
