//! Where a profile's bytes go: reads a profile and writes it again with this crate's writer,
//! the names apart from the samples, and prints the sizes (issue 13's measurements).
//!
//! ```sh
//! cargo run --release -p rprof-profile --example sizes -- rprof.data
//! ```

use std::fs::File;
use std::io::BufReader;

use rprof_profile::format::BlockReader;
use rprof_profile::{Record, Summary, Writer};

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "rprof.data".into());
    let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    let (header, mut reader) = BlockReader::new(BufReader::new(file), &path).expect("a profile");
    let mut blocks = Vec::new();
    while let Some(records) = reader.next_records().expect("readable") {
        blocks.push(records);
    }
    let samples: usize = blocks
        .iter()
        .flatten()
        .filter(|r| matches!(r, Record::Sample(_)))
        .count();
    let size = std::fs::metadata(&path).expect("a file").len();
    println!(
        "{path}: version {}, {size} bytes, {} blocks, {samples} samples, {:.1} bytes a sample",
        reader.version(),
        blocks.len(),
        size as f64 / samples as f64
    );
    let per = |bytes: u64| bytes as f64 / samples as f64;
    let names = |r: &Record| matches!(r, Record::Symbols(_));
    let summary = |r: &Record| matches!(r, Record::Summary(_));

    // As recorded: the same blocks, written again by this writer.
    let mut w = Writer::new(Vec::new(), &header).expect("writes");
    let part = |w: &mut Writer<Vec<u8>>, label: &str, keep: &dyn Fn(&Record) -> bool| {
        let before = w.bytes_written();
        for block in &blocks {
            for r in block.iter().filter(|r| keep(r)) {
                w.push(r.clone()).expect("writes");
            }
            w.flush().expect("writes");
        }
        let bytes = w.bytes_written() - before;
        println!("  {label}: {bytes} bytes, {:.1} a sample", per(bytes));
    };
    part(&mut w, "records but names, as recorded", &|r| {
        !names(r) && !summary(r)
    });
    part(&mut w, "names", &names);
    // The names' strings and entries apart.
    for (label, zero) in [
        ("lines", 0),
        ("functions", 1),
        ("files", 2),
        ("addresses", 3),
    ] {
        let before = w.bytes_written();
        for r in blocks.iter().flatten() {
            if let Record::Symbols(s) = r {
                let mut s = s.clone();
                s.strings.clear();
                for (i, (address, frames)) in s.entries.iter_mut().enumerate() {
                    if zero == 3 {
                        *address = i as u64;
                    }
                    for f in frames {
                        match zero {
                            0 => f.line = 0,
                            1 => f.function = 0,
                            2 => f.file = 0,
                            _ => {}
                        }
                    }
                }
                w.push(Record::Symbols(s)).expect("writes");
            }
        }
        w.flush().expect("writes");
        let bytes = w.bytes_written() - before;
        println!("  names without strings and {label}: {bytes} bytes");
    }
    for (label, strip_strings) in [
        ("names without strings", true),
        ("names without entries", false),
    ] {
        let before = w.bytes_written();
        for r in blocks.iter().flatten() {
            if let Record::Symbols(s) = r {
                let mut s = s.clone();
                if strip_strings {
                    s.strings.clear();
                } else {
                    s.entries.clear();
                }
                w.push(Record::Symbols(s)).expect("writes");
            }
        }
        w.flush().expect("writes");
        let bytes = w.bytes_written() - before;
        println!("  {label}: {bytes} bytes, {:.1} a sample", per(bytes));
    }
    let total = w.finish(Summary::default()).expect("writes").len();
    println!(
        "  whole, written again: {total} bytes, {:.1} a sample",
        per(total as u64)
    );

    // All records but names in as few blocks as the writer makes.
    let mut w = Writer::new(Vec::new(), &header).expect("writes");
    let before = w.bytes_written();
    for r in blocks.iter().flatten().filter(|r| !names(r) && !summary(r)) {
        w.push(r.clone()).expect("writes");
    }
    w.flush().expect("writes");
    let bytes = w.bytes_written() - before;
    println!(
        "  records but names, one block: {bytes} bytes, {:.1} a sample",
        per(bytes)
    );

    for group in blocks.chunks(4) {
        use std::collections::HashSet;
        let mut stacks = HashSet::new();
        let mut nodes = HashSet::new();
        let mut n = 0;
        let mut frames = 0;
        let mut kernel_samples = 0;
        for r in group.iter().flatten() {
            if let Record::Sample(s) = r {
                n += 1;
                frames += s.user.len() + s.kernel.len();
                kernel_samples += usize::from(!s.kernel.is_empty());
                let chain: Vec<_> = s.user.iter().rev().chain(s.kernel.iter().rev()).collect();
                for i in 1..=chain.len() {
                    nodes.insert(chain[..i].to_vec());
                }
                stacks.insert(chain);
            }
        }
        println!("  1 s: {n} samples ({kernel_samples} with kernel frames), {frames} frames, {} distinct stacks, {} tree nodes", stacks.len(), nodes.len());
    }
    if std::env::var_os("JITTER").is_some() {
        jitter(&blocks);
        name_parts(&blocks);
    }
    for merge in [2usize, 4, 8] {
        let mut w = Writer::new(Vec::new(), &header).expect("writes");
        let before = w.bytes_written();
        for group in blocks.chunks(merge) {
            for r in group.iter().flatten().filter(|r| !names(r) && !summary(r)) {
                w.push(r.clone()).expect("writes");
            }
            w.flush().expect("writes");
        }
        let bytes = w.bytes_written() - before;
        println!(
            "  records but names, {merge} blocks as one: {bytes} bytes, {:.1} a sample",
            per(bytes)
        );
        let out = w.finish(Summary::default()).expect("writes");
        let parts = column_sizes(&out);
        println!(
            "    each part compressed alone (records, stacks, times, threads): {:?}, a sample: {:?}",
            parts,
            parts.map(|b| (per(b as u64) * 10.0).round() / 10.0)
        );
    }
    // As recorded, every time zero (what the times cost).
    let mut w = Writer::new(Vec::new(), &header).expect("writes");
    let before = w.bytes_written();
    for block in &blocks {
        for r in block.iter().filter(|r| !names(r) && !summary(r)) {
            let mut r = r.clone();
            if let Record::Sample(s) = &mut r {
                s.time = 0;
            }
            w.push(r).expect("writes");
        }
        w.flush().expect("writes");
    }
    let bytes = w.bytes_written() - before;
    println!(
        "  records but names, as recorded, times zero: {bytes} bytes, {:.1} a sample",
        per(bytes)
    );
}

#[allow(dead_code)]
fn jitter(blocks: &[Vec<Record>]) {
    use std::collections::HashMap;
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut hist = [0u32; 65];
    let mut tz = [0u32; 65];
    let mut shown = 0;
    for r in blocks.iter().flatten() {
        if let Record::Sample(s) = r {
            if let Some(&t) = last.get(&s.tid) {
                let j = s.time.wrapping_sub(t + s.period) as i64;
                hist[64 - j.unsigned_abs().leading_zeros() as usize] += 1;
                tz[j.trailing_zeros().min(64) as usize] += 1;
                if shown < 30 {
                    print!("{j} ");
                    shown += 1;
                }
            }
            last.insert(s.tid, s.time);
        }
    }
    println!();
    println!("bits: {:?}", &hist[..24]);
    println!("trailing zeros: {:?}", &tz[..24]);
}

#[allow(dead_code)]
fn name_parts(blocks: &[Vec<Record>]) {
    let z = |b: &[u8]| zstd::bulk::compress(b, 19).expect("compresses").len();
    let mut all_strings = Vec::new();
    let mut all_entries = Vec::new();
    for r in blocks.iter().flatten() {
        if let Record::Symbols(s) = r {
            let strings = postcard::to_stdvec(&s.strings).expect("encodes");
            let entries = postcard::to_stdvec(&s.entries).expect("encodes");
            let frames: usize = s.entries.iter().map(|e| e.1.len()).sum();
            println!(
                "  module {:?}: {} strings ({} bytes, {} zstd), {} entries, {} frames ({} bytes, {} zstd)",
                s.module,
                s.strings.len(),
                strings.len(),
                z(&strings),
                s.entries.len(),
                frames,
                entries.len(),
                z(&entries)
            );
            all_strings.extend_from_slice(&strings);
            all_entries.extend_from_slice(&entries);
        }
    }
    let mut lines: Vec<String> = Vec::new();
    for r in blocks.iter().flatten() {
        if let Record::Symbols(s) = r {
            lines.extend(s.strings.iter().cloned());
        }
    }
    let joined = lines.join("\n");
    let zl = |b: &[u8], l: i32| zstd::bulk::compress(b, l).expect("compresses").len();
    println!(
        "  strings joined: {} raw, {} z19, {} z22",
        joined.len(),
        zl(joined.as_bytes(), 19),
        zl(joined.as_bytes(), 22)
    );
    lines.sort();
    let sorted = lines.join("\n");
    println!(
        "  strings sorted: {} z19, {} z22",
        zl(sorted.as_bytes(), 19),
        zl(sorted.as_bytes(), 22)
    );
    println!(
        "  strings {} zstd, entries {} zstd",
        z(&all_strings),
        z(&all_entries)
    );
}

fn varint(bytes: &[u8]) -> (u64, &[u8]) {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value, &bytes[i + 1..]);
        }
    }
    panic!("a varint runs off the end");
}

/// The version 4 records blocks of `file`, each part of their bodies compressed alone (zstd
/// level 6, as while recording), summed: records, stacks, times, threads.
fn column_sizes(file: &[u8]) -> [usize; 4] {
    let mut sizes = [0usize; 4];
    let mut levels = [0usize; 4];
    let mut times = [0usize; 3];
    let mut at = 16;
    while at + 9 <= file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = file[at + 8];
        let payload = &file[at + 9..at + 8 + len];
        at += 8 + len;
        if kind != 2 {
            continue;
        }
        let (_, rest) = varint(payload);
        let (raw, rest) = varint(rest);
        let body = zstd::bulk::decompress(rest, raw as usize).expect("decompresses");
        for (i, level) in [3, 6, 12, 19].into_iter().enumerate() {
            levels[i] += zstd::bulk::compress(&body, level)
                .expect("compresses")
                .len();
        }
        let mut rest = &body[..];
        for (i, size) in sizes.iter_mut().enumerate() {
            let (n, after) = varint(rest);
            let (part, after) = after.split_at(n as usize);
            rest = after;
            if !part.is_empty() {
                *size += zstd::bulk::compress(part, 6).expect("compresses").len();
            }
            if i == 2 {
                // Times: one varint each; split into the low byte and the rest.
                let mut values = Vec::new();
                let mut r = part;
                while !r.is_empty() {
                    let (v, after) = varint(r);
                    values.push(v);
                    r = after;
                }
                let mut lo = Vec::new();
                let mut hi = Vec::new();
                let mut b0 = Vec::new();
                let mut b1 = Vec::new();
                let mut b2 = Vec::new();
                for v in &values {
                    lo.push(*v as u8);
                    put(&mut hi, v >> 8);
                    b0.push(*v as u8);
                    b1.push((*v >> 8) as u8);
                    put(&mut b2, v >> 16);
                }
                let z = |b: &[u8]| zstd::bulk::compress(b, 6).expect("compresses").len();
                times[0] += z(part);
                times[1] += z(&lo) + z(&hi);
                times[2] += z(&b0) + z(&b1) + z(&b2);
            }
        }
    }
    println!("    whole bodies at zstd 3, 6, 12, 19: {levels:?}; times as varints, low byte + rest, two bytes + rest: {times:?}");
    sizes
}

fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
