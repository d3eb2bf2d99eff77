//! The kernel's own text symbols kept in a file between runs (`kernel-symbols` of a
//! [`CacheDir`]).
//!
//! Reading `/proc/kallsyms` costs tens of milliseconds (the kernel formats 100,000 lines and
//! more), once per recording. The symbols of the kernel's own code cannot change until the next
//! boot, so they are written once and read back while the boot id is the same.
//!
//! Layout (little endian): the magic, then the boot id, the symbol file's path and the writer's
//! tag (each a u32 length and UTF-8 bytes), a u32 count of ranges and that many (start, end)
//! u64 pairs, a u32 count of symbols and that many 24-byte records (start u64, end u64, name
//! offset u32, name length u32), then the names. Records are sorted by start, one per start,
//! each ending after it starts, all inside the ranges, each name inside the names. Anything
//! else makes the whole file unused. The file is mapped, checked, and not taken apart: a lookup
//! searches the records in place (a kernel has 100,000 symbols and more; a recording asks for a
//! few hundred).

use std::path::Path;

use rprof_fs::read::{read_bounded, Options};

use crate::cachefile::{put_text, put_u32, Input};
use crate::elf::Base;
use crate::symtab::{SymbolTable, CONTAINING_LOOKBACK};
use crate::CacheDir;

/// The file's name in its directory.
const FILE: &str = "kernel-symbols";

const MAGIC: &[u8] = b"rprof kernel symbols 1\n";

/// The largest cache file read: a kernel's text symbols take a few MiB.
const LIMIT: u64 = 128 << 20;

/// The longest name kept (kallsyms names are at most 512 bytes).
const MAX_NAME: usize = 4096;

/// Where the running boot's id is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

fn boot_id() -> Option<String> {
    let bytes = read_bounded(Path::new(BOOT_ID), &Options::new("the boot id", 4096)).ok()?;
    let id = String::from_utf8(bytes).ok()?.trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// The table and ranges kept in `cache` for `kallsyms`, if it was written for this boot, from
/// this symbol file, by this rprof, and reads whole.
pub(super) fn read(cache: &CacheDir, kallsyms: &Path) -> Option<(Table, Vec<(u64, u64)>)> {
    let bytes = crate::cachefile::map(&cache.dir.join(FILE), "a kernel symbol cache", LIMIT)?;
    parse(bytes, &boot_id()?, &kallsyms.to_string_lossy(), &cache.tag)
}

/// Size of one symbol record.
const RECORD: usize = 24;

/// The symbols of a cache file, searched in place.
#[derive(Debug)]
pub(super) struct Table {
    bytes: Base,
    /// Where the records start, how many there are, and where the names start.
    records: usize,
    count: usize,
    names: usize,
}

impl Table {
    /// Record `i`: start, end, name offset and length. Only called for `i < count`, which
    /// [`parse`] checked to lie inside the bytes.
    fn record(&self, i: usize) -> Option<(u64, u64, usize, usize)> {
        let at = self.records.checked_add(i.checked_mul(RECORD)?)?;
        let mut input = Input(self.bytes.bytes().get(at..at.checked_add(RECORD)?)?);
        let (start, end) = (input.u64()?, input.u64()?);
        let (offset, len) = (input.u32()?, input.u32()?);
        Some((start, end, offset as usize, len as usize))
    }

    /// The name of the symbol containing `addr`, as [`SymbolTable::lookup`] finds it.
    pub(super) fn lookup(&self, addr: u64) -> Option<&str> {
        // The first record starting after `addr`.
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.record(mid)?.0 <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (_, _, offset, len) = (lo.saturating_sub(CONTAINING_LOOKBACK)..lo)
            .rev()
            .filter_map(|i| self.record(i))
            .find(|&(_, end, _, _)| addr < end)?;
        let from = self.names.checked_add(offset)?;
        std::str::from_utf8(self.bytes.bytes().get(from..from.checked_add(len)?)?).ok()
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }
}

fn parse(bytes: Base, boot: &str, kallsyms: &str, tag: &str) -> Option<(Table, Vec<(u64, u64)>)> {
    let mut input = Input(bytes.bytes().strip_prefix(MAGIC)?);
    if input.text()? != boot || input.text()? != kallsyms || input.text()? != tag {
        return None;
    }
    let count = input.count(16)?;
    let mut ranges = Vec::with_capacity(count);
    for _ in 0..count {
        let (start, end) = (input.u64()?, input.u64()?);
        if start >= end {
            return None;
        }
        ranges.push((start, end));
    }
    let count = input.count(RECORD)?;
    let records = bytes.bytes().len() - input.0.len();
    let names_len = input.0.len() - count * RECORD;
    let table = Table {
        records,
        count,
        names: records + count * RECORD,
        bytes,
    };
    let mut previous = None;
    for i in 0..count {
        let (start, end, offset, len) = table.record(i)?;
        let ordered = previous.is_none_or(|p| p < start);
        let named = len <= MAX_NAME && offset.checked_add(len)? <= names_len;
        let inside = ranges.iter().any(|&(s, e)| (s..e).contains(&start));
        if !ordered || start >= end || !named || !inside {
            return None;
        }
        previous = Some(start);
    }
    // Checking every record read most of the file; a lookup reads a few pages of it.
    table.bytes.release();
    Some((table, ranges))
}

/// Writes the symbols of `table` inside `ranges` to `cache`, for this boot and `kallsyms`.
pub(super) fn write(
    cache: &CacheDir,
    kallsyms: &Path,
    table: &SymbolTable,
    ranges: &[(u64, u64)],
) -> Option<()> {
    let bytes = encode(
        &boot_id()?,
        &kallsyms.to_string_lossy(),
        &cache.tag,
        table,
        ranges,
    );
    crate::cachefile::write(&cache.dir.join(FILE), &bytes)
}

fn encode(
    boot: &str,
    kallsyms: &str,
    tag: &str,
    table: &SymbolTable,
    ranges: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for text in [boot, kallsyms, tag] {
        put_text(&mut out, text);
    }
    put_u32(&mut out, ranges.len());
    for &(start, end) in ranges {
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
    }
    let kept: Vec<(u64, u64, &str)> = table
        .each()
        .filter(|&(start, _, name)| {
            name.len() <= MAX_NAME && ranges.iter().any(|&(s, e)| (s..e).contains(&start))
        })
        .collect();
    put_u32(&mut out, kept.len());
    let mut names = Vec::new();
    for (start, end, name) in kept {
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        put_u32(&mut out, names.len());
        put_u32(&mut out, name.len());
        names.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symtab::{Rank, RawSymbol};

    fn table() -> SymbolTable {
        let raw = [
            (0x1000, "_stext"),
            (0x1010, "schedule"),
            (0x1400, "do_idle"),
            (0x2000, "_etext"),
            (0x9000, "ext4_read [ext4]"),
        ];
        SymbolTable::new(
            raw.iter()
                .map(|&(addr, name)| RawSymbol {
                    addr,
                    size: 0,
                    limit: addr + 0x10000,
                    name: name.into(),
                    rank: Rank::new(false, 0, name),
                })
                .collect(),
        )
    }

    const RANGES: [(u64, u64); 1] = [(0x1000, 0x2000)];

    #[test]
    fn keeps_the_core_text_only_and_reads_it_back() {
        let bytes = encode("boot-1", "/proc/kallsyms", "tag", &table(), &RANGES);
        let (back, ranges) = parse(bytes.into(), "boot-1", "/proc/kallsyms", "tag").expect("reads");
        assert_eq!(ranges, RANGES);
        assert_eq!(back.len(), 3, "_stext, schedule, do_idle");
        for addr in [0x1000, 0x100f, 0x1010, 0x1011, 0x13ff, 0x1400, 0x1fff] {
            assert_eq!(back.lookup(addr), table().lookup(addr), "{addr:#x}");
        }
        assert_eq!(back.lookup(0xfff), None);
    }

    /// Checking every record reads the whole file; a mapped one is given back at once (a
    /// lookup maps the pages it reads again).
    #[test]
    fn a_mapped_file_is_not_kept_resident_by_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel-symbols");
        let bytes = encode("boot-1", "/proc/kallsyms", "tag", &table(), &RANGES);
        std::fs::write(&path, bytes).unwrap();
        let mapped = crate::cachefile::map(&path, "a kernel symbol cache", LIMIT).unwrap();
        let (back, _) = parse(mapped, "boot-1", "/proc/kallsyms", "tag").expect("reads");
        assert_eq!(crate::dwarf_diff::mapped_rss_kb(&path), 0);
        assert_eq!(back.lookup(0x1010), table().lookup(0x1010));
        assert!(
            crate::dwarf_diff::mapped_rss_kb(&path) > 0,
            "mapped again when read"
        );
    }

    #[test]
    fn another_boot_file_or_writer_is_not_used() {
        let bytes = encode("boot-1", "/proc/kallsyms", "tag", &table(), &RANGES);
        assert!(parse(bytes.clone().into(), "boot-2", "/proc/kallsyms", "tag").is_none());
        assert!(parse(bytes.clone().into(), "boot-1", "/tmp/kallsyms", "tag").is_none());
        assert!(parse(bytes.into(), "boot-1", "/proc/kallsyms", "other").is_none());
    }

    #[test]
    fn damaged_files_are_not_used() {
        let bytes = encode("boot-1", "/proc/kallsyms", "tag", &table(), &RANGES);
        // Cut anywhere in the header or records: refused. (A cut in the names is caught by
        // the names' bounds: "do_idle" is the last name, so any cut there loses it.)
        for cut in 0..bytes.len() {
            assert!(
                parse(
                    bytes[..cut].to_vec().into(),
                    "boot-1",
                    "/proc/kallsyms",
                    "tag"
                )
                .is_none(),
                "cut at {cut}"
            );
        }
        // Every single flipped byte either fails or still gives lookups that do not panic.
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            if let Some((t, ranges)) = parse(flipped.into(), "boot-1", "/proc/kallsyms", "tag") {
                assert!(ranges.iter().all(|(s, e)| s < e));
                for addr in [0, 0x1000, 0x1500, 0x1fff, u64::MAX] {
                    let _ = t.lookup(addr);
                }
            }
        }
        // A count far beyond the bytes present is refused before anything is allocated.
        let mut huge = MAGIC.to_vec();
        for text in ["boot-1", "/proc/kallsyms", "tag"] {
            put_text(&mut huge, text);
        }
        huge.extend_from_slice(&0u32.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(huge.into(), "boot-1", "/proc/kallsyms", "tag").is_none());
    }
}
