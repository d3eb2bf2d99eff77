//! Unit tests on in-memory profiles made by [`crate::synth`].

use std::collections::BTreeSet;

use rprof_profile::{FrameKind, ModuleKind, Profile};

use crate::flame::{FlameError, FlameOptions};
use crate::folded::FoldedOptions;
use crate::json::JsonOptions;
use crate::synth::{self, Synth};
use crate::top::TopOptions;
use crate::*;

fn basic() -> Profile {
    let bytes = synth::basic(true, 100).unwrap();
    let p = Profile::read(&bytes[..], "basic").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    p
}

fn table(p: &Profile, selection: &Selection, kind: TableKind, sort: SortBy) -> Table {
    let counts = StackCounts::new(p, selection);
    Table::new(p, &counts, selection, kind, sort)
}

fn row<'t>(t: &'t Table, name: &str) -> &'t Row {
    t.rows
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in {:#?}", t.rows))
}

#[test]
fn self_and_total_counts_follow_the_design() {
    let p = basic();
    let t = table(
        &p,
        &Selection::default(),
        TableKind::Functions,
        SortBy::SelfSamples,
    );
    assert_eq!(t.samples, 1000);
    let counts = |name: &str| {
        let r = row(&t, name);
        (r.self_samples, r.total_samples)
    };
    assert_eq!(counts("square"), (300, 300));
    assert_eq!(counts("compute"), (100, 440));
    assert_eq!(counts("run"), (0, 640));
    assert_eq!(counts("main"), (0, 640));
    assert_eq!(counts("sqrt"), (50, 50));
    assert_eq!(counts("clear_page_erms"), (40, 40));
    assert_eq!(counts("asm_exc_page_fault"), (0, 40));
    // The hottest row comes first; ties are broken by name.
    assert_eq!(t.rows[0].name, "square");
    assert_eq!(row(&t, "square").kind, FrameKind::User);
    assert!(row(&t, "square").inlined);
    assert!(!row(&t, "compute").inlined);
    assert_eq!(row(&t, "clear_page_erms").kind, FrameKind::Kernel);
    // The truncation marker is not a function.
    assert!(t.rows.iter().all(|r| r.name != "[truncated]"));
    // The self samples add up to every sample that has a frame.
    let self_sum: u64 = t.rows.iter().map(|r| r.self_samples).sum();
    assert_eq!(self_sum, 1000);
}

#[test]
fn recursion_counts_each_sample_once() {
    let p = basic();
    let t = table(
        &p,
        &Selection::default(),
        TableKind::Functions,
        SortBy::Total,
    );
    let fib = row(&t, "fib");
    assert_eq!((fib.self_samples, fib.total_samples), (150, 150));
    for r in &t.rows {
        assert!(r.total_samples <= t.samples, "{r:?}");
        assert!(r.self_samples <= r.total_samples, "{r:?}");
    }
}

#[test]
fn a_function_row_shows_its_hottest_line() {
    let p = basic();
    let t = table(
        &p,
        &Selection::default(),
        TableKind::Functions,
        SortBy::SelfSamples,
    );
    let compute = row(&t, "compute");
    assert_eq!(compute.file.as_deref(), Some("/src/app/app.c"));
    assert_eq!(compute.line, Some(25));
    assert_eq!(compute.module.as_deref(), Some("app"));
}

#[test]
fn sorting_by_total_ranks_callers_first() {
    let p = basic();
    let t = table(
        &p,
        &Selection::default(),
        TableKind::Functions,
        SortBy::Total,
    );
    let names: Vec<&str> = t.rows.iter().take(3).map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["main", "run", "compute"]);
    let totals: Vec<u64> = t.rows.iter().map(|r| r.total_samples).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
}

#[test]
fn merging_inline_frames_gives_their_samples_to_the_caller() {
    let p = basic();
    let merged = Selection {
        merge_inline: true,
        ..Selection::default()
    };
    let t = table(&p, &merged, TableKind::Functions, SortBy::SelfSamples);
    assert!(t.rows.iter().all(|r| r.name != "square"));
    let compute = row(&t, "compute");
    assert_eq!((compute.self_samples, compute.total_samples), (400, 440));
    assert_eq!(t.rows[0].name, "compute");
    // The call site of the inlined code is the line charged.
    let lines = table(&p, &merged, TableKind::Lines, SortBy::SelfSamples);
    let top = &lines.rows[0];
    assert_eq!(
        (top.file.as_deref(), top.line),
        (Some("/src/app/app.c"), Some(22))
    );
    assert_eq!(top.self_samples, 300);
}

#[test]
fn lines_rank_source_lines() {
    let p = basic();
    let t = table(
        &p,
        &Selection::default(),
        TableKind::Lines,
        SortBy::SelfSamples,
    );
    let top = &t.rows[0];
    assert_eq!((top.name.as_str(), top.line), ("square", Some(10)));
    assert_eq!(top.self_samples, 300);
    // fib's two lines are apart: the leaf line and the recursive call.
    let fib: Vec<(Option<u32>, u64, u64)> = t
        .rows
        .iter()
        .filter(|r| r.name == "fib")
        .map(|r| (r.line, r.self_samples, r.total_samples))
        .collect();
    assert_eq!(fib, [(Some(50), 150, 150), (Some(52), 0, 150)]);
    // Frames without a source file still get a row (per function).
    assert!(t.rows.iter().any(|r| r.name == "sqrt" && r.file.is_none()));
}

#[test]
fn thread_and_pid_filters() {
    let p = basic();
    let workers = parse_thread_filter(&p, "worker").unwrap();
    // Name 1 of each: a new thread first has its creator's name (`app`).
    assert_eq!(
        workers,
        ThreadFilter {
            tids: BTreeSet::new(),
            names: BTreeSet::from([(101, 1), (102, 1)]),
        }
    );
    assert_eq!(
        parse_thread_filter(&p, "101").unwrap(),
        ThreadFilter {
            tids: BTreeSet::from([101]),
            names: BTreeSet::new(),
        }
    );
    let err = parse_thread_filter(&p, "nosuch").unwrap_err();
    assert!(err.to_string().contains("worker (101)"), "{err}");
    let selection = Selection {
        threads: Some(workers),
        ..Selection::default()
    };
    let t = table(&p, &selection, TableKind::Functions, SortBy::SelfSamples);
    assert_eq!(t.samples, 300);
    assert!(t.rows[0].name.ends_with("::extend"));
    assert_eq!(t.rows[0].self_samples, 240);
    let child = Selection {
        pid: Some(200),
        ..Selection::default()
    };
    let t = table(&p, &child, TableKind::Functions, SortBy::SelfSamples);
    assert_eq!(t.samples, 60);
    assert_eq!(t.rows[0].name, "helper-tool+0x1040");
    assert_eq!(truncated_samples(&p, &Selection::default()), 60);
}

#[test]
fn folded_stacks_are_root_first_sorted_and_complete() {
    let p = basic();
    let lines = folded::stacks(&p, &FoldedOptions::default());
    let total: u64 = lines.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1000);
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    let find = |stack: &str| {
        lines
            .iter()
            .find(|(s, _)| s == stack)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no {stack} in {lines:#?}"))
    };
    assert_eq!(find("app;main;run;compute;square"), 300);
    assert_eq!(find("app;main;run;fib;fib;fib;fib"), 150);
    assert_eq!(
        find("app;main;run;compute;asm_exc_page_fault;clear_page_erms"),
        40
    );
    // The two threads named worker share their stacks, as perf's collapse does.
    let stage = "rprof_fixture::pipeline::Stage<rprof_fixture::codec::Decoder<std::io::buffered::bufreader::BufReader<std::fs::File>>>::process_batch";
    assert_eq!(find(&format!("worker;[truncated];{stage};<alloc::vec::Vec<rprof_fixture::Item> as core::iter::traits::collect::Extend<&rprof_fixture::Item>>::extend")), 60);
    assert_eq!(find(&format!("worker;worker_main;{stage}")), 60);
    assert_eq!(find("helper-tool;main;helper-tool+0x1040"), 60);

    let mut out = Vec::new();
    folded::render(&p, &FoldedOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        assert!(count.parse::<u64>().unwrap() > 0);
        assert!(!stack.is_empty());
    }
    assert_eq!(text.lines().count(), lines.len());
}

#[test]
fn folded_annotations_and_inline_merge() {
    let p = basic();
    let annotated = folded::stacks(
        &p,
        &FoldedOptions {
            annotate: true,
            ..FoldedOptions::default()
        },
    );
    let stacks: Vec<&str> = annotated.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        stacks.contains(&"app;main;run;compute;square_[i]"),
        "{stacks:#?}"
    );
    assert!(stacks.contains(&"app;main;run;compute;asm_exc_page_fault_[k];clear_page_erms_[k]"));
    let merged = folded::stacks(
        &p,
        &FoldedOptions {
            selection: Selection {
                merge_inline: true,
                ..Selection::default()
            },
            ..FoldedOptions::default()
        },
    );
    let compute = merged
        .iter()
        .find(|(s, _)| s == "app;main;run;compute")
        .unwrap();
    assert_eq!(compute.1, 400);
    let no_root = folded::stacks(
        &p,
        &FoldedOptions {
            thread_root: false,
            ..FoldedOptions::default()
        },
    );
    assert!(no_root.iter().any(|(s, _)| s == "main;run;compute;square"));
}

#[test]
fn awkward_names_cannot_break_the_folded_format() {
    let mut s = Synth::new(&["./x"]);
    s.thread(1, 1, "my thread;1");
    let m = s.module("/x", ModuleKind::Elf);
    let f = s.code(m, &[("operator;weird\nname", "", 0)]);
    s.sample(1, 1, &[f], &[], false);
    let bytes = s.bytes(true, 0).unwrap();
    let p = Profile::read(&bytes[..], "x").unwrap();
    let mut out = Vec::new();
    folded::render(&p, &FoldedOptions::default(), &mut out).unwrap();
    // The newline is shown as its escape (issue 9.5), so it cannot end the stack.
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "my thread:1;operator:weird\\x0aname 1\n"
    );
}

// ---- Issue 9.5 and 9.6: names from the target -------------------------------------------

/// A function name as a hostile binary's symbol table can hold it: OSC (window title), BEL,
/// SGR (red), a C1 CSI, a right-to-left override, DEL, and markup characters.
const HOSTILE_FUNCTION: &str = "evil\x1b]0;PWN\x07\x1b[31m\u{9b}2J\u{202e}niam\x7f<&>";
/// What the text outputs show of it.
const HOSTILE_FUNCTION_SHOWN: &str = "evil\\x1b]0;PWN\\x07\\x1b[31m\\u{9b}2J\\u{202e}niam\\x7f<&>";
/// The thread name of the reproducer.
const HOSTILE_THREAD: &str = "\x1b]0;PWN\x07\x1b[31mX";

/// A finished profile whose every string is hostile: command line, host, thread, module, source
/// file and function names.
fn hostile() -> Profile {
    let mut s = Synth::new(&["./app\x1b[2J", "\x01", "\u{202e}"]);
    s.header_mut().hostname = "host\x1b]0;x\x07".into();
    s.header_mut().kernel_release = "6.18\u{85}".into();
    s.thread(7, 7, HOSTILE_THREAD);
    let m = s.module("/tmp/\x1b[1m/lib\u{202e}os.so\x07", ModuleKind::Elf);
    let main = s.code(m, &[("main", "/src/a\x1b[1m.c", 3)]);
    let evil = s.code(m, &[(HOSTILE_FUNCTION, "/src/evil\x07.c", 9)]);
    for _ in 0..10 {
        s.sample(7, 7, &[evil, main], &[], false);
    }
    let bytes = s.bytes(true, 0).unwrap();
    let p = Profile::read(&bytes[..], "hostile").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    p
}

/// Panics when `text` holds a character a terminal acts on or XML forbids, other than the
/// newlines that end the output's own lines.
fn assert_no_controls(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| c != '\n' && needs_escape(c)) {
        panic!("{what} holds {c:?}:\n{text:?}");
    }
}

#[test]
fn hostile_names_reach_the_text_report_escaped() {
    let p = hostile();
    let options = TopOptions {
        threads: true,
        ..TopOptions::default()
    };
    let mut out = Vec::new();
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_no_controls("the report", &text);
    // The hostile function is the top row: all 10 samples are in it.
    let top_row = text
        .lines()
        .find(|l| l.ends_with(HOSTILE_FUNCTION_SHOWN))
        .unwrap_or_else(|| panic!("no escaped function row in {text}"));
    assert!(top_row.starts_with(" 100.00%      10"), "{text}");
    assert!(top_row.contains("lib\\u{202e}os.so\\x07"), "{text}");
    assert!(top_row.contains("evil\\x07.c:9"), "{text}");
    assert!(text.contains("  \\x1b]0;PWN\\x07\\x1b[31mX\n"), "{text}");
    assert!(
        text.contains("# rprof report of './app\\x1b[2J' '\\x01' '\\u{202e}'\n"),
        "{text}"
    );
    assert!(
        text.contains("on host\\x1b]0;x\\x07 (Linux 6.18\\u{85})"),
        "{text}"
    );
    // Shortened to a narrow terminal, colored, or by source line: still escaped.
    let narrow = TopOptions {
        width: Some(60),
        color: true,
        kind: TableKind::Lines,
        ..TopOptions::default()
    };
    let mut out = Vec::new();
    top::render(&p, &narrow, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // The only escapes left are the report's own colors.
    let uncolored = ["\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[2m", "\x1b[0m"]
        .iter()
        .fold(text.clone(), |t, code| t.replace(code, ""));
    assert_no_controls("the colored report", &uncolored);
    assert!(text.contains("iam\\x7f"), "{text}");
}

#[test]
fn hostile_names_in_errors_are_escaped() {
    let p = hostile();
    let err = parse_thread_filter(&p, "no\x1b[2Jsuch")
        .unwrap_err()
        .to_string();
    assert_no_controls("the --thread error", &err);
    assert!(err.contains("'no\\x1b[2Jsuch'"), "{err}");
    assert!(err.contains("\\x1b]0;PWN\\x07\\x1b[31mX (7)"), "{err}");
    // The exact name still selects the thread.
    assert_eq!(
        parse_thread_filter(&p, HOSTILE_THREAD).unwrap().names,
        BTreeSet::from([(7, 0)])
    );
}

#[test]
fn hostile_names_keep_the_folded_format_and_are_escaped() {
    let p = hostile();
    let mut out = Vec::new();
    folded::render(&p, &FoldedOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_no_controls("the folded stacks", &text);
    // `;` becomes `:` (it separates frames), controls are escaped.
    assert_eq!(
        text,
        format!(
            "\\x1b]0:PWN\\x07\\x1b[31mX;main;{} 10\n",
            HOSTILE_FUNCTION_SHOWN.replace(';', ":")
        )
    );
}

#[test]
fn hostile_names_make_valid_xml() {
    let p = hostile();
    let xml_char = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || c >= '\u{10000}'
    };
    for title in [None, Some("T\x01\u{fffe}".to_string())] {
        let options = FlameOptions {
            title: title.clone(),
            ..FlameOptions::default()
        };
        let mut out = Vec::new();
        flame::render(&p, &options, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        if let Some(bad) = svg.chars().find(|&c| !xml_char(c)) {
            panic!("the SVG holds {bad:?}, which XML 1.0 forbids");
        }
        assert_no_controls("the SVG", &svg);
        match title {
            Some(_) => assert!(svg.contains(">T\\x01\\u{fffe}</text>"), "{svg}"),
            None => assert!(
                svg.contains(">rprof: &apos;./app\\x1b[2J&apos; &apos;\\x01&apos;"),
                "{svg}"
            ),
        }
        // Markup characters are escaped once, by inferno's XML writer; `;` separates frames in
        // the folded stacks inferno draws, so it is shown as `:`.
        let titles = svg_titles(&svg);
        let shown = HOSTILE_FUNCTION_SHOWN.replace(';', ":");
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with(&format!("{shown} (10 samples"))),
            "{titles:?}"
        );
        assert!(!svg.contains("&amp;amp;"));
    }
}

#[test]
fn json_keeps_hostile_names_exact_without_raw_controls() {
    let p = hostile();
    let mut out = Vec::new();
    json::render(&p, &JsonOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_no_controls("the JSON", &text);
    assert!(text.contains("\\u001b]0;PWN\\u0007"), "{text}");
    assert!(text.contains("\\u009b2J\\u202eniam\\u007f<&>"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["functions"][0]["name"], HOSTILE_FUNCTION);
    assert_eq!(doc["threads"][0]["name"], HOSTILE_THREAD);
    assert_eq!(doc["command"][2], "\u{202e}");
}

#[test]
fn json_has_the_documented_shape() {
    let p = basic();
    let doc = serde_json::to_value(json::report(&p, &JsonOptions::default())).unwrap();
    for key in [
        "schema",
        "command",
        "event",
        "frequency",
        "samples",
        "total_samples",
        "lost",
        "lost_percent",
        "truncated",
        "truncated_percent",
        "threads",
        "functions",
        "duration_ns",
        "complete",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    assert!(doc.get("lines").is_none());
    assert_eq!(doc["samples"], 1000);
    assert_eq!(doc["lost"], 25);
    assert_eq!(doc["truncated"], 60);
    assert_eq!(doc["complete"], true);
    let threads = doc["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 4);
    assert_eq!(threads[0]["name"], "app");
    assert_eq!(threads[0]["tid"], 100);
    assert_eq!(threads[0]["pid"], 100);
    assert_eq!(threads[0]["samples"], 640);
    assert_eq!(threads[0]["percent"], 64.0);
    let first = &doc["functions"][0];
    assert_eq!(first["name"], "square");
    assert_eq!(first["module"], "app");
    assert_eq!(first["file"], "/src/app/app.c");
    assert_eq!(first["line"], 10);
    assert_eq!(first["self"], 300);
    assert_eq!(first["self_percent"], 30.0);
    assert_eq!(first["total"], 300);
    assert_eq!(first["total_percent"], 30.0);
    assert_eq!(first["inlined"], true);
    assert_eq!(first["kind"], "user");
    // Full names, never shortened.
    assert!(doc["functions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"]
            .as_str()
            .unwrap()
            .starts_with("<alloc::vec::Vec<rprof_fixture::Item>")));
    let lines = serde_json::to_value(json::report(
        &p,
        &JsonOptions {
            kind: TableKind::Lines,
            limit: Some(2),
            ..JsonOptions::default()
        },
    ))
    .unwrap();
    assert!(lines.get("functions").is_none());
    assert_eq!(lines["lines"].as_array().unwrap().len(), 2);
}

#[test]
fn text_report_fits_the_width_and_limits_rows() {
    let p = basic();
    let options = TopOptions {
        width: Some(100),
        limit: Some(5),
        ..TopOptions::default()
    };
    let mut out = Vec::new();
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let table: Vec<&str> = text.lines().skip_while(|l| !l.contains("Self%")).collect();
    assert_eq!(table.len(), 1 + 5 + 1, "{text}");
    for line in &table {
        assert!(line.chars().count() <= 100, "too wide: {line}\n{text}");
    }
    assert!(
        text.contains("Stage<…>::process_batch") || text.contains("<Vec<…> as Extend<…>>::extend"),
        "{text}"
    );
    assert!(
        text.contains("# 1,000 samples") || text.contains(" 1,000 samples"),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
    assert!(
        text.contains("lost 25 samples (2.44%), 60 truncated stacks (6.00%)"),
        "{text}"
    );
}

#[test]
fn text_report_colors_only_when_asked() {
    let p = basic();
    let mut out = Vec::new();
    let options = TopOptions {
        color: true,
        threads: true,
        ..TopOptions::default()
    };
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\x1b[31m"), "{text}");
    assert!(text.contains("Thread"));
}

#[test]
fn thread_table_shows_cpu_time() {
    let p = basic();
    let mut out = Vec::new();
    let options = TopOptions {
        threads: true,
        ..TopOptions::default()
    };
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("101 "))
        .unwrap();
    assert!(
        line.contains("200") && line.contains("20.00%") && line.contains("200.0 ms"),
        "{line}"
    );
    assert!(line.ends_with("worker"));
}

#[test]
fn an_empty_profile_says_so() {
    let bytes = synth::empty().unwrap();
    let p = Profile::read(&bytes[..], "empty").unwrap();
    let mut out = Vec::new();
    top::render(&p, &TopOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("no samples in this profile"), "{text}");
    assert!(matches!(
        flame::render(&p, &FlameOptions::default(), Vec::new()),
        Err(FlameError::NoSamples)
    ));
    let mut out = Vec::new();
    folded::render(&p, &FoldedOptions::default(), &mut out).unwrap();
    assert!(out.is_empty());
    let doc = serde_json::to_value(json::report(&p, &JsonOptions::default())).unwrap();
    assert_eq!(doc["samples"], 0);
    assert_eq!(doc["functions"].as_array().unwrap().len(), 0);
}

#[test]
fn an_interrupted_profile_still_renders() {
    let bytes = synth::basic(false, 100).unwrap();
    let p = Profile::read(&bytes[..bytes.len() - 10], "cut").unwrap();
    assert!(!p.warnings.is_empty());
    assert!(p.samples.len() > 500 && p.samples.len() < 1000);
    let mut out = Vec::new();
    top::render(&p, &TopOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("(interrupted)"), "{text}");
    assert!(text.contains("app+0x"), "{text}");
}

/// Frames of the SVG: the text of every `<title>` inside the frames group.
fn svg_titles(svg: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut titles = Vec::new();
    let mut in_title = false;
    let mut depth = 0i32;
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => {
                depth += 1;
                in_title = e.name().as_ref() == b"title";
                if in_title {
                    titles.push(String::new());
                }
            }
            Event::End(_) => {
                depth -= 1;
                in_title = false;
            }
            Event::Text(t) if in_title => {
                if let Some(last) = titles.last_mut() {
                    last.push_str(&t.decode().unwrap());
                }
            }
            Event::GeneralRef(r) if in_title => {
                let name = r.decode().unwrap();
                let c = match name.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity {other}"),
                };
                if let Some(last) = titles.last_mut() {
                    last.push_str(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unbalanced SVG");
    titles
}

#[test]
fn flame_graph_is_well_formed_svg_with_the_frames() {
    let p = basic();
    let mut out = Vec::new();
    flame::render(&p, &FlameOptions::default(), &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert!(svg.contains("rprof: ./app --fast (1,000 samples)"));
    let titles = svg_titles(&svg);
    let has = |prefix: &str| titles.iter().any(|t| t.starts_with(prefix));
    assert!(has("square (300 samples, 30.00%)"), "{titles:#?}");
    assert!(has("compute (440 samples, 44.00%)"), "{titles:#?}");
    assert!(has("clear_page_erms (40 samples, 4.00%)"));
    assert!(has("[truncated] (60 samples, 6.00%)"));
    assert!(has("worker (300 samples, 30.00%)"));
    assert!(has("<alloc::vec::Vec<rprof_fixture::Item> as core::iter::traits::collect::Extend<&rprof_fixture::Item>>::extend"));
    // Deterministic: the same profile gives the same bytes.
    let mut again = Vec::new();
    flame::render(&p, &FlameOptions::default(), &mut again).unwrap();
    assert_eq!(svg.as_bytes(), &again[..]);
}

#[test]
fn flame_graph_colors_inline_and_kernel_frames_apart() {
    let p = basic();
    let mut out = Vec::new();
    let options = FlameOptions {
        pretty_xml: true,
        ..FlameOptions::default()
    };
    flame::render(&p, &options, &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    let fill_of = |name: &str| -> (u8, u8, u8) {
        let at = svg.find(&format!("<title>{name} (")).unwrap();
        let rest = &svg[at..];
        let fill = &rest[rest.find("fill=\"rgb(").unwrap() + 10..];
        let inner = &fill[..fill.find(')').unwrap()];
        let v: Vec<u8> = inner
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        (v[0], v[1], v[2])
    };
    let (r, g, b) = fill_of("square");
    assert!(g > r && b > r, "inline frames are aqua, got {r},{g},{b}");
    let (r, _, b) = fill_of("clear_page_erms");
    assert!(r >= 190 && b == 0, "kernel frames are orange");
    assert_eq!(fill_of("[truncated]"), (180, 180, 180));
    let merged = FlameOptions {
        selection: Selection {
            merge_inline: true,
            ..Selection::default()
        },
        ..FlameOptions::default()
    };
    let mut out = Vec::new();
    flame::render(&p, &merged, &mut out).unwrap();
    let titles = svg_titles(&String::from_utf8(out).unwrap());
    assert!(!titles.iter().any(|t| t.starts_with("square ")));
}

#[test]
fn flame_graph_options_reach_the_svg() {
    let p = basic();
    let options = FlameOptions {
        title: Some("My title".into()),
        width: Some(800),
        inverted: true,
        reverse: true,
        min_width: 5.0,
        ..FlameOptions::default()
    };
    let mut out = Vec::new();
    flame::render(&p, &options, &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert!(svg.contains("My title"));
    assert!(svg.contains("width=\"800\""), "{}", &svg[..400]);
    let titles = svg_titles(&svg);
    // Reversed: leaves sit at the base, right above the thread.
    assert!(titles.iter().any(|t| t.starts_with("square (300 samples")));
    // min_width drops narrow frames (sqrt has 5%, clear_page_erms 4%).
    assert!(!titles.iter().any(|t| t.starts_with("clear_page_erms")));
}

#[test]
fn large_profiles_render() {
    let bytes = synth::large(5_000, 500).unwrap();
    let p = Profile::read(&bytes[..], "large").unwrap();
    assert_eq!(p.samples.len(), 5_000);
    let mut out = Vec::new();
    top::render(&p, &TopOptions::default(), &mut out).unwrap();
    let mut svg = Vec::new();
    flame::render(&p, &FlameOptions::default(), &mut svg).unwrap();
    assert!(svg.len() > 10_000);
}

/// Issue 9.4: a lost count of `u64::MAX` overflowed `samples + lost` into a share of
/// 4841665111209856000.00%; shares of counts from the file saturate.
#[test]
fn huge_lost_counts_give_shares_of_at_most_100_percent() {
    let mut s = Synth::new(&["./app"]);
    s.thread(1, 1, "app");
    let m = s.module("/bin/app", ModuleKind::Elf);
    let f = s.code(m, &[("f", "", 0)]);
    s.sample(1, 1, &[f], &[], false);
    s.lost(u64::MAX);
    let p = Profile::read(&s.bytes(true, 0).unwrap()[..], "huge").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let mut out = Vec::new();
    top::render(&p, &TopOptions::default(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("lost 18,446,744,073,709,551,615 samples (100.00%)"),
        "{text}"
    );
    let doc = serde_json::to_value(json::report(&p, &JsonOptions::default())).unwrap();
    assert_eq!(doc["lost_percent"], 100.0);
}

/// Issue 9.11: the thread table shows samples taken before an `exec` under the name the thread
/// had then.
#[test]
fn thread_table_keeps_the_name_before_exec() {
    let p = Profile::read(&synth::exec_rename().unwrap()[..], "exec").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let options = TopOptions {
        threads: true,
        ..TopOptions::default()
    };
    let mut out = Vec::new();
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("Tid"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["300", "300", "70", "70.00%", "70.0", "ms", "busy"],
            ["300", "300", "30", "30.00%", "30.0", "ms", "launcher"],
        ],
        "{text}"
    );
    let doc = serde_json::to_value(json::report(&p, &JsonOptions::default())).unwrap();
    let names: Vec<(&str, u64)> = doc["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["samples"].as_u64().unwrap()))
        .collect();
    assert_eq!(names, [("busy", 70), ("launcher", 30)]);
}

fn exec_profile() -> Profile {
    let p = Profile::read(&synth::exec_rename().unwrap()[..], "exec").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    p
}

/// Issue 9.11: folded stacks start with the name the thread had when each sample was taken,
/// not with its last name.
#[test]
fn folded_stacks_keep_the_name_before_exec() {
    let p = exec_profile();
    assert_eq!(
        folded::stacks(&p, &FoldedOptions::default()),
        [
            ("busy;busy_main".to_string(), 70),
            ("launcher;launcher_main".to_string(), 30)
        ]
    );
    // Still one thread in one process.
    let counts = StackCounts::new(&p, &Selection::default());
    let o = Overview::new(&p, &Selection::default(), &counts);
    assert_eq!((o.threads, o.processes, o.selected), (1, 1, 100));
}

/// Issue 9.11: `--thread OLDNAME` selects exactly the samples taken before the `exec`, the new
/// name those after it, and the thread id all of them; everywhere (table, folded, threads).
#[test]
fn a_thread_name_selects_the_samples_taken_under_it() {
    let p = exec_profile();
    let select = |spec: &str| Selection {
        threads: Some(parse_thread_filter(&p, spec).unwrap()),
        ..Selection::default()
    };
    let old = select("launcher");
    let t = table(&p, &old, TableKind::Functions, SortBy::SelfSamples);
    assert_eq!(t.samples, 30);
    let rows: Vec<(&str, u64)> = t
        .rows
        .iter()
        .map(|r| (r.name.as_str(), r.self_samples))
        .collect();
    assert_eq!(rows, [("launcher_main", 30)]);
    let folded_of = |selection: &Selection| {
        folded::stacks(
            &p,
            &FoldedOptions {
                selection: selection.clone(),
                ..FoldedOptions::default()
            },
        )
    };
    assert_eq!(
        folded_of(&old),
        [("launcher;launcher_main".to_string(), 30)]
    );
    assert_eq!(
        folded_of(&select("busy")),
        [("busy;busy_main".to_string(), 70)]
    );
    let whole = select("300");
    assert_eq!(folded_of(&whole).len(), 2);
    assert_eq!(StackCounts::new(&p, &whole).samples, 100);
    // The thread table of a name filter has that name's row only.
    let mut out = Vec::new();
    let options = TopOptions {
        threads: true,
        selection: old.clone(),
        ..TopOptions::default()
    };
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Tid"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].ends_with("  launcher"), "{text}");
    assert!(
        text.contains("# showing selection: 30 of 100 samples"),
        "{text}"
    );
    let doc = serde_json::to_value(json::report(
        &p,
        &JsonOptions {
            selection: old,
            ..JsonOptions::default()
        },
    ))
    .unwrap();
    assert_eq!(doc["samples"], 30);
    assert_eq!(doc["threads"].as_array().unwrap().len(), 1);
    assert_eq!(doc["threads"][0]["name"], "launcher");
    // An unknown name lists every name a thread had.
    let err = parse_thread_filter(&p, "nosuch").unwrap_err().to_string();
    assert!(
        err.contains("(threads: launcher (300), busy (300))"),
        "{err}"
    );
}

/// Issue 9.11: a thread that comes back to an earlier name (`a`, `b`, then `a` again) has both
/// spans of `a` under `a`, and `--thread a` selects both.
#[test]
fn a_name_a_thread_had_twice_gathers_both_spans() {
    let mut s = Synth::new(&["./a"]);
    s.thread(5, 5, "a");
    let m = s.module("/bin/a", ModuleKind::Elf);
    let f = s.code(m, &[("f", "", 0)]);
    let g = s.code(m, &[("g", "", 0)]);
    for _ in 0..3 {
        s.sample(5, 5, &[f], &[], false);
    }
    s.exec(5, "b");
    for _ in 0..4 {
        s.sample(5, 5, &[g], &[], false);
    }
    s.exec(5, "a");
    for _ in 0..5 {
        s.sample(5, 5, &[f], &[], false);
    }
    let p = Profile::read(&s.bytes(true, 0).unwrap()[..], "twice").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        folded::stacks(&p, &FoldedOptions::default()),
        [("a;f".to_string(), 8), ("b;g".to_string(), 4)]
    );
    let a = Selection {
        threads: Some(parse_thread_filter(&p, "a").unwrap()),
        ..Selection::default()
    };
    assert_eq!(StackCounts::new(&p, &a).samples, 8);
}

/// Issue 9.11: in the flame graph, the name before the `exec` is a thread root of its own (with
/// the thread roots' color), holding the samples taken under it.
#[test]
fn flame_graph_roots_keep_the_name_before_exec() {
    let p = exec_profile();
    let mut out = Vec::new();
    flame::render(&p, &FlameOptions::default(), &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    let titles = svg_titles(&svg);
    let has = |prefix: &str| titles.iter().any(|t| t.starts_with(prefix));
    assert!(has("launcher (30 samples, 30.00%)"), "{titles:#?}");
    assert!(has("busy (70 samples, 70.00%)"), "{titles:#?}");
    // Both roots are light purple (blue above red and green), as thread roots are.
    for root in ["launcher (30", "busy (70"] {
        let at = svg.find(&format!("<title>{root}")).unwrap();
        let rest = &svg[at..];
        let fill = &rest[rest.find("fill=\"rgb(").unwrap() + 10..];
        let rgb: Vec<u8> = fill[..fill.find(')').unwrap()]
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        assert!(
            rgb[0] >= 190 && rgb[2] >= 230 && rgb[2] > rgb[0],
            "{root}: {rgb:?}"
        );
    }
}

/// An off-CPU profile: `app` computes in `work` (3 samples of 1 ms), sleeps 200 ms in
/// `nap` (kernel `do_nanosleep`), waits 100 ms for a lock in `take` (kernel
/// `futex_wait_queue`) and is preempted for 5 ms in `work`.
fn off_cpu_profile() -> Profile {
    let mut s = Synth::new(&["app"]);
    let exe = s.module("/bin/app", ModuleKind::Elf);
    let kernel = s.module("[kernel.kallsyms]", ModuleKind::Kernel);
    s.thread(1, 1, "app");
    let main = s.code(exe, &[("main", "app.c", 1)]);
    let work = s.code(exe, &[("work", "app.c", 2)]);
    let nap = s.code(exe, &[("nap", "app.c", 3)]);
    let take = s.code(exe, &[("take", "app.c", 4)]);
    let schedule = s.code(kernel, &[("schedule", "", 0)]);
    let sleep = s.code(kernel, &[("do_nanosleep", "", 0)]);
    let futex = s.code(kernel, &[("futex_wait_queue", "", 0)]);
    for _ in 0..3 {
        s.sample(1, 1, &[work, main], &[], false);
    }
    s.off_cpu(1, 1, 200, &[nap, main], &[schedule, sleep], false);
    s.off_cpu(1, 1, 100, &[take, main], &[schedule, futex], false);
    s.off_cpu(1, 1, 5, &[work, main], &[schedule], true);
    Profile::read(&s.bytes(true, 0).unwrap()[..], "off-cpu").unwrap()
}

/// Issue 11: ranked by off-CPU time, functions get their blocks' time (self at the leaf, total
/// over the stack) split by reason; the reason frame is no row; with `Weight::Wall` the
/// samples count by their period too.
#[test]
fn off_cpu_tables_weigh_time_by_reason() {
    let p = off_cpu_profile();
    let selection = Selection {
        weight: Weight::OffCpu,
        ..Selection::default()
    };
    let t = table(&p, &selection, TableKind::Functions, SortBy::Total);
    assert_eq!(t.samples, 305_000_000);
    assert_eq!(row(&t, "main").total_samples, 305_000_000);
    assert_eq!(
        row(&t, "main").wait,
        [5_000_000, 100_000_000, 200_000_000, 0, 0]
    );
    assert_eq!(row(&t, "nap").total_samples, 200_000_000);
    assert_eq!(row(&t, "schedule").self_samples, 305_000_000);
    assert!(
        t.rows.iter().all(|r| !r.name.starts_with('[')),
        "{:#?}",
        t.rows
    );
    let wall = Selection {
        weight: Weight::Wall,
        ..Selection::default()
    };
    let t = table(&p, &wall, TableKind::Functions, SortBy::Total);
    assert_eq!(row(&t, "work").total_samples, 3_000_000 + 5_000_000);
    assert_eq!(row(&t, "work").self_samples, 3_000_000);
    // Folded: microseconds, the reason on top of the leaf; on-CPU folded stays samples.
    let folded = folded::lines(
        &p,
        &FoldedOptions {
            selection,
            ..FoldedOptions::default()
        },
    );
    assert!(
        folded.contains(&"app;main;nap;do_nanosleep;schedule;[sleep] 200000".to_string()),
        "{folded:?}"
    );
    let plain = folded::lines(&p, &FoldedOptions::default());
    assert_eq!(plain, ["app;main;work 3"]);
}

/// Issue 11: the thread table and JSON of an off-CPU profile give wall, on-CPU and off-CPU
/// time by reason.
#[test]
fn off_cpu_threads_in_text_and_json() {
    let p = off_cpu_profile();
    let mut out = Vec::new();
    let options = TopOptions {
        threads: true,
        ..TopOptions::default()
    };
    top::render(&p, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Off-CPU"), "{text}");
    assert!(text.contains("305.0 ms"), "{text}");
    let report = json::report(&p, &JsonOptions::default());
    let thread = &report.threads[0];
    assert_eq!(thread.off_cpu_ns, Some(305_000_000));
    let wait = thread.wait_ns.as_ref().unwrap();
    assert_eq!(
        (wait["sleep"], wait["lock"], wait["cpu"]),
        (200_000_000, 100_000_000, 5_000_000)
    );
    assert_eq!(report.reasons_from, Some("kernel"));
    assert_eq!(
        thread.cpu_ns.unwrap() + 305_000_000,
        thread.wall_ns.unwrap()
    );
}
