//! Integration tests of `rprof flame`: folded stacks compared with expected files, the SVG opened
//! in headless Chromium (it must render and its search must find a known function), bad input,
//! and a live recording of a fixture program.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{record, report_fixture, saved};
use crate::util::{assert_golden, run_rprof, stderr, stdout, tempdir};

/// Runs `rprof flame ARGS` in `dir` and requires success.
fn flame(dir: &Path, args: &[&str]) -> std::process::Output {
    crate::util::rprof_ok(dir, "flame", args)
}

#[test]
fn golden_folded_to_stdout() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = flame(dir.path(), &["--folded", "-i", &path]);
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    // Root first (the thread), `;`-separated, a space and the count; 1,000 samples in all.
    let total: u64 = text
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1000);
    assert!(
        text.contains("\napp;main;run;compute;square 300\n"),
        "{text}"
    );
    assert_golden("flame/basic.folded", &text);
    // `-o -` is stdout too.
    let dash = flame(dir.path(), &["--folded", "-i", &path, "-o", "-"]);
    assert_eq!(stdout(&dash), text);
}

#[test]
fn golden_folded_to_a_file_with_inline_frames_merged() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = flame(
        dir.path(),
        &[
            "--folded",
            "--no-inline",
            "-i",
            &path,
            "-o",
            "merged.folded",
        ],
    );
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("merged.folded"), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("merged.folded")).unwrap();
    assert!(!text.contains("square"), "{text}");
    assert_golden("flame/basic-no-inline.folded", &text);
}

#[test]
fn golden_folded_of_one_thread_name() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = flame(dir.path(), &["--folded", "--thread", "worker", "-i", &path]);
    let text = stdout(&out);
    assert!(text.lines().all(|l| l.starts_with("worker;")), "{text}");
    assert_golden("flame/basic-worker.folded", &text);
}

/// The Chromium binary; the SVG tests cannot be skipped, so its absence is a failure.
fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "chromium is not installed, and the flame graph tests open the SVG in headless \
         Chromium: install it with `apt-get install -y chromium` (.ci/run does)"
    );
}

fn chromium_command(scratch: &Path) -> Command {
    crate::util::headless_chromium(&chromium(), scratch)
}

/// The DOM of `svg` after its scripts ran, with `?s=SEARCH` in the URL (inferno's search).
fn dom_after_search(svg: &Path, search: &str) -> String {
    let scratch = tempdir();
    let url = format!("file://{}?s={search}", svg.display());
    let out = chromium_command(scratch.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        stderr(&out)
    );
    let dom = stdout(&out);
    assert!(
        !dom.contains("parsererror"),
        "{} is not well-formed XML: {dom}",
        svg.display()
    );
    dom
}

/// The share inferno's search reports (`Matched: 44.0%`).
fn matched_percent(dom: &str) -> f64 {
    let element = &dom[dom
        .find("id=\"matched\"")
        .expect("inferno's matched element")..];
    let text = &element[element.find('>').expect("element end") + 1..];
    let text = &text[..text.find('<').expect("text end")];
    let number = text
        .strip_prefix("Matched: ")
        .and_then(|t| t.strip_suffix('%'))
        .unwrap_or_else(|| panic!("the search matched nothing: {text:?}"));
    number.parse().expect("a number")
}

#[test]
fn svg_renders_in_chromium_and_its_search_finds_a_function() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = flame(dir.path(), &["-i", &path]);
    assert!(stderr(&out).contains("flamegraph.svg"), "{}", stderr(&out));
    let svg_path = dir.path().join("flamegraph.svg");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
    assert!(svg.contains("rprof: ./app --fast (1,000 samples)"));
    for frame in [
        "square (300 samples",
        "compute (440 samples",
        "[truncated] (60 samples",
    ] {
        assert!(svg.contains(frame), "no frame {frame}");
    }
    // compute holds 44% of the samples; the search colors its frame and reports the share.
    let dom = dom_after_search(&svg_path, "compute");
    assert_eq!(matched_percent(&dom), 44.0);
    let compute = &dom[dom.find("<title>compute (").expect("compute frame")..];
    let rect = &compute[compute.find("<rect").unwrap()..];
    let rect = &rect[..rect.find('>').unwrap()];
    assert!(
        rect.contains("fill=\"rgb(230,0,230)\""),
        "not highlighted: {rect}"
    );
    // A screenshot of the rendered graph.
    let scratch = tempdir();
    let shot = dir.path().join("shot.png");
    let out = chromium_command(scratch.path())
        .arg("--window-size=1200,400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", svg_path.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 5_000,
        "a near-empty screenshot ({} bytes)",
        png.len()
    );
}

#[test]
fn svg_options_reach_the_image() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    flame(
        dir.path(),
        &[
            "-i",
            &path,
            "-o",
            "icicle.svg",
            "--inverted",
            "--reverse",
            "--title",
            "Icicle of app",
            "--width",
            "900",
            "--min-width",
            "5",
        ],
    );
    let svg = std::fs::read_to_string(dir.path().join("icicle.svg")).unwrap();
    assert!(svg.contains("Icicle of app"));
    assert!(svg.contains("var inverted = true;"));
    assert!(svg.contains("width=\"900\""));
    assert!(
        !svg.contains("clear_page_erms"),
        "4% frames are below --min-width 5"
    );
    let dom = dom_after_search(&dir.path().join("icicle.svg"), "square");
    assert_eq!(matched_percent(&dom), 30.0);
}

#[test]
fn empty_profile_draws_nothing_and_fails() {
    let dir = tempdir();
    let path = saved("empty.rprof");
    for args in [
        vec!["flame", "-i", &path],
        vec!["flame", "--folded", "-i", &path],
    ] {
        let out = run_rprof(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("no samples"), "{}", stderr(&out));
    }
    assert!(!dir.path().join("flamegraph.svg").exists());
}

#[test]
fn unwritable_output_is_one_line_and_exit_1() {
    let dir = tempdir();
    let path = saved("basic.rprof");
    let out = run_rprof(
        dir.path(),
        &["flame", "-i", &path, "-o", "/nonexistent/dir/out.svg"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot write /nonexistent/dir/out.svg"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn missing_profile_and_bad_options() {
    let dir = tempdir();
    let out = run_rprof(dir.path(), &["flame"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rprof record -- COMMAND"),
        "{}",
        stderr(&out)
    );
    let path = saved("basic.rprof");
    let out = run_rprof(dir.path(), &["flame", "-i", &path, "--min-width", "200"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_rprof(dir.path(), &["flame", "-i", &path, "--thread", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn live_flame_graph_search_finds_the_hot_function() {
    let bin = report_fixture("report_shares");
    let dir = tempdir();
    record(dir.path(), &bin);
    flame(dir.path(), &["--no-inline", "-o", "shares.svg"]);
    let dom = dom_after_search(&dir.path().join("shares.svg"), "spin_a");
    let share = matched_percent(&dom);
    assert!(
        (share - 75.0).abs() <= 8.0,
        "spin_a has {share}% of the graph"
    );
    let out = flame(dir.path(), &["--folded"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("report_shares;") && l.contains(";main;spin_a")),
        "{text}"
    );
}

#[test]
fn golden_folded_of_a_saved_recording() {
    let dir = tempdir();
    let path = saved("threads.rprof");
    let out = flame(dir.path(), &["--folded", "-i", &path]);
    assert_eq!(stderr(&out), "", "the saved recording is self-contained");
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("alpha;") && l.contains(";crunch_alpha")),
        "{text}"
    );
    assert_golden("flame/threads.folded", &text);
}
