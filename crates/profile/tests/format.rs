//! Round trips and damaged input for the profile format.

use rprof_profile::*;

fn header() -> Header {
    Header {
        rprof_version: "0.1.0".into(),
        command: vec!["./app".into(), "--fast".into()],
        event: "cpu-clock".into(),
        frequency: Some(999),
        call_graph: "dwarf,65528".into(),
        ..Header::default()
    }
}

fn module(id: u32, path: &str) -> Record {
    Record::Module(Module {
        id: ModuleId(id),
        path: path.into(),
        build_id: Some(vec![0xab, 0xcd]),
        kind: ModuleKind::Elf,
        jit_pid: None,
    })
}

fn addr(module: u32, address: u64) -> Address {
    Address {
        module: Some(ModuleId(module)),
        address,
    }
}

fn sample(tid: u32, user: Vec<Address>, truncated: bool) -> Record {
    Record::Sample(Sample {
        time: 1000 + u64::from(tid),
        pid: 100,
        tid,
        cpu: 0,
        period: 1_000_000,
        user,
        kernel: vec![],
        truncated,
    })
}

fn frame(function: u32, inlined: bool) -> StoredFrame {
    StoredFrame {
        function,
        file: 3,
        line: 42,
        inlined,
    }
}

/// A small finished profile: main -> work (with `helper` inlined into work), on two threads.
fn finished_profile() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    w.push(Record::Comm {
        time: 1,
        pid: 100,
        tid: 100,
        name: "app".into(),
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
    w.push(Record::Comm {
        time: 3,
        pid: 100,
        tid: 101,
        name: "worker".into(),
        exec: false,
    })
    .unwrap();
    w.push(module(0, "/usr/bin/app")).unwrap();
    w.flush().unwrap();
    // leaf 0x1010 (in work, inlined helper), return into main at 0x2005.
    for tid in [100, 101, 101] {
        w.push(sample(tid, vec![addr(0, 0x1010), addr(0, 0x2005)], false))
            .unwrap();
    }
    w.push(sample(101, vec![addr(0, 0x1010)], true)).unwrap();
    w.push(Record::Lost { time: 5, count: 7 }).unwrap();
    w.flush().unwrap();
    w.push(Record::Symbols(Symbols {
        module: Some(ModuleId(0)),
        strings: vec![
            "helper".into(),
            "work".into(),
            "main".into(),
            "app.c".into(),
        ],
        entries: vec![
            (0x1010, vec![frame(0, true), frame(1, false)]),
            (0x2004, vec![frame(2, false)]),
        ],
    }))
    .unwrap();
    w.finish(Summary {
        samples: 4,
        lost: 7,
        truncated: 1,
        ..Summary::default()
    })
    .unwrap()
}

fn names(p: &Profile, stack: StackId) -> Vec<String> {
    p.stack(stack)
        .iter()
        .map(|&f| p.frame(f).function.clone())
        .collect()
}

#[test]
fn round_trip_names_inline_frames_and_threads() {
    let bytes = finished_profile();
    let p = Profile::read(&bytes[..], "mem").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.header, header());
    assert_eq!(p.samples.len(), 4);
    assert_eq!(p.lost, 7);
    assert_eq!(p.summary.as_ref().unwrap().truncated, 1);
    assert_eq!(p.threads[&101].name, "worker");
    assert_eq!(p.threads[&101].samples, 3);
    assert_eq!(p.threads[&100].name, "app");
    assert_eq!(p.processes[&100].name, "app");
    assert_eq!(names(&p, p.sample_stack(0)), ["helper", "work", "main"]);
    let inlined: Vec<bool> = p
        .stack(p.sample_stack(0))
        .iter()
        .map(|&f| p.frame(f).inlined)
        .collect();
    assert_eq!(inlined, [true, false, false]);
    assert_eq!(
        names(&p, p.sample_stack(3)),
        ["helper", "work", "[truncated]"]
    );
    assert_eq!(
        p.frame(p.stack(p.sample_stack(3))[2]).kind,
        FrameKind::Truncated
    );
    // Identical stacks are shared.
    assert_eq!(p.sample_stack(0), p.sample_stack(1));
    assert!(p.missing_lookups().is_empty());
    let main = p.frame(p.stack(p.sample_stack(0))[2]);
    assert_eq!((main.file.as_deref(), main.line), (Some("app.c"), Some(42)));
}

#[test]
fn every_cut_of_a_profile_reads_or_fails_cleanly() {
    let bytes = finished_profile();
    for len in 0..bytes.len() {
        match Profile::read(&bytes[..len], "cut") {
            Ok(p) => {
                assert!(len >= 16);
                assert!(!p.warnings.is_empty(), "cut at {len} must warn");
                assert!(p.samples.len() <= 4);
            }
            Err(ReadError::NotAProfile { .. }) => assert!(len < 8),
            Err(ReadError::BadHeader { .. }) => {}
            Err(e) => panic!("cut at {len}: unexpected error {e}"),
        }
    }
}

#[test]
fn an_interrupted_recording_names_addresses_as_module_offsets() {
    let bytes = finished_profile();
    // Keep the header and the first two blocks only: no symbols, no summary.
    let p = Profile::read(&bytes[..cut_after_blocks(&bytes, 3)], "killed").unwrap();
    assert_eq!(p.samples.len(), 4);
    assert!(p.summary.is_none());
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("did not finish"));
    assert_eq!(names(&p, p.sample_stack(0)), ["app+0x1010", "app+0x2004"]);
    let missing: Vec<(ModuleId, Vec<u64>)> = p
        .missing_lookups()
        .iter()
        .map(|(m, s)| (m, s.iter().copied().collect()))
        .collect();
    assert_eq!(missing, [(ModuleId(0), vec![0x1010, 0x2004])]);
}

/// Length of the file up to and including its first `n` blocks.
fn cut_after_blocks(bytes: &[u8], n: usize) -> usize {
    let mut at = 16;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    at
}

#[test]
fn a_flipped_byte_stops_reading_at_that_block() {
    let mut bytes = finished_profile();
    let second = cut_after_blocks(&bytes, 2);
    bytes[second + 12] ^= 0xff;
    let p = Profile::read(&bytes[..], "flip").unwrap();
    assert!(
        p.warnings.iter().any(|w| w.contains("damaged")),
        "{:?}",
        p.warnings
    );
    assert_eq!(p.samples.len(), 0);
    assert_eq!(p.modules.len(), 1);
}

#[test]
fn random_garbage_never_panics() {
    let good = finished_profile();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..=(round % 8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
        }
        let _ = Profile::read(&bytes[..], "fuzz");
    }
}

#[test]
fn wrong_magic_newer_version_and_empty_file() {
    assert!(matches!(
        Profile::read(&b"PERFILE2 something"[..], "x"),
        Err(ReadError::NotAProfile { .. })
    ));
    assert!(matches!(
        Profile::read(&b""[..], "x"),
        Err(ReadError::NotAProfile { .. })
    ));
    let mut bytes = finished_profile();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Profile::read(&bytes[..], "new.data").unwrap_err();
    assert!(matches!(err, ReadError::NewerVersion { .. }));
    assert!(err.to_string().contains("upgrade rprof"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = Profile::open("/nonexistent/rprof.data").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rprof.data"), "{err}");
}

#[test]
fn large_profiles_split_into_blocks() {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    w.push(module(0, "/bin/x")).unwrap();
    for i in 0..100_000u64 {
        w.push(sample(1, vec![addr(0, i % 97), addr(0, 5000)], false))
            .unwrap();
    }
    let bytes = w.finish(Summary::default()).unwrap();
    let p = Profile::read(&bytes[..], "big").unwrap();
    assert_eq!(p.samples.len(), 100_000);
    assert_eq!(p.stacks().len(), 97);
    assert!(bytes.len() < 100_000 * 40, "{} bytes", bytes.len());
}

#[test]
fn garbage_payloads_with_valid_checksums_never_panic() {
    let good = finished_profile();
    let start = cut_after_blocks(&good, 1);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..3000usize {
        let len = 1 + round % 300;
        let mut payload = vec![2u8]; // a records block
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            payload.push(seed as u8);
        }
        let mut bytes = good[..start].to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let p = Profile::read(&bytes[..], "fuzz").unwrap();
        assert!(p.samples.len() < 1000);
    }
}
