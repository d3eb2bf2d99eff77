//! Integration tests of `rprof timeline` (issue 11, "Timeline"): the page of a recorded
//! profile with several named threads opened in headless Chromium (one lane per thread with its
//! name and samples, the view from the address), hostile names that must not inject anything,
//! and bad input failing like `rprof report`.

use std::path::{Path, PathBuf};
use std::process::Output;

use rprof_profile::{Header, OffCpu, Profile, Record, Sample, Summary, Writer};

use crate::report::saved;
use crate::util::{build_c, run_rprof, skip, stderr, stdout, tempdir};

/// Runs `rprof timeline ARGS` in `dir` and requires success.
fn timeline(dir: &Path, args: &[&str]) -> Output {
    crate::util::rprof_ok(dir, "timeline", args)
}

/// The Chromium binary, if installed.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The DOM of the page at `url` after its scripts ran; `None` (after a visible SKIP) when
/// Chromium is not installed.
fn dump_dom(url: &str) -> Option<String> {
    let Some(chromium) = chromium() else {
        skip("chromium is not installed (apt-get install -y chromium): the timeline page is checked in headless Chromium");
        return None;
    };
    let scratch = tempdir();
    let out = crate::util::headless_chromium(&chromium, scratch.path())
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        stderr(&out)
    );
    Some(stdout(&out))
}

/// The value of attribute `name` in the start tag `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The start tag of `<body>` in the DOM.
fn body_tag(dom: &str) -> &str {
    let start = dom.find("<body").expect("a body");
    &dom[start..start + dom[start..].find('>').expect("end of the body tag")]
}

/// A lane label of the rendered page: thread id, sample count, shown name (as the DOM dump
/// writes it, `&lt;` for `<`).
#[derive(Debug, PartialEq, Eq)]
struct Lane {
    tid: u32,
    samples: u64,
    name: String,
}

fn lanes(dom: &str) -> Vec<Lane> {
    dom.match_indices("<div class=\"lane\"")
        .map(|(at, _)| {
            let rest = &dom[at..];
            let tag = &rest[..rest.find('>').expect("end of the lane tag")];
            let open = "<span class=\"name\">";
            let name = &rest[rest.find(open).expect("a name") + open.len()..];
            Lane {
                tid: attribute(tag, "data-tid").unwrap().parse().unwrap(),
                samples: attribute(tag, "data-samples").unwrap().parse().unwrap(),
                name: name[..name.find("</span>").unwrap()].to_string(),
            }
        })
        .collect()
}

/// Issue 11: a recorded `--off-cpu` profile of a program with named threads (alpha, beta and
/// the main thread) gives a page that Chromium draws with one labelled lane per thread, each
/// with the thread's samples, and the off-CPU states of the recording.
#[test]
fn the_page_shows_one_named_lane_per_thread_in_chromium() {
    let dir = tempdir();
    let path = saved("threads-offcpu.rprof");
    let out = timeline(dir.path(), &["-i", &path, "-o", "threads.html"]);
    let err = stderr(&out);
    assert!(
        err.contains("(3 threads in 1 process) to threads.html"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let page = dir.path().join("threads.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("id=\"no-off-cpu\""));
    // The main thread waits in pthread_join (a futex) while alpha and beta run: its lane holds
    // a `lock` span as long as nearly all of its life, and alpha's spans are running time and
    // waits for a CPU.
    let profile = Profile::open(&path).unwrap();
    let input = rprof_timeline::from_profile(&profile, &Default::default());
    assert!(input.off_cpu);
    let lane = |name: &str| {
        input
            .processes
            .iter()
            .flat_map(|p| &p.threads)
            .find(|t| t.name == name)
            .unwrap()
    };
    let main = lane("report_threads");
    let life = main.end - main.start;
    let locked: u64 = main
        .spans
        .iter()
        .filter(|s| s.state == rprof_timeline::State::Lock)
        .map(|s| s.end - s.start)
        .sum();
    assert!(locked * 10 > life * 8, "lock {locked} of {life} ns");
    let alpha = lane("alpha");
    let running: u64 = alpha
        .spans
        .iter()
        .filter(|s| s.state == rprof_timeline::State::Running)
        .map(|s| s.end - s.start)
        .sum();
    let covered: u64 = alpha.spans.iter().map(|s| s.end - s.start).sum();
    assert_eq!(covered, alpha.end - alpha.start, "spans cover alpha's life");
    assert!(running > 0 && running < covered);

    let Some(dom) = dump_dom(&format!("file://{}", page.display())) else {
        return;
    };
    let body = body_tag(&dom);
    assert_eq!(attribute(body, "data-error"), None, "{body}");
    assert_eq!(attribute(body, "data-lanes"), Some("3"), "{body}");
    let painted: u64 = attribute(body, "data-painted").unwrap().parse().unwrap();
    assert!(painted > 10, "nothing drawn: {body}");

    // The lanes are the profile's threads, main thread first, each with its samples.
    let pid = *profile.processes.keys().next().unwrap();
    let mut expected: Vec<Lane> = profile
        .threads
        .values()
        .map(|t| Lane {
            tid: t.tid,
            samples: t.samples,
            name: t.name.clone(),
        })
        .collect();
    expected.sort_by_key(|l| (l.tid != pid, l.tid));
    assert_eq!(lanes(&dom), expected);
    let names: Vec<&str> = expected.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["report_threads", "alpha", "beta"]);
    assert!(expected[1].samples > 100 && expected[2].samples > 50);
    // The process heads its lanes; the legend names every state.
    assert!(dom.contains(&format!("<div class=\"proc\" data-pid=\"{pid}\"")));
    for state in [
        "running (on CPU)",
        "(cpu)",
        "(lock)",
        "(sleep)",
        "(io)",
        "(other)",
    ] {
        assert!(dom.contains(state), "no {state} in the legend");
    }

    // A view in the address is the view drawn.
    let dom = dump_dom(&format!(
        "file://{}#view=100000000-200000000",
        page.display()
    ))
    .unwrap();
    assert_eq!(
        attribute(body_tag(&dom), "data-view"),
        Some("100000000-200000000")
    );
    assert!(dom.contains("showing 100.0 ms \u{2013} 200.0 ms"), "{dom}");

    // `&at=TID@TIME` keeps the stack of that thread's sample at TIME in the Stack panel, as a
    // click does: the stack the page decodes is the sample's stack in the profile.
    let alpha = input
        .processes
        .iter()
        .flat_map(|p| &p.threads)
        .find(|t| t.name == "alpha")
        .unwrap();
    let mut samples: Vec<_> = alpha.samples.iter().collect();
    samples.sort_by_key(|s| s.time);
    let sample = samples[samples.len() / 2];
    let at = sample.time - input.start;
    let url = format!(
        "file://{}#view={}-{}&at={}@{at}",
        page.display(),
        at - 100_000,
        at + 100_000,
        alpha.tid
    );
    let dom = dump_dom(&url).unwrap();
    let panel = &dom[dom.find("<pre id=\"stack\">").expect("the stack panel")..];
    let panel = &panel[..panel.find("</pre>").unwrap()];
    assert!(panel.contains("alpha (tid "), "{panel}");
    assert!(panel.contains("on-CPU sample at "), "{panel}");
    let frames = input.stacks.frames(sample.stack.expect("a stack"));
    assert!(frames.contains(&"crunch_alpha"), "{frames:?}");
    let shown: Vec<&str> = panel
        .lines()
        .skip_while(|l| !l.starts_with("stack, innermost first:"))
        .skip(1)
        .map(str::trim)
        .collect();
    let expected: Vec<String> = frames
        .iter()
        .rev()
        .map(|f| {
            f.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        })
        .collect();
    assert_eq!(shown, expected, "{panel}");
}

/// The names of the hostile profile: each would end the data's `<script>` element, open a
/// comment or add markup if it were not escaped.
const SCRIPT_NAME: &str = "</script><script>document.body.setAttribute('data-pwned','1')</script>";
const IMG_NAME: &str = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">";
const COMMENT_NAME: &str = "<!--\u{2028}\x1b[31m&amp;";

/// A profile whose command line, process, threads and stacks carry hostile names.
fn hostile_profile(path: &Path) {
    let header = Header {
        command: vec!["./app".into(), SCRIPT_NAME.into()],
        event: "cpu-clock".into(),
        frequency: Some(1000),
        call_graph: "dwarf,8192".into(),
        ..Header::default()
    };
    let mut w = Writer::new(Vec::new(), &header).unwrap();
    let ms = 1_000_000;
    for (tid, name) in [(50, SCRIPT_NAME), (51, IMG_NAME), (52, COMMENT_NAME)] {
        w.push(Record::Comm {
            time: ms + u64::from(tid),
            pid: 50,
            tid,
            name: name.into(),
            exec: tid == 50,
        })
        .unwrap();
    }
    for i in 0..30u32 {
        w.push(Record::Sample(Sample {
            time: 2 * ms + u64::from(i) * ms,
            pid: 50,
            tid: 50 + i % 3,
            cpu: 0,
            period: ms,
            user: vec![rprof_profile::Address {
                module: None,
                address: 0x1000,
            }],
            kernel: Vec::new(),
            truncated: false,
        }))
        .unwrap();
    }
    // Each thread also waits once (an off-CPU block with a user stack), so the profile is an
    // `--off-cpu` one, as `rprof timeline` needs.
    for tid in 50..53u32 {
        w.push(Record::OffCpu(OffCpu {
            pid: 50,
            tid,
            cpu: 0,
            start: 40 * ms + u64::from(tid),
            end: 45 * ms,
            ended: true,
            preempted: false,
            user: vec![rprof_profile::Address {
                module: None,
                address: 0x1000,
            }],
            kernel: Vec::new(),
            truncated: false,
            args: Vec::new(),
        }))
        .unwrap();
    }
    let bytes = w
        .finish(Summary {
            samples: 30,
            ..Summary::default()
        })
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Issue 11: names from the target cannot inject markup or script into the page: the HTML
/// holds only its own two script elements, and in Chromium no injected script ran, no
/// injected element exists, and the lanes show the names as text.
#[test]
fn hostile_names_cannot_inject_into_the_page() {
    let dir = tempdir();
    hostile_profile(&dir.path().join("hostile.rprof"));
    timeline(dir.path(), &["-i", "hostile.rprof"]);
    let page = dir.path().join("timeline.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<script").count(), 2);
    assert_eq!(html.matches("</script>").count(), 2);
    assert!(!html.contains("<img") && !html.contains("<!--"));
    assert!(!html.contains('\x1b') && !html.contains('\u{2028}'));

    let Some(dom) = dump_dom(&format!("file://{}", page.display())) else {
        return;
    };
    let body = body_tag(&dom);
    assert_eq!(attribute(body, "data-pwned"), None, "{body}");
    assert_eq!(attribute(body, "data-error"), None, "{body}");
    assert!(!dom.contains("<img"), "an injected element");
    assert!(!dom.contains('\x1b'));
    let shown: Vec<String> = lanes(&dom).into_iter().map(|l| l.name).collect();
    assert_eq!(
        shown,
        [
            "&lt;/script&gt;&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;",
            "&lt;img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"&gt;",
            "&lt;!--\u{2028}\\x1b[31m&amp;amp;",
        ]
    );
    assert!(dom.contains("<title>rprof timeline: ./app &lt;/script&gt;&lt;script&gt;"));
}

/// Issue 11 with issue 9.5's fixture: a thread that names itself with terminal escape
/// sequences, recorded for real, has a lane showing the name with its controls as `\xNN`.
#[test]
fn a_recorded_thread_with_escape_sequences_in_its_name_is_shown_escaped() {
    let dir = tempdir();
    let bin = build_c("hostile_names.c", "hostile_names", &["-O2", "-g"]);
    let out = run_rprof(
        dir.path(),
        &["record", "--off-cpu", "--", bin.to_str().unwrap()],
    );
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    timeline(dir.path(), &[]);
    let html = std::fs::read(dir.path().join("timeline.html")).unwrap();
    assert!(!html.contains(&0x1b) && !html.contains(&0x07));
    let Some(dom) = dump_dom(&format!(
        "file://{}",
        dir.path().join("timeline.html").display()
    )) else {
        return;
    };
    assert!(!dom.contains('\x1b') && !dom.contains('\x07'));
    let lanes = lanes(&dom);
    let hostile = lanes
        .iter()
        .find(|l| l.name == "\\x1b]0;PWN\\x07\\x1b[31mX")
        .unwrap_or_else(|| panic!("no lane of the hostile thread: {lanes:?}"));
    // It burned 0.3 s of CPU time at 999 Hz.
    assert!(hostile.samples > 100, "{hostile:?}");
    assert_eq!(lanes.len(), 2, "{lanes:?}");
}

/// Issue 11, bad input: a missing or damaged profile fails with the same line and exit code
/// as `rprof report`, and an unwritable destination fails before the profile is read.
#[test]
fn bad_input_fails_like_report_and_an_unwritable_output_first() {
    let dir = tempdir();
    std::fs::write(dir.path().join("junk.rprof"), b"not a profile at all").unwrap();
    for input in ["missing.rprof", "junk.rprof"] {
        let report = run_rprof(dir.path(), &["report", "-i", input]);
        let out = run_rprof(dir.path(), &["timeline", "-i", input]);
        assert!(!out.status.success());
        assert_eq!(out.status.code(), report.status.code(), "{input}");
        assert_eq!(stderr(&out), stderr(&report), "{input}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(!dir.path().join("timeline.html").exists());
    }
    // A profile recorded without --off-cpu: one line saying so, a usage error (exit 2), and
    // no page.
    let out = run_rprof(
        dir.path(),
        &["timeline", "-i", &saved("threads.rprof"), "-o", "t.html"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no off-CPU data") && err.contains("rprof record --off-cpu"),
        "{err}"
    );
    assert!(!dir.path().join("t.html").exists());
    // The destination's directory does not exist: that is the error, even with no profile.
    let out = run_rprof(
        dir.path(),
        &["timeline", "-i", "missing.rprof", "-o", "nodir/t.html"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("rprof: cannot write nodir/t.html: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
