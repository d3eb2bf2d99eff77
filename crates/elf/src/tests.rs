//! Tests of the FDE walk on sections built here with gimli's writer, on the `.eh_frame` of this
//! test binary, and on truncated and corrupted copies of both.

use gimli::write::{Address, CommonInformationEntry, EndianVec, FrameDescriptionEntry, FrameTable};
use gimli::{BaseAddresses, LittleEndian};

use super::*;

const ENCODING: gimli::Encoding = gimli::Encoding {
    format: gimli::Format::Dwarf32,
    version: 1,
    address_size: 8,
};

/// A frame table: FDEs `(start, length, signal trampoline)` in this order, over two CIEs.
fn table(fdes: &[(u64, u32, bool)]) -> FrameTable {
    let mut table = FrameTable::default();
    let plain = table.add_cie(CommonInformationEntry::new(
        ENCODING,
        1,
        -8,
        gimli::X86_64::RA,
    ));
    let mut sig = CommonInformationEntry::new(ENCODING, 1, -8, gimli::X86_64::RA);
    sig.signal_trampoline = true;
    let sig = table.add_cie(sig);
    for &(start, len, signal) in fdes {
        let cie = if signal { sig } else { plain };
        table.add_fde(
            cie,
            FrameDescriptionEntry::new(Address::Constant(start), len),
        );
    }
    table
}

fn eh_frame_bytes(fdes: &[(u64, u32, bool)]) -> Vec<u8> {
    let mut section = gimli::write::EhFrame(EndianVec::new(LittleEndian));
    table(fdes).write_eh_frame(&mut section).unwrap();
    section.0.into_vec()
}

fn walk_eh_frame(bytes: &[u8]) -> Vec<FdeRange> {
    let bases = BaseAddresses::default().set_eh_frame(0);
    fde_ranges(&gimli::EhFrame::new(bytes, LittleEndian), &bases)
}

fn fde(range: Range<u64>, signal_trampoline: bool) -> FdeRange {
    FdeRange {
        range,
        signal_trampoline,
    }
}

/// The FDEs of the hand-built sections below: unsorted, one signal trampoline, one empty, one
/// whose end passes `u64::MAX`.
const FDES: &[(u64, u32, bool)] = &[
    (0x2000, 0x40, false),
    (0x1000, 0x10, true),
    (0x3000, 0, false),
    (u64::MAX - 0x10, 0x20, false),
    (0x1008, 0x100, false),
];

fn expected() -> Vec<FdeRange> {
    vec![
        fde(0x2000..0x2040, false),
        fde(0x1000..0x1010, true),
        fde(0x1008..0x1108, false),
    ]
}

#[test]
fn eh_frame_ranges_come_raw_in_section_order() {
    assert_eq!(walk_eh_frame(&eh_frame_bytes(FDES)), expected());
}

#[test]
fn debug_frame_ranges_are_read_the_same_way() {
    let mut section = gimli::write::DebugFrame(EndianVec::new(LittleEndian));
    table(FDES).write_debug_frame(&mut section).unwrap();
    let bytes = section.0.into_vec();
    let got = fde_ranges(
        &gimli::DebugFrame::new(&bytes, LittleEndian),
        &BaseAddresses::default(),
    );
    assert_eq!(got, expected());
}

#[test]
fn empty_and_garbage_sections_give_nothing() {
    assert_eq!(walk_eh_frame(&[]), vec![]);
    assert_eq!(walk_eh_frame(&[0, 0, 0, 0]), vec![]);
    assert_eq!(walk_eh_frame(&[0xff; 64]), vec![]);
    assert_eq!(walk_eh_frame(&[0x10, 0, 0, 0, 1, 2]), vec![]);
}

/// An FDE that does not parse is skipped, and the walk goes on with the next entry.
#[test]
fn an_fde_that_does_not_parse_is_skipped() {
    let mut bytes = eh_frame_bytes(&[(0x1000, 0x10, false), (0x2000, 0x10, false)]);
    // The first CIE is followed by the first FDE; point that FDE's CIE pointer at the FDE
    // itself, which is not a CIE.
    let cie_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let pointer = 4 + cie_len + 4;
    bytes[pointer..pointer + 4].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(walk_eh_frame(&bytes), vec![fde(0x2000..0x2010, false)]);
}

/// `.eh_frame`'s zero terminator ends the walk, as it ends the section for the runtime.
#[test]
fn the_walk_stops_at_a_terminator() {
    let mut bytes = eh_frame_bytes(&[(0x1000, 0x10, false)]);
    let one = bytes.len();
    bytes.extend_from_slice(&[0; 4]);
    // Another complete copy after the terminator (its CIE pointer is relative, so it still
    // points at a CIE: its own copy's).
    let copy = bytes[..one].to_vec();
    bytes.extend_from_slice(&copy);
    assert_eq!(walk_eh_frame(&bytes), vec![fde(0x1000..0x1010, false)]);
    assert_eq!(
        walk_eh_frame(&bytes[one + 4..]),
        vec![fde(0x1000..0x1010, false)]
    );
}

/// The entry cap counts CIEs and FDEs alike.
#[test]
fn the_walk_reads_at_most_the_entry_cap() {
    let bytes = eh_frame_bytes(&[(0x1000, 0x10, false), (0x2000, 0x10, false)]);
    let section = gimli::EhFrame::new(&bytes[..], LittleEndian);
    let bases = BaseAddresses::default().set_eh_frame(0);
    let walk = |cap| walk_capped(&section, &bases, cap);
    assert_eq!(walk(0), vec![]);
    assert_eq!(walk(1), vec![], "the first entry is the CIE");
    assert_eq!(walk(2), vec![fde(0x1000..0x1010, false)]);
    assert_eq!(walk(3).len(), 2);
    assert_eq!(walk(MAX_ENTRIES), walk(3));
}

/// A section cut short anywhere gives the FDEs before the cut: never a panic, never an FDE
/// that is not in the whole section.
#[test]
fn a_truncated_section_gives_the_fdes_before_the_cut() {
    let bytes = eh_frame_bytes(FDES);
    let whole = walk_eh_frame(&bytes);
    let mut seen = std::collections::BTreeSet::new();
    for cut in 0..=bytes.len() {
        let got = walk_eh_frame(&bytes[..cut]);
        assert_eq!(got[..], whole[..got.len()], "cut at {cut}");
        seen.insert(got.len());
    }
    // Every prefix length shows up: the cut points fall between every pair of entries.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

/// Every byte of the section overwritten with a few values: never a panic, and every range
/// returned is non-empty.
#[test]
fn corrupt_bytes_never_panic() {
    let bytes = eh_frame_bytes(FDES);
    for at in 0..bytes.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[at] = value;
            for fde in walk_eh_frame(&corrupt) {
                assert!(fde.range.start < fde.range.end, "byte {at} = {value:#x}");
            }
        }
    }
}

/// Code this test looks for among the FDEs of its own binary.
#[inline(never)]
fn fde_probe_function(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(31).rotate_left(7)
}

/// This test binary's own `.eh_frame` (a real ELF file, as the linker wrote it): the FDE of a
/// known function starts at its symbol, and a cut copy of the section gives a prefix.
#[test]
fn this_binary_has_an_fde_for_a_known_function() {
    use object::{Object, ObjectSection, ObjectSymbol};
    assert_eq!(fde_probe_function(1), 31 << 7);
    let image = std::fs::read("/proc/self/exe").unwrap();
    let file = object::File::parse(&*image).unwrap();
    let eh_frame = file.section_by_name(".eh_frame").unwrap();
    let data = eh_frame.data().unwrap();
    let mut bases = BaseAddresses::default().set_eh_frame(eh_frame.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    let section = gimli::EhFrame::new(data, LittleEndian);
    let all = fde_ranges(&section, &bases);
    assert!(all.len() > 100, "only {} FDEs", all.len());
    let probe = file
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains("fde_probe_function")))
        .expect("the probe's symbol");
    let covering: Vec<_> = all
        .iter()
        .filter(|f| f.range.start == probe.address())
        .collect();
    assert_eq!(
        covering.len(),
        1,
        "FDEs starting at the probe: {covering:?}"
    );
    assert!(!covering[0].signal_trampoline);
    if probe.size() > 0 {
        assert_eq!(
            covering[0].range.end - covering[0].range.start,
            probe.size()
        );
    }
    for cut in (0..data.len()).step_by(data.len() / 97 + 1) {
        let got = fde_ranges(&gimli::EhFrame::new(&data[..cut], LittleEndian), &bases);
        assert_eq!(got[..], all[..got.len()], "cut at {cut}");
    }
}
