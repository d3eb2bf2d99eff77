//! Issue 13: format version 3, compressed blocks and compact samples. A profile must stay
//! readable up to its last good block when a crash cuts it short, a hostile block must not
//! expand without limit, and the files of versions 1 and 2 still read.

use std::path::PathBuf;

use rprof_profile::format::{records_payload, MAX_RAW};
use rprof_profile::*;

fn header() -> Header {
    Header {
        rprof_version: "0.1.0".into(),
        command: vec!["app".into()],
        event: "cpu-clock".into(),
        frequency: Some(999),
        call_graph: "dwarf,65528".into(),
        ..Header::default()
    }
}

fn at(module: u32, address: u64) -> Address {
    Address {
        module: Some(ModuleId(module)),
        address,
    }
}

/// Sample `i` of a recording: three threads, user stacks under a few shared callers, a kernel
/// stack on every third, a time with jitter.
fn sample(i: u64) -> Sample {
    let mut user = vec![at(0, 0x4000 + (i * 7) % 50)];
    user.extend((0..20).map(|d| at(0, 0x1000 + d * 0x40 + (i / 200) % 3)));
    let kernel = if i.is_multiple_of(3) {
        vec![
            at(1, 0xffff_ffff_8123_4567 + i % 5),
            at(1, 0xffff_ffff_8100_0100),
        ]
    } else {
        Vec::new()
    };
    Sample {
        time: 1_000_000_000 + i * 333_667 + (i * 7919) % 4000,
        pid: 100,
        tid: 100 + (i % 3) as u32,
        cpu: (i % 2) as u32,
        period: 1_001_001,
        user,
        kernel,
        truncated: i.is_multiple_of(97),
    }
}

/// A finished profile of `blocks` blocks of 400 samples each, its names in a last block.
fn recording(blocks: u64) -> (Vec<u8>, Vec<Sample>) {
    let mut w = Writer::new(Vec::new(), &header()).unwrap();
    for (id, path, kind) in [
        (0, "/bin/app", ModuleKind::Elf),
        (1, "[kernel.kallsyms]", ModuleKind::Kernel),
    ] {
        w.push(Record::Module(Module {
            id: ModuleId(id),
            path: path.into(),
            build_id: None,
            kind,
            jit_pid: None,
        }))
        .unwrap();
    }
    let mut samples = Vec::new();
    for i in 0..blocks * 400 {
        let s = sample(i);
        samples.push(s.clone());
        w.push(Record::Sample(s)).unwrap();
        if i % 400 == 399 {
            w.flush().unwrap();
        }
    }
    w.push(Record::Symbols(Symbols {
        module: Some(ModuleId(0)),
        strings: vec!["main".into(), "app.c".into()],
        entries: vec![(
            0x1000,
            vec![StoredFrame {
                function: 0,
                file: 1,
                line: 3,
                inlined: false,
            }],
        )],
    }))
    .unwrap();
    let truncated = samples.iter().filter(|s| s.truncated).count() as u64;
    let bytes = w
        .finish(Summary {
            samples: samples.len() as u64,
            truncated,
            ..Summary::default()
        })
        .unwrap();
    (bytes, samples)
}

/// A profile cut at `cut` says why it ends: inside a block, "cut short"; between two (a
/// `starts` offset), the recording "did not finish".
fn assert_cut_warning(p: &Profile, starts: &[usize], cut: usize) {
    let said = if starts.contains(&cut) {
        "did not finish"
    } else {
        "cut short"
    };
    assert!(
        p.warnings.iter().any(|w| w.contains(said)),
        "cut at {cut}: {:?}",
        p.warnings
    );
}

/// Offsets where each block starts, and the end of the file.
fn block_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![16];
    let mut at = 16;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        starts.push(at);
    }
    starts
}

/// The file with a block of `kind` holding `payload` appended (its checksum right).
fn with_block(bytes: &[u8], kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&(payload.len() as u32 + 1).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[test]
fn samples_come_back_exactly_and_the_file_is_small() {
    let (bytes, samples) = recording(5);
    assert_eq!(bytes[8], 4, "rprof writes format version 4");
    let p = Profile::read(&bytes[..], "p.rprof").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.samples, samples);
    // 23 frames a sample: about 400 bytes a sample in version 2.
    let per_sample = bytes.len() as f64 / samples.len() as f64;
    assert!(per_sample < 12.0, "{per_sample:.1} bytes a sample");
}

/// Issue 13: a compressed profile cut short by a crash reads up to its last complete block,
/// wherever the cut falls.
#[test]
fn a_cut_compressed_profile_reads_up_to_its_last_complete_block() {
    let (bytes, samples) = recording(4);
    let starts = block_starts(&bytes);
    // Header block, 4 sample blocks (the first with the modules), the names and summary.
    assert_eq!(starts.len(), 7, "{starts:?}");
    let cuts = (starts[1]..bytes.len())
        .step_by(7)
        .chain(starts[1..6].iter().copied());
    for cut in cuts {
        let p = Profile::read(&bytes[..cut], "cut.rprof").unwrap();
        let complete = starts
            .iter()
            .filter(|&&s| s <= cut)
            .count()
            .saturating_sub(2);
        let expected = (complete * 400).min(samples.len());
        assert_eq!(p.samples.len(), expected, "cut at {cut}");
        assert_eq!(p.samples[..], samples[..expected], "cut at {cut}");
        // Cut inside a block: "cut short"; between two: the recording did not finish.
        assert_cut_warning(&p, &starts, cut);
    }
}

fn damage(p: &Profile) -> String {
    p.warnings
        .iter()
        .find(|w| w.contains("damaged"))
        .cloned()
        .unwrap_or_else(|| panic!("no damage reported: {:?}", p.warnings))
}

/// Issue 13: decompression is bounded: a block that claims more than `MAX_RAW` bytes, or whose
/// data expands past the size it states, ends reading with a clear warning; what came before
/// is kept.
#[test]
fn a_block_cannot_expand_without_limit() {
    let (bytes, _) = recording(1);
    let good = &bytes[..block_starts(&bytes)[2]];

    // Claims 1 TiB.
    let mut payload = Vec::new();
    varint(&mut payload, 9);
    varint(&mut payload, 1 << 40);
    payload.extend_from_slice(&zstd::bulk::compress(&[0u8; 64], 3).unwrap());
    let p = Profile::read(&with_block(good, 2, &payload)[..], "big.rprof").unwrap();
    assert_eq!(p.samples.len(), 400);
    assert!(damage(&p).contains(&format!("more than the {MAX_RAW}")));

    // States 1 KiB, holds 64 MiB of zeros (a few kilobytes compressed).
    let zeros = vec![0u8; 64 << 20];
    let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let mut payload = Vec::new();
    varint(&mut payload, 9);
    varint(&mut payload, 1024);
    payload.extend_from_slice(&bomb);
    let p = Profile::read(&with_block(good, 2, &payload)[..], "bomb.rprof").unwrap();
    assert_eq!(p.samples.len(), 400);
    assert!(damage(&p).contains("does not decompress"), "{}", damage(&p));

    // States more than it holds (a version 4 body: the records' size, the records, and four
    // empty columns).
    let mut records = Vec::new();
    let lost = [5u8, 1, 2];
    varint(&mut records, lost.len() as u64);
    records.extend_from_slice(&lost);
    let mut payload = records_payload(4, 9, &records, 3).unwrap();
    payload[1] += 1;
    let p = Profile::read(&with_block(good, 2, &payload)[..], "short.rprof").unwrap();
    assert!(
        damage(&p).contains("not the 10 it states"),
        "{}",
        damage(&p)
    );

    // Not zstd at all.
    let mut payload = Vec::new();
    varint(&mut payload, 9);
    varint(&mut payload, 4);
    payload.extend_from_slice(b"junk");
    let p = Profile::read(&with_block(good, 2, &payload)[..], "junk.rprof").unwrap();
    assert!(damage(&p).contains("does not decompress"), "{}", damage(&p));
}

/// A block built by hand from records (the fuzz target does the same) reads like a written one.
#[test]
fn a_block_of_plain_records_reads() {
    let (bytes, _) = recording(1);
    let good = &bytes[..block_starts(&bytes)[2]];
    let mut records = Vec::new();
    let lost = postcard::to_stdvec(&Record::Lost { time: 7, count: 3 }).unwrap();
    varint(&mut records, lost.len() as u64);
    records.extend_from_slice(&lost);
    let payload = records_payload(4, 2, &records, 3).unwrap();
    let p = Profile::read(&with_block(good, 2, &payload)[..], "lost.rprof").unwrap();
    assert_eq!(p.lost, 3);
    assert_eq!(p.samples.len(), 400);
}

fn saved(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/profiles")
        .join(name);
    std::fs::read(path).unwrap()
}

/// Issue 13: the committed version 2 profiles (real recordings) still read, every sample named.
#[test]
fn version_2_fixtures_still_read() {
    for name in [
        "exec.rprof",
        "regress-base.rprof",
        "regress-new.rprof",
        "threads-offcpu.rprof",
    ] {
        let bytes = saved(name);
        assert_eq!(bytes[8], 2, "{name} is a version 2 file");
        let p = Profile::read(&bytes[..], name).unwrap();
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
        let summary = p.summary.as_ref().unwrap();
        assert_eq!(summary.samples, p.samples.len() as u64, "{name}");
        assert!(!p.samples.is_empty(), "{name}");
        assert!(p.missing_lookups().is_empty(), "{name}");
    }
}

/// What a profile reads as, in a few lines: the samples' count and a checksum of every field of
/// every sample (times included), then each distinct stack by name with its samples.
fn read_as(p: &Profile) -> String {
    let mut crc = crc32fast::Hasher::new();
    crc.update(format!("{:?}", p.samples).as_bytes());
    let mut out = format!(
        "{} samples, checksum of their fields {:08x}, {} warnings\n",
        p.samples.len(),
        crc.finalize(),
        p.warnings.len()
    );
    let mut folded = std::collections::BTreeMap::<String, u64>::new();
    for index in 0..p.samples.len() {
        let stack = p.stack(p.sample_stack(index));
        let names: Vec<String> = stack
            .iter()
            .rev()
            .map(|&f| {
                let f = p.frame(f);
                match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
                    _ => f.function.clone(),
                }
            })
            .collect();
        *folded.entry(names.join(";")).or_default() += 1;
    }
    for (stack, count) in folded {
        out.push_str(&format!("{stack} {count}\n"));
    }
    out
}

/// Issue 13: a version 3 recording (`rprof record` of `fixtures/bench_threads.c`, written by
/// rprof at format version 3) still reads exactly as it did when version 3 was current: the
/// same samples, the same named stacks (`threads-v3.expected`, blessed then with
/// `RPROF_BLESS=1`).
#[test]
fn a_version_3_recording_reads_as_it_did() {
    let bytes = saved("threads-v3.rprof");
    assert_eq!(bytes[8], 3, "a version 3 file");
    let p = Profile::read(&bytes[..], "threads-v3.rprof").unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(p.missing_lookups().is_empty());
    let got = read_as(&p);
    let expected = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/profiles/threads-v3.expected");
    if std::env::var_os("RPROF_BLESS").is_some() {
        std::fs::write(&expected, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&expected).unwrap());
}

/// A version 4 block body: `records`, then the three sample columns as given and an empty text
/// column.
fn body(records: &[u8], stacks: &[u8], times: &[u8], threads: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [records, stacks, times, threads, &[]] {
        varint(&mut out, part.len() as u64);
        out.extend_from_slice(part);
    }
    out
}

fn compressed(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    varint(&mut payload, seq);
    varint(&mut payload, body.len() as u64);
    payload.extend_from_slice(&zstd::bulk::compress(body, 3).unwrap());
    payload
}

/// Issue 13 (version 4): a sample's fields are in the block's columns. A block whose columns
/// hold more or less than its samples, or whose parts run past its end, is damaged; bytes
/// after a sample's kind and after the last column are a newer rprof's and are ignored.
#[test]
fn version_4_columns_must_match_the_samples() {
    let (bytes, _) = recording(1);
    let good = &bytes[..block_starts(&bytes)[2]];
    // One sample: time 5 after the block's start, pid 1, tid 1, cpu 0, period 1000; not
    // truncated, one new user frame (module none) at 0x10.
    let sample = [1u8, 4];
    let stacks = [0u8, 0, 1, 0, 0x20];
    let times = [10u8];
    let threads = [1u8, 1, 0, 0xd0, 0x0f];
    let read = |body: &[u8]| {
        Profile::read(&with_block(good, 2, &compressed(2, body))[..], "cols.rprof").unwrap()
    };

    let p = read(&body(&sample, &stacks, &times, &threads));
    assert!(
        p.warnings.iter().all(|w| !w.contains("damaged")),
        "{:?}",
        p.warnings
    );
    let last = p.samples.last().unwrap();
    assert_eq!((last.time, last.pid, last.period), (5, 1, 1000));
    assert_eq!(
        last.user,
        vec![Address {
            module: None,
            address: 0x10
        }]
    );

    // A newer rprof's additions: a byte after the sample's kind, a sixth column.
    let mut later = body(&[2, 4, 99], &stacks, &times, &threads);
    later.extend_from_slice(&[3, 1, 2, 3]);
    let p = read(&later);
    assert_eq!(p.samples.last().unwrap(), last);
    assert!(
        p.warnings.iter().all(|w| !w.contains("damaged")),
        "{:?}",
        p.warnings
    );

    // Columns with more than the samples, with less, parts past the end.
    let mut text = body(&sample, &stacks, &times, &threads);
    *text.last_mut().unwrap() = 1;
    text.push(b'x');
    let p = read(&text);
    assert!(
        damage(&p).contains("hold more than its samples and names use"),
        "{}",
        damage(&p)
    );
    let p = read(&body(&sample, &stacks, &[10, 10], &threads));
    assert!(
        damage(&p).contains("hold more than its samples and names use"),
        "{}",
        damage(&p)
    );
    assert_eq!(p.samples.len(), 400);
    let p = read(&body(&[1, 4, 1, 4], &stacks, &times, &threads));
    assert!(damage(&p).contains("does not decode"), "{}", damage(&p));
    let mut past = body(&sample, &stacks, &times, &threads);
    past.truncate(past.len() - 2);
    let p = read(&past);
    assert!(damage(&p).contains("run past its end"), "{}", damage(&p));
}

/// Issue 13 (version 4): a real recording written again at version 4 reads exactly as the
/// original (every record, names included; every named stack), and cut anywhere it reads up to
/// its last complete block. `RPROF_BLESS=1` also writes it as the fuzz seed `raw-v4-threads`.
#[test]
fn a_real_recording_written_at_version_4_reads_the_same_and_survives_cuts() {
    use rprof_profile::format::BlockReader;
    let original = saved("threads-v3.rprof");
    let (header, mut reader) = BlockReader::new(&original[..], "threads-v3.rprof").unwrap();
    let mut w = Writer::new(Vec::new(), &header).unwrap();
    let mut summary = None;
    while let Some(records) = reader.next_records().unwrap() {
        for record in records {
            match record {
                Record::Summary(s) => summary = Some(s),
                other => w.push(other).unwrap(),
            }
        }
        w.flush().unwrap();
    }
    let bytes = w.finish(summary.unwrap()).unwrap();
    assert_eq!(bytes[8], 4);
    if std::env::var_os("RPROF_BLESS").is_some() {
        // A fuzz seed (mode 0: the file as it is).
        let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/raw-v4-threads");
        std::fs::write(seed, [&[0u8][..], &bytes].concat()).unwrap();
    }
    // Every record comes back as it was, names included.
    let records = |bytes: &[u8]| {
        let (_, mut reader) = BlockReader::new(bytes, "p.rprof").unwrap();
        let mut all = Vec::new();
        while let Some(records) = reader.next_records().unwrap() {
            all.extend(records);
        }
        assert_eq!(reader.end(), Some(&rprof_profile::format::End::Clean));
        all
    };
    let written = records(&bytes);
    assert_eq!(written, records(&original));
    assert!(written.iter().any(|r| matches!(r, Record::Symbols(_))));
    let before = Profile::read(&original[..], "threads-v3.rprof").unwrap();
    let after = Profile::read(&bytes[..], "threads-v4.rprof").unwrap();
    assert_eq!(read_as(&after), read_as(&before));
    assert_eq!(after.samples, before.samples);
    assert!(
        bytes.len() < original.len(),
        "{} >= {}",
        bytes.len(),
        original.len()
    );

    let starts = block_starts(&bytes);
    for cut in (starts[1]..bytes.len()).step_by(11) {
        let p = Profile::read(&bytes[..cut], "cut.rprof").unwrap();
        let complete = starts.iter().filter(|&&s| s <= cut).count();
        let whole = Profile::read(&bytes[..starts[complete - 1]], "whole.rprof").unwrap();
        assert_eq!(p.samples, whole.samples, "cut at {cut}");
        assert!(
            before.samples.starts_with(&p.samples),
            "cut at {cut}: not a prefix of the recording"
        );
        assert_cut_warning(&p, &starts, cut);
    }
}
