//! Unit tests: escaping of untrusted names (HTML and embedded JSON), compaction of stacks and
//! times, deterministic output, and building the input from a profile.

use rprof_profile::{Address, Header, Profile, Record, Sample as ProfileSample, Summary, Writer};
use serde_json::Value;

use crate::{
    from_profile, html, json, render, FromProfileOptions, Input, Process, Sample, Span, Stacks,
    State, Thread, NO_OFF_CPU_NOTE,
};

/// Names with everything that could break out of the page: the end of the script element,
/// an HTML comment opener, markup, quotes, control characters, line separators, bidi controls.
const HOSTILE: &str =
    "</script><script>alert(1)</script><!--<b>\"'&\x1b[31m\x07\u{2028}\u{2029}\u{202e}x\0";

fn page(input: &Input) -> String {
    let mut out = Vec::new();
    render(input, &mut out).expect("render into memory");
    String::from_utf8(out).expect("UTF-8 page")
}

/// The JSON text embedded in `page`.
fn embedded(page: &str) -> &str {
    let open = "<script type=\"application/json\" id=\"timeline-data\">";
    let start = page.find(open).expect("data element") + open.len();
    let end = start
        + page[start..]
            .find("</script>")
            .expect("end of the data element");
    &page[start..end]
}

fn thread(tid: u32, name: &str) -> Thread {
    Thread {
        tid,
        name: name.into(),
        start: 1_000,
        end: 9_000,
        spans: Vec::new(),
        samples: Vec::new(),
    }
}

fn hostile_input() -> Input {
    let mut stacks = Stacks::default();
    let stack = stacks.intern(["main", HOSTILE, "std::vector<int>::push_back"]);
    let mut t = thread(11, HOSTILE);
    t.samples.push(Sample { time: 2_000, stack });
    t.spans.push(Span {
        start: 3_000,
        end: 4_000,
        state: State::Lock,
        stack,
    });
    Input {
        title: format!("rprof timeline: ./app {HOSTILE}"),
        start: 1_000,
        end: 9_000,
        sample_ns: 500,
        off_cpu: true,
        notes: vec![format!("note {HOSTILE}")],
        processes: vec![Process {
            pid: 10,
            name: HOSTILE.into(),
            threads: vec![t],
        }],
        stacks,
    }
}

#[test]
fn json_strings_cannot_end_the_script_element_and_keep_the_exact_name() {
    let mut out = String::new();
    json::string(&mut out, HOSTILE);
    for bad in ["<", ">", "&", "\x1b", "\x07", "\0", "\u{2028}", "\u{2029}"] {
        assert!(!out.contains(bad), "{bad:?} in {out}");
    }
    assert!(out.contains("\\u003c/script\\u003e"), "{out}");
    assert!(out.contains("\\u001b") && out.contains("\\u0000") && out.contains("\\u2028"));
    // Still the same string for a JSON reader.
    let back: String = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(back, HOSTILE);
}

#[test]
fn html_text_escapes_markup_and_shows_controls() {
    let text = html::text(HOSTILE);
    for bad in ["<", ">", "\"", "'", "\x1b", "\x07", "\0", "\u{202e}"] {
        assert!(!text.contains(bad), "{bad:?} in {text}");
    }
    assert!(text.starts_with("&lt;/script&gt;&lt;script&gt;"), "{text}");
    assert!(text.contains("&amp;\\x1b[31m\\x07"), "{text}");
    assert!(text.contains("\\u{202e}x\\x00"), "{text}");
}

#[test]
fn a_hostile_page_has_only_its_own_script_elements_and_the_exact_names_in_its_data() {
    let page = page(&hostile_input());
    // Two script elements (the data and the code), each ended once; no comment opened.
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert_eq!(page.matches("</script>").count(), 2);
    assert!(!page.contains("<!--"));
    assert!(!page.contains("<b>"));
    assert!(!page.contains('\x1b') && !page.contains('\x07') && !page.contains('\0'));
    assert!(page.contains("<title>rprof timeline: ./app &lt;/script&gt;"));
    let data: Value = serde_json::from_str(embedded(&page)).expect("the data is JSON");
    assert_eq!(data["processes"][0]["name"], HOSTILE);
    assert_eq!(data["processes"][0]["threads"][0]["name"], HOSTILE);
    assert_eq!(data["frames"][1], HOSTILE);
    // Nothing is loaded from elsewhere.
    for remote in ["http:", "https:", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(remote), "{remote} in the page");
    }
}

#[test]
fn stacks_are_interned_as_a_prefix_tree_of_shared_frames() {
    let mut stacks = Stacks::default();
    let a = stacks.intern(["main", "run", "f"]).expect("a stack");
    let b = stacks.intern(["main", "run", "g"]).expect("a stack");
    let again = stacks.intern(["main", "run", "f"]).expect("a stack");
    assert_eq!(a, again);
    assert_ne!(a, b);
    assert_eq!(stacks.intern(std::iter::empty()), None);
    // main, run, f, g: four frames; main, main/run, main/run/f, main/run/g: four nodes.
    assert_eq!(stacks.sizes(), (4, 4));
    assert_eq!(stacks.frames(a), ["main", "run", "f"]);
    assert_eq!(stacks.frames(b), ["main", "run", "g"]);
}

#[test]
fn many_samples_of_few_stacks_are_stored_once_with_delta_times() {
    let mut stacks = Stacks::default();
    let refs: Vec<_> = (0..3)
        .map(|i| stacks.intern(["main", "work", ["a", "b", "c"][i]]))
        .collect();
    let mut t = thread(5, "worker");
    t.start = 1_000_000_000;
    t.end = 2_000_000_000;
    for i in 0..10_000u64 {
        t.samples.push(Sample {
            time: 1_000_000_000 + i * 100_000,
            stack: refs[(i % 3) as usize],
        });
    }
    let input = Input {
        start: 1_000_000_000,
        end: 2_000_000_000,
        sample_ns: 100_000,
        processes: vec![Process {
            pid: 5,
            name: "app".into(),
            threads: vec![t],
        }],
        stacks,
        ..Input::default()
    };
    let page = page(&input);
    let data: Value = serde_json::from_str(embedded(&page)).expect("JSON");
    assert_eq!(data["frames"].as_array().map(Vec::len), Some(5));
    assert_eq!(data["nodes"].as_array().map(Vec::len), Some(2 * 5));
    let samples = data["processes"][0]["threads"][0]["samples"]
        .as_array()
        .expect("samples")
        .clone();
    assert_eq!(samples.len(), 20_000);
    // The first time from the axis start, then the distance from the previous sample.
    assert_eq!(samples[0], 0);
    assert!(samples.chunks(2).skip(1).all(|pair| pair[0] == 100_000));
    // About 9 bytes a sample ("100000,N,"), not the 20 of absolute times.
    assert!(
        embedded(&page).len() < 10_000 * 10,
        "{}",
        embedded(&page).len()
    );
}

#[test]
fn the_same_input_in_any_order_gives_the_same_bytes() {
    let mut stacks = Stacks::default();
    let s1 = stacks.intern(["main", "f"]);
    let s2 = stacks.intern(["main", "g"]);
    let spans = vec![
        Span {
            start: 5_000,
            end: 6_000,
            state: State::Sleep,
            stack: s1,
        },
        Span {
            start: 2_000,
            end: 2_500,
            state: State::Io,
            stack: s2,
        },
        Span {
            start: 2_000,
            end: 2_200,
            state: State::Runnable,
            stack: None,
        },
    ];
    let samples = vec![
        Sample {
            time: 4_000,
            stack: s1,
        },
        Sample {
            time: 3_000,
            stack: s2,
        },
    ];
    let make = |spans: Vec<Span>, samples: Vec<Sample>| {
        let mut t = thread(7, "t");
        t.spans = spans;
        t.samples = samples;
        Input {
            start: 1_000,
            end: 9_000,
            sample_ns: 1_000,
            off_cpu: true,
            processes: vec![Process {
                pid: 7,
                name: "p".into(),
                threads: vec![t],
            }],
            stacks: stacks.clone(),
            ..Input::default()
        }
    };
    let forward = page(&make(spans.clone(), samples.clone()));
    let mut rspans = spans;
    rspans.reverse();
    let mut rsamples = samples;
    rsamples.reverse();
    let backward = page(&make(rspans, rsamples));
    assert_eq!(forward, backward);
    let data: Value = serde_json::from_str(embedded(&forward)).expect("JSON");
    // Sorted by start: (1000, 200, runnable, none), (0, 500, io, s2+1), (3000, 1000, sleep, s1+1).
    let spans: Vec<u64> = data["processes"][0]["threads"][0]["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|v| v.as_u64().expect("integer"))
        .collect();
    assert_eq!(spans, [1000, 200, 1, 0, 0, 500, 4, 3, 3000, 1000, 3, 2]);
    // An input with off-CPU states does not carry the on-CPU-only note.
    assert!(!forward.contains("no-off-cpu"));
}

#[test]
fn times_outside_the_axis_are_clamped_and_a_backwards_span_is_empty() {
    let mut t = thread(1, "t");
    t.start = 0;
    t.end = 50_000;
    t.spans.push(Span {
        start: 8_000,
        end: 7_000,
        state: State::Other,
        stack: None,
    });
    t.samples.push(Sample {
        time: 500,
        stack: None,
    });
    let input = Input {
        start: 1_000,
        end: 9_000,
        processes: vec![Process {
            pid: 1,
            name: "p".into(),
            threads: vec![t],
        }],
        ..Input::default()
    };
    let page = page(&input);
    let data: Value = serde_json::from_str(embedded(&page)).expect("JSON");
    let t = &data["processes"][0]["threads"][0];
    assert_eq!(
        (t["start"].as_u64(), t["end"].as_u64()),
        (Some(0), Some(8_000))
    );
    assert_eq!(t["spans"], serde_json::json!([7000, 0, 5, 0]));
    assert_eq!(t["samples"], serde_json::json!([0, 0]));
    assert_eq!(data["sample_ns"], 1);
    // No off-CPU states: the page says how to record them.
    assert!(page.contains(&html::text(NO_OFF_CPU_NOTE)));
}

#[test]
fn states_from_reasons() {
    let reasons = ["cpu", "lock", "sleep", "io", "other", "futex?"];
    let states: Vec<State> = reasons.iter().map(|r| State::from_reason(r)).collect();
    assert_eq!(
        states,
        [
            State::Runnable,
            State::Lock,
            State::Sleep,
            State::Io,
            State::Other,
            State::Other
        ]
    );
    for (i, state) in State::ALL.iter().enumerate() {
        assert_eq!(usize::from(state.code()), i);
    }
}

/// A profile of process 100 (main thread 100 "app", thread 101 "worker" created at 2 ms and
/// ended at 8 ms, thread 102 never named), with samples of two stacks.
fn profile() -> Profile {
    let header = Header {
        command: vec!["./app".into(), "--fast".into()],
        event: "cpu-clock".into(),
        frequency: Some(1000),
        call_graph: "dwarf,8192".into(),
        ..Header::default()
    };
    let mut w = Writer::new(Vec::new(), &header).expect("writer");
    let ms = 1_000_000u64;
    let push = |w: &mut Writer<Vec<u8>>, r: Record| w.push(r).expect("push");
    push(
        &mut w,
        Record::Comm {
            time: ms,
            pid: 100,
            tid: 100,
            name: "app".into(),
            exec: true,
        },
    );
    push(
        &mut w,
        Record::Fork {
            time: 2 * ms,
            pid: 100,
            ppid: 100,
            tid: 101,
            ptid: 100,
        },
    );
    push(
        &mut w,
        Record::Comm {
            time: 2 * ms + 10,
            pid: 100,
            tid: 101,
            name: "worker".into(),
            exec: false,
        },
    );
    let sample = |time: u64, tid: u32, leaf: u64| ProfileSample {
        time,
        pid: 100,
        tid,
        cpu: 0,
        period: ms,
        user: vec![
            Address {
                module: None,
                address: leaf,
            },
            Address {
                module: None,
                address: 0x1000,
            },
        ],
        kernel: Vec::new(),
        truncated: false,
    };
    let mut count = 0;
    for i in 3..8u64 {
        push(&mut w, Record::Sample(sample(i * ms, 101, 0x2000 + i % 2)));
        count += 1;
    }
    push(&mut w, Record::Sample(sample(9 * ms, 102, 0x3000)));
    count += 1;
    push(
        &mut w,
        Record::Exit {
            time: 8 * ms,
            pid: 100,
            ppid: 100,
            tid: 101,
            ptid: 101,
        },
    );
    push(
        &mut w,
        Record::Exit {
            time: 10 * ms,
            pid: 100,
            ppid: 1,
            tid: 100,
            ptid: 100,
        },
    );
    let bytes = w
        .finish(Summary {
            samples: count,
            ..Summary::default()
        })
        .expect("finish");
    Profile::read(&bytes[..], "test.rprof").expect("profile")
}

#[test]
fn from_profile_makes_one_lane_per_thread_with_lifetimes_and_sample_stacks() {
    let profile = profile();
    let input = from_profile(&profile, &FromProfileOptions::default());
    assert_eq!(input.title, "rprof timeline: ./app --fast");
    let ms = 1_000_000;
    assert_eq!((input.start, input.end), (ms, 10 * ms));
    assert_eq!(input.sample_ns, ms);
    assert!(!input.off_cpu);
    assert_eq!(input.processes.len(), 1);
    let p = &input.processes[0];
    assert_eq!((p.pid, p.name.as_str()), (100, "app"));
    let lanes: Vec<(u32, &str, u64, u64, usize)> = p
        .threads
        .iter()
        .map(|t| (t.tid, t.name.as_str(), t.start, t.end, t.samples.len()))
        .collect();
    assert_eq!(
        lanes,
        [
            // Named at exec, exited at 10 ms.
            (100, "app", ms, 10 * ms, 0),
            // Created at 2 ms, exited at 8 ms.
            (101, "worker", 2 * ms, 8 * ms, 5),
            // Only a sample: from it to the end of the recording.
            (102, "[tid 102]", 9 * ms, 10 * ms, 1),
        ]
    );
    // The worker's five samples have two leaf addresses, both without a module: named
    // `[unknown]` alike, they are one stack of two frames, root first.
    let worker = &p.threads[1];
    let mut distinct: Vec<_> = worker.samples.iter().filter_map(|s| s.stack).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1);
    assert_eq!(input.stacks.frames(distinct[0]), ["[unknown]", "[unknown]"]);
    // Deterministic: the same profile renders to the same bytes.
    let again = from_profile(&profile, &FromProfileOptions::default());
    assert_eq!(page(&input), page(&again));
}
