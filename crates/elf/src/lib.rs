//! rprof-elf: ELF facts that both the unwinder (`rprof-unwind`) and the symbolizer
//! (`rprof-symbols`) need, read one way.
//!
//! Today that is one fact: the code ranges of the FDEs in a CFI section (`.eh_frame` or
//! `.debug_frame`), with whether each FDE's CIE marks a signal trampoline ([`fde_ranges`]).
//! The unwinder uses them to decide which CFI section framehop is given where, and to find
//! signal trampolines; the symbolizer names stripped code after the FDE that covers it
//! (`fun_<start>`). The walk is the same for both; what they keep of it is not, so each caller
//! filters (signal trampolines only; PLT stubs left out) and sorts or merges the raw ranges
//! itself.
//!
//! What it leaves to others: opening and parsing the ELF file and finding its sections (each
//! caller does that with `object`, with its own size limits), the base addresses a section's
//! pointers are relative to (each caller states them from the section addresses it already
//! holds), and what the ranges mean. The build id and the PT_LOAD segments are not here: each
//! crate reads the build id with one `object` call, and only the unwinder reads segments.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::ops::Range;

use gimli::{BaseAddresses, CieOrFde, UnwindSection};

/// Most entries (CIEs and FDEs together) read from one section. A real binary has one FDE a
/// function, far fewer than this; more is taken as malformed input and the rest is not read.
pub const MAX_ENTRIES: usize = 1 << 22;

/// The code one FDE covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdeRange {
    /// `[initial_location, initial_location + address_range)`, as stated in the file (an SVMA
    /// once the section's pointers are resolved against its base addresses). Never empty.
    pub range: Range<u64>,
    /// The FDE's CIE has the `S` augmentation: the code is a signal trampoline (such as glibc's
    /// `__restore_rt`), whose caller is found in the signal frame rather than by a return
    /// address.
    pub signal_trampoline: bool,
}

/// The code ranges of the FDEs of `section`, in section order (unsorted, possibly overlapping).
///
/// Never fails and never panics on malformed input; it reads what it can:
/// - an FDE that does not parse (its CIE is missing or malformed, a pointer encoding is not
///   supported, ...) is left out and the walk goes on with the next entry;
/// - an FDE that covers no code, or whose end would pass `u64::MAX`, is left out;
/// - the walk stops at the first entry whose header does not parse (a truncated or corrupt
///   section), at `.eh_frame`'s zero terminator, and after [`MAX_ENTRIES`] entries; what was
///   read before is kept.
///
/// `bases` holds the addresses the section's pointers may be relative to (for `.eh_frame`, the
/// section's own address at least; `.debug_frame` needs none).
pub fn fde_ranges<R, S>(section: &S, bases: &BaseAddresses) -> Vec<FdeRange>
where
    R: gimli::Reader,
    S: UnwindSection<R>,
{
    walk_capped(section, bases, MAX_ENTRIES)
}

/// [`fde_ranges`] reading at most `cap` entries.
fn walk_capped<R, S>(section: &S, bases: &BaseAddresses, cap: usize) -> Vec<FdeRange>
where
    R: gimli::Reader,
    S: UnwindSection<R>,
{
    let mut ranges = Vec::new();
    let mut entries = section.entries(bases);
    for _ in 0..cap {
        let partial = match entries.next() {
            Ok(Some(CieOrFde::Fde(partial))) => partial,
            Ok(Some(CieOrFde::Cie(_))) => continue,
            Ok(None) | Err(_) => break,
        };
        let Ok(fde) = partial.parse(S::cie_from_offset) else {
            continue;
        };
        let start = fde.initial_address();
        if let Some(end) = start.checked_add(fde.len()).filter(|&end| end > start) {
            ranges.push(FdeRange {
                range: start..end,
                signal_trampoline: fde.cie().is_signal_trampoline(),
            });
        }
    }
    ranges
}

#[cfg(test)]
mod tests;
