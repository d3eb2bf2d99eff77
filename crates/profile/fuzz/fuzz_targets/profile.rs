//! Fuzzes `Profile::read`, the reader of profiles that people send each other: it must never
//! panic (overflow checks are on), and what it returns must add up.
//!
//! Input: a mode byte, then
//! - mode even: the rest is read as a profile file, as it is;
//! - mode odd: a count byte N (0–7), N operations of 4 bytes, then a profile file. The file is
//!   split into blocks and the operations change its structure as careless tools and hostile
//!   senders do: repeat, swap, cut, drop or corrupt (with a valid checksum) a block, append
//!   contradicting summaries, huge lost counts, records of unknown kinds, or the whole file
//!   again. Files that only gained repeats must read exactly like the original.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_profile::{Profile, Record, Summary};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(rest);
        return;
    }
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 8);
    if rest.len() < count * 4 {
        return;
    }
    let (ops, file) = rest.split_at(count * 4);
    let Some((start, blocks)) = split(file) else {
        check(file);
        return;
    };
    let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
    let mut out = blocks.clone();
    let mut only_repeats = true;
    for op in ops.chunks_exact(4) {
        let (kind, a, b, c) = (op[0] % 10, usize::from(op[1]), usize::from(op[2]), op[3]);
        let n = out.len();
        match kind {
            // Repeat a records block (never the header) somewhere after its first copy.
            0 if n > 1 => {
                let from = 1 + a % (n - 1);
                let to = from + 1 + b % (n - from);
                let block = out[from].clone();
                out.insert(to, block);
            }
            1 if n > 2 => {
                only_repeats = false;
                out.swap(1 + a % (n - 1), 1 + b % (n - 1));
            }
            2 if n > 0 => {
                only_repeats = false;
                let i = a % n;
                let keep = out[i].len() * b / 256;
                out[i].truncate(keep);
            }
            3 if n > 1 => {
                only_repeats = false;
                out.remove(1 + a % (n - 1));
            }
            4 => {
                only_repeats = false;
                let huge = |x: usize| u64::MAX - x as u64;
                let summary = Summary {
                    end_unix_ns: huge(a),
                    samples: if c & 1 == 0 { huge(b) } else { b as u64 },
                    lost: if c & 2 == 0 { u64::MAX } else { a as u64 },
                    throttled: huge(c.into()),
                    truncated: b as u64,
                    unwind_failed: huge(b),
                };
                out.push(records_block(
                    version,
                    u64::from(c),
                    &[Record::Summary(summary)],
                ));
            }
            5 => {
                only_repeats = false;
                let lost = Record::Lost {
                    time: a as u64,
                    count: u64::MAX - b as u64,
                };
                out.push(records_block(version, u64::from(c), &[lost.clone(), lost]));
            }
            6 if n > 0 => {
                only_repeats = false;
                let i = a % n;
                if out[i].len() > 9 {
                    let at = 9 + b % (out[i].len() - 9);
                    out[i][at] ^= c | 1;
                    fix_crc(&mut out[i]);
                }
            }
            7 => {
                only_repeats = false;
                // A record of an unknown kind, and a block of an unknown kind.
                let mut payload = vec![c, 3, 9 + (a as u8 % 100), 1, 2];
                payload.truncate(2 + b % 4);
                out.push(block(2, &payload));
                out.push(block(3 + (a as u8 % 200), &payload));
            }
            8 => {
                // The whole file again, with or without its header.
                let skip = usize::from(c % 2 == 0);
                // With the header, reading stops at the second header; without it, every
                // block is a repeat.
                out.extend(blocks.iter().skip(skip).cloned());
            }
            _ => {}
        }
    }
    let mutated = join(&start, &out);
    let read = check(&mutated);
    if only_repeats {
        // Only a sound original is comparable: in a damaged one, what follows the damage may
        // legitimately be read differently once blocks move.
        if let (Some((a, 0)), Some((b, _))) = (check(file), read) {
            assert_eq!(a, b, "repeated blocks changed the counts");
        }
    }
});

/// Reads `bytes`; on success checks that the counts add up and returns ((samples, lost), number
/// of warnings).
fn check(bytes: &[u8]) -> Option<((usize, u64), usize)> {
    let p = Profile::read(bytes, "fuzz").ok()?;
    let mut thread_samples = 0u64;
    for t in p.threads.values() {
        thread_samples += t.samples;
        let named: u64 = t.names.iter().map(|n| n.samples).sum();
        assert_eq!(named, t.samples, "thread {} names do not add up", t.tid);
    }
    assert_eq!(thread_samples, p.samples.len() as u64);
    for i in 0..p.samples.len() {
        let stack = p.sample_stack(i);
        for &frame in p.stack(stack) {
            let _ = p.frame(frame);
        }
    }
    let _ = p.total_period();
    let _ = p.missing_lookups().len();
    Some(((p.samples.len(), p.lost), p.warnings.len()))
}

/// The first 16 bytes and the blocks (each with its 9-byte head) of a profile, or `None` when
/// it is too short to have any.
fn split(bytes: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    if bytes.len() < 16 {
        return None;
    }
    let mut at = 16;
    let mut blocks = Vec::new();
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let end = at
            .saturating_add(8)
            .saturating_add(len as usize)
            .min(bytes.len());
        blocks.push(bytes[at..end].to_vec());
        at = end;
    }
    if at < bytes.len() {
        blocks.push(bytes[at..].to_vec());
    }
    Some((bytes[..16].to_vec(), blocks))
}

fn join(start: &[u8], blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = start.to_vec();
    for b in blocks {
        out.extend_from_slice(b);
    }
    out
}

/// A block of `kind` holding `payload`, with its length and checksum.
fn block(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 9);
    out.extend_from_slice(&(payload.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(payload);
    fix_crc(&mut out);
    out
}

/// Rewrites the checksum of a block (head included) to match its kind and payload.
fn fix_crc(block: &mut [u8]) {
    if block.len() < 9 {
        return;
    }
    let crc = crc32fast::hash(&block[8..]);
    block[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A records block as a file of `version` holds it (version 2: numbered `seq`; versions 3 and
/// 4: the records compressed, as `rprof_profile::format::records_payload` builds them).
fn records_block(version: u32, seq: u64, records: &[Record]) -> Vec<u8> {
    let payload = if version == 1 {
        postcard::to_stdvec(records).unwrap_or_default()
    } else {
        let mut framed = Vec::new();
        for record in records {
            let bytes = postcard::to_stdvec(record).unwrap_or_default();
            varint(&mut framed, bytes.len() as u64);
            framed.extend_from_slice(&bytes);
        }
        if version >= 3 {
            rprof_profile::format::records_payload(version, seq, &framed, 1).unwrap_or_default()
        } else {
            let mut payload = Vec::new();
            varint(&mut payload, seq);
            payload.extend_from_slice(&framed);
            payload
        }
    };
    block(2, &payload)
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
