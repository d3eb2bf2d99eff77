//! Issue 9.4 and 10: profiles whose blocks are repeated, reordered, missing, cut or joined to
//! another profile, summaries that contradict the records, huge counts, and records of kinds a
//! newer rprof may write. The same mutations the fuzz target (`crates/profile/fuzz`) makes, as
//! plain tests so that CI checks them without the fuzzer.

use std::path::PathBuf;

use rprof_profile::*;

fn header(command: &str) -> Header {
    Header {
        rprof_version: "0.1.0".into(),
        command: vec![command.into()],
        event: "cpu-clock".into(),
        frequency: Some(1000),
        call_graph: "dwarf,65528".into(),
        ..Header::default()
    }
}

fn sample(time: u64, tid: u32) -> Record {
    Record::Sample(Sample {
        time,
        pid: 100,
        tid,
        cpu: 0,
        period: 1_000_000,
        user: vec![Address {
            module: Some(ModuleId(0)),
            address: 0x1000 + time % 4,
        }],
        kernel: vec![],
        truncated: time.is_multiple_of(5),
    })
}

fn comm(time: u64, tid: u32, name: &str, exec: bool) -> Record {
    Record::Comm {
        time,
        pid: 100,
        tid,
        name: name.into(),
        exec,
    }
}

/// A finished profile of `command` with 4 records blocks of 10 samples each (times from
/// `first`), then a block with the summary.
fn profile(command: &str, first: u64) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header(command)).unwrap();
    w.push(comm(1, 100, command, true)).unwrap();
    w.push(Record::Module(Module {
        id: ModuleId(0),
        path: "/bin/app".into(),
        build_id: None,
        kind: ModuleKind::Elf,
        jit_pid: None,
    }))
    .unwrap();
    let mut truncated = 0;
    for block in 0..4u64 {
        for i in 0..10u64 {
            let time = first + block * 10 + i;
            truncated += u64::from(time.is_multiple_of(5));
            w.push(sample(time, 100)).unwrap();
        }
        w.flush().unwrap();
    }
    w.push(Record::Lost { time: 99, count: 3 }).unwrap();
    w.finish(Summary {
        samples: 40,
        lost: 3,
        truncated,
        ..Summary::default()
    })
    .unwrap()
}

/// The file split into its first 16 bytes and its blocks (header block first).
fn split(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut at = 16;
    let mut blocks = Vec::new();
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = (at + 8 + len).min(bytes.len());
        blocks.push(bytes[at..end].to_vec());
        at = end;
    }
    (bytes[..16].to_vec(), blocks)
}

fn join(start: &[u8], blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = start.to_vec();
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}

fn read(bytes: &[u8]) -> Profile {
    Profile::read(bytes, "p.rprof").unwrap()
}

fn warned(p: &Profile, words: &str) -> bool {
    p.warnings.iter().any(|w| w.contains(words))
}

fn saved(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/profiles")
        .join(name);
    std::fs::read(path).unwrap()
}

#[test]
fn a_sound_profile_reads_without_warnings() {
    let p = read(&profile("app", 10));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.samples.len(), 40);
    assert_eq!(p.lost, 3);
}

/// Issue 9.4: `d + d[after the header:]` (a careless concatenation, a retried upload) counted
/// every sample twice and said nothing.
#[test]
fn repeated_blocks_are_counted_once_with_a_warning() {
    let d = profile("app", 10);
    let (_, blocks) = split(&d);
    let header_end = 16 + blocks[0].len();
    let mut doubled = d.clone();
    doubled.extend_from_slice(&d[header_end..]);
    let p = read(&doubled);
    assert_eq!(p.samples.len(), 40);
    assert_eq!(p.lost, 3);
    assert!(
        warned(&p, "skipped 5 blocks repeating earlier ones"),
        "{:?}",
        p.warnings
    );
    assert!(!warned(&p, "summary"), "{:?}", p.warnings);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

/// Issue 9.4, the reproducer as filed: a version 1 file (no sequence numbers) joined to itself
/// after its header block: 1,000 samples, not 2,000.
#[test]
fn a_version_1_file_joined_to_itself_is_counted_once() {
    let d = saved("basic.rprof");
    assert_eq!(d[8], 1, "basic.rprof is a version 1 file");
    let single = read(&d);
    assert!(single.warnings.is_empty(), "{:?}", single.warnings);
    let (_, blocks) = split(&d);
    let header_end = 16 + blocks[0].len();
    let mut doubled = d.clone();
    doubled.extend_from_slice(&d[header_end..]);
    let p = read(&doubled);
    assert_eq!(p.samples.len(), single.samples.len());
    assert_eq!(p.lost, single.lost);
    assert!(warned(&p, "repeating earlier ones"), "{:?}", p.warnings);
}

#[test]
fn reordered_blocks_are_all_read_with_a_warning() {
    let (start, mut blocks) = split(&profile("app", 10));
    blocks.swap(2, 3);
    let p = read(&join(&start, &blocks));
    assert_eq!(p.samples.len(), 40);
    assert!(warned(&p, "1 block out of order"), "{:?}", p.warnings);
    assert!(!warned(&p, "missing"), "{:?}", p.warnings);
}

#[test]
fn a_missing_block_is_named_and_the_summary_is_not_trusted() {
    let (start, mut blocks) = split(&profile("app", 10));
    blocks.remove(2);
    let p = read(&join(&start, &blocks));
    assert_eq!(p.samples.len(), 30);
    assert!(warned(&p, "1 block missing"), "{:?}", p.warnings);
    assert!(
        warned(&p, "its summary says 40 samples")
            && warned(&p, "its records hold 30 samples")
            && warned(&p, "the counts from the records are used"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_block_cut_short_in_the_middle_stops_reading_there() {
    let (start, mut blocks) = split(&profile("app", 10));
    let cut = blocks[2].len() / 2;
    blocks[2].truncate(cut);
    let p = read(&join(&start, &blocks));
    // The cut block's length swallows the next block: its checksum cannot match.
    assert_eq!(p.samples.len(), 10);
    assert!(warned(&p, "damaged"), "{:?}", p.warnings);
}

#[test]
fn a_second_profile_appended_is_not_read() {
    let d = profile("app", 10);
    let mut joined = d.clone();
    joined.extend_from_slice(&profile("other", 500)[16..]);
    let p = read(&joined);
    assert_eq!(p.samples.len(), 40);
    assert!(
        warned(&p, "holds a second profile from byte"),
        "{:?}",
        p.warnings
    );
    assert_eq!(p.processes[&100].name, "app");
}

#[test]
fn blocks_of_another_profile_with_the_same_numbers_are_not_read() {
    let d = profile("app", 10);
    let (_, other) = split(&profile("other", 500));
    let mut joined = d.clone();
    for block in &other[1..] {
        joined.extend_from_slice(block);
    }
    let p = read(&joined);
    assert_eq!(p.samples.len(), 40);
    assert!(p.samples.iter().all(|s| s.time < 500));
    assert!(
        warned(&p, "skipped 4 blocks reusing the sequence number"),
        "{:?}",
        p.warnings
    );
}

/// Issue 9.4: a summary that contradicts the records was not checked.
#[test]
fn a_contradicting_summary_is_reported_and_the_records_trusted() {
    let mut w = Writer::new(Vec::new(), &header("app")).unwrap();
    for t in 1..=4 {
        w.push(sample(t, 100)).unwrap();
    }
    let bytes = w
        .finish(Summary {
            samples: 382,
            lost: 7,
            ..Summary::default()
        })
        .unwrap();
    let p = read(&bytes);
    assert_eq!(p.samples.len(), 4);
    assert_eq!(p.lost, 0);
    assert_eq!(
        p.warnings,
        ["p.rprof: its summary says 382 samples, 7 lost but its records hold 4 samples, 0 lost; \
          the counts from the records are used"]
    );
}

/// Issue 9.4: `Summary.lost = u64::MAX` overflowed the report's arithmetic; counts from the file
/// saturate.
#[test]
fn huge_counts_saturate() {
    let mut w = Writer::new(Vec::new(), &header("app")).unwrap();
    w.push(sample(1, 100)).unwrap();
    for _ in 0..3 {
        w.push(Record::Lost {
            time: 2,
            count: u64::MAX,
        })
        .unwrap();
    }
    let mut huge = match sample(3, 100) {
        Record::Sample(s) => s,
        _ => unreachable!(),
    };
    huge.period = u64::MAX;
    w.push(Record::Sample(huge)).unwrap();
    let bytes = w
        .finish(Summary {
            samples: 2,
            lost: u64::MAX,
            ..Summary::default()
        })
        .unwrap();
    let p = read(&bytes);
    assert_eq!(p.lost, u64::MAX);
    assert_eq!(p.total_period(), u64::MAX);
    assert_eq!(p.threads[&100].period, u64::MAX);
    assert_eq!(p.threads[&100].names[0].period, u64::MAX);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

/// Issue 10: records of kinds this reader does not know are skipped, and reading goes on.
#[test]
fn records_of_unknown_kinds_are_skipped_and_counted() {
    let mut w = Writer::new(Vec::new(), &header("app")).unwrap();
    w.push(sample(1, 100)).unwrap();
    // Kind 100 and kind 300 (a two-byte varint), with made-up fields.
    w.push_encoded(&[100, 1, 2, 3]);
    w.push_encoded(&[0xac, 0x02, 0xff, 0xff]);
    w.push(sample(2, 100)).unwrap();
    w.flush().unwrap();
    w.push_encoded(&[42]);
    w.push(sample(3, 100)).unwrap();
    let bytes = w
        .finish(Summary {
            samples: 3,
            ..Summary::default()
        })
        .unwrap();
    let p = read(&bytes);
    assert_eq!(p.samples.len(), 3);
    assert!(p.summary.is_some());
    assert_eq!(
        p.warnings,
        ["p.rprof: 3 records of unknown kinds skipped (written by a newer rprof)"]
    );
}

/// Issue 10: a record with more bytes than its fields (a field appended by a newer rprof)
/// reads with the fields this reader knows.
#[test]
fn fields_appended_to_a_known_record_are_ignored() {
    let mut w = Writer::new(Vec::new(), &header("app")).unwrap();
    let mut lost = postcard::to_stdvec(&Record::Lost { time: 5, count: 2 }).unwrap();
    lost.extend_from_slice(&[7, 7, 7]);
    w.push_encoded(&lost);
    let p = read(
        &w.finish(Summary {
            lost: 2,
            ..Summary::default()
        })
        .unwrap(),
    );
    assert_eq!(p.lost, 2);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

/// Issue 9.11: samples taken before an `exec` keep the name the thread had then.
#[test]
fn samples_keep_the_thread_name_of_their_time() {
    let mut w = Writer::new(Vec::new(), &header("sh")).unwrap();
    w.push(comm(1, 100, "sh", true)).unwrap();
    for t in 10..13 {
        w.push(sample(t, 100)).unwrap();
    }
    w.push(comm(20, 100, "busy", true)).unwrap();
    for t in 21..26 {
        w.push(sample(t, 100)).unwrap();
    }
    // A worker thread forked later inherits "busy", then renames itself.
    w.push(Record::Fork {
        time: 30,
        pid: 100,
        ppid: 100,
        tid: 101,
        ptid: 100,
    })
    .unwrap();
    w.push(sample(31, 101)).unwrap();
    w.push(comm(32, 101, "worker", false)).unwrap();
    w.push(sample(33, 101)).unwrap();
    w.push(sample(34, 101)).unwrap();
    let p = read(&w.finish(Summary::default()).unwrap());
    let names = |tid: u32| -> Vec<(String, u64)> {
        p.threads[&tid]
            .names
            .iter()
            .map(|n| (n.name.clone(), n.samples))
            .collect()
    };
    assert_eq!(names(100), [("sh".into(), 3), ("busy".into(), 5)]);
    assert_eq!(names(101), [("busy".into(), 1), ("worker".into(), 2)]);
    assert_eq!(p.threads[&100].name, "busy");
    assert_eq!(p.threads[&100].samples, 8);
}

/// Version 1 files, as rprof wrote them before sequence numbers, still read as they did.
#[test]
fn version_1_fixtures_still_read() {
    for name in [
        "basic.rprof",
        "threads.rprof",
        "shares.rprof",
        "empty.rprof",
    ] {
        let p = read(&saved(name));
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
        assert!(p.summary.is_some(), "{name}");
        let summary = p.summary.as_ref().unwrap();
        assert_eq!(summary.samples, p.samples.len() as u64, "{name}");
    }
}
