//! Modules (ELF files, the vDSO, anonymous/JIT memory): what the rest of rprof sees of them, and
//! what the unwinder reads from them once (load segments, build id, unwind sections).

use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::read::elf::ElfFile64;
use object::{Architecture, Endianness, Object, ObjectSection, ObjectSegment, ReadCache, ReadRef};

/// Index of a module in [`Unwinder::modules`](crate::Unwinder::modules).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ModuleIndex(pub u32);

/// What kind of code a module holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// A file on disk (an executable or a shared library), readable or not.
    Elf,
    /// The kernel's virtual dynamic shared object (`[vdso]`).
    Vdso,
    /// Anonymous executable memory of a process that has a `/tmp/perf-PID.map` JIT symbol map.
    Jit,
    /// Anonymous executable memory without a JIT map (or another special mapping).
    Anonymous,
}

/// A module as the rest of rprof sees it. A module is shared by every process that maps the same
/// file (same path and build id or inode); JIT and anonymous modules belong to one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The mapping name as the kernel gave it (a path, possibly ending in ` (deleted)`, `[vdso]`,
    /// `/tmp/perf-PID.map` for JIT code, or the anonymous mapping's name such as `//anon`).
    pub path: String,
    /// The GNU build id: the one the kernel reported, else the one read from the file. It is
    /// final once a [`Frame`](crate::Frame) has referred to this module.
    pub build_id: Option<Vec<u8>>,
    /// What the module is.
    pub kind: ModuleKind,
    /// For [`ModuleKind::Jit`]: the process whose `/tmp/perf-PID.map` names its code.
    pub pid_for_jit: Option<u32>,
}

/// Why a module's file could not be used for unwinding (addresses in it are still attributed to
/// it, and unwinding through it falls back to frame pointers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path tried.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed x86-64 ELF file.
    #[error("cannot use {path}: {reason}")]
    Malformed {
        /// The path tried.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file on disk is not the one that was mapped (it was replaced since).
    #[error("{path} is not the mapped file any more ({what} differs)")]
    Replaced {
        /// The path tried.
        path: PathBuf,
        /// `build id` or `inode`.
        what: &'static str,
    },
    /// The running kernel's vDSO could not be found in this process.
    #[error("the vDSO image of this kernel is not available: {0}")]
    NoVdso(String),
}

/// A PT_LOAD segment: how a file range is placed in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    /// p_offset.
    pub offset: u64,
    /// p_vaddr.
    pub vaddr: u64,
    /// p_filesz.
    pub filesz: u64,
    /// PF_X is set.
    pub executable: bool,
}

/// A section's address range as stated in the file and its bytes.
#[derive(Clone, Debug)]
pub(crate) struct SectionBytes {
    pub svma: Range<u64>,
    pub data: Arc<[u8]>,
}

/// What the unwinder needs of an ELF file, read once and shared by every mapping of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ElfData {
    pub segments: Vec<LoadSegment>,
    pub build_id: Option<Vec<u8>>,
    pub text_svma: Option<Range<u64>>,
    pub got_svma: Option<Range<u64>>,
    pub eh_frame: Option<SectionBytes>,
    pub eh_frame_hdr: Option<SectionBytes>,
    pub debug_frame: Option<Arc<[u8]>>,
    /// When both sections are kept: the SVMA ranges that `.eh_frame` covers (merged, sorted);
    /// `.debug_frame` is used everywhere else.
    pub eh_frame_islands: Vec<Range<u64>>,
    /// SVMA ranges of signal trampolines (sorted, merged).
    pub signal_trampolines: Vec<Range<u64>>,
    /// The ELF entry point (`e_entry`, an SVMA): the first code a process runs, when the file
    /// is an executable or the dynamic loader. 0 means none.
    pub entry: u64,
}

/// Most `.eh_frame` islands kept next to `.debug_frame` (each costs a framehop module).
const MAX_ISLANDS: usize = 64;

/// The section data type handed to framehop.
pub(crate) type Bytes = Arc<[u8]>;

/// How far past the entry point a frame still counts as the process's first code: glibc's
/// `_start` (about 40 bytes) and the dynamic loader's `_start` + `_dl_start_user` (about 80),
/// hand-written assembly that may carry no CFI.
const ENTRY_CODE: u64 = 0x80;

impl ElfData {
    /// Whether `svma` is in the code that starts the process (see [`ElfData::entry`]): a frame
    /// there is the outermost one.
    pub fn is_entry_code(&self, svma: u64) -> bool {
        self.entry != 0 && (self.entry..self.entry.saturating_add(ENTRY_CODE)).contains(&svma)
    }

    /// Whether `svma` is in a signal trampoline.
    pub fn is_signal_trampoline(&self, svma: u64) -> bool {
        let i = self.signal_trampolines.partition_point(|r| r.start <= svma);
        i > 0 && svma < self.signal_trampolines[i - 1].end
    }

    /// The AVMA at which the file's address 0 lies, for a mapping of file offset `pgoff` at
    /// `start`: SVMA = AVMA − base. `None` if no PT_LOAD segment covers `pgoff`.
    ///
    /// The kernel maps each PT_LOAD segment from its page-aligned file offset, so the segment
    /// covering `pgoff` is the one whose page-aligned file range contains it; executable
    /// segments win when two segments share a page.
    pub fn base_avma(&self, start: u64, pgoff: u64) -> Option<u64> {
        const PAGE: u64 = 4096;
        let covers = |s: &&LoadSegment| {
            let lo = s.offset & !(PAGE - 1);
            pgoff >= lo && pgoff < s.offset.saturating_add(s.filesz.max(1))
        };
        let seg = self
            .segments
            .iter()
            .filter(|s| s.executable)
            .find(covers)
            .or_else(|| self.segments.iter().find(covers))?;
        Some(
            start
                .wrapping_sub(pgoff)
                .wrapping_add(seg.offset)
                .wrapping_sub(seg.vaddr),
        )
    }

    /// The framehop modules for a mapping of this file at `avma_range` whose SVMA 0 lies at
    /// `base_avma`: one, or several when `.eh_frame` islands sit in `.debug_frame` code. Empty
    /// when the file has no CFI (framehop then uses frame pointers).
    pub fn framehop_modules(
        &self,
        name: &str,
        avma_range: Range<u64>,
        base_avma: u64,
    ) -> Vec<framehop::Module<Bytes>> {
        let eh = || framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text_svma.clone(),
            got_svma: self.got_svma.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: self.eh_frame.as_ref().map(|s| s.data.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|s| s.data.clone()),
            ..Default::default()
        };
        let debug = || framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text_svma.clone(),
            got_svma: self.got_svma.clone(),
            debug_frame: self.debug_frame.clone(),
            ..Default::default()
        };
        let module = |range: Range<u64>, info| {
            framehop::Module::new(name.to_string(), range, base_avma, info)
        };
        match (&self.eh_frame, &self.debug_frame) {
            (None, None) => Vec::new(),
            (Some(_), None) => vec![module(avma_range, eh())],
            (None, Some(_)) => vec![module(avma_range, debug())],
            (Some(_), Some(_)) => {
                let mut out = Vec::new();
                let mut at = avma_range.start;
                for island in &self.eh_frame_islands {
                    let lo = island.start.wrapping_add(base_avma).max(at);
                    let hi = island.end.wrapping_add(base_avma).min(avma_range.end);
                    if lo >= hi {
                        continue;
                    }
                    if at < lo {
                        out.push(module(at..lo, debug()));
                    }
                    out.push(module(lo..hi, eh()));
                    at = hi;
                }
                if at < avma_range.end {
                    out.push(module(at..avma_range.end, debug()));
                }
                out
            }
        }
    }
}

/// Parses what the unwinder needs out of an ELF image (a file through a read cache, or bytes).
pub(crate) fn parse_elf<'data, R: ReadRef<'data>>(data: R) -> Result<ElfData, String> {
    let file = ElfFile64::<Endianness, R>::parse(data).map_err(|e| e.to_string())?;
    if file.architecture() != Architecture::X86_64 {
        return Err(format!("not an x86-64 file ({:?})", file.architecture()));
    }
    let mut elf = ElfData {
        segments: file
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                let executable = matches!(
                    s.flags(),
                    object::SegmentFlags::Elf { p_flags, .. } if p_flags.contains(object::elf::PF_X)
                );
                LoadSegment {
                    offset,
                    vaddr: s.address(),
                    filesz,
                    executable,
                }
            })
            .collect(),
        build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
        entry: object::Object::entry(&file),
        ..Default::default()
    };
    if elf.segments.is_empty() {
        return Err("no PT_LOAD segment".to_string());
    }
    let range = |name: &str| {
        file.section_by_name(name)
            .filter(|s| s.size() > 0)
            .and_then(|s| Some(s.address()..s.address().checked_add(s.size())?))
    };
    elf.text_svma = range(".text");
    elf.got_svma = range(".got");
    let bytes = |name: &str| -> Option<SectionBytes> {
        let section = file.section_by_name(name)?;
        let svma = section.address()..section.address().checked_add(section.size())?;
        let data = section.uncompressed_data().ok()?;
        (!data.is_empty()).then(|| SectionBytes {
            svma,
            data: Arc::from(&*data),
        })
    };
    elf.eh_frame = bytes(".eh_frame");
    elf.eh_frame_hdr = bytes(".eh_frame_hdr").filter(|hdr| {
        elf.eh_frame
            .as_ref()
            .is_some_and(|eh| eh_frame_hdr_has_table(hdr, eh))
    });
    // One walk of .eh_frame serves both uses below.
    let eh_fdes = elf.eh_frame.as_ref().map_or(Vec::new(), |eh| {
        rprof_elf::fde_ranges(
            &gimli::EhFrame::new(&eh.data, gimli::LittleEndian),
            &eh_frame_bases(&elf, eh),
        )
    });
    // framehop cannot evaluate the CFI of signal trampolines (it needs memory reads in DWARF
    // expressions): find them here, the unwinder steps over them itself.
    elf.signal_trampolines = merged(
        eh_fdes
            .iter()
            .filter(|f| f.signal_trampoline)
            .map(|f| f.range.clone()),
    );
    // framehop uses one CFI section per module: .eh_frame if there is one. Code compiled with
    // -fno-asynchronous-unwind-tables -g has its CFI in .debug_frame, next to an .eh_frame that
    // only covers the C runtime's start files and the PLT. Then use .debug_frame, except in the
    // ranges .eh_frame covers (so that _start still ends the stack).
    if let Some(debug_frame) = file.section_by_name(".debug_frame") {
        if let Ok(data) = debug_frame.uncompressed_data() {
            let debug_ranges = merged(
                rprof_elf::fde_ranges(
                    &gimli::DebugFrame::new(&data, gimli::LittleEndian),
                    &gimli::BaseAddresses::default(),
                )
                .into_iter()
                .map(|f| f.range),
            );
            let eh_ranges = merged(eh_fdes.into_iter().map(|f| f.range));
            if covered(&debug_ranges) > covered(&eh_ranges) {
                elf.debug_frame = Some(Arc::from(&*data));
                if eh_ranges.is_empty() || eh_ranges.len() > MAX_ISLANDS {
                    elf.eh_frame = None;
                    elf.eh_frame_hdr = None;
                } else {
                    elf.eh_frame_islands = eh_ranges;
                }
            }
        }
    }
    Ok(elf)
}

/// FDE code ranges (of [`rprof_elf::fde_ranges`]), sorted, with overlapping and adjacent
/// ones merged.
fn merged(ranges: impl Iterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = ranges.collect();
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// The base addresses `.eh_frame` pointers may be relative to.
fn eh_frame_bases(elf: &ElfData, eh_frame: &SectionBytes) -> gimli::BaseAddresses {
    gimli::BaseAddresses::default()
        .set_eh_frame(eh_frame.svma.start)
        .set_text(elf.text_svma.as_ref().map_or(0, |t| t.start))
        .set_got(elf.got_svma.as_ref().map_or(0, |g| g.start))
}

/// Total length of disjoint ranges.
fn covered(ranges: &[Range<u64>]) -> u64 {
    ranges
        .iter()
        .map(|r| r.end - r.start)
        .fold(0, u64::saturating_add)
}

/// Whether `.eh_frame_hdr` parses and has a sane binary search table: it points at this
/// `.eh_frame`, and every entry is sorted and points into it. framehop looks every address up
/// through this table when it is given one and trusts it (a pointer before `.eh_frame` even
/// overflows in gimli), so a header that fails this check is left out: framehop then indexes
/// `.eh_frame` itself.
fn eh_frame_hdr_has_table(hdr: &SectionBytes, eh_frame: &SectionBytes) -> bool {
    let bases = gimli::BaseAddresses::default()
        .set_eh_frame_hdr(hdr.svma.start)
        .set_eh_frame(eh_frame.svma.start);
    let Ok(parsed) = gimli::EhFrameHdr::new(&hdr.data, gimli::LittleEndian).parse(&bases, 8) else {
        return false;
    };
    if parsed.eh_frame_ptr().direct().ok() != Some(eh_frame.svma.start) {
        return false;
    }
    let Some(table) = parsed.table() else {
        return false;
    };
    let mut entries = table.iter(&bases);
    let mut previous = None;
    let mut count = 0u64;
    loop {
        match entries.next() {
            Ok(Some((location, fde))) => {
                let (Ok(location), Ok(fde)) = (location.direct(), fde.direct()) else {
                    return false;
                };
                if !eh_frame.svma.contains(&fde) || previous.is_some_and(|p| location < p) {
                    return false;
                }
                previous = Some(location);
                count += 1;
            }
            Ok(None) => return count > 0,
            Err(_) => return false,
        }
    }
}

/// Reads and parses the ELF file at `path`, checking that it is the file that was mapped.
pub(crate) fn load_file(
    path: &Path,
    expected_inode: u64,
    expected_build_id: Option<&[u8]>,
) -> Result<ElfData, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Only a regular file (a FIFO is refused without blocking in open()) of a sane size.
    let options = rprof_fs::read::Options::new("an ELF file", rprof_fs::read::ELF_LIMIT);
    let (file, meta) = rprof_fs::read::open_regular(path, &options).map_err(|e| match e {
        rprof_fs::read::ReadError::Open { source, .. } => io(source),
        refused => LoadError::Malformed {
            path: path.to_path_buf(),
            reason: refused.reason(),
        },
    })?;
    if expected_build_id.is_none() && expected_inode != 0 && meta.ino() != expected_inode {
        return Err(LoadError::Replaced {
            path: path.to_path_buf(),
            what: "inode",
        });
    }
    let cache = ReadCache::new(file);
    let elf = parse_elf(&cache).map_err(|reason| LoadError::Malformed {
        path: path.to_path_buf(),
        reason,
    })?;
    if let (Some(want), Some(have)) = (expected_build_id, elf.build_id.as_deref()) {
        if want != have {
            return Err(LoadError::Replaced {
                path: path.to_path_buf(),
                what: "build id",
            });
        }
    }
    Ok(elf)
}

/// Reads the running kernel's vDSO image out of this process (every process on the machine maps
/// the same image) and parses it.
pub(crate) fn load_vdso() -> Result<ElfData, LoadError> {
    let image = rprof_fs::vdso::read_own_vdso().map_err(LoadError::NoVdso)?;
    parse_elf(&*image).map_err(|e| LoadError::NoVdso(format!("[vdso] image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, vaddr: u64, filesz: u64, executable: bool) -> LoadSegment {
        LoadSegment {
            offset,
            vaddr,
            filesz,
            executable,
        }
    }

    #[test]
    fn base_for_pie_non_pie_and_unaligned_segments() {
        // PIE: text at file offset 0x1000, vaddr 0x1000, loaded with bias 0x5555_0000_0000.
        let pie = ElfData {
            segments: vec![
                seg(0, 0, 0x800, false),
                seg(0x1000, 0x1000, 0x2345, true),
                seg(0x4000, 0x4000, 0x100, false),
            ],
            ..Default::default()
        };
        let bias = 0x5555_0000_0000;
        assert_eq!(pie.base_avma(bias + 0x1000, 0x1000), Some(bias));
        // Non-PIE: vaddr 0x401000 at offset 0x1000, mapped at 0x401000.
        let exe = ElfData {
            segments: vec![
                seg(0, 0x400000, 0x500, false),
                seg(0x1000, 0x401000, 0x900, true),
            ],
            ..Default::default()
        };
        assert_eq!(exe.base_avma(0x401000, 0x1000), Some(0));
        // A library whose text segment has p_offset 0x2d10, p_vaddr 0x3d10: mapped from page
        // 0x2000 at bias + 0x3000.
        let lib = ElfData {
            segments: vec![seg(0, 0, 0x2d10, false), seg(0x2d10, 0x3d10, 0x5000, true)],
            ..Default::default()
        };
        let bias = 0x7f00_0000_0000;
        let base = lib.base_avma(bias + 0x3000, 0x2000).unwrap();
        assert_eq!(base, bias);
        // Offset beyond every segment.
        assert_eq!(lib.base_avma(bias, 0x10_0000), None);
    }

    /// Issue 10: the raw FDE ranges of rprof-elf (unsorted, overlapping) become sorted,
    /// disjoint ranges here; adjacent ones merge, gaps stay.
    #[test]
    fn fde_ranges_are_sorted_and_merged() {
        let raw = [
            0x300..0x340,
            0x100..0x180,
            0x150..0x1a0,
            0x1a0..0x1b0,
            0x200..0x210,
        ];
        assert_eq!(
            merged(raw.into_iter()),
            vec![0x100..0x1b0, 0x200..0x210, 0x300..0x340]
        );
        assert_eq!(merged(std::iter::empty()), vec![]);
    }

    #[test]
    fn malformed_images_are_errors() {
        assert!(parse_elf(&[][..]).is_err());
        assert!(parse_elf(&b"\x7fELF\x02\x01\x01"[..]).is_err());
        let mut junk = vec![0u8; 4096];
        junk[..4].copy_from_slice(b"\x7fELF");
        assert!(parse_elf(&junk[..]).is_err());
    }

    #[test]
    fn vdso_of_this_kernel_loads() {
        let vdso = load_vdso().expect("vdso");
        assert!(vdso.eh_frame.is_some(), "the vDSO has .eh_frame");
        assert!(!vdso.segments.is_empty());
    }
}
