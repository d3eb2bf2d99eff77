//! Issue 9.11 through the real binary: every output shows a sample under the name its thread had
//! when the sample was taken. Expected files on `fixtures/profiles/exec.rprof` (a process that
//! ran as `launcher` for 30 samples, then `exec`'d `busy` for 70), and a live recording of a
//! fixture program that runs under one name and then `exec`s itself under another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::report::saved;
use crate::util::{assert_golden, build_c, run_rprof, stderr, stdout, tempdir};

/// Runs `rprof ARGS` in `dir`; it must succeed without a word on stderr.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run_rprof(dir, args);
    assert!(
        out.status.success(),
        "rprof {args:?} failed: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "rprof {args:?} warned");
    stdout(&out)
}

/// Samples per root frame (thread name), and per `(root, function)` for every function of the
/// stacks (a sample counted once per function it has).
fn by_root(folded: &str) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
    let mut roots = BTreeMap::new();
    let mut functions = BTreeMap::new();
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').expect("`stack count`");
        let count: u64 = count.parse().expect("a count");
        let mut frames = stack.split(';');
        let root = frames.next().unwrap_or_default().to_string();
        *roots.entry(root.clone()).or_insert(0) += count;
        let distinct: BTreeSet<&str> = frames.collect();
        for function in distinct {
            *functions
                .entry((root.clone(), function.to_string()))
                .or_insert(0) += count;
        }
    }
    (roots, functions)
}

/// Issue 9.11: the folded stacks of a process that ran `exec` have the samples from before it
/// under the old program's name (it used to put all 100 under `busy`).
#[test]
fn golden_folded_keeps_the_name_before_exec() {
    let dir = tempdir();
    let path = saved("exec.rprof");
    let text = ok(dir.path(), &["flame", "--folded", "-i", &path]);
    assert_eq!(
        text, "busy;busy_main 70\nlauncher;launcher_main 30\n",
        "{text}"
    );
    assert_golden("flame/exec.folded", &text);
}

/// Issue 9.11: `--thread OLDNAME` selects exactly the samples taken before the `exec`, in the
/// folded stacks and in the report; the thread id still selects all of them.
#[test]
fn golden_thread_filter_by_the_name_before_exec() {
    let dir = tempdir();
    let path = saved("exec.rprof");
    let folded = ok(
        dir.path(),
        &["flame", "--folded", "--thread", "launcher", "-i", &path],
    );
    assert_eq!(folded, "launcher;launcher_main 30\n");
    assert_golden("flame/exec-launcher.folded", &folded);
    let after = ok(
        dir.path(),
        &["flame", "--folded", "--thread", "busy", "-i", &path],
    );
    assert_eq!(after, "busy;busy_main 70\n");
    let whole = ok(
        dir.path(),
        &["flame", "--folded", "--thread", "300", "-i", &path],
    );
    assert_eq!(whole, "busy;busy_main 70\nlauncher;launcher_main 30\n");

    let report = ok(
        dir.path(),
        &["report", "--threads", "--thread", "launcher", "-i", &path],
    );
    assert!(
        report.contains("# showing thread launcher: 30 of 100 samples (30.00%)"),
        "{report}"
    );
    assert!(report.contains("launcher_main"), "{report}");
    assert!(!report.contains("busy"), "{report}");
    assert_golden("report/exec-thread-launcher.txt", &report);
}

/// Issue 9.11: the flame graph's thread roots are the names the thread had: `launcher` holds the
/// 30 samples from before the `exec`.
#[test]
fn flame_graph_has_a_root_for_the_name_before_exec() {
    let dir = tempdir();
    let path = saved("exec.rprof");
    let svg = ok(dir.path(), &["flame", "-o", "-", "-i", &path]);
    assert!(
        svg.contains("<title>launcher (30 samples, 30.00%)</title>"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>busy (70 samples, 70.00%)</title>"),
        "{svg}"
    );
}

/// Issue 9.11, live: `sh -c 'exec before after'`, where `before` burns 0.5 s of CPU in
/// `spin_before_exec` and then `exec`s `after`, which burns 0.5 s in `spin_after_exec`. One
/// thread, three names (`sh`, `exec_n_before`, `exec_n_after`); the folded stacks must show
/// each spin function under the name the thread had while it ran, and `--thread` must select
/// by that name. Also guards the recorder: the name it gives the command (`sh`) used to be
/// timed after the command's release, later than the kernel's COMM of an immediate `exec`, and
/// then took over the samples of `exec_n_before` (3 runs in 9).
#[test]
fn live_exec_keeps_each_sample_under_its_name() {
    let flags = ["-O1", "-g", "-fno-omit-frame-pointer"];
    let before = build_c("exec_names.c", "exec_n_before", &flags);
    let after = build_c("exec_names.c", "exec_n_after", &flags);
    let dir = tempdir();
    let out = run_rprof(
        dir.path(),
        &[
            "record",
            "-o",
            "exec.data",
            "--",
            "sh",
            "-c",
            "exec \"$0\" \"$1\"",
            before.to_str().unwrap(),
            after.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));

    // One thread had both names.
    let json: Value =
        serde_json::from_str(&ok(dir.path(), &["report", "--json", "-i", "exec.data"]))
            .expect("valid JSON");
    let rows = json["threads"].as_array().expect("threads");
    let tid_of = |name: &str| {
        rows.iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["tid"].as_u64())
            .unwrap_or_else(|| panic!("no thread row {name} in {json:#}"))
    };
    assert_eq!(tid_of("exec_n_before"), tid_of("exec_n_after"), "{json:#}");

    let folded = ok(dir.path(), &["flame", "--folded", "-i", "exec.data"]);
    let (roots, functions) = by_root(&folded);
    let samples_in = |root: &str, function: &str| {
        functions
            .get(&(root.to_string(), function.to_string()))
            .copied()
            .unwrap_or(0)
    };
    // About 500 of each at ~1 kHz; 100 leaves room for a loaded machine.
    let old = samples_in("exec_n_before", "spin_before_exec");
    let new = samples_in("exec_n_after", "spin_after_exec");
    assert!(
        old >= 100 && new >= 100,
        "{old} and {new} samples: {roots:?}"
    );
    // Each function under the other name: none (at most a sample or two whose time the perf
    // clocks of two CPUs put on the other side of the exec).
    let crossed = samples_in("exec_n_after", "spin_before_exec")
        + samples_in("exec_n_before", "spin_after_exec");
    assert!(
        crossed <= 2,
        "{crossed} samples under the wrong name:\n{folded}"
    );

    // `--thread NAME` selects the samples taken under the name.
    let selected = ok(
        dir.path(),
        &[
            "flame",
            "--folded",
            "--thread",
            "exec_n_before",
            "-i",
            "exec.data",
        ],
    );
    let (roots, functions) = by_root(&selected);
    assert_eq!(
        roots.keys().collect::<Vec<_>>(),
        ["exec_n_before"],
        "{selected}"
    );
    assert_eq!(
        functions.get(&("exec_n_before".to_string(), "spin_before_exec".to_string())),
        Some(&old)
    );
    assert!(!selected.contains("spin_after_exec"), "{selected}");
}
