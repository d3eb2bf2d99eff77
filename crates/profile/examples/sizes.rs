//! Where a profile's bytes go (issue 13's measurements): reads a profile of any version and
//! writes its records again with this crate's writer, in the blocks they came in and in fewer,
//! larger ones, and prints the sizes: the samples' blocks apart from the names, each part of a
//! version 4 block (records, stacks, times, threads) compressed alone, the block at other zstd
//! levels, what the times cost (all set to zero) and what the strings of the names cost.
//!
//! ```sh
//! cargo run --release -p rprof-profile --example sizes -- rprof.data
//! ```
//! A recording made with `rprof record` before version 4 has a block every 250 ms; "4 recorded
//! blocks a block" is then what version 4's block a second gives. `TIMES=1` prints every
//! sample's time, thread, CPU and period instead, `STRINGS=1` every string of the names.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;

use rprof_profile::format::BlockReader;
use rprof_profile::{Header, Record, Summary, Writer};

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
    let per = |bytes: usize| bytes as f64 / samples as f64;
    println!(
        "{path}: version {}, {size} bytes, {} blocks, {samples} samples, {:.1} bytes a sample",
        reader.version(),
        blocks.len(),
        per(size as usize)
    );
    let is_names = |r: &Record| matches!(r, Record::Symbols(_));
    let is_summary = |r: &Record| matches!(r, Record::Summary(_));
    let records: Vec<Vec<Record>> = blocks
        .iter()
        .map(|b| {
            b.iter()
                .filter(|r| !is_names(r) && !is_summary(r))
                .cloned()
                .collect()
        })
        .collect();
    let names: Vec<Record> = blocks
        .iter()
        .flatten()
        .filter(|r| is_names(r))
        .cloned()
        .collect();
    if std::env::var_os("TIMES").is_some() {
        for r in blocks.iter().flatten() {
            if let Record::Sample(s) = r {
                println!("{} {} {} {}", s.time, s.tid, s.cpu, s.period);
            }
        }
        return;
    }
    if std::env::var_os("STRINGS").is_some() {
        for r in &names {
            if let Record::Symbols(s) = r {
                for string in &s.strings {
                    println!("{:?} {string}", s.module.map(|m| m.0));
                }
            }
        }
        return;
    }

    for merge in [1usize, 2, 4, 8, blocks.len().max(1)] {
        let groups: Vec<Vec<Record>> = records.chunks(merge).map(|g| g.concat()).collect();
        let (bytes, file) = written(&header, &groups);
        let parts = part_sizes(&file);
        println!(
            "  samples and other records, {merge} recorded block(s) a block: {bytes} bytes, \
             {:.1} a sample",
            per(bytes)
        );
        println!(
            "    parts compressed alone (records, stacks, times, threads): {:?} bytes, {:?} a \
             sample; whole blocks at zstd 3, 6, 12, 19: {:?}",
            parts.0,
            parts.0.map(|b| (per(b) * 10.0).round() / 10.0),
            parts.1
        );
    }
    let zero: Vec<Vec<Record>> = records
        .iter()
        .map(|b| {
            b.iter()
                .map(|r| match r {
                    Record::Sample(s) => Record::Sample(rprof_profile::Sample {
                        time: 0,
                        ..s.clone()
                    }),
                    other => other.clone(),
                })
                .collect()
        })
        .collect();
    let (bytes, _) = written(&header, &zero);
    println!(
        "  samples and other records as recorded, every time zero: {bytes} bytes, {:.1} a sample",
        per(bytes)
    );

    let (bytes, _) = written(&header, std::slice::from_ref(&names));
    println!("  names: {bytes} bytes, {:.1} a sample", per(bytes));
    let without_strings: Vec<Record> = names
        .iter()
        .map(|r| match r {
            Record::Symbols(s) => Record::Symbols(rprof_profile::Symbols {
                strings: Vec::new(),
                ..s.clone()
            }),
            other => other.clone(),
        })
        .collect();
    let (bytes, _) = written(&header, &[without_strings]);
    println!(
        "  names without their strings: {bytes} bytes, {:.1} a sample",
        per(bytes)
    );

    for (i, group) in records.chunks(4).enumerate() {
        let mut stacks = HashSet::new();
        let mut nodes = HashSet::new();
        let mut count = 0;
        for r in group.iter().flatten() {
            if let Record::Sample(s) = r {
                count += 1;
                let chain: Vec<_> = s.user.iter().rev().chain(s.kernel.iter().rev()).collect();
                for depth in 1..=chain.len() {
                    nodes.insert(chain[..depth].to_vec());
                }
                stacks.insert(chain);
            }
        }
        let frames: HashSet<_> = nodes.iter().map(|path| path[path.len() - 1]).collect();
        println!(
            "  recorded blocks {}-{}: {count} samples, {} distinct stacks, {} tree nodes, {} \
             distinct frames",
            4 * i + 1,
            4 * i + group.len(),
            stacks.len(),
            nodes.len(),
            frames.len()
        );
    }
}

/// The bytes of `blocks` written as one block each (the header not counted), and the file.
fn written(header: &Header, blocks: &[Vec<Record>]) -> (usize, Vec<u8>) {
    let mut w = Writer::new(Vec::new(), header).expect("writes");
    let start = w.bytes_written();
    for block in blocks {
        for r in block {
            w.push(r.clone()).expect("writes");
        }
        w.flush().expect("writes");
    }
    let bytes = (w.bytes_written() - start) as usize;
    (bytes, w.finish(Summary::default()).expect("writes"))
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

/// The version 4 records blocks of `file`: each of the first four parts of their bodies
/// compressed alone at zstd 6 (as while recording), summed; and the whole bodies at zstd 3, 6,
/// 12 and 19.
fn part_sizes(file: &[u8]) -> ([usize; 4], [usize; 4]) {
    let mut parts = [0usize; 4];
    let mut levels = [0usize; 4];
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
        for (size, level) in levels.iter_mut().zip([3, 6, 12, 19]) {
            *size += zstd::bulk::compress(&body, level)
                .expect("compresses")
                .len();
        }
        let mut rest = &body[..];
        for size in &mut parts {
            let (n, after) = varint(rest);
            let (part, after) = after.split_at(n as usize);
            rest = after;
            if !part.is_empty() {
                *size += zstd::bulk::compress(part, 6).expect("compresses").len();
            }
        }
    }
    (parts, levels)
}
