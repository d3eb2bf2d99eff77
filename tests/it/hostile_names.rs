//! Integration tests of issue 9.5 and 9.6: names that come from the profiled program (a thread
//! named with terminal escape sequences, a command line holding a control character) are shown
//! escaped by `rprof report` and its errors, and the flame graph SVG stays valid XML.
//!
//! The SVG is checked with Python's expat-based `xml.dom.minidom`: a real, strict XML 1.0 parser
//! that rejects the control characters the issue is about (quick-xml, used by the crate's unit
//! tests, does not check characters). Using python3 keeps a new XML crate out of the workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{build_c, run_rprof, stderr, stdout, tempdir};

/// The thread name `fixtures/hostile_names.c` sets: OSC "set the window title to PWN", BEL,
/// then SGR red.
const THREAD: &str = "\x1b]0;PWN\x07\x1b[31mX";
/// How the text outputs show it.
const THREAD_SHOWN: &str = "\\x1b]0;PWN\\x07\\x1b[31mX";

fn hostile_binary() -> PathBuf {
    build_c("hostile_names.c", "hostile_names", &["-O2", "-g"])
}

/// Records `hostile_names ARGS` into `dir/rprof.data`.
fn record(dir: &Path, args: &[&str]) {
    let bin = hostile_binary();
    let mut all = vec!["record", "--", bin.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_rprof(dir, &all);
    assert!(out.status.success(), "record failed: {}", stderr(&out));
}

/// Panics when `bytes` hold ESC, BEL, or (with `all_c0`) any C0 control but a newline.
fn assert_no_controls(what: &str, bytes: &[u8], all_c0: bool) {
    let bad = |&b: &u8| b == 0x1b || b == 0x07 || (all_c0 && b < 0x20 && b != b'\n');
    if let Some(b) = bytes.iter().find(|b| bad(b)) {
        panic!(
            "{what} holds the byte {b:#04x}:\n{}",
            String::from_utf8_lossy(bytes).escape_debug()
        );
    }
}

/// Parses `svg` with a strict XML 1.0 parser.
fn assert_xml(svg: &Path) {
    let out: Output = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
        ])
        .arg(svg)
        .output()
        .expect("python3 runs (the SVG is checked with its XML parser: apt-get install python3)");
    assert!(
        out.status.success(),
        "{} is not XML: {}",
        svg.display(),
        stderr(&out)
    );
}

/// Issue 9.5: a thread named with escape sequences is shown escaped by `report --threads`, in
/// the `--thread` error, and in folded stacks; JSON keeps the exact name.
#[test]
fn a_hostile_thread_name_is_shown_escaped() {
    let dir = tempdir();
    record(dir.path(), &[]);

    let out = run_rprof(dir.path(), &["report", "--threads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_controls("report --threads", &out.stdout, true);
    assert_no_controls("report --threads (stderr)", &out.stderr, true);
    let text = stdout(&out);
    // The named thread did all the work: its row is in the thread table, escaped.
    assert!(
        text.lines()
            .any(|l| l.ends_with(&format!("  {THREAD_SHOWN}"))),
        "{text}"
    );

    // An unknown thread: the error lists the threads there are, escaped; so is what was asked.
    let out = run_rprof(dir.path(), &["report", "--thread", "no\x1b[2Jsuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_controls("the --thread error", &out.stderr, true);
    let err = stderr(&out);
    assert!(err.contains(THREAD_SHOWN), "{err}");
    assert!(err.contains("'no\\x1b[2Jsuch'"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // The exact name still selects the thread; the header quotes it escaped.
    let out = run_rprof(dir.path(), &["report", "--thread", THREAD]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_controls("report --thread NAME", &out.stdout, true);
    assert!(
        stdout(&out).contains(&format!("# showing thread {THREAD_SHOWN}: ")),
        "{}",
        stdout(&out)
    );

    let out = run_rprof(dir.path(), &["flame", "--folded"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_controls("flame --folded", &out.stdout, true);
    assert!(
        stdout(&out).contains("\n\\x1b]0:PWN\\x07\\x1b[31mX;"),
        "{}",
        stdout(&out)
    );

    let out = run_rprof(dir.path(), &["report", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_controls("report --json", &out.stdout, true);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let threads = doc["threads"].as_array().expect("threads");
    assert!(threads.iter().any(|t| t["name"] == THREAD), "{doc:#}");
}

/// Issue 9.6: a recorded command line holding `\x01` (and a thread named with ESC and BEL)
/// gives an SVG that parses as XML, and so does `--title $'T\x01'`; the report's header shows
/// the command escaped.
#[test]
fn flame_graphs_of_hostile_names_are_xml() {
    let dir = tempdir();
    record(dir.path(), &["0.3", "\x01"]);

    let out = run_rprof(dir.path(), &["report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_controls("report", &out.stdout, true);
    assert!(
        stdout(&out)
            .lines()
            .next()
            .unwrap_or("")
            .ends_with(" 0.3 '\\x01'"),
        "{}",
        stdout(&out)
    );

    let out = run_rprof(dir.path(), &["flame", "-o", "default.svg"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = dir.path().join("default.svg");
    assert_xml(&svg);
    let text = std::fs::read_to_string(&svg).expect("the SVG");
    assert!(
        text.contains(" 0.3 &apos;\\x01&apos; ("),
        "title not in the SVG"
    );
    assert!(
        text.contains("\\x1b]0:PWN\\x07\\x1b[31mX"),
        "thread not in the SVG"
    );

    let out = run_rprof(
        dir.path(),
        &["flame", "--title", "T\x01", "-o", "titled.svg"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = dir.path().join("titled.svg");
    assert_xml(&svg);
    let text = std::fs::read_to_string(&svg).expect("the SVG");
    assert!(text.contains(">T\\x01</text>"), "title not in the SVG");
}
