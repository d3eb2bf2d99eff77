//! `rprof latency` (issue 15): function durations through uprobes, checked against the
//! fixture's own measurement of each call (fixtures/latency.c writes one line per call).
//!
//! Uprobes need root or CAP_PERFMON: without them each test says SKIP (the unprivileged test
//! checks the message instead).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    as_nobody, build_c, build_rust, fixture_out_dir, is_root, mapped_byte, repo_root, rprof, skip,
    stderr, stdout, tempdir, KillOnDrop,
};

fn fixture() -> PathBuf {
    build_c("latency.c", "latency", &["-g", "-O2"])
}

static LIB_LOCK: Mutex<()> = Mutex::new(());

/// `liblatency_lib.so` and `latency_lib`, the fixture linked against it (rpath to its dir).
fn lib_fixture() -> (PathBuf, PathBuf) {
    let _guard = LIB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fixture_out_dir();
    let lib = dir.join("liblatency_lib.so");
    let exe = dir.join("latency_lib");
    let fixtures = repo_root().join("fixtures");
    let gcc = |args: &[&str]| {
        let status = Command::new("gcc").args(args).status().expect("gcc runs");
        assert!(status.success(), "gcc {args:?}");
    };
    let lib_tmp = dir.join("liblatency_lib.so.tmp");
    gcc(&[
        "-g",
        "-O2",
        "-shared",
        "-fPIC",
        "-o",
        lib_tmp.to_str().unwrap(),
        fixtures.join("latency_lib.c").to_str().unwrap(),
    ]);
    std::fs::rename(&lib_tmp, &lib).unwrap();
    let exe_tmp = dir.join("latency_lib.tmp");
    gcc(&[
        "-g",
        "-O2",
        "-DWITH_LIB",
        "-o",
        exe_tmp.to_str().unwrap(),
        fixtures.join("latency.c").to_str().unwrap(),
        lib.to_str().unwrap(),
        &format!("-Wl,-rpath,{}", dir.display()),
        "-lpthread",
    ]);
    std::fs::rename(&exe_tmp, &exe).unwrap();
    (lib, exe)
}

/// Runs `rprof latency ARGS -- FIXTURE MODE TRUTH` with `--json`; returns the JSON summary and
/// the fixture's own durations (sorted).
fn measure(exe: &Path, functions: &[&str], mode: &str, extra: &[&str]) -> (Value, Vec<u64>) {
    let dir = tempdir();
    let truth = dir.path().join("truth.txt");
    let mut args = vec!["latency", "--json"];
    args.extend_from_slice(extra);
    args.extend_from_slice(functions);
    args.push("--");
    let exe = exe.to_str().unwrap();
    let truth_s = truth.to_str().unwrap();
    args.extend_from_slice(&[exe, mode, truth_s]);
    let out = rprof(dir.path(), &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let mut durations: Vec<u64> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    durations.sort_unstable();
    (json, durations)
}

fn function<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

/// The value at quantile `q` of sorted `v` (the smallest value with at least q of them at or
/// below it, as HDR histograms define it).
fn quantile(v: &[u64], q: f64) -> u64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn within(got: u64, want: u64, pct: f64) -> bool {
    (got as f64 - want as f64).abs() <= want as f64 * pct / 100.0
}

/// Issue 15: 1,000 calls of designed durations (900 × 0.2 ms, 90 × 2 ms, 10 × 10 ms): the count
/// is exact, and p50, p99.9 and max are within 10 % of the fixture's own measurement.
#[test]
fn designed_durations_match_the_fixtures_truth() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let before = std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").ok();
    let (json, truth) = measure(&fixture(), &["timed_call"], "main", &[]);
    let f = function(&json, "timed_call");
    assert_eq!(truth.len(), 1000, "the fixture made its calls");
    assert_eq!(f["count"], 1000, "{f}");
    // The fixture's truth is sane: its median is the designed 0.2 ms (give or take load),
    // its slowest call at least the designed 10 ms.
    let t50 = quantile(&truth, 0.5);
    assert!((200_000..300_000).contains(&t50), "fixture p50 {t50}");
    assert!(truth[999] >= 10_000_000, "fixture max {}", truth[999]);
    for (field, want) in [
        ("p50_ns", t50),
        ("p999_ns", quantile(&truth, 0.999)),
        ("max_ns", truth[999]),
    ] {
        let got = f[field].as_u64().unwrap();
        assert!(
            within(got, want, 10.0),
            "{field}: rprof {got}, fixture {want}: {f}"
        );
    }
    assert_eq!(f["unfinished"], 0);
    assert_eq!(f["unmatched_returns"], 0);
    assert!(json["probe_cost_ns"].as_u64().is_some(), "{json}");
    // perf_event uprobes are not tracefs probes: nothing left there, nothing added.
    let after = std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").ok();
    assert_eq!(before, after);
}

/// Issue 15: calls on two threads at once are paired per thread, and the threads the target
/// creates work (an inherited uprobe event made every pthread_create fail with EFAULT).
#[test]
fn two_threads_are_paired_per_thread() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let (json, truth) = measure(&fixture(), &["timed_call"], "threads", &["--per-thread"]);
    assert_eq!(truth.len(), 1000, "both threads ran");
    let f = function(&json, "timed_call");
    assert_eq!(f["count"], 1000, "{f}");
    let threads = f["threads"].as_array().unwrap();
    let counts: Vec<u64> = threads
        .iter()
        .map(|t| t["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![500, 500], "{f}");
    assert!(
        within(f["p50_ns"].as_u64().unwrap(), quantile(&truth, 0.5), 10.0),
        "{f}"
    );
    assert!(
        within(f["max_ns"].as_u64().unwrap(), truth[999], 10.0),
        "{f}"
    );
}

/// Issue 15: recursion nests (nest(3) → nest(2) → nest(1), each 0.5 ms of its own).
#[test]
fn recursive_calls_nest() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let (json, truth) = measure(&fixture(), &["nest"], "recursion", &[]);
    assert_eq!(truth.len(), 30);
    let f = function(&json, "nest");
    assert_eq!(f["count"], 30, "{f}");
    for (field, want) in [
        ("min_ns", truth[0]),
        ("p50_ns", quantile(&truth, 0.5)),
        ("max_ns", truth[29]),
    ] {
        let got = f[field].as_u64().unwrap();
        assert!(
            within(got, want, 10.0),
            "{field}: rprof {got}, fixture {want}: {f}"
        );
    }
    // Three depths: the outermost call lasts about three times the innermost.
    assert!(truth[29] > 2 * truth[0], "{truth:?}");
}

/// Issue 15: a function left by longjmp never returns: counted as unfinished, never timed,
/// and its caller's durations are not disturbed. (The calls last 2 ms: with 0.2 ms, the few
/// microseconds a loaded machine adds to each probe hit once put the median 10 % off.)
#[test]
fn longjmp_leaves_unfinished_calls() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let (json, truth) = measure(&fixture(), &["jumper", "thrower"], "longjmp", &[]);
    let jumper = function(&json, "jumper");
    let thrower = function(&json, "thrower");
    assert_eq!(jumper["count"], 20, "{jumper}");
    assert_eq!(thrower["count"], 0, "{thrower}");
    assert_eq!(thrower["unfinished"], 20, "{thrower}");
    assert!(
        within(
            jumper["p50_ns"].as_u64().unwrap(),
            quantile(&truth, 0.5),
            10.0
        ),
        "{jumper}"
    );
}

/// Issue 15: a function of a shared library, named by library (`liblatency_lib:`) or path.
#[test]
fn shared_library_function() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let (lib, exe) = lib_fixture();
    let by_path = format!("{}:lib_timed_call", lib.display());
    let (json, truth) = measure(
        &exe,
        &["liblatency_lib:lib_timed_call", &by_path],
        "lib",
        &[],
    );
    assert_eq!(truth.len(), 1000);
    for name in ["liblatency_lib:lib_timed_call", by_path.as_str()] {
        let f = function(&json, name);
        assert_eq!(f["count"], 1000, "{f}");
        assert!(
            within(f["p50_ns"].as_u64().unwrap(), quantile(&truth, 0.5), 10.0),
            "{f}"
        );
        assert!(
            within(f["max_ns"].as_u64().unwrap(), truth[999], 10.0),
            "{f}"
        );
    }
    // libc by its short name: the fixture writes its 1,000 durations with fprintf. (Not a
    // function every process calls all the time, such as clock_nanosleep: the probes are in
    // every process that maps libc while the test runs, and would slow down other tests.)
    let (json, _) = measure(&fixture(), &["libc:fprintf"], "main", &["--no-calibrate"]);
    assert_eq!(function(&json, "libc:fprintf")["count"], 1000, "{json}");
}

/// Issue 15: `-p` attaches to a running process; the probes are breakpoints in its code while
/// rprof runs and are gone after rprof ends, however it ends (here: SIGKILL).
#[test]
fn attach_and_probes_go_away_on_every_exit() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let exe = fixture();
    let dir = tempdir();
    let target = KillOnDrop(
        Command::new(&exe)
            .args(["forever", "/dev/null"])
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    std::thread::sleep(Duration::from_millis(100));
    let pid_s = pid.to_string();
    let out = rprof(
        dir.path(),
        &[
            "latency",
            "--json",
            "-p",
            &pid_s,
            "--duration",
            "1",
            "timed_call",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let f = function(&json, "timed_call");
    // 0.2 ms calls for 1 s: thousands, unless the machine is very loaded; 100 at least.
    assert!(f["count"].as_u64().unwrap() >= 100, "{f}");
    assert!(within(f["p50_ns"].as_u64().unwrap(), 200_000, 50.0), "{f}");
    let offset = f["file_offset"].as_u64().unwrap();
    let original = mapped_byte(pid, &exe, offset);
    assert_ne!(original, 0xcc, "no breakpoint before rprof runs");
    // While rprof runs, the first byte is int3; after SIGKILL it is the original again.
    let mut running = rprof(dir.path(), &["latency", "-p", &pid_s, "timed_call"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mapped_byte(pid, &exe, offset) != 0xcc {
        assert!(Instant::now() < deadline, "the probe never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill().unwrap();
    running.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mapped_byte(pid, &exe, offset) != original {
        assert!(
            Instant::now() < deadline,
            "the probe stayed after rprof was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn one_line(out: &Output) -> String {
    let text = stderr(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line of stderr, got:\n{text}");
    lines[0].to_string()
}

fn latency_fails(args: &[&str], code: i32) -> String {
    let dir = tempdir();
    let out = rprof(dir.path(), args).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    one_line(&out)
}

/// Issue 15: bad FUNCTION arguments are one line each (exit 2) that say what to do instead.
#[test]
fn bad_functions_are_explained() {
    let exe = fixture();
    let exe = exe.to_str().unwrap();
    let run = |f: &str| latency_fails(&["latency", f, "--", exe, "main", "/dev/null"], 2);
    let line = run("timed_cal");
    assert!(line.contains("close matches: timed_call"), "{line}");
    let line = run("inlined_only");
    assert!(line.contains("only inlined"), "{line}");
    let line = run("libc:memcpy");
    assert!(line.contains("IFUNC"), "{line}");
    let line = run("clock_nanosleep@plt");
    assert!(line.contains("PLT stub"), "{line}");
    let line = run("clock_nanosleep");
    assert!(
        line.contains("imported") && line.contains("'libc.so.6:clock_nanosleep'"),
        "{line}"
    );
    let line = run("libnothere:f");
    assert!(line.contains("no library 'libnothere'"), "{line}");
    let line = latency_fails(&["latency", "timed_call"], 2);
    assert!(line.contains("nothing to measure"), "{line}");
}

/// Issue 15: a pid that does not exist fails like `record -p` (exit 1, one line).
#[test]
fn gone_pid_is_one_line() {
    // pid_max is at most 2^22.
    let line = latency_fails(&["latency", "-p", "4194304", "main"], 1);
    assert!(line.contains("no process with id 4194304"), "{line}");
}

/// Issue 15: without privileges, one line that says how to get them (exit 1).
#[test]
fn unprivileged_is_one_line_with_the_fix() {
    if !is_root() {
        return skip("needs root to become another user with setpriv");
    }
    let dir = tempdir();
    let out = as_nobody(&crate::util::rprof_bin())
        .args(["latency", "libc:getpid", "--", "/bin/true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = one_line(&out);
    assert!(line.contains("permission denied"), "{line}");
    assert!(line.contains("CAP_PERFMON"), "{line}");
}

/// Issue 15: `-o FILE` keeps the histograms (buckets add up to the count) and `--interval`
/// prints a summary per interval.
#[test]
fn histogram_file_and_intervals() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let dir = tempdir();
    let exe = fixture();
    let file = dir.path().join("hist.json");
    let out = rprof(
        dir.path(),
        &[
            "latency",
            "--no-calibrate",
            "--interval",
            "0.1",
            "-o",
            file.to_str().unwrap(),
            "timed_call",
            "--",
            exe.to_str().unwrap(),
            "main",
            "/dev/null",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    // The run lasts about 0.5 s: several interval summaries, then the final one.
    assert!(
        text.matches("rprof latency: interval of").count() >= 2,
        "{text}"
    );
    assert_eq!(text.matches("rprof latency: over").count(), 1, "{text}");
    assert!(text.contains("timed_call"), "{text}");
    let hist: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(hist["format"], "rprof-latency-histograms");
    let f = function(&hist, "timed_call");
    assert_eq!(f["count"], 1000);
    let total: u64 = f["histogram"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1000);
}

/// Issue 15: a Rust function named by its demangled path (no hash), timed like a C one.
#[test]
fn rust_function_by_demangled_path() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let exe = build_rust("latency_rust.rs", "latency_rust");
    let dir = tempdir();
    let truth = dir.path().join("truth.txt");
    let out = rprof(
        dir.path(),
        &[
            "latency",
            "--json",
            "--no-calibrate",
            "latency_rust::server::handle",
            "--",
            exe.to_str().unwrap(),
            truth.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let f = function(&json, "latency_rust::server::handle");
    assert_eq!(f["count"], 200, "{f}");
    assert!(
        f["symbol"]
            .as_str()
            .unwrap()
            .starts_with("_ZN12latency_rust6server6handle17h"),
        "{f}"
    );
    let mut truth: Vec<u64> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    truth.sort_unstable();
    assert!(
        within(f["p50_ns"].as_u64().unwrap(), quantile(&truth, 0.5), 10.0),
        "{f}"
    );
}

/// Issue 15: `--stacks N` shows who made the N slowest calls: the two threads' calls come
/// from `half` (started by pthread), unwound from a stack copy taken at the entry probe.
#[test]
fn stacks_of_the_slowest_calls_name_their_callers() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let (json, truth) = measure(
        &fixture(),
        &["timed_call"],
        "threads",
        &["--stacks", "3", "--no-calibrate"],
    );
    let f = function(&json, "timed_call");
    assert_eq!(f["count"], 1000, "{f}");
    let slowest = f["slowest"].as_array().unwrap();
    assert_eq!(slowest.len(), 3, "{f}");
    // Slowest first, and they are the slowest: the longest is the run's max.
    assert_eq!(slowest[0]["duration_ns"], f["max_ns"], "{f}");
    assert!(
        within(
            slowest[0]["duration_ns"].as_u64().unwrap(),
            truth[999],
            10.0
        ),
        "{f}"
    );
    for call in slowest {
        let stack: Vec<&str> = call["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(stack.first(), Some(&"timed_call"), "{call}");
        assert_eq!(stack.get(1), Some(&"half"), "{call}");
    }
    // In main mode the caller is main.
    let (json, _) = measure(
        &fixture(),
        &["timed_call"],
        "main",
        &["--stacks", "1", "--no-calibrate"],
    );
    let stack = &function(&json, "timed_call")["slowest"][0]["stack"];
    assert_eq!(stack[1], "main", "{stack}");
}

/// Issue 15: Ctrl-C (SIGINT to rprof) is passed to COMMAND, which ends, and the summary
/// follows; rprof exits with COMMAND's status (130).
#[test]
fn interrupt_ends_command_and_prints_the_summary() {
    if !is_root() {
        return skip("uprobes need root or CAP_PERFMON");
    }
    let exe = fixture();
    let dir = tempdir();
    let child = rprof(
        dir.path(),
        &[
            "latency",
            "--no-calibrate",
            "timed_call",
            "--",
            exe.to_str().unwrap(),
            "forever",
            "/dev/null",
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let text = stderr(&out);
    let calls: u64 = text
        .lines()
        .find_map(|l| l.strip_suffix(" calls")?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no call count in:\n{text}"));
    assert!(calls > 0, "{text}");
}
