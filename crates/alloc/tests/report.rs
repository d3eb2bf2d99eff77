//! Issue 14: the reports of an allocation profile, from a profile written here: sites are the
//! first frame past the allocator and Rust's allocation plumbing, added up by name; flame
//! graphs draw only the sampled stacks, without the allocator frames; JSON has the documented
//! fields.

use rprof_alloc::report::{self, Metric};
use rprof_profile::*;

const LIBC: ModuleId = ModuleId(0);
const APP: ModuleId = ModuleId(1);

fn at(module: ModuleId, address: u64) -> Address {
    Address {
        module: Some(module),
        address,
    }
}

/// libc `malloc` at 0x100; app: 0x2000 `__rust_alloc` (plumbing) inlined into `app::leaky`,
/// 0x3000 `app::temp`, 0x4000 `main`.
fn profile() -> Profile {
    let mut w = Writer::new(
        Vec::new(),
        &Header {
            command: vec!["./app".into()],
            event: "alloc".into(),
            ..Header::default()
        },
    )
    .unwrap();
    for (id, path) in [(LIBC, "/lib/libc.so.6"), (APP, "/bin/app")] {
        w.push(Record::Module(Module {
            id,
            path: path.into(),
            build_id: None,
            kind: ModuleKind::Elf,
            jit_pid: None,
        }))
        .unwrap();
    }
    let exact = |ret: u64, calls: u64, bytes: u64, leaked: u64| AllocStack {
        pid: 1,
        user: vec![at(LIBC, 0x100), at(APP, ret)],
        truncated: true,
        exact: true,
        calls,
        bytes,
        leaked_calls: leaked / 1024,
        leaked_bytes: leaked,
        ..AllocStack::default()
    };
    // Two call sites in app::leaky, one in app::temp.
    w.push(Record::AllocStack(exact(
        0x2005,
        600,
        600 * 1024,
        600 * 1024,
    )))
    .unwrap();
    w.push(Record::AllocStack(exact(
        0x2105,
        400,
        400 * 1024,
        400 * 1024,
    )))
    .unwrap();
    w.push(Record::AllocStack(exact(0x3005, 50, 3200, 0)))
        .unwrap();
    w.push(Record::AllocStack(AllocStack {
        pid: 1,
        user: vec![at(LIBC, 0x100), at(APP, 0x2005), at(APP, 0x4005)],
        truncated: false,
        exact: false,
        calls: 512,
        bytes: 524_288,
        leaked_calls: 512,
        leaked_bytes: 524_288,
        peak_calls: 512,
        peak_bytes: 524_288,
        temporary_calls: 0,
    }))
    .unwrap();
    w.push(Record::AllocSummary(AllocSummary {
        allocator: "/lib/libc.so.6".into(),
        sample_bytes: 524_288,
        alloc_calls: 1050,
        alloc_bytes: 1_027_200,
        leaked_calls: 1000,
        leaked_bytes: 1_024_000,
        peak_bytes: 1_024_000,
        peak_time_ns: 5_000_000,
        calls_by_function: vec![("malloc".into(), 1050), ("free".into(), 50)],
        ..AllocSummary::default()
    }))
    .unwrap();
    let frame = |function: u32, inlined: bool| StoredFrame {
        function,
        file: u32::MAX,
        line: 0,
        inlined,
    };
    w.push(Record::Symbols(Symbols {
        module: Some(LIBC),
        strings: vec!["malloc".into()],
        entries: vec![(0x100, vec![frame(0, false)])],
    }))
    .unwrap();
    w.push(Record::Symbols(Symbols {
        module: Some(APP),
        strings: vec![
            "__rust_alloc".into(),
            "app::leaky".into(),
            "app::temp".into(),
            "main".into(),
        ],
        entries: vec![
            (0x2004, vec![frame(0, true), frame(1, false)]),
            (0x2104, vec![frame(1, false)]),
            (0x3004, vec![frame(2, false)]),
            (0x4004, vec![frame(3, false)]),
        ],
    }))
    .unwrap();
    let bytes = w.finish(Summary::default()).unwrap();
    Profile::read(&bytes[..], "test").unwrap()
}

#[test]
fn sites_skip_the_allocator_and_add_up_by_name() {
    let p = profile();
    let sites = report::sites(&p);
    assert_eq!(sites.len(), 2, "{sites:?}");
    assert_eq!(sites[0].name, "app::leaky");
    assert_eq!(sites[0].module, "app");
    assert_eq!((sites[0].count, sites[0].leaked_bytes), (1000, 1_024_000));
    assert_eq!((sites[1].name.as_str(), sites[1].count), ("app::temp", 50));
    assert!(report::is_allocator_frame("alloc::raw_vec::finish_grow"));
    assert!(report::is_allocator_frame("malloc"));
    assert!(!report::is_allocator_frame("app::leaky"));
}

#[test]
fn flame_lines_are_the_sampled_stacks_without_the_allocator() {
    let p = profile();
    assert_eq!(
        report::folded(&p, Metric::Leaked),
        vec!["main;app::leaky;__rust_alloc 524288".to_string()]
    );
    assert_eq!(
        report::folded(&p, Metric::Count),
        vec!["main;app::leaky;__rust_alloc 512".to_string()]
    );
    // Nothing temporary was sampled: no line, so no graph.
    let mut svg = Vec::new();
    assert!(report::render_flame(&p, Metric::Peak, None, &mut svg).unwrap());
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("bytes at the peak") && svg.contains("app::leaky"));
}

#[test]
fn text_and_json_reports() {
    let p = profile();
    let mut text = Vec::new();
    report::render_text(&p, 10, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with(
            "allocations: 1,050 calls (0 temporary), 1003.1 KiB allocated, peak 1000.0 KiB \
             at 0.005 s, leaked 1000.0 KiB in 1,000 blocks\n"
        ),
        "{text}"
    );
    assert!(text.contains("calls: malloc 1,050, free 50"), "{text}");
    let leaked = text.split("most bytes leaked").nth(1).unwrap();
    assert!(
        leaked.lines().nth(2).unwrap().ends_with("app::leaky (app)"),
        "{text}"
    );
    let mut json = Vec::new();
    report::render_json(&p, &mut json).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let s = &json["summary"];
    for field in [
        "alloc_calls",
        "alloc_bytes",
        "temporary_calls",
        "leaked_bytes",
        "peak_bytes",
    ] {
        assert!(s[field].is_u64(), "{field} in {s}");
    }
    let site = &json["sites"][0];
    assert_eq!(site["name"], "app::leaky");
    for field in ["bytes", "count", "leaked_bytes"] {
        assert!(site[field].is_u64(), "{field} in {site}");
    }
    assert_eq!(json["stacks"][0]["frames"][2], "main");
}
