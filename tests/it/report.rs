//! Integration tests of `rprof report`: expected outputs on the saved profiles of
//! `fixtures/profiles/` (made by `scripts/make-golden-profiles.sh`; `RPROF_BLESS=1` rewrites the
//! expected files), bad input, and live recordings of fixture programs with designed shares.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::util::{assert_golden, build_c, repo_root, rprof, run_rprof, stderr, stdout, tempdir};

/// A saved profile of `fixtures/profiles/`.
pub fn saved(name: &str) -> String {
    repo_root()
        .join("fixtures/profiles")
        .join(name)
        .display()
        .to_string()
}

/// Runs `rprof report ARGS` on a saved profile; it must succeed without a word on stderr.
fn report(profile: &str, args: &[&str]) -> String {
    let dir = tempdir();
    let path = saved(profile);
    let mut all = vec!["report", "-i", &path];
    all.extend_from_slice(args);
    let out = run_rprof(dir.path(), &all);
    assert!(
        out.status.success(),
        "rprof {all:?} failed: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "rprof {all:?} warned");
    stdout(&out)
}

#[test]
fn golden_default_table() {
    assert_golden("report/basic.txt", &report("basic.rprof", &[]));
}

#[test]
fn golden_sort_by_total() {
    assert_golden(
        "report/basic-sort-total.txt",
        &report("basic.rprof", &["--sort", "total"]),
    );
}

#[test]
fn golden_inline_frames_merged() {
    assert_golden(
        "report/basic-no-inline.txt",
        &report("basic.rprof", &["--no-inline"]),
    );
}

#[test]
fn golden_source_lines() {
    assert_golden(
        "report/basic-lines.txt",
        &report("basic.rprof", &["--lines", "--top", "8"]),
    );
}

#[test]
fn golden_threads_and_thread_filter() {
    assert_golden(
        "report/basic-threads.txt",
        &report("basic.rprof", &["--threads"]),
    );
    assert_golden(
        "report/basic-thread-worker.txt",
        &report("basic.rprof", &["--threads", "--thread", "worker"]),
    );
    // A thread id selects that thread only.
    let one = report("basic.rprof", &["--thread", "102"]);
    assert!(
        one.contains("showing thread 102: 100 of 1,000 samples"),
        "{one}"
    );
}

#[test]
fn golden_process_filter() {
    assert_golden(
        "report/basic-pid-200.txt",
        &report("basic.rprof", &["--pid", "200"]),
    );
}

#[test]
fn golden_narrow_terminal_shortens_names() {
    let text = report("basic.rprof", &["--width", "80", "--top", "6"]);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.chars().count() <= 80, "wider than 80: {line}");
    }
    assert_golden("report/basic-width-80.txt", &text);
}

#[test]
fn golden_json() {
    let text = report("basic.rprof", &["--json"]);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["samples"], 1000);
    assert_eq!(doc["lost"], 25);
    assert_eq!(doc["threads"][0]["name"], "app");
    assert_eq!(doc["functions"][0]["name"], "square");
    assert_eq!(doc["functions"][0]["self"], 300);
    assert_eq!(doc["functions"][0]["self_percent"], 30.0);
    // Every function, with its full name, whatever the width.
    assert_eq!(doc["functions"].as_array().map(Vec::len), Some(13));
    assert_golden("report/basic.json", &text);
    let lines: Value =
        serde_json::from_str(&report("basic.rprof", &["--json", "--lines", "--top", "3"]))
            .expect("valid JSON");
    assert_eq!(lines["lines"].as_array().map(Vec::len), Some(3));
    assert_eq!(lines["lines"][0]["line"], 10);
}

#[test]
fn color_only_when_asked() {
    let plain = report("basic.rprof", &[]);
    assert!(!plain.contains('\x1b'), "no color into a pipe");
    let colored = report("basic.rprof", &["--color", "always", "--top", "3"]);
    assert!(colored.contains("\x1b[31m"), "{colored}");
}

#[test]
fn empty_profile_says_so() {
    let text = report("empty.rprof", &[]);
    assert!(text.contains("no samples in this profile"), "{text}");
    assert_golden("report/empty.txt", &text);
}

#[test]
fn interrupted_profile_reports_what_was_written_and_warns() {
    let dir = tempdir();
    let path = saved("interrupted.rprof");
    // The worker threads' stacks only have user frames in the (missing) fixture binaries, so
    // the output does not depend on this machine.
    let out = run_rprof(
        dir.path(),
        &["report", "-i", &path, "--thread", "worker", "--threads"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cut short"), "{err}");
    assert!(err.starts_with("rprof: warning:"), "{err}");
    assert_golden("report/interrupted-worker.txt", &stdout(&out));
}

#[test]
fn missing_profile_says_how_to_make_one() {
    let dir = tempdir();
    let out = run_rprof(dir.path(), &["report"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("rprof.data"), "{err}");
    assert!(err.contains("rprof record -- COMMAND"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn not_a_profile_and_newer_version_are_refused() {
    let dir = tempdir();
    std::fs::write(dir.path().join("notes.txt"), "hello, not a profile\n").unwrap();
    let out = run_rprof(dir.path(), &["report", "-i", "notes.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an rprof profile"),
        "{}",
        stderr(&out)
    );

    let mut bytes = std::fs::read(saved("basic.rprof")).unwrap();
    // basic.rprof is a version 1 file (older than the reader): claim a version far ahead.
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(dir.path().join("new.rprof"), &bytes).unwrap();
    let out = run_rprof(dir.path(), &["report", "-i", "new.rprof"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("newer") && err.contains("upgrade rprof"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn unknown_thread_or_process_is_a_usage_error() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = run_rprof(dir.path(), &["report", "-i", &path, "--thread", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("worker (101)"), "{}", stderr(&out));
    let out = run_rprof(dir.path(), &["report", "-i", &path, "--pid", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("app (100)"), "{}", stderr(&out));
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    // Enough output that rprof is still writing when the reader goes away.
    let dir = tempdir();
    let big = dir.path().join("big.rprof");
    std::fs::write(&big, rprof_report::synth::large(20_000, 0).unwrap()).unwrap();
    let mut child = rprof(
        dir.path(),
        &["report", "-i", big.to_str().unwrap(), "--json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is dropped (closed) here, as `head` would.
    let out = child.wait_with_output().unwrap();
    assert_eq!(stderr(&out), "", "a broken pipe must not print an error");
    let quiet = out.status.success() || {
        use std::os::unix::process::ExitStatusExt;
        out.status.signal() == Some(libc::SIGPIPE)
    };
    assert!(quiet, "exit status {:?}", out.status);
}

// ---- Live recordings of fixture programs -------------------------------------------------

/// Builds a `fixtures/report_*.c` program the way the saved profiles are made.
pub fn report_fixture(name: &str) -> PathBuf {
    build_c(
        &format!("{name}.c"),
        name,
        &["-O2", "-g", "-fomit-frame-pointer"],
    )
}

/// Records `program` into `dir/rprof.data`.
pub fn record(dir: &Path, program: &Path) {
    let out = run_rprof(dir, &["record", "--", program.to_str().unwrap()]);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["report", "--json"];
    all.extend_from_slice(args);
    let out = run_rprof(dir, &all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("valid JSON")
}

fn function<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no function {name} in {doc:#}"))
}

fn near(value: &Value, expected: f64, tolerance: f64, what: &str) {
    let v = value.as_f64().unwrap_or_else(|| panic!("{what}: {value}"));
    assert!(
        (v - expected).abs() <= tolerance,
        "{what}: {v:.2}% is not within {tolerance} of {expected}%"
    );
}

#[test]
fn live_top_function_and_share_match_the_design() {
    let bin = report_fixture("report_shares");
    let dir = tempdir();
    record(dir.path(), &bin);
    // spin_a burns 3 units for every unit of spin_b.
    let merged = json(dir.path(), &["--no-inline"]);
    let top = &merged["functions"][0];
    assert_eq!(top["name"], "spin_a", "{merged:#}");
    near(&top["self_percent"], 75.0, 8.0, "spin_a self");
    near(
        &function(&merged, "spin_b")["total_percent"],
        25.0,
        8.0,
        "spin_b total",
    );
    assert!(
        top["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("report_shares.c")),
        "{top}"
    );
    // With inline frames kept, mix (inlined into spin_a) is a function of its own.
    let kept = json(dir.path(), &[]);
    let mix = function(&kept, "mix");
    assert_eq!(mix["inlined"], true);
    assert!(mix["self_percent"].as_f64().unwrap() > 30.0, "{mix}");
    near(
        &function(&kept, "spin_a")["total_percent"],
        75.0,
        8.0,
        "spin_a total",
    );
    // The text table leads with the same function.
    let out = run_rprof(dir.path(), &["report", "--no-inline", "--top", "1"]);
    let table = stdout(&out);
    let first = table
        .lines()
        .find(|l| !l.starts_with('#') && !l.contains("Self%") && !l.is_empty())
        .unwrap();
    assert!(first.ends_with(" spin_a"), "{table}");
}

#[test]
fn live_thread_shares_match_the_design() {
    let bin = report_fixture("report_threads");
    let dir = tempdir();
    record(dir.path(), &bin);
    let doc = json(dir.path(), &[]);
    let share = |name: &str| {
        doc["threads"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name))
            .map(|t| t["percent"].clone())
            .unwrap_or_else(|| panic!("no thread {name} in {doc:#}"))
    };
    near(&share("alpha"), 200.0 / 3.0, 8.0, "alpha");
    near(&share("beta"), 100.0 / 3.0, 8.0, "beta");
    let beta = json(dir.path(), &["--thread", "beta"]);
    assert_eq!(beta["functions"][0]["name"], "crunch_beta", "{beta:#}");
    assert!(beta["threads"].as_array().is_some_and(|t| t.len() == 1));
    let out = run_rprof(dir.path(), &["report", "--threads"]);
    let text = stdout(&out);
    assert!(text.contains("CPU time"), "{text}");
    assert!(
        text.lines().any(|l| l.ends_with("  alpha")) && text.lines().any(|l| l.ends_with("  beta")),
        "{text}"
    );
}

// ---- Saved real recordings (fixtures/profiles/{shares,threads}.rprof) ------------------

#[test]
fn saved_recordings_are_self_contained_and_match_the_design() {
    // `report` helper: success and nothing on stderr, so no address had to be named from the
    // binaries on this machine.
    let merged: Value =
        serde_json::from_str(&report("shares.rprof", &["--json", "--no-inline"])).unwrap();
    assert_eq!(merged["functions"][0]["name"], "spin_a", "{merged:#}");
    near(
        &merged["functions"][0]["self_percent"],
        75.0,
        8.0,
        "spin_a self",
    );
    near(
        &function(&merged, "spin_b")["total_percent"],
        25.0,
        8.0,
        "spin_b total",
    );
    assert_golden(
        "report/shares.txt",
        &report("shares.rprof", &["--top", "12"]),
    );
    let threads: Value = serde_json::from_str(&report("threads.rprof", &["--json"])).unwrap();
    let alpha = threads["threads"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "alpha"))
        .expect("thread alpha");
    near(&alpha["percent"], 200.0 / 3.0, 8.0, "alpha");
    assert_golden(
        "report/threads.txt",
        &report("threads.rprof", &["--threads", "--top", "8"]),
    );
}

#[test]
fn a_killed_recording_is_reported_with_names_from_the_binaries() {
    let bin = report_fixture("report_shares");
    let dir = tempdir();
    // About 1.6 s of work; rprof is killed halfway, the fixture then finishes on its own.
    let mut child = rprof(dir.path(), &["record", "--", bin.to_str().unwrap(), "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let data = dir.path().join("rprof.data");
    let start = std::time::Instant::now();
    loop {
        let samples = rprof_profile::Profile::open(&data).map_or(0, |p| p.samples.len());
        if samples >= 200 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no samples written while recording"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run_rprof(dir.path(), &["report", "--json", "--no-inline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning:"),
        "the unfinished recording is mentioned: {err}"
    );
    assert!(
        err.contains("naming"),
        "addresses named from the binaries: {err}"
    );
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["complete"], false);
    let names: Vec<&str> = doc["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"spin_a") && names.contains(&"main"),
        "{names:?}"
    );
}
