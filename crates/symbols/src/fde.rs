//! Function ranges from `.eh_frame`: where a stripped binary's functions start and end.
//!
//! A stripped binary keeps `.eh_frame` (it is needed at run time to unwind), and each of its
//! FDEs covers exactly one function. An address with no symbol is named after the start of the
//! FDE that covers it, `fun_<start>` (the convention samply uses), so that a report adds up the
//! samples of one unnamed function instead of listing each of its addresses.
//!
//! The walk over `.eh_frame` is `rprof-elf`'s (shared with the unwinder); this file keeps what
//! naming needs of it: the PLT's FDE left out, overlapping ranges dropped, the lookup.

use gimli::{BaseAddresses, EhFrame};

use crate::elf::{section_bytes, Base, Reader};

/// Sorted, non-overlapping `[start, end)` function ranges (SVMAs).
#[derive(Debug, Default)]
pub(crate) struct FunctionRanges {
    ranges: Vec<(u64, u64)>,
}

impl FunctionRanges {
    /// The ranges of the FDEs in `file`'s `.eh_frame` (read by [`rprof_elf::fde_ranges`]),
    /// except those of the PLT; empty when it has none or they do not parse (what was read
    /// before an error is kept).
    pub(crate) fn from_eh_frame(file: &object::File<'_>, base: &Base) -> FunctionRanges {
        use object::{Object, ObjectSection};
        let Some(section) = file.section_by_name(".eh_frame") else {
            return FunctionRanges::default();
        };
        let Ok(bytes) = section_bytes(file, base, ".eh_frame") else {
            return FunctionRanges::default();
        };
        let endian = crate::elf::endian(file);
        let eh_frame = EhFrame::from(Reader::new(bytes, endian));
        let mut bases = BaseAddresses::default().set_eh_frame(section.address());
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        if let Some(got) = file.section_by_name(".got") {
            bases = bases.set_got(got.address());
        }
        // The PLT has one FDE for all its stubs; they are named `name@plt` one by one instead.
        let plt: Vec<(u64, u64)> = [".plt", ".plt.sec", ".plt.got"]
            .iter()
            .filter_map(|name| file.section_by_name(name))
            .map(|s| (s.address(), s.address().saturating_add(s.size())))
            .collect();
        let ranges = rprof_elf::fde_ranges(&eh_frame, &bases)
            .into_iter()
            .map(|fde| (fde.range.start, fde.range.end))
            .filter(|&(start, _)| !plt.iter().any(|&(lo, hi)| (lo..hi).contains(&start)))
            .collect();
        FunctionRanges::new(ranges)
    }

    /// Sorts `ranges` and drops those that overlap an earlier one.
    pub(crate) fn new(mut ranges: Vec<(u64, u64)>) -> FunctionRanges {
        ranges.sort_unstable();
        let mut kept: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            if kept.last().is_none_or(|&(_, last_end)| start >= last_end) {
                kept.push((start, end));
            }
        }
        FunctionRanges { ranges: kept }
    }

    /// The start of the function whose range holds `addr`.
    pub(crate) fn start_of(&self, addr: u64) -> Option<u64> {
        let idx = self.ranges.partition_point(|&(start, _)| start <= addr);
        let &(start, end) = self.ranges.get(idx.checked_sub(1)?)?;
        (addr < end).then_some(start)
    }

    /// The starts and ends of ranges strictly inside `(lo, hi)`.
    pub(crate) fn change_points(&self, lo: u64, hi: u64) -> Vec<u64> {
        let until = self.ranges.partition_point(|&(start, _)| start < hi);
        self.ranges[..until]
            .iter()
            .flat_map(|&(start, end)| [start, end])
            .filter(|&a| lo < a && a < hi)
            .collect()
    }

    /// The name given to the function that starts at `start`.
    pub(crate) fn name(start: u64) -> String {
        format!("fun_{start:x}")
    }
}

/// A module's [`FunctionRanges`], read from its `.eh_frame` when first asked for: a module with
/// a symbol table rarely needs them, and walking ripgrep's FDEs took about 1.2 ms of every load.
#[derive(Debug, Default)]
pub(crate) struct LazyRanges {
    /// The ELF image whose `.eh_frame` is still to be read.
    unread: Option<Base>,
    ranges: FunctionRanges,
}

impl LazyRanges {
    /// The ranges of `base`'s `.eh_frame`, read at the first [`get`](Self::get).
    pub(crate) fn new(base: Base) -> LazyRanges {
        LazyRanges {
            unread: Some(base),
            ranges: FunctionRanges::default(),
        }
    }

    /// The ranges (empty when the image or its `.eh_frame` does not parse).
    pub(crate) fn get(&mut self) -> &FunctionRanges {
        if let Some(base) = self.unread.take() {
            if let Ok(file) = object::File::parse(base.bytes()) {
                self.ranges = FunctionRanges::from_eh_frame(&file, &base);
            }
        }
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_covering_range_only() {
        let r = FunctionRanges::new(vec![(0x200, 0x240), (0x100, 0x180), (0x150, 0x1a0)]);
        assert_eq!(r.start_of(0x100), Some(0x100));
        assert_eq!(r.start_of(0x17f), Some(0x100));
        assert_eq!(r.start_of(0x180), None);
        assert_eq!(r.start_of(0x1a0), None);
        assert_eq!(r.start_of(0x23f), Some(0x200));
        assert_eq!(r.start_of(0x240), None);
        assert_eq!(r.start_of(0x50), None);
        assert_eq!(FunctionRanges::name(0x42f0), "fun_42f0");
    }

    #[test]
    fn empty_and_degenerate_ranges() {
        assert_eq!(FunctionRanges::default().start_of(0), None);
        let r = FunctionRanges::new(vec![(u64::MAX - 1, u64::MAX)]);
        assert_eq!(r.start_of(u64::MAX - 1), Some(u64::MAX - 1));
        assert_eq!(r.start_of(u64::MAX), None);
    }
}
