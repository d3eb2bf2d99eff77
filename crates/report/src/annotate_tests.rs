//! Unit tests of [`crate::annotate`] on the designed profile of [`crate::synth::basic`].

use std::collections::HashMap;

use rprof_profile::Profile;

use super::*;
use crate::synth;

fn basic() -> Profile {
    let bytes = synth::basic(true, 100).unwrap();
    Profile::read(&bytes[..], "basic").unwrap()
}

fn line(a: &Annotation, file: &str, number: u32) -> (u64, u64) {
    let section = a.sections.iter().find(|s| s.file == file).unwrap();
    let c = &section.lines[&number];
    (c.self_samples, c.total_samples)
}

/// Issue 16: code inlined at a line counts on that line (self and total) and on the inlined
/// function's own line; a recursive function counts each sample once per line.
#[test]
fn lines_follow_the_design() {
    let p = basic();
    let all = Selection::default();
    let compute = Annotation::new(&p, &all, "compute").unwrap();
    assert_eq!(compute.samples, 1000);
    // 40 samples of line 25 are in the kernel (a page fault): total only.
    assert_eq!((compute.self_samples, compute.total_samples), (400, 440));
    assert_eq!(line(&compute, "/src/app/app.c", 22), (300, 300));
    assert_eq!(line(&compute, "/src/app/app.c", 25), (100, 140));
    let section = &compute.sections[0];
    assert_eq!(section.lines[&22].inlined.get("square"), Some(&300));
    assert!(section.lines[&25].inlined.is_empty());
    // Its own: square's line.
    let square = Annotation::new(&p, &all, "square").unwrap();
    assert_eq!(line(&square, "/src/app/app.c", 10), (300, 300));
    // Recursion: each sample once on line 52.
    let fib = Annotation::new(&p, &all, "fib").unwrap();
    assert_eq!((fib.self_samples, fib.total_samples), (150, 150));
    assert_eq!(line(&fib, "/src/app/app.c", 50), (150, 150));
    assert_eq!(line(&fib, "/src/app/app.c", 52), (0, 150));
    // Callees count in total only: run calls compute, fib, sqrt.
    let run = Annotation::new(&p, &all, "run").unwrap();
    assert_eq!((run.self_samples, run.total_samples), (0, 640));
    assert_eq!(line(&run, "/src/app/app.c", 31), (0, 440));
    assert_eq!(line(&run, "/src/app/app.c", 33), (0, 50));
    // --no-inline: square disappears, its samples are compute's line 22 with no inline note.
    let merged = Selection {
        merge_inline: true,
        ..Selection::default()
    };
    let compute = Annotation::new(&p, &merged, "compute").unwrap();
    assert_eq!(line(&compute, "/src/app/app.c", 22), (300, 300));
    assert!(compute.sections[0].lines[&22].inlined.is_empty());
    assert!(matches!(
        Annotation::new(&p, &merged, "square"),
        Err(AnnotateError::NoSamples { .. })
    ));
}

/// Issue 16: `main` is in two modules: one section each, the hottest first.
#[test]
fn a_name_in_two_modules_has_a_section_each() {
    let p = basic();
    let main = Annotation::new(&p, &Selection::default(), "main").unwrap();
    let files: Vec<&str> = main.sections.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files, ["/src/app/app.c", "/src/helper.c"]);
    assert_eq!(main.sections[0].module.as_deref(), Some("app"));
    assert_eq!(main.sections[1].module.as_deref(), Some("helper-tool"));
    assert_eq!(main.sections[1].total_samples, 60);
    assert_eq!(main.total_samples, 700);
}

/// Issue 16: a short name finds the full one; an unknown one lists close matches; a name
/// without source lines says so.
#[test]
fn names_are_found_or_explained() {
    let p = basic();
    assert_eq!(
        find_function(&p, "extend").unwrap(),
        "<alloc::vec::Vec<rprof_fixture::Item> as core::iter::traits::collect::Extend<&rprof_fixture::Item>>::extend"
    );
    match find_function(&p, "compte") {
        Err(AnnotateError::NotFound { close, .. }) => assert_eq!(close[0], "compute"),
        other => panic!("{other:?}"),
    }
    match find_function(&p, "pute") {
        Err(AnnotateError::NotFound { close, .. }) => assert_eq!(close, ["compute"]),
        other => panic!("{other:?}"),
    }
    match find_function(&p, "zzzzzzzz") {
        Err(e @ AnnotateError::NotFound { .. }) => {
            assert_eq!(e.to_string(), "no function 'zzzzzzzz' in the profile")
        }
        other => panic!("{other:?}"),
    }
    let e = Annotation::new(&p, &Selection::default(), "sqrt").unwrap_err();
    assert!(matches!(e, AnnotateError::NoLines { .. }), "{e:?}");
    assert_eq!(short_name("ns::Type<a::b>::f(int) const"), "f");
    assert_eq!(short_name("<T as core::Trait>::call"), "call");
    assert_eq!(short_name("plain"), "plain");
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    // Without a name: the hottest function with source lines that is not only inlined
    // (square, 300 self samples, is always inlined into compute; Vec::extend has 240).
    let hottest = hottest_function(&p, &Selection::default()).unwrap();
    assert!(hottest.ends_with(">::extend"), "{hottest}");
    // In the main thread: fib, 150 self samples (square's 300 are inlined code).
    let main_thread = Selection {
        pid: Some(100),
        threads: Some(crate::parse_thread_filter(&p, "app").unwrap()),
        ..Selection::default()
    };
    assert_eq!(hottest_function(&p, &main_thread).as_deref(), Some("fib"));
}

fn text(lines: &[&str]) -> Source {
    Source::Text {
        lines: lines.iter().map(|s| s.to_string()).collect(),
        note: None,
    }
}

/// Issue 16: the text shows the sampled lines with context, folds long unsampled stretches,
/// escapes control characters of the source and marks a missing source.
#[test]
fn text_shows_context_folds_and_escapes() {
    let p = basic();
    let fib = Annotation::new(&p, &Selection::default(), "fib").unwrap();
    let mut file: Vec<String> = (1..=60).map(|n| format!("line {n}")).collect();
    file[49] = "\treturn 1; /* \x1b[2J */".to_string();
    let sources = HashMap::from([(
        "/src/app/app.c".to_string(),
        Source::Text {
            lines: file,
            note: None,
        },
    )]);
    let options = AnnotateOptions {
        context: 2,
        color: false,
    };
    let mut out = Vec::new();
    render(&fib, &sources, &options, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("100.00% 100.00%    50          return 1; /* \\x1b[2J */\n"),
        "{out}"
    );
    assert!(out.contains("\n                   48  line 48\n"), "{out}");
    assert!(!out.contains("line 47"), "{out}");
    assert!(out.contains("\n        100.00%    52  line 52\n"), "{out}");
    assert!(
        out.contains("line 54\n") && !out.contains("line 55"),
        "{out}"
    );
    assert!(!out.contains('\x1b'));

    // Far apart lines: the stretch between them is folded.
    let compute = Annotation::new(&p, &Selection::default(), "compute").unwrap();
    let lines: Vec<String> = (1..=60).map(|n| format!("line {n}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let sources = HashMap::from([("/src/app/app.c".to_string(), text(&refs))]);
    let options = AnnotateOptions {
        context: 0,
        color: false,
    };
    let mut out = Vec::new();
    render(&compute, &sources, &options, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("⋮  (2 lines)"), "{out}");
    assert!(out.contains("line 22  # inlined: square"), "{out}");

    // No source: the sampled lines alone, and why.
    let sources = HashMap::from([(
        "/src/app/app.c".to_string(),
        Source::Missing("cannot open it: No such file".into()),
    )]);
    let mut out = Vec::new();
    render(&compute, &sources, &AnnotateOptions::default(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("# source not shown: cannot open it: No such file; line numbers only"),
        "{out}"
    );
    let numbered: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(numbered.len(), 2, "{out}");
}

/// Issue 16: the JSON holds the counts, the exact text and the inlined functions.
#[test]
fn json_has_counts_and_exact_text() {
    let p = basic();
    let compute = Annotation::new(&p, &Selection::default(), "compute").unwrap();
    let lines: Vec<String> = (1..=30).map(|n| format!("line {n}\u{202e}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let sources = HashMap::from([("/src/app/app.c".to_string(), text(&refs))]);
    let mut out = Vec::new();
    render_json(&compute, &sources, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["function"], "compute");
    assert_eq!(v["total"], 440);
    let line = &v["sections"][0]["lines"][0];
    assert_eq!(line["line"], 22);
    assert_eq!(line["self"], 300);
    assert_eq!(line["self_percent"], 68.18);
    assert_eq!(line["inlined"][0]["function"], "square");
    assert_eq!(line["text"], "line 22\u{202e}");
    assert!(String::from_utf8(out).unwrap().contains("\\u202e"));
}
