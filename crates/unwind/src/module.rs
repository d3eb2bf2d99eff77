//! Modules (ELF files, the vDSO, anonymous/JIT memory): what the rest of rprof sees of them, and
//! what the unwinder reads from them once (load segments, build id, unwind sections).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
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
}

/// The section data type handed to framehop.
pub(crate) type Bytes = Arc<[u8]>;

impl ElfData {
    /// Whether the file has any call frame information.
    pub fn has_cfi(&self) -> bool {
        self.eh_frame.is_some() || self.debug_frame.is_some()
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

    /// A framehop module for a mapping of this file at `avma_range` whose SVMA 0 lies at
    /// `base_avma`; `None` when the file has no CFI (framehop then uses frame pointers).
    pub fn framehop_module(
        &self,
        name: &str,
        avma_range: Range<u64>,
        base_avma: u64,
    ) -> Option<framehop::Module<Bytes>> {
        if !self.has_cfi() {
            return None;
        }
        let info = framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text_svma.clone(),
            got_svma: self.got_svma.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: self.eh_frame.as_ref().map(|s| s.data.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|s| s.data.clone()),
            debug_frame: self.debug_frame.clone(),
            ..Default::default()
        };
        Some(framehop::Module::new(
            name.to_string(),
            avma_range,
            base_avma,
            info,
        ))
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
    elf.debug_frame = bytes(".debug_frame").map(|s| s.data);
    Ok(elf)
}

/// Whether `.eh_frame_hdr` parses and has a binary search table. framehop looks every address
/// up through this table when it is given one, so a header without a usable table must be left
/// out: framehop then indexes `.eh_frame` itself.
fn eh_frame_hdr_has_table(hdr: &SectionBytes, eh_frame: &SectionBytes) -> bool {
    let bases = gimli::BaseAddresses::default()
        .set_eh_frame_hdr(hdr.svma.start)
        .set_eh_frame(eh_frame.svma.start);
    let parsed = gimli::EhFrameHdr::new(&hdr.data, gimli::LittleEndian).parse(&bases, 8);
    matches!(parsed, Ok(p) if p.table().is_some())
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
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(LoadError::Malformed {
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
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
    let fail = |what: String| LoadError::NoVdso(what);
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| fail(format!("/proc/self/maps: {e}")))?;
    let vdso = crate::maps::parse_proc_maps(&maps)
        .into_iter()
        .find(|m| m.path == "[vdso]")
        .ok_or_else(|| fail("no [vdso] mapping in this process".to_string()))?;
    let len = usize::try_from(vdso.end - vdso.start)
        .ok()
        .filter(|&l| l <= 1 << 24)
        .ok_or_else(|| fail("implausible [vdso] size".to_string()))?;
    let mem = File::open("/proc/self/mem").map_err(|e| fail(format!("/proc/self/mem: {e}")))?;
    let mut image = vec![0u8; len];
    mem.read_exact_at(&mut image, vdso.start)
        .map_err(|e| fail(format!("reading [vdso]: {e}")))?;
    parse_elf(&*image).map_err(|e| fail(format!("[vdso] image: {e}")))
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
