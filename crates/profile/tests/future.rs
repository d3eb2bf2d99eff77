//! Issue 10: `fixtures/profiles/future-kinds.rprof`, a profile as a newer rprof could write it,
//! with record kinds and a block kind this reader does not know. This file is its generator
//! (`RPROF_BLESS=1 cargo test -p rprof-profile --test future` rewrites it) and its test.

use std::path::PathBuf;

use rprof_profile::*;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/profiles/future-kinds.rprof")
}

/// Appends `value` as a LEB128 varint.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A record of kind 200, as a kind a later rprof might add looks:
/// `Wait { time, pid, tid, duration, reason: String }`. (Kind 9 was a made-up kind here until
/// rprof itself took it for `OffCpu`, issue 11.)
fn wait(time: u64, tid: u32, duration: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for field in [200, time, 100, u64::from(tid), duration] {
        varint(&mut out, field);
    }
    let reason = b"futex_wait";
    varint(&mut out, reason.len() as u64);
    out.extend_from_slice(reason);
    out
}

/// The profile: process 100 `./server` with a thread 101; 6 samples, 3 `Wait` records
/// (kind 200) and one record of kind 1000 between them, one block of kind 9 (say, an index), a
/// `Lost` record with a field appended, symbols and a summary.
fn future_profile() -> Vec<u8> {
    let header = Header {
        rprof_version: "0.9.0".into(),
        command: vec!["./server".into()],
        event: "cpu-clock".into(),
        frequency: Some(1000),
        call_graph: "dwarf,65528".into(),
        start_unix_ns: 1_796_000_000_000_000_000,
        hostname: "future-host".into(),
        kernel_release: "7.0.0".into(),
        ..Header::default()
    };
    let mut w = Writer::new(Vec::new(), &header).unwrap();
    w.push(Record::Comm {
        time: 1,
        pid: 100,
        tid: 100,
        name: "server".into(),
        exec: true,
    })
    .unwrap();
    w.push(Record::Fork {
        time: 2,
        pid: 100,
        ppid: 100,
        tid: 101,
        ptid: 100,
    })
    .unwrap();
    w.push(Record::Module(Module {
        id: ModuleId(0),
        path: "/usr/bin/server".into(),
        build_id: Some(vec![0xf0, 0x07]),
        kind: ModuleKind::Elf,
        jit_pid: None,
    }))
    .unwrap();
    let sample = |time: u64, tid: u32, leaf: u64| {
        Record::Sample(Sample {
            time,
            pid: 100,
            tid,
            cpu: 0,
            period: 1_000_000,
            user: vec![
                Address {
                    module: Some(ModuleId(0)),
                    address: leaf,
                },
                Address {
                    module: Some(ModuleId(0)),
                    address: 0x2005,
                },
            ],
            kernel: vec![],
            truncated: false,
        })
    };
    w.push(sample(10, 100, 0x1000)).unwrap();
    w.push_encoded(&wait(11, 101, 5_000_000));
    w.push(sample(12, 101, 0x1040)).unwrap();
    w.flush().unwrap();
    w.push_block(9, b"an index a later rprof might add")
        .unwrap();
    w.push_encoded(&wait(13, 100, 2_000_000));
    let mut kind_1000 = Vec::new();
    varint(&mut kind_1000, 1000);
    kind_1000.extend_from_slice(&[1, 2, 3, 4]);
    w.push_encoded(&kind_1000);
    w.push(sample(14, 100, 0x1000)).unwrap();
    w.push(sample(15, 101, 0x1040)).unwrap();
    w.flush().unwrap();
    w.push_encoded(&wait(16, 101, 1_000_000));
    w.push(sample(17, 100, 0x1000)).unwrap();
    w.push(sample(18, 101, 0x1040)).unwrap();
    // A Lost record with a field a later rprof appended (say, the CPU).
    let mut lost = postcard::to_stdvec(&Record::Lost { time: 19, count: 2 }).unwrap();
    lost.push(3);
    w.push_encoded(&lost);
    let frame = |function: u32| StoredFrame {
        function,
        file: 2,
        line: 7,
        inlined: false,
    };
    w.push(Record::Symbols(Symbols {
        module: Some(ModuleId(0)),
        strings: vec!["serve".into(), "main".into(), "server.c".into()],
        entries: vec![
            (0x1000, vec![frame(0)]),
            (0x1040, vec![frame(0)]),
            (0x2004, vec![frame(1)]),
        ],
    }))
    .unwrap();
    w.finish(Summary {
        end_unix_ns: 1_796_000_000_100_000_000,
        samples: 6,
        lost: 2,
        ..Summary::default()
    })
    .unwrap()
}

#[test]
fn the_committed_fixture_is_what_its_generator_writes() {
    let bytes = future_profile();
    if std::env::var_os("RPROF_BLESS").is_some() {
        std::fs::write(fixture(), &bytes).unwrap();
    }
    let committed = std::fs::read(fixture()).unwrap();
    assert!(
        committed == bytes,
        "fixtures/profiles/future-kinds.rprof differs from its generator; \
         RPROF_BLESS=1 cargo test -p rprof-profile --test future rewrites it"
    );
}

/// Issue 10: a reader skips record kinds and block kinds it does not know, keeps reading, and
/// says how many records it skipped.
#[test]
fn unknown_kinds_are_skipped_and_everything_else_is_read() {
    let p = Profile::open(fixture()).unwrap();
    assert_eq!(
        p.warnings,
        [
            format!(
                "{}: 4 records of unknown kinds skipped (written by a newer rprof)",
                fixture().display()
            ),
            format!(
                "{}: 1 block of unknown kinds skipped (written by a newer rprof)",
                fixture().display()
            ),
        ]
    );
    assert_eq!(p.samples.len(), 6);
    assert_eq!(p.lost, 2);
    assert_eq!(p.threads[&100].samples, 3);
    assert_eq!(p.threads[&101].samples, 3);
    assert_eq!(p.threads[&101].name, "server");
    assert!(p.summary.is_some());
    let leaf = p.frame(p.stack(p.sample_stack(5))[0]);
    assert_eq!(leaf.function, "serve");
    assert!(p.missing_lookups().is_empty());
}
