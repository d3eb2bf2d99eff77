//! Lazy DWARF naming: function names, files, lines and inline frames for one module, reading
//! only the units that hold the addresses asked for (issue 13).
//!
//! `addr2line::Context` parses every unit's abbreviations and line program header when it is
//! built; for a large debug file (libc's: 4,126 units) that is most of the memory naming takes.
//! Here a module keeps only a unit index (header offsets, and address ranges from
//! `.debug_aranges`, else the root entry's `DW_AT_ranges`/`DW_AT_low_pc`+`DW_AT_high_pc`, else
//! the line program's sequences), and a lookup parses the units covering the address: their
//! functions, line rows, the inline tree of the function found, and names behind
//! `DW_AT_abstract_origin`/`DW_AT_specification`, also across units (`DW_FORM_ref_addr`).
//! A few parsed units are kept (a profile's addresses cluster in few units); the rest is dropped.
//!
//! The answers are those of `addr2line::Context::find_frames` (the crate's tests compare the
//! two address by address): the same unit search order, the same function and inline-range
//! searches, the same file paths, the same errors. Split DWARF and dwz supplementary files are
//! left to addr2line: [`has_split_units`] finds DWARF 5 skeleton units when a module is loaded,
//! a lookup that meets a GNU (DWARF 4) skeleton, marked only in its root entry, says so with
//! [`Lookup::Split`], and the caller (`elf.rs`) keeps modules with a supplementary file.
//! Every read is bounded by the section it reads; malformed DWARF gives an error, never a
//! panic, and every walk ends with its input or its depth limit.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use gimli::Reader as _;

use crate::cachefile::{put_u32, Input};
use crate::elf::{Base, Reader};

type Error = gimli::Error;
type Unit = gimli::Unit<Reader>;
type UnitRef<'a> = gimli::UnitRef<'a, Reader>;

/// Parsed units kept between lookups.
const CACHED_UNITS: usize = 16;
/// Unit headers or root entries read while indexing between two releases of the file's pages;
/// a lookup releases them before each unit it parses (units can be megabytes).
const HEADERS_PER_RELEASE: usize = 16;
/// How many `DW_AT_abstract_origin`/`DW_AT_specification` links a name is followed through.
const NAME_LINKS: usize = 16;

/// One frame of a lookup, as `addr2line::Frame` gives it: the raw (mangled) name and the
/// location, with line 0 kept as `None` and the file kept beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawFrame {
    pub(crate) name: Option<Reader>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Frames innermost first; empty when no unit names the address.
    Frames(Vec<RawFrame>),
    /// A unit covering the address is a split DWARF skeleton: addr2line must name this module.
    Split,
}

/// The lazily parsed DWARF of one module.
pub(crate) struct LazyDwarf {
    index: Index,
    cache: Cache,
}

/// The files the DWARF is read from (the module or its debug file, and the kept inflated
/// sections of a compressed one), and how many units were read since their pages were last
/// given back ([`Base::release`]): RSS then holds the pages of the last units read, not of every
/// unit ever read.
struct Backing {
    bases: Vec<Base>,
    reads: usize,
}

impl Backing {
    fn new(bases: Vec<Base>) -> Backing {
        Backing { bases, reads: 0 }
    }

    /// Counts one read; gives the pages back every `per_release` reads.
    fn read(&mut self, per_release: usize) {
        self.reads += 1;
        if self.reads >= per_release {
            self.release();
        }
    }

    fn release(&mut self) {
        for base in &self.bases {
            base.release();
        }
        self.reads = 0;
    }
}

/// What is known about the units without parsing them.
struct Index {
    dwarf: gimli::Dwarf<Reader>,
    /// `.debug_info` offsets of the compilation and partial units, ascending.
    units: Vec<usize>,
    /// Unit address ranges, sorted by end address then unit (the order addr2line tries them).
    ranges: Vec<UnitRange>,
}

struct UnitRange {
    begin: u64,
    end: u64,
    /// The lowest `begin` of this and all later ranges: a search stops below it.
    min_begin: u64,
    /// Index into [`Index::units`].
    unit: usize,
}

impl LazyDwarf {
    /// Indexes the units of `dwarf`; `Err` when the unit headers or `.debug_aranges` cannot be
    /// read (addr2line refuses such a module too). Ask [`has_split_units`] first: skeleton
    /// units are not indexed.
    /// `bases` are the files the sections are read from.
    pub(crate) fn new(dwarf: gimli::Dwarf<Reader>, bases: Vec<Base>) -> Result<LazyDwarf, Error> {
        let mut backing = Backing::new(bases);
        let index = Index::new(dwarf, &mut backing)?;
        backing.release();
        Ok(LazyDwarf {
            index,
            cache: Cache {
                slots: Vec::new(),
                backing,
            },
        })
    }

    /// Gives the pages read so far back ([`Base::release`]); what was parsed is kept.
    pub(crate) fn release_pages(&mut self) {
        self.cache.backing.release();
    }

    /// The lazy namer over `dwarf` with the unit index `saved` (from [`index_bytes`] of an
    /// earlier run, for the same unchanged file): no unit is read to build it. The DWARF back
    /// when the bytes are not a well-formed index for it.
    ///
    /// [`index_bytes`]: LazyDwarf::index_bytes
    pub(crate) fn with_index(
        dwarf: gimli::Dwarf<Reader>,
        bases: Vec<Base>,
        saved: &[u8],
    ) -> Result<LazyDwarf, Box<gimli::Dwarf<Reader>>> {
        Ok(LazyDwarf {
            index: Index::from_bytes(dwarf, saved)?,
            cache: Cache {
                slots: Vec::new(),
                backing: Backing::new(bases),
            },
        })
    }

    /// The unit index, to be kept between runs ([`with_index`](Self::with_index)).
    pub(crate) fn index_bytes(&self) -> Vec<u8> {
        self.index.to_bytes()
    }

    /// Gives the DWARF back (to build an addr2line context from).
    pub(crate) fn into_dwarf(self) -> gimli::Dwarf<Reader> {
        self.index.dwarf
    }

    /// Frames at `probe`, like `addr2line::Context::find_frames`.
    pub(crate) fn find_frames(&mut self, probe: u64) -> Result<Lookup, Error> {
        let index = &self.index;
        let cache = &mut self.cache;
        for unit in index.candidates(probe) {
            // addr2line drops a unit it cannot parse and tries the next one.
            let Ok(slot) = cache.slot(index, unit) else {
                continue;
            };
            if slot.unit.dwo_id.is_some() {
                return Ok(Lookup::Split);
            }
            let dw_unit = Arc::clone(&slot.unit);
            let functions = cache.functions(index, unit, &dw_unit)?;
            let function = match functions.find(probe) {
                Some(i) => Some(cache.function(index, unit, &dw_unit, &functions, i)?),
                None => None,
            };
            let lines = cache.lines(index, unit, &dw_unit)?;
            let location = match &lines {
                Some(lines) => lines.find(probe),
                None => None,
            };
            match (function, location) {
                (Some(function), location) => {
                    return Ok(Lookup::Frames(frames(
                        &function,
                        probe,
                        lines.as_deref(),
                        location,
                    )))
                }
                (None, Some((file, line))) => {
                    return Ok(Lookup::Frames(vec![RawFrame {
                        name: None,
                        file,
                        line,
                    }]))
                }
                (None, None) => {}
            }
        }
        Ok(Lookup::Frames(Vec::new()))
    }
}

/// Most change points [`LazyDwarf::pieces`] gives for one function: a larger function is
/// named an address at a time.
pub(crate) const MAX_PIECES: usize = 1 << 14;

impl LazyDwarf {
    /// The range `[lo, hi)` of the function holding `probe` and every address in it where a
    /// lookup's answer may change (`lo` first, ascending): the starts and ends of unit,
    /// function, inlined call and line sequence ranges, and line rows. Between two of them
    /// every search [`find_frames`](Self::find_frames) makes compares the same way, so it gives
    /// the same answer. `None` when that cannot be promised: no function holds `probe`, it has
    /// no name (the symbol table would name it), another unit or function overlaps its range,
    /// or it has more than [`MAX_PIECES`] change points.
    pub(crate) fn pieces(&mut self, probe: u64) -> Result<Option<(u64, u64, Vec<u64>)>, Error> {
        let [unit] = self.index.candidates(probe)[..] else {
            return Ok(None);
        };
        let slot = self.cache.slot(&self.index, unit)?;
        if slot.unit.dwo_id.is_some() {
            return Ok(None);
        }
        let dw_unit = Arc::clone(&slot.unit);
        let functions = self.cache.functions(&self.index, unit, &dw_unit)?;
        let Some(number) = functions.find(probe) else {
            return Ok(None);
        };
        let Some(&(range, _)) = functions
            .ranges
            .iter()
            .find(|(r, n)| *n == number && r.begin <= probe && probe < r.end)
        else {
            return Ok(None);
        };
        let function = self
            .cache
            .function(&self.index, unit, &dw_unit, &functions, number)?;
        if function.name.is_none() {
            return Ok(None);
        }
        let points = self.change_points(range.begin, range.end, Some((&function, range)))?;
        Ok(points.map(|points| (range.begin, range.end, points)))
    }

    /// Every address in `[lo, hi)` where a lookup's answer may change, as for
    /// [`pieces`](Self::pieces), for a range the caller chose (a symbol's) that no DWARF
    /// function overlaps: there, lookups give the line table's file and line only. `None` when
    /// a function or a second unit overlaps the range.
    pub(crate) fn pieces_in(&mut self, lo: u64, hi: u64) -> Result<Option<Vec<u64>>, Error> {
        self.change_points(lo, hi, None)
    }

    /// `lo` and the change points inside `(lo, hi)`, sorted; `function` is the one function
    /// (with its range) allowed to overlap the range.
    fn change_points(
        &mut self,
        lo: u64,
        hi: u64,
        function: Option<(&Function, gimli::Range)>,
    ) -> Result<Option<Vec<u64>>, Error> {
        let inside = |begin: u64, end: u64| begin < hi && lo < end;
        let mut points = vec![lo];
        let note = |points: &mut Vec<u64>, begin: u64, end: u64| {
            points.extend([begin, end].into_iter().filter(|&a| lo < a && a < hi));
        };
        // Another unit here could answer for part of the range: not promised.
        let mut unit = None;
        let first = self.index.ranges.partition_point(|r| r.end <= lo);
        for r in self.index.ranges[first..]
            .iter()
            .take_while(|r| r.min_begin < hi)
        {
            if inside(r.begin, r.end) {
                if unit.is_some_and(|u| u != r.unit) {
                    return Ok(None);
                }
                unit = Some(r.unit);
                note(&mut points, r.begin, r.end);
            }
        }
        let Some(unit) = unit else {
            // No unit: lookups find nothing anywhere in the range.
            return Ok(Some(points));
        };
        let slot = self.cache.slot(&self.index, unit)?;
        if slot.unit.dwo_id.is_some() {
            return Ok(None);
        }
        let dw_unit = Arc::clone(&slot.unit);
        let functions = self.cache.functions(&self.index, unit, &dw_unit)?;
        for (r, _) in &functions.ranges {
            if inside(r.begin, r.end) && function.is_none_or(|(_, own)| *r != own) {
                return Ok(None);
            }
        }
        if let Some((function, _)) = function {
            for call in &function.call_ranges {
                note(&mut points, call.range.begin, call.range.end);
            }
        }
        if let Some(lines) = self.cache.lines(&self.index, unit, &dw_unit)? {
            for sequence in &lines.sequences {
                if !inside(sequence.start, sequence.end) {
                    continue;
                }
                note(&mut points, sequence.start, sequence.end);
                let from = sequence.rows.partition_point(|r| r.address <= lo);
                points.extend(
                    sequence.rows[from..]
                        .iter()
                        .map(|r| r.address)
                        .take_while(|&a| a < hi),
                );
                if points.len() > MAX_PIECES * 4 {
                    return Ok(None);
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        Ok((points.len() <= MAX_PIECES).then_some(points))
    }
}

/// The frames of `function` at `probe`: its inlined calls innermost first, each with the
/// location inside it (the line table's for the innermost, the call site for the others).
fn frames(
    function: &Function,
    probe: u64,
    lines: Option<&Lines>,
    location: Option<(Option<String>, Option<u32>)>,
) -> Vec<RawFrame> {
    let inlined = function.inlined_at(probe);
    let mut out = Vec::with_capacity(inlined.len() + 1);
    let mut here = location;
    for call in inlined.iter().rev() {
        let (file, line) = here.take().unwrap_or((None, None));
        out.push(RawFrame {
            name: call.name.clone(),
            file,
            line,
        });
        let call_file = match (call.call_file, lines) {
            (Some(index), Some(lines)) => lines.file(index),
            _ => None,
        };
        here = Some((call_file, (call.call_line != 0).then_some(call.call_line)));
    }
    let (file, line) = here.unwrap_or((None, None));
    out.push(RawFrame {
        name: function.name.clone(),
        file,
        line,
    });
    out
}

impl Index {
    fn new(dwarf: gimli::Dwarf<Reader>, backing: &mut Backing) -> Result<Index, Error> {
        // Aranges sets by the unit they describe.
        let mut aranges: Vec<(usize, gimli::DebugArangesOffset<usize>)> = Vec::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Some(header) = headers.next()? {
            aranges.push((header.debug_info_offset().0, header.offset()));
        }
        aranges.sort_unstable_by_key(|a| a.0);

        let mut units = Vec::new();
        let mut ranges = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            // Each header read maps its page of `.debug_info` (and the pages around it).
            backing.read(HEADERS_PER_RELEASE);
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let wants_ranges = match header.type_() {
                gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } => continue,
                // Partial units only hold entries that other units refer to.
                gimli::UnitType::Partial => false,
                _ => true,
            };
            let id = units.len();
            units.push(offset.0);
            if !wants_ranges {
                continue;
            }
            let before = ranges.len();
            let first = aranges.partition_point(|a| a.0 < offset.0);
            for &(_, set) in aranges[first..].iter().take_while(|a| a.0 == offset.0) {
                let Ok(set) = dwarf.debug_aranges.header(set) else {
                    continue;
                };
                let mut entries = set.entries();
                // An entry that cannot be read (an overflowing length) is skipped; the
                // iterator ends after errors it cannot step over.
                while let Some(entry) = entries.next().transpose() {
                    if let Ok(entry) = entry {
                        if entry.length() != 0 {
                            let r = entry.range();
                            push_range(&mut ranges, id, r.begin, r.end);
                        }
                    }
                }
            }
            if ranges.len() == before {
                // Not in `.debug_aranges`: parse this unit once for its ranges, then drop it.
                root_ranges(&dwarf, header, id, &mut ranges);
                backing.read(HEADERS_PER_RELEASE);
            }
        }
        Ok(Index::finish(dwarf, units, ranges))
    }

    /// The index from its units and ranges: ranges sorted by end then unit, each with the lowest
    /// begin from it on.
    fn finish(dwarf: gimli::Dwarf<Reader>, units: Vec<usize>, mut ranges: Vec<UnitRange>) -> Index {
        ranges.sort_unstable_by_key(|r| (r.end, r.unit));
        let mut min = u64::MAX;
        for r in ranges.iter_mut().rev() {
            min = min.min(r.begin);
            r.min_begin = min;
        }
        Index {
            dwarf,
            units,
            ranges,
        }
    }

    /// The units and ranges as bytes (read back by [`Index::from_bytes`]): a u32 count and u64
    /// unit offsets, a u32 count and (begin u64, end u64, unit u32) ranges, little endian.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.units.len() * 8 + self.ranges.len() * 20);
        put_u32(&mut out, self.units.len());
        for &unit in &self.units {
            out.extend_from_slice(&(unit as u64).to_le_bytes());
        }
        put_u32(&mut out, self.ranges.len());
        for r in &self.ranges {
            out.extend_from_slice(&r.begin.to_le_bytes());
            out.extend_from_slice(&r.end.to_le_bytes());
            put_u32(&mut out, r.unit);
        }
        out
    }

    /// An index written by [`Index::to_bytes`] for this `dwarf`; the DWARF back unless unit
    /// offsets ascend inside `.debug_info`, every range names a unit and ends after it begins,
    /// and no byte is left over.
    fn from_bytes(
        dwarf: gimli::Dwarf<Reader>,
        bytes: &[u8],
    ) -> Result<Index, Box<gimli::Dwarf<Reader>>> {
        let info_len = gimli::Section::reader(&dwarf.debug_info).len();
        let parsed = (|| {
            let mut input = Input(bytes);
            let count = input.count(8)?;
            let mut units: Vec<usize> = Vec::with_capacity(count);
            for _ in 0..count {
                let offset = usize::try_from(input.u64()?).ok()?;
                if offset >= info_len || units.last().is_some_and(|&last| last >= offset) {
                    return None;
                }
                units.push(offset);
            }
            let count = input.count(20)?;
            let mut ranges = Vec::with_capacity(count);
            for _ in 0..count {
                let (begin, end) = (input.u64()?, input.u64()?);
                let unit = usize::try_from(input.u32()?).ok()?;
                if unit >= units.len() || begin >= end {
                    return None;
                }
                ranges.push(UnitRange {
                    begin,
                    end,
                    min_begin: 0,
                    unit,
                });
            }
            input.0.is_empty().then_some((units, ranges))
        })();
        match parsed {
            Some((units, ranges)) => Ok(Index::finish(dwarf, units, ranges)),
            None => Err(Box::new(dwarf)),
        }
    }

    /// The units whose ranges hold `probe`, in the order they are to be tried.
    fn candidates(&self, probe: u64) -> Vec<usize> {
        let Some(high) = probe.checked_add(1) else {
            return Vec::new();
        };
        let start = self.ranges.partition_point(|r| r.end <= probe);
        self.ranges[start..]
            .iter()
            .take_while(|r| high > r.min_begin)
            .filter(|r| probe < r.end && high > r.begin)
            .map(|r| r.unit)
            .collect()
    }

    /// The unit holding `.debug_info` offset `offset` and the offset inside it.
    fn unit_at(&self, offset: usize) -> Result<(usize, usize), Error> {
        let missing = || Error::NoEntryAtGivenOffset(offset as u64);
        match self.units.binary_search(&offset) {
            // No entry sits at a unit header, nor before the first unit.
            Ok(_) | Err(0) => Err(missing()),
            Err(i) => Ok((i - 1, offset)),
        }
    }

    fn parse_unit(&self, unit: usize) -> Result<Unit, Error> {
        let offset = self
            .units
            .get(unit)
            .ok_or(Error::NoEntryAtGivenOffset(unit as u64))?;
        let header = self
            .dwarf
            .debug_info
            .header_from_offset(gimli::DebugInfoOffset(*offset))?;
        self.dwarf.unit(header)
    }
}

/// Whether `dwarf` (read from `bases`) has DWARF 5 split units (skeletons pointing to `.dwo`
/// files), which are left to addr2line. A unit header that cannot be read ends the search.
pub(crate) fn has_split_units(dwarf: &gimli::Dwarf<Reader>, bases: &[Base]) -> bool {
    let mut backing = Backing::new(bases.to_vec());
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        backing.read(HEADERS_PER_RELEASE);
        if matches!(
            header.type_(),
            gimli::UnitType::Skeleton(_) | gimli::UnitType::SplitCompilation(_)
        ) {
            return true;
        }
    }
    false
}

fn push_range(ranges: &mut Vec<UnitRange>, unit: usize, begin: u64, end: u64) {
    ranges.push(UnitRange {
        begin,
        end,
        min_begin: 0,
        unit,
    });
}

/// Ranges of a unit that `.debug_aranges` does not describe: its root entry's, else its line
/// program's sequences. A unit that cannot be read gets none.
fn root_ranges(
    dwarf: &gimli::Dwarf<Reader>,
    header: gimli::UnitHeader<Reader>,
    id: usize,
    out: &mut Vec<UnitRange>,
) {
    let Ok(unit) = dwarf.unit(header) else {
        return;
    };
    let unit = gimli::UnitRef::new(dwarf, &unit);
    let from_root = (|| -> Result<bool, Error> {
        let mut entries = unit.entries_raw(None)?;
        let Some(abbrev) = entries.read_abbreviation()? else {
            return Ok(false);
        };
        let mut ranges = Ranges::default();
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            ranges.note(unit, &attr)?;
        }
        ranges.each(unit, |r| push_range(out, id, r.begin, r.end))
    })();
    if matches!(from_root, Ok(true)) {
        return;
    }
    if let Ok(Some(lines)) = Lines::parse(unit) {
        for s in &lines.sequences {
            push_range(out, id, s.start, s.end);
        }
    }
}

/// The address attributes of one entry.
#[derive(Default)]
struct Ranges {
    low_pc: Option<u64>,
    high_pc: Option<u64>,
    size: Option<u64>,
    list: Option<gimli::RangeListsOffset<usize>>,
}

impl Ranges {
    /// Takes `attr` if it is one of the address attributes.
    fn note(&mut self, unit: UnitRef<'_>, attr: &gimli::Attribute<Reader>) -> Result<(), Error> {
        match (attr.name(), attr.value()) {
            (gimli::DW_AT_low_pc, gimli::AttributeValue::Addr(a)) => self.low_pc = Some(a),
            (gimli::DW_AT_low_pc, gimli::AttributeValue::DebugAddrIndex(i)) => {
                self.low_pc = Some(unit.address(i)?);
            }
            (gimli::DW_AT_high_pc, gimli::AttributeValue::Addr(a)) => self.high_pc = Some(a),
            (gimli::DW_AT_high_pc, gimli::AttributeValue::DebugAddrIndex(i)) => {
                self.high_pc = Some(unit.address(i)?);
            }
            (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(n)) => self.size = Some(n),
            (gimli::DW_AT_ranges, value) => self.list = unit.attr_ranges_offset(value)?,
            _ => {}
        }
        Ok(())
    }

    /// Calls `f` with each non-empty range (the range list if there is one, else
    /// low_pc..high_pc, else low_pc + size); tells whether there was any.
    fn each(&self, unit: UnitRef<'_>, mut f: impl FnMut(gimli::Range)) -> Result<bool, Error> {
        let mut any = false;
        let mut take = |r: gimli::Range| {
            if r.begin < r.end {
                f(r);
                any = true;
            }
        };
        if let Some(list) = self.list {
            let mut list = unit.ranges(list)?;
            while let Some(r) = list.next()? {
                take(r);
            }
        } else if let (Some(begin), Some(end)) = (self.low_pc, self.high_pc) {
            take(gimli::Range { begin, end });
        } else if let (Some(begin), Some(size)) = (self.low_pc, self.size) {
            // A tombstone low_pc (-1) wraps below itself and is dropped as empty.
            take(gimli::Range {
                begin,
                end: begin.wrapping_add(size),
            });
        }
        Ok(any)
    }
}

/// Parsed units, least recently used first, and what has been parsed from them.
struct Cache {
    slots: Vec<Slot>,
    backing: Backing,
}

struct Slot {
    unit_index: usize,
    unit: Arc<Unit>,
    functions: Option<Result<Arc<Functions>, Error>>,
    lines: Option<Result<Option<Arc<Lines>>, Error>>,
    parsed: HashMap<usize, Result<Arc<Function>, Error>>,
}

impl Cache {
    /// The parsed unit `unit`, parsing it (and dropping the least recently used one) if needed.
    fn slot(&mut self, index: &Index, unit: usize) -> Result<&mut Slot, Error> {
        match self.slots.iter().position(|s| s.unit_index == unit) {
            Some(at) => {
                let slot = self.slots.remove(at);
                self.slots.push(slot);
            }
            None => {
                // What the previous units' parsing read is given back first.
                self.backing.read(1);
                let parsed = index.parse_unit(unit)?;
                if self.slots.len() >= CACHED_UNITS {
                    self.slots.remove(0);
                }
                self.slots.push(Slot {
                    unit_index: unit,
                    unit: Arc::new(parsed),
                    functions: None,
                    lines: None,
                    parsed: HashMap::new(),
                });
            }
        }
        self.slots.last_mut().ok_or(Error::MissingUnitDie)
    }

    /// The slot of `unit` if it is still cached (a lookup may have dropped it meanwhile).
    fn cached(&mut self, unit: usize) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.unit_index == unit)
    }

    fn functions(
        &mut self,
        index: &Index,
        unit: usize,
        dw_unit: &Unit,
    ) -> Result<Arc<Functions>, Error> {
        if let Some(done) = self.cached(unit).and_then(|s| s.functions.clone()) {
            return done;
        }
        let parsed = Functions::parse(gimli::UnitRef::new(&index.dwarf, dw_unit)).map(Arc::new);
        if let Some(slot) = self.cached(unit) {
            slot.functions = Some(parsed.clone());
        }
        parsed
    }

    fn lines(
        &mut self,
        index: &Index,
        unit: usize,
        dw_unit: &Unit,
    ) -> Result<Option<Arc<Lines>>, Error> {
        if let Some(done) = self.cached(unit).and_then(|s| s.lines.clone()) {
            return done;
        }
        let parsed = Lines::parse(gimli::UnitRef::new(&index.dwarf, dw_unit))
            .map(|lines| lines.map(Arc::new));
        if let Some(slot) = self.cached(unit) {
            slot.lines = Some(parsed.clone());
        }
        parsed
    }

    /// Function `i` of `functions` (of unit `unit`) with its inline tree.
    fn function(
        &mut self,
        index: &Index,
        unit: usize,
        dw_unit: &Arc<Unit>,
        functions: &Functions,
        i: usize,
    ) -> Result<Arc<Function>, Error> {
        if let Some(done) = self.cached(unit).and_then(|s| s.parsed.get(&i).cloned()) {
            return done;
        }
        let offset = *functions
            .offsets
            .get(i)
            .ok_or(Error::NoEntryAtGivenOffset(i as u64))?;
        let parsed = Function::parse(self, index, dw_unit, offset).map(Arc::new);
        if let Some(slot) = self.cached(unit) {
            slot.parsed.insert(i, parsed.clone());
        }
        parsed
    }

    /// The name behind a `DW_AT_abstract_origin`/`DW_AT_specification` value of an entry of
    /// `unit`, following up to `links` further links.
    fn name_behind(
        &mut self,
        index: &Index,
        unit: &Arc<Unit>,
        value: gimli::AttributeValue<Reader>,
        links: usize,
    ) -> Result<Option<Reader>, Error> {
        if links == 0 {
            return Ok(None);
        }
        match value {
            gimli::AttributeValue::UnitRef(offset) => self.name_at(index, unit, offset, links),
            gimli::AttributeValue::DebugInfoRef(offset) => {
                let (target, _) = index.unit_at(offset.0)?;
                let other = Arc::clone(&self.slot(index, target)?.unit);
                let inside = offset
                    .to_unit_offset(&other.header)
                    .ok_or(Error::NoEntryAtGivenOffset(offset.0 as u64))?;
                self.name_at(index, &other, inside, links)
            }
            // Supplementary files are left to addr2line; without one there is no name.
            _ => Ok(None),
        }
    }

    /// The name of the entry at `offset` of `unit`: its linkage name, else its name, else the
    /// name behind its origin or specification.
    fn name_at(
        &mut self,
        index: &Index,
        unit: &Arc<Unit>,
        offset: gimli::UnitOffset<usize>,
        links: usize,
    ) -> Result<Option<Reader>, Error> {
        let dw_unit = gimli::UnitRef::new(&index.dwarf, unit);
        let mut entries = dw_unit.entries_raw(Some(offset))?;
        let abbrev = entries
            .read_abbreviation()?
            .ok_or(Error::NoEntryAtGivenOffset(offset.0 as u64))?;
        let mut name = None;
        let mut next = None;
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            match attr.name() {
                gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                    if let Ok(linkage) = dw_unit.attr_string(attr.value()) {
                        return Ok(Some(linkage));
                    }
                }
                gimli::DW_AT_name => {
                    if let Ok(plain) = dw_unit.attr_string(attr.value()) {
                        name = Some(plain);
                    }
                }
                gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                    next = Some(attr.value());
                }
                _ => {}
            }
        }
        match (name, next) {
            (Some(name), _) => Ok(Some(name)),
            (None, Some(next)) => self.name_behind(index, unit, next, links - 1),
            (None, None) => Ok(None),
        }
    }
}

/// The functions (`DW_TAG_subprogram` entries with addresses) of one unit.
struct Functions {
    /// Entry offsets, by function number.
    offsets: Vec<gimli::UnitOffset<usize>>,
    /// (range, function number), sorted by range start.
    ranges: Vec<(gimli::Range, usize)>,
}

impl Functions {
    fn parse(unit: UnitRef<'_>) -> Result<Functions, Error> {
        let mut offsets = Vec::new();
        let mut ranges = Vec::new();
        let mut entries = unit.entries_raw(None)?;
        while !entries.is_empty() {
            let offset = entries.next_offset();
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            if abbrev.tag() != gimli::DW_TAG_subprogram {
                entries.skip_attributes(abbrev.attributes())?;
                continue;
            }
            let mut found = Ranges::default();
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec)?;
                found.note(unit, &attr)?;
            }
            let number = offsets.len();
            if found.each(unit, |r| ranges.push((r, number)))? {
                offsets.push(offset);
            }
        }
        // The same unstable sort as addr2line's, so that functions with equal starts (folded
        // identical code) are found in the same order.
        ranges.sort_unstable_by_key(|r| r.0.begin);
        Ok(Functions { offsets, ranges })
    }

    /// The function number whose range holds `probe` (by binary search, as addr2line does).
    fn find(&self, probe: u64) -> Option<usize> {
        self.ranges
            .binary_search_by(|(r, _)| {
                if probe < r.begin {
                    Ordering::Greater
                } else if probe >= r.end {
                    Ordering::Less
                } else {
                    Ordering::Equal
                }
            })
            .ok()
            .and_then(|i| self.ranges.get(i))
            .map(|r| r.1)
    }
}

/// One function with its inlined calls.
struct Function {
    name: Option<Reader>,
    calls: Vec<InlinedCall>,
    /// Ranges of the calls, sorted by nesting depth, then start.
    call_ranges: Vec<CallRange>,
}

struct InlinedCall {
    name: Option<Reader>,
    call_file: Option<u64>,
    call_line: u32,
}

struct CallRange {
    range: gimli::Range,
    depth: usize,
    call: usize,
}

impl Function {
    fn parse(
        cache: &mut Cache,
        index: &Index,
        unit: &Arc<Unit>,
        offset: gimli::UnitOffset<usize>,
    ) -> Result<Function, Error> {
        let dw_unit = gimli::UnitRef::new(&index.dwarf, unit);
        let mut entries = dw_unit.entries_raw(Some(offset))?;
        let depth = entries.next_depth();
        let abbrev = entries
            .read_abbreviation()?
            .ok_or(Error::NoEntryAtGivenOffset(offset.0 as u64))?;
        let mut name = None;
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            note_name(cache, index, unit, &attr, &mut name)?;
        }

        let mut calls = Vec::new();
        let mut call_ranges = Vec::new();
        // Depths of the inlined calls around the next entry.
        let mut open: Vec<isize> = Vec::new();
        loop {
            let next_depth = entries.next_depth();
            if next_depth <= depth {
                break;
            }
            while open.last().is_some_and(|&d| d >= next_depth) {
                open.pop();
            }
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            match abbrev.tag() {
                // A nested function is a function of its own.
                gimli::DW_TAG_subprogram => {
                    entries.skip_attributes(abbrev.attributes())?;
                    while entries.next_depth() > next_depth {
                        if let Some(inner) = entries.read_abbreviation()? {
                            entries.skip_attributes(inner.attributes())?;
                        }
                    }
                }
                gimli::DW_TAG_inlined_subroutine => {
                    let mut call = InlinedCall {
                        name: None,
                        call_file: None,
                        call_line: 0,
                    };
                    let mut found = Ranges::default();
                    for spec in abbrev.attributes() {
                        let attr = entries.read_attribute(*spec)?;
                        found.note(dw_unit, &attr)?;
                        note_name(cache, index, unit, &attr, &mut call.name)?;
                        match attr.name() {
                            gimli::DW_AT_call_file => {
                                // File 0 means "none" before DWARF 5 and is a real file in 5.
                                if let gimli::AttributeValue::FileIndex(file) = attr.value() {
                                    if file > 0 || dw_unit.header.version() >= 5 {
                                        call.call_file = Some(file);
                                    }
                                }
                            }
                            gimli::DW_AT_call_line => {
                                call.call_line = attr.udata_value().unwrap_or(0) as u32;
                            }
                            _ => {}
                        }
                    }
                    let number = calls.len();
                    calls.push(call);
                    let nesting = open.len();
                    found.each(dw_unit, |range| {
                        call_ranges.push(CallRange {
                            range,
                            depth: nesting,
                            call: number,
                        });
                    })?;
                    // The calls inside this one sit below this entry's depth.
                    open.push(next_depth);
                }
                _ => entries.skip_attributes(abbrev.attributes())?,
            }
        }
        call_ranges.sort_unstable_by(|a, b| {
            a.depth
                .cmp(&b.depth)
                .then(a.range.begin.cmp(&b.range.begin))
        });
        Ok(Function {
            name,
            calls,
            call_ranges,
        })
    }

    /// The inlined calls holding `probe`, outermost first.
    fn inlined_at(&self, probe: u64) -> Vec<&InlinedCall> {
        let mut found = Vec::new();
        let mut rest = &self.call_ranges[..];
        loop {
            let depth = found.len();
            let search = rest.binary_search_by(|c| {
                c.depth.cmp(&depth).then_with(|| {
                    if c.range.begin > probe {
                        Ordering::Greater
                    } else if c.range.end <= probe {
                        Ordering::Less
                    } else {
                        Ordering::Equal
                    }
                })
            });
            let Ok(at) = search else {
                break;
            };
            let Some(range) = rest.get(at) else {
                break;
            };
            match self.calls.get(range.call) {
                Some(call) => found.push(call),
                None => break,
            }
            rest = rest.get(at + 1..).unwrap_or(&[]);
        }
        found
    }
}

/// Takes a name attribute of a function or inlined call entry into `name`: the linkage name
/// wins over everything, a plain name or the name behind an origin only fill a gap.
fn note_name(
    cache: &mut Cache,
    index: &Index,
    unit: &Arc<Unit>,
    attr: &gimli::Attribute<Reader>,
    name: &mut Option<Reader>,
) -> Result<(), Error> {
    match attr.name() {
        gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
            if let Ok(linkage) = index.dwarf.attr_string(unit, attr.value()) {
                *name = Some(linkage);
            }
        }
        gimli::DW_AT_name if name.is_none() => {
            *name = index.dwarf.attr_string(unit, attr.value()).ok();
        }
        gimli::DW_AT_abstract_origin | gimli::DW_AT_specification if name.is_none() => {
            *name = cache.name_behind(index, unit, attr.value(), NAME_LINKS)?;
        }
        _ => {}
    }
    Ok(())
}

/// The line table of one unit.
struct Lines {
    /// File paths by file index (index 0 is empty before DWARF 5, which has no file 0).
    files: Vec<String>,
    sequences: Vec<Sequence>,
}

struct Sequence {
    start: u64,
    end: u64,
    rows: Vec<Row>,
}

struct Row {
    address: u64,
    /// Saturated: a larger index names no file anyway.
    file: u32,
    /// 0 when the row has no line.
    line: u32,
}

impl Lines {
    /// `Ok(None)` when the unit has no line program.
    fn parse(unit: UnitRef<'_>) -> Result<Option<Lines>, Error> {
        let Some(program) = unit.line_program.clone() else {
            return Ok(None);
        };
        let mut sequences = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut program = program.rows();
        while let Some((_, row)) = program.next_row()? {
            if row.end_sequence() {
                if let Some(start) = rows.first().map(|r| r.address) {
                    let rows = std::mem::take(&mut rows);
                    let end = row.address();
                    if start < end {
                        sequences.push(Sequence { start, end, rows });
                    }
                }
                continue;
            }
            let address = row.address();
            let file = u32::try_from(row.file_index()).unwrap_or(u32::MAX);
            let line = row.line().map_or(0, NonZeroU64::get) as u32;
            match rows.last_mut() {
                // Several rows at one address: the last one stands.
                Some(last) if last.address == address => {
                    last.file = file;
                    last.line = line;
                }
                _ => rows.push(Row {
                    address,
                    file,
                    line,
                }),
            }
        }
        sequences.sort_unstable_by_key(|s| s.start);

        let header = program.header();
        let mut files = Vec::new();
        match header.file(0) {
            Some(file) => files.push(file_path(unit, file, header)?),
            None => files.push(String::new()),
        }
        let mut i = 1;
        while let Some(file) = header.file(i) {
            files.push(file_path(unit, file, header)?);
            i += 1;
        }
        Ok(Some(Lines { files, sequences }))
    }

    fn file(&self, index: u64) -> Option<String> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.files.get(i))
            .cloned()
    }

    /// The file and line of the row holding `probe`; `None` outside every sequence.
    fn find(&self, probe: u64) -> Option<(Option<String>, Option<u32>)> {
        let at = self
            .sequences
            .binary_search_by(|s| {
                if probe < s.start {
                    Ordering::Greater
                } else if probe >= s.end {
                    Ordering::Less
                } else {
                    Ordering::Equal
                }
            })
            .ok()?;
        let rows = &self.sequences.get(at)?.rows;
        let row = match rows.binary_search_by(|r| r.address.cmp(&probe)) {
            Ok(i) => rows.get(i)?,
            Err(0) => return None,
            Err(i) => rows.get(i - 1)?,
        };
        Some((
            self.file(u64::from(row.file)),
            (row.line != 0).then_some(row.line),
        ))
    }
}

/// The path of a line table file: the unit's directory, the file's directory (unless it is
/// directory 0, the unit's own), then its name; an absolute part replaces what came before.
fn file_path(
    unit: UnitRef<'_>,
    file: &gimli::FileEntry<Reader>,
    header: &gimli::LineProgramHeader<Reader>,
) -> Result<String, Error> {
    let mut path = match &unit.comp_dir {
        Some(dir) => dir.to_string_lossy()?.into_owned(),
        None => String::new(),
    };
    if file.directory_index() != 0 {
        if let Some(dir) = file.directory(header) {
            join(&mut path, &unit.attr_string(dir)?.to_string_lossy()?);
        }
    }
    join(
        &mut path,
        &unit.attr_string(file.path_name())?.to_string_lossy()?,
    );
    Ok(path)
}

/// Appends `part` to `path` with a separator, or replaces `path` when `part` is absolute (Unix
/// `/x`, Windows `\x`, or a drive `C:/`, `C:\`); Windows paths get `\` separators.
fn join(path: &mut String, part: &str) {
    let drive = |p: &str, sep: &str| p.get(1..3) == Some(sep);
    let unix_root = |p: &str| p.starts_with('/') || drive(p, ":/");
    let windows_root = |p: &str| p.starts_with('\\') || drive(p, ":\\");
    if unix_root(part) || windows_root(part) {
        part.clone_into(path);
        return;
    }
    let sep = if windows_root(path) { '\\' } else { '/' };
    if !path.is_empty() && !path.ends_with(sep) {
        path.push(sep);
    }
    path.push_str(part);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_like_addr2line() {
        let joined = |a: &str, b: &str| {
            let mut p = a.to_owned();
            join(&mut p, b);
            p
        };
        assert_eq!(joined("/src", "a.c"), "/src/a.c");
        assert_eq!(joined("/src/", "a.c"), "/src/a.c");
        assert_eq!(joined("", "a.c"), "a.c");
        assert_eq!(joined("/src", "/usr/include/x.h"), "/usr/include/x.h");
        assert_eq!(joined("C:\\src", "a.c"), "C:\\src\\a.c");
        assert_eq!(joined("/src", "C:/x.c"), "C:/x.c");
        assert_eq!(joined("\\\\srv", "a.c"), "\\\\srv\\a.c");
    }
}
