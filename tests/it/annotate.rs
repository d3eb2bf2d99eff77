//! Integration tests of `rprof annotate`: the designed hot line of `fixtures/hot_line.c`, inline
//! frames, names that are not in the profile, sources that are gone or hostile, and the expected
//! output on the saved profile `basic.rprof`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::report::saved;
use crate::util::{assert_golden, build_c, run_rprof, stderr, stdout, tempdir};

/// A recording of `fixtures/hot_line.c` (-O1 -g), made once for the tests of this module.
fn hot_line_profile() -> &'static Path {
    static PROFILE: OnceLock<PathBuf> = OnceLock::new();
    PROFILE.get_or_init(|| {
        let exe = build_c("hot_line.c", "hot_line", &["-O1", "-g"]);
        let dir = tempdir().keep();
        let profile = dir.join("hot.rprof");
        record(&dir, &profile, &exe);
        profile
    })
}

fn record(dir: &Path, profile: &Path, exe: &Path) {
    let out = run_rprof(
        dir,
        &[
            "record",
            "-o",
            profile.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));
}

fn annotate(profile: &Path, args: &[&str]) -> std::process::Output {
    let dir = tempdir();
    let mut all = vec!["annotate", "-i", profile.to_str().unwrap()];
    all.extend_from_slice(args);
    run_rprof(dir.path(), &all)
}

/// The sampled line of `doc` whose text contains `marker`.
fn line_with<'v>(doc: &'v Value, marker: &str) -> &'v Value {
    doc["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["lines"].as_array().unwrap())
        .find(|l| l["text"].as_str().is_some_and(|t| t.contains(marker)))
        .unwrap_or_else(|| panic!("no sampled line with {marker} in {doc:#}"))
}

/// Issue 16: the line designed to do 80% of the work has about 80% of the function's samples,
/// more than any other line; the cold loop has about 20%; the inlined `step` is named on the hot
/// line and has the samples of its own line when annotated itself.
#[test]
fn the_designed_hot_line_tops_its_function() {
    let profile = hot_line_profile();
    let out = annotate(profile, &["hot_line_work", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["function"], "hot_line_work");
    let total = doc["total"].as_u64().unwrap();
    assert!(total >= 100, "too few samples: {doc:#}");
    let hot = line_with(&doc, "/* HOT */");
    let cold = line_with(&doc, "/* COLD */");
    let hot_share = hot["self_percent"].as_f64().unwrap();
    let cold_share = cold["self_percent"].as_f64().unwrap();
    assert!((65.0..=92.0).contains(&hot_share), "hot line: {hot:#}");
    assert!((8.0..=35.0).contains(&cold_share), "cold line: {cold:#}");
    let hottest = doc["sections"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["self"].as_u64().unwrap())
        .unwrap();
    assert_eq!(hottest, hot);
    assert_eq!(hot["inlined"][0]["function"], "step", "{hot:#}");
    assert!(doc["sections"][0]["source_found"].as_bool().unwrap());

    // step's own line: every sample of step is there.
    let out = annotate(profile, &["step", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let own = line_with(&doc, "/* STEP */");
    assert!(own["total_percent"].as_f64().unwrap() >= 95.0, "{doc:#}");
    assert!(own["self"].as_u64().unwrap() * 2 >= hot["self"].as_u64().unwrap());
}

/// Issue 16: the listing shows the source around the sampled lines with their shares; color
/// (the hot line highlighted) only when asked for, since stdout is not a terminal here.
#[test]
fn the_listing_shows_source_and_highlights_only_with_color() {
    let profile = hot_line_profile();
    let out = annotate(profile, &["hot_line_work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.starts_with("hot_line_work: "), "{text}");
    let hot = text.lines().find(|l| l.contains("/* HOT */")).unwrap();
    let share: f64 = hot.split('%').next().unwrap().trim().parse().unwrap();
    assert!(share >= 65.0, "{text}");
    assert!(hot.ends_with("# inlined: step"), "{hot}");
    // Without FUNCTION: the hottest function that is not only inlined, with a note.
    let out = annotate(profile, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("hot_line_work: "),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).starts_with("rprof: note: annotating the hottest function"),
        "{}",
        stderr(&out)
    );
    // The signature, an unsampled line, is shown as context.
    assert!(text.contains("double hot_line_work(long n)"), "{text}");

    let out = annotate(profile, &["hot_line_work", "--color", "always"]);
    let text = stdout(&out);
    let hot = text.lines().find(|l| l.contains("/* HOT */")).unwrap();
    assert!(hot.contains("\x1b[1m\x1b[31m    for (long i"), "{hot:?}");
    // The cold line (a quarter of the hot one) has red shares but plain text.
    let cold = text.lines().find(|l| l.contains("/* COLD */")).unwrap();
    assert!(cold.contains("\x1b[31m"), "{cold:?}");
    assert!(!cold.contains("\x1b[1m"), "{cold:?}");
}

/// Issue 16: a function that is not in the profile is one line on stderr with close matches,
/// exit code 2.
#[test]
fn an_unknown_function_lists_close_matches() {
    let profile = hot_line_profile();
    for (query, expected) in [
        ("hot_line_wrk", "close matches: hot_line_work"),
        ("line_work", "close matches: hot_line_work"),
    ] {
        let out = annotate(profile, &[query]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("rprof: no function '{query}' in the profile")),
            "{err}"
        );
        assert!(err.contains(expected), "{err}");
        assert_eq!(stdout(&out), "");
    }
    let out = annotate(profile, &["definitely_not_here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("close matches"), "{}", stderr(&out));
}

/// Issue 16: source text from disk is untrusted: control characters of a changed source are
/// escaped (with a note that it changed); a source that is gone leaves the line numbers and a
/// note, exit 0.
#[test]
fn hostile_or_missing_sources() {
    let dir = tempdir();
    let source = dir.path().join("hot_line.c");
    std::fs::copy(
        crate::util::repo_root().join("fixtures/hot_line.c"),
        &source,
    )
    .unwrap();
    let exe = dir.path().join("hot_line");
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("gcc runs");
    assert!(status.success());
    let profile = dir.path().join("p.rprof");
    record(dir.path(), &profile, &exe);

    // A source rewritten with terminal escapes on the hot line.
    let text_before = std::fs::read_to_string(&source).unwrap();
    let hostile = text_before.replace("/* HOT */", "/* HOT \x1b]0;PWN\x07\x1b[2J \u{202e} */");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&source, hostile).unwrap();
    let out = annotate(&profile, &["hot_line_work", "--color", "always"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let hot = text.lines().find(|l| l.contains("/* HOT")).unwrap();
    assert!(
        hot.contains("/* HOT \\x1b]0;PWN\\x07\\x1b[2J \\u{202e} */"),
        "{hot:?}"
    );
    assert!(!text.contains('\x07') && !text.contains("\x1b]"));
    assert!(
        stderr(&out).contains("changed after the recording"),
        "{}",
        stderr(&out)
    );

    // The source is gone.
    std::fs::remove_file(&source).unwrap();
    let out = annotate(&profile, &["hot_line_work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rprof: note: no source for hot_line_work in ")
            && err.contains("showing line numbers only"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(text.contains("line numbers only"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('%') && !l.contains("Self%") && !l.contains("samples"))
        .collect();
    assert!((2..=5).contains(&rows.len()), "only sampled lines: {text}");
    let out = annotate(&profile, &["hot_line_work", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sections"][0]["source_found"], false);
    assert!(doc["sections"][0]["lines"][0]["text"].is_null());

    // --source-dir finds it elsewhere, by its trailing path components.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("hot_line.c"), &text_before).unwrap();
    let out = annotate(
        &profile,
        &[
            "hot_line_work",
            "--source-dir",
            "/nonexistent",
            "--source-dir",
            elsewhere.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("/* HOT */"), "{}", stdout(&out));
}

/// Issue 16: the expected listing of `compute` in the saved `basic.rprof` (its sources are
/// not on this machine: line numbers only).
#[test]
fn golden_basic_compute() {
    let out = annotate(Path::new(&saved("basic.rprof")), &["compute"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_golden("annotate/basic-compute.txt", &stdout(&out));
    let out = annotate(Path::new(&saved("basic.rprof")), &["fib", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_golden("annotate/basic-fib.json", &stdout(&out));
}
