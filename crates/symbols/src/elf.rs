//! One ELF module (executable, shared library or vDSO image): its symbol tables, its DWARF
//! (embedded or from a separate debug file), parsed once and queried many times.
//!
//! DWARF is named by the lazy namer of `dwarf.rs`, which parses only the units looked up;
//! modules with split DWARF or a dwz supplementary file are named by an `addr2line::Context`.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use object::{
    Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionFlags, SectionIndex, SymbolKind,
};
use rprof_fs::read::{open_regular, Options, ELF_LIMIT};

use crate::cachefile::{sections, units};
use crate::demangle::demangle;
use crate::dwarf::{LazyDwarf, Lookup};
use addr2line::LookupContinuation as _;
use gimli::Reader as _;

use crate::fde::{FunctionRanges, LazyRanges};
use crate::split::SplitDwarf;
use crate::status::{hex, DebugInfo, ModuleProblem, ModuleStatus};
use crate::symtab::{Rank, RawSymbol, SymbolTable};
use crate::{CacheDir, Location, SymFrame};

/// The storage behind all readers of one file: a read-only file mapping or a heap buffer.
#[derive(Clone, Debug)]
pub(crate) enum Base {
    Map(Arc<Mmap>),
    Heap(Arc<[u8]>),
}

impl Base {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Base::Map(m) => m,
            Base::Heap(h) => h,
        }
    }

    /// Gives the pages of a file mapping that were read back to the page cache, so that they no
    /// longer count in this process's RSS; the next read maps them again. Naming reads units
    /// scattered over a large DWARF (and each page fault maps its neighbours too): without this
    /// every page once read would stay in the recorder's RSS (issue 13).
    pub(crate) fn release(&self) {
        if let Base::Map(map) = self {
            // SAFETY: the mapping is private and read-only, so there is nothing to lose: after
            // MADV_DONTNEED a read maps the file's page again, with the same bytes (unless the
            // file is rewritten in place, the risk `open` already accepts). References into the
            // mapping stay valid; only their pages are faulted in again.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

impl From<Vec<u8>> for Base {
    fn from(bytes: Vec<u8>) -> Base {
        Base::Heap(Arc::from(bytes))
    }
}

/// A byte range of a [`Base`]; what gimli reads DWARF sections from.
#[derive(Clone, Debug)]
pub(crate) struct Bytes {
    base: Base,
    start: usize,
    len: usize,
}

impl Bytes {
    pub(crate) fn empty() -> Bytes {
        Bytes {
            base: Base::Heap(Arc::from(&[][..])),
            start: 0,
            len: 0,
        }
    }

    /// `len` bytes at `offset` of `base`, or `None` when that range is outside it.
    pub(crate) fn range(base: &Base, offset: u64, len: u64) -> Option<Bytes> {
        let start = usize::try_from(offset).ok()?;
        let len = usize::try_from(len).ok()?;
        let end = start.checked_add(len)?;
        (end <= base.bytes().len()).then(|| Bytes {
            base: base.clone(),
            start,
            len,
        })
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let end = self.start.saturating_add(self.len);
        self.base.bytes().get(self.start..end).unwrap_or(&[])
    }
}

// SAFETY: `Bytes` derefs into the heap allocation behind an `Arc<[u8]>` or into the pages of an
// `Arc<Mmap>`. Neither moves when the `Bytes` (or the `Arc`) is moved or cloned, and both live as
// long as any clone does, so the slice address is stable as `StableDeref`/`CloneStableDeref`
// require.
unsafe impl gimli::StableDeref for Bytes {}
// SAFETY: see above; clones share the same `Arc`, hence the same bytes.
unsafe impl gimli::CloneStableDeref for Bytes {}

/// The gimli reader type used for all DWARF.
pub(crate) type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// Decompressed sections may be at most this many times their compressed size (zlib tops out near
/// 1032:1); a larger claim in a section header is treated as malformed rather than allocated.
const MAX_COMPRESSION_RATIO: u64 = 2048;
/// Inline nesting deeper than this is cut off (guards against cycles in malformed DWARF).
pub(crate) const MAX_INLINE_DEPTH: usize = 256;

/// One loaded ELF module.
pub(crate) struct ElfModule {
    symbols: SymbolTable,
    /// Function ranges from `.eh_frame`, naming code that no symbol covers.
    functions: LazyRanges,
    dwarf: Option<Names>,
    status: ModuleStatus,
    /// Where split DWARF units are loaded from.
    split: SplitDwarf,
    /// Demangled names by raw name: a profile names the same functions over and over, and
    /// demangling costs far more than a hash lookup.
    names: HashMap<Box<str>, Box<str>>,
}

impl std::fmt::Debug for ElfModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfModule")
            .field("symbols", &self.symbols.len())
            .field("dwarf", &self.dwarf.is_some())
            .field("status", &self.status)
            .finish()
    }
}

/// What names a module's DWARF.
pub(crate) enum Names {
    /// The lazy namer: only the units looked up are parsed.
    Lazy(Box<LazyDwarf>),
    /// addr2line, for split DWARF and dwz supplementary files.
    Full(Box<addr2line::Context<Reader>>),
}

/// What was learned from the main file that guides the search for debug information.
#[derive(Default)]
struct Loading {
    raw_symbols: Vec<RawSymbol>,
    functions: LazyRanges,
    dwarf: Option<Names>,
    debug_info: DebugInfo,
    problem: Option<ModuleProblem>,
    /// Build id used to find a separate debug file (the recorded one, else the file's own).
    build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink` of a trusted main file: file name and CRC.
    debuglink: Option<(PathBuf, u32)>,
    /// Where unit indexes are kept between runs.
    cache: Option<CacheDir>,
}

impl Loading {
    /// Where this module's unit index may be kept: the cache, keyed by the build id.
    fn index_cache(&self) -> Option<(&CacheDir, &[u8])> {
        Some((self.cache.as_ref()?, self.build_id.as_deref()?))
    }

    fn note(&mut self, problem: ModuleProblem) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
    }
}

impl ElfModule {
    /// Loads the ELF file at `path`. `expected` is the build id recorded for it, if any; the file
    /// is only trusted when its own build id matches. `roots` are debug directories
    /// (`/usr/lib/debug` by default) searched for `.build-id/xx/rest.debug` and debuglink files.
    /// With `cache`, the DWARF's unit index is read from there when it was kept for this very
    /// file, and kept there when it had to be built.
    pub(crate) fn load(
        path: &str,
        expected: Option<&[u8]>,
        roots: &[PathBuf],
        cache: Option<&CacheDir>,
    ) -> ElfModule {
        let mut st = Loading {
            build_id: expected.filter(|id| !id.is_empty()).map(<[u8]>::to_vec),
            cache: cache.cloned(),
            ..Loading::default()
        };
        // A mapping whose file was replaced shows as `PATH (deleted)`. The file now at PATH is
        // only worth reading when the recorded build id can tell whether it is the same build.
        let path = match path.strip_suffix(" (deleted)") {
            Some(stripped) if st.build_id.is_some() && !Path::new(path).exists() => stripped,
            _ => path,
        };
        match open(Path::new(path)) {
            Ok(base) => read_main(&base, path, expected, roots, &mut st),
            Err(problem) => st.note(problem),
        }
        if st.dwarf.is_none() {
            let dirs = debuglink_dirs(Path::new(path), roots);
            find_separate(&mut st, roots, &dirs);
        }
        ElfModule::finish(st, SplitDwarf::new(Some(Path::new(path))))
    }

    /// Loads an ELF image held in memory (the vDSO); `name` is used in messages.
    pub(crate) fn from_memory(bytes: Vec<u8>, name: &str, roots: &[PathBuf]) -> ElfModule {
        let mut st = Loading::default();
        let base = Base::Heap(Arc::from(bytes));
        read_main(&base, name, None, roots, &mut st);
        if st.dwarf.is_none() {
            // A debug copy of the image can only be found by build id.
            st.debuglink = None;
            find_separate(&mut st, roots, &[]);
        }
        ElfModule::finish(st, SplitDwarf::new(None))
    }

    fn finish(st: Loading, split: SplitDwarf) -> ElfModule {
        let symbols = SymbolTable::new(st.raw_symbols);
        ElfModule {
            status: ModuleStatus {
                debug_info: st.debug_info,
                symbol_count: symbols.len(),
                problem: st.problem,
            },
            symbols,
            functions: st.functions,
            dwarf: st.dwarf,
            split,
            names: HashMap::new(),
        }
    }

    pub(crate) fn status(&self) -> &ModuleStatus {
        &self.status
    }

    /// Names one lookup address (an SVMA).
    pub(crate) fn locate(&mut self, addr: u64) -> Location {
        // A DWARF error for one address leaves that address to the symbol table.
        let mut frames =
            dwarf_frames(&mut self.dwarf, &self.split, addr, &mut self.names).unwrap_or_default();
        let needs_symbol = frames.last().is_none_or(|f| f.function.is_none());
        let symbol = if needs_symbol {
            match self.symbols.lookup(addr) {
                Some(raw) => Some(demangled(&mut self.names, raw)),
                None => self
                    .functions
                    .get()
                    .start_of(addr)
                    .map(FunctionRanges::name),
            }
        } else {
            None
        };
        match frames.last_mut() {
            None => {
                if let Some(name) = symbol {
                    frames.push(SymFrame {
                        function: Some(name),
                        file: None,
                        line: None,
                        inlined: false,
                    });
                }
            }
            Some(outer) if outer.function.is_none() => outer.function = symbol,
            Some(_) => {}
        }
        Location { frames }
    }
}

impl ElfModule {
    /// See [`Symbolizer::release_pages`](crate::Symbolizer::release_pages).
    pub(crate) fn release_pages(&mut self) {
        if let Some(Names::Lazy(lazy)) = &mut self.dwarf {
            lazy.release_pages();
        }
    }

    /// The answers for the whole function holding `addr`, in pieces of one answer each:
    /// (start, end, location), ascending, together covering that function's range. Empty when
    /// the module's names do not come that way (see `LazyDwarf::pieces`): then only `addr`'s
    /// own answer is known.
    pub(crate) fn pieces(&mut self, addr: u64) -> Vec<(u64, u64, Location)> {
        let Some(Names::Lazy(lazy)) = &mut self.dwarf else {
            return Vec::new();
        };
        let (hi, points) = match lazy.pieces(addr) {
            Ok(Some((_, hi, points))) => (hi, points),
            // No DWARF function here (assembly, a system call stub): the symbol that names
            // the address bounds the pieces, and the line table and symbols divide it.
            Ok(None) => {
                let Some((lo, hi)) = self.symbols.range_of(addr) else {
                    return Vec::new();
                };
                let Ok(Some(mut points)) = lazy.pieces_in(lo, hi) else {
                    return Vec::new();
                };
                points.extend(self.symbols.change_points(lo, hi));
                points.extend(self.functions.get().change_points(lo, hi));
                points.sort_unstable();
                points.dedup();
                if points.len() > crate::dwarf::MAX_PIECES {
                    return Vec::new();
                }
                (hi, points)
            }
            Err(_) => return Vec::new(),
        };
        let mut pieces: Vec<(u64, u64, Location)> = Vec::with_capacity(points.len());
        for (i, &start) in points.iter().enumerate() {
            let end = points.get(i + 1).copied().unwrap_or(hi);
            let location = self.locate(start);
            // A frame without a function would have been named from the symbol table, which
            // changes at other addresses.
            if location.frames.last().is_none_or(|f| f.function.is_none()) {
                return Vec::new();
            }
            match pieces.last_mut() {
                Some(last) if last.2 == location => last.1 = end,
                _ => pieces.push((start, end, location)),
            }
        }
        pieces
    }
}

/// The demangled form of `raw`, through the module's cache.
fn demangled(cache: &mut HashMap<Box<str>, Box<str>>, raw: &str) -> String {
    if let Some(name) = cache.get(raw) {
        return name.to_string();
    }
    let name = match raw.strip_suffix("@plt") {
        Some(target) => format!("{}@plt", demangle(target)),
        None => demangle(raw),
    };
    cache.insert(raw.into(), name.as_str().into());
    name
}

/// DWARF frames for `addr`, innermost first; empty when no unit covers it.
fn dwarf_frames(
    names: &mut Option<Names>,
    split: &SplitDwarf,
    addr: u64,
    cache: &mut HashMap<Box<str>, Box<str>>,
) -> Result<Vec<SymFrame>, gimli::Error> {
    if addr == u64::MAX {
        // addr2line computes `probe + 1`; no code lives at the last address anyway.
        return Ok(Vec::new());
    }
    let mut frames = Vec::new();
    if let Some(Names::Lazy(lazy)) = names {
        match lazy.find_frames(addr)? {
            Lookup::Frames(raw) => {
                for f in raw {
                    let name = f.name.as_ref().and_then(|n| n.to_string_lossy().ok());
                    if !push_frame(&mut frames, cache, name.as_deref(), f.file, f.line) {
                        break;
                    }
                }
            }
            Lookup::Split => {
                // GNU split DWARF, seen only now: addr2line names this module from here on.
                if let Some(Names::Lazy(lazy)) = names.take() {
                    *names = full_context(lazy.into_dwarf()).ok().map(Names::Full);
                }
            }
        }
    }
    if let Some(Names::Full(ctx)) = names {
        for f in addr2line_frames(ctx, split, addr)? {
            if !push_frame(&mut frames, cache, f.name.as_deref(), f.file, f.line) {
                break;
            }
        }
    }
    if let Some(last) = frames.last_mut() {
        last.inlined = false;
    }
    Ok(frames)
}

/// One frame as addr2line gives it: raw name, file, line (`None` for line 0).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Addr2lineFrame {
    pub(crate) name: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

/// `addr2line::Context::find_frames` at `addr`, loading split units as asked.
pub(crate) fn addr2line_frames(
    ctx: &addr2line::Context<Reader>,
    split: &SplitDwarf,
    addr: u64,
) -> Result<Vec<Addr2lineFrame>, gimli::Error> {
    let mut lookup = ctx.find_frames(addr);
    let mut iter = loop {
        match lookup {
            addr2line::LookupResult::Output(result) => break result?,
            // addr2line keeps what it is given (even nothing) for the unit: one load per unit.
            addr2line::LookupResult::Load { load, continuation } => {
                lookup = continuation.resume(split.load(&load));
            }
        }
    };
    let mut frames = Vec::new();
    while let Some(frame) = iter.next()? {
        let name = frame.function.as_ref().and_then(|f| f.raw_name().ok());
        let (file, line) = match frame.location {
            Some(loc) => (loc.file.map(str::to_owned), loc.line),
            None => (None, None),
        };
        frames.push(Addr2lineFrame {
            name: name.map(|n| n.into_owned()),
            file,
            line,
        });
        if frames.len() >= MAX_INLINE_DEPTH {
            break;
        }
    }
    Ok(frames)
}

/// Adds one DWARF frame (raw name, file, line) to `frames` unless it names nothing; `false`
/// when the inline depth limit is reached.
fn push_frame(
    frames: &mut Vec<SymFrame>,
    cache: &mut HashMap<Box<str>, Box<str>>,
    raw_name: Option<&str>,
    file: Option<String>,
    line: Option<u32>,
) -> bool {
    // glibc's internal aliases (`__GI_memcpy` for `memcpy`) are what its DWARF names.
    let function =
        raw_name.map(|name| demangled(cache, name.strip_prefix("__GI_").unwrap_or(name)));
    // Line 0 means "no source line"; its file is then meaningless too.
    let (file, line) = match line.filter(|&l| l != 0) {
        Some(line) => (file, Some(line)),
        None => (None, None),
    };
    if function.is_some() || file.is_some() {
        frames.push(SymFrame {
            function,
            file,
            line,
            inlined: true,
        });
    }
    frames.len() < MAX_INLINE_DEPTH
}

/// Opens and maps a file read-only: only a regular file (a FIFO is refused without blocking) of at
/// most [`ELF_LIMIT`] bytes, checked on the open descriptor before mapping.
pub(crate) fn open(path: &Path) -> Result<Base, ModuleProblem> {
    let display = || path.display().to_string();
    let unreadable = |e: std::io::Error| ModuleProblem::from_io(path, &e);
    let (file, meta) = open_regular(path, &Options::new("an ELF file", ELF_LIMIT))
        .map_err(|e| ModuleProblem::from_read(&e))?;
    if meta.len() == 0 {
        return Err(ModuleProblem::Malformed {
            path: display(),
            message: "empty file".into(),
        });
    }
    // SAFETY: the mapping is read-only and private to this process. Like every debugger and
    // profiler, we accept that another process truncating the file while it is mapped would fault;
    // binaries are replaced by rename, not rewritten in place, in practice.
    let map = unsafe { Mmap::map(&file) }.map_err(unreadable)?;
    Ok(Base::Map(Arc::new(map)))
}

pub(crate) fn parse<'a>(base: &'a Base, path: &str) -> Result<object::File<'a>, ModuleProblem> {
    let malformed = |message: String| ModuleProblem::Malformed {
        path: path.to_owned(),
        message,
    };
    let file = object::File::parse(base.bytes()).map_err(|e| malformed(e.to_string()))?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(malformed(format!("{:?} object, not ELF", file.format())));
    }
    Ok(file)
}

/// Reads symbols, build id, debuglink and (if embedded) DWARF from the module's own file.
fn read_main(
    base: &Base,
    path: &str,
    expected: Option<&[u8]>,
    roots: &[PathBuf],
    st: &mut Loading,
) {
    let file = match parse(base, path) {
        Ok(f) => f,
        Err(p) => return st.note(p),
    };
    let found = file.build_id().ok().flatten();
    if let Some(expected) = expected.filter(|id| !id.is_empty()) {
        if !found.is_some_and(|f| same_build_id(expected, f)) {
            return st.note(ModuleProblem::BuildIdMismatch {
                path: path.to_owned(),
                expected: hex(expected),
                found: found.map_or_else(|| "none".to_owned(), hex),
            });
        }
    }
    if st.build_id.is_none() {
        st.build_id = found.map(<[u8]>::to_vec);
    }
    collect_symbols(&file, &mut st.raw_symbols);
    plt_symbols(&file, &mut st.raw_symbols);
    st.functions = LazyRanges::new(base.clone());
    if has_dwarf(&file) {
        match load_dwarf(&file, base, Path::new(path), roots, st.index_cache()) {
            Ok(ctx) => {
                st.dwarf = Some(ctx);
                st.debug_info = DebugInfo::Embedded;
            }
            Err(message) => st.note(ModuleProblem::BadDwarf {
                path: path.to_owned(),
                message,
            }),
        }
    }
    if let Ok(Some((name, crc))) = file.gnu_debuglink() {
        if let Some(name) = os_path(name) {
            // Only a bare file name is meaningful; anything with a directory is not followed.
            if name.components().count() == 1 {
                st.debuglink = Some((name, crc));
            }
        }
    }
}

/// Build ids are compared on the shorter length when the longer one is only zero-padded (perf
/// pads build ids to 20 bytes).
fn same_build_id(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    n > 0 && a[..n] == b[..n] && a[n..].iter().chain(&b[n..]).all(|&x| x == 0)
}

fn os_path(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    (!bytes.is_empty() && !bytes.contains(&0))
        .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// Directories searched for a debuglink file, in order: the module's directory, its `.debug/`
/// subdirectory, and `<root>/<module directory>` for each debug root.
fn debuglink_dirs(path: &Path, roots: &[PathBuf]) -> Vec<PathBuf> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(dir) = real.parent() else {
        return Vec::new();
    };
    let mut dirs = vec![dir.to_path_buf(), dir.join(".debug")];
    let relative = dir.strip_prefix("/").unwrap_or(dir);
    dirs.extend(roots.iter().map(|r| r.join(relative)));
    dirs
}

fn build_id_path(root: &Path, id: &[u8], suffix: &str) -> Option<PathBuf> {
    let (first, rest) = id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    Some(
        root.join(".build-id")
            .join(hex(&[*first]))
            .join(format!("{}{suffix}", hex(rest))),
    )
}

/// Looks for a separate debug file: by build id under each root, then by debuglink.
fn find_separate(st: &mut Loading, roots: &[PathBuf], dirs: &[PathBuf]) {
    let mut candidates: Vec<(PathBuf, Option<u32>)> = Vec::new();
    if let Some(id) = &st.build_id {
        for root in roots {
            if let Some(p) = build_id_path(root, id, ".debug") {
                candidates.push((p, None));
            }
        }
    }
    if let Some((name, crc)) = &st.debuglink {
        for dir in dirs {
            candidates.push((dir.join(name), Some(*crc)));
        }
    }
    for (path, crc) in candidates {
        let Ok(base) = open(&path) else {
            continue;
        };
        let shown = path.display().to_string();
        let Ok(file) = parse(&base, &shown) else {
            continue;
        };
        // The debug file must be for this build: by build id when both sides have one, else by
        // the debuglink CRC of the whole file.
        let verified = match (&st.build_id, file.build_id().ok().flatten()) {
            (Some(want), Some(have)) => same_build_id(want, have),
            _ => crc.is_some_and(|crc| crc32fast::hash(base.bytes()) == crc),
        };
        if !verified || !has_dwarf(&file) {
            continue;
        }
        match load_dwarf(&file, &base, &path, roots, st.index_cache()) {
            Ok(ctx) => {
                collect_symbols(&file, &mut st.raw_symbols);
                st.dwarf = Some(ctx);
                st.debug_info = DebugInfo::Separate(path);
                return;
            }
            Err(message) => st.note(ModuleProblem::BadDwarf {
                path: shown,
                message,
            }),
        }
    }
}

fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info")
        .is_some_and(|s| s.file_range().is_some() && s.size() > 0)
}

/// The bytes of section `name` (decompressed if needed); empty when absent or without file data.
pub(crate) fn section_bytes(
    file: &object::File<'_>,
    base: &Base,
    name: &str,
) -> Result<Bytes, String> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(Bytes::empty());
    };
    if section.file_range().is_none() {
        return Ok(Bytes::empty());
    }
    let range = section
        .compressed_file_range()
        .map_err(|e| format!("{name}: {e}"))?;
    if range.format == object::CompressionFormat::None {
        return Bytes::range(base, range.offset, range.uncompressed_size)
            .ok_or_else(|| format!("{name}: section extends past the end of the file"));
    }
    let limit = range
        .compressed_size
        .saturating_mul(MAX_COMPRESSION_RATIO)
        .saturating_add(4096);
    if range.uncompressed_size > limit {
        return Err(format!(
            "{name}: claims {} bytes uncompressed from {}",
            range.uncompressed_size, range.compressed_size
        ));
    }
    let data = section
        .uncompressed_data()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Bytes {
        len: data.len(),
        base: Base::Heap(Arc::from(&*data)),
        start: 0,
    })
}

pub(crate) fn endian(file: &object::File<'_>) -> gimli::RunTimeEndian {
    if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    }
}

pub(crate) fn dwarf_sections(
    file: &object::File<'_>,
    base: &Base,
) -> Result<gimli::Dwarf<Reader>, String> {
    let endian = endian(file);
    gimli::Dwarf::load(|id| {
        if !used_for_names(id) {
            return Ok(Reader::new(Bytes::empty(), endian));
        }
        section_bytes(file, base, id.name()).map(|b| Reader::new(b, endian))
    })
}

/// [`dwarf_sections`], with the compressed ones read from `cache` when they were kept there
/// for this very file (with the mapping they are read from), and kept there when they were not
/// (see [`sections`]).
fn kept_dwarf_sections(
    file: &object::File<'_>,
    base: &Base,
    path: &Path,
    cache: &CacheDir,
    build_id: &[u8],
) -> Result<(gimli::Dwarf<Reader>, Option<Base>), String> {
    let is_compressed = |s: &object::Section<'_, '_>| {
        s.compressed_file_range()
            .is_ok_and(|r| r.format != object::CompressionFormat::None)
    };
    let compressed = |name: &str| {
        file.section_by_name(name)
            .is_some_and(|s| is_compressed(&s))
    };
    let any_compressed = file
        .sections()
        .any(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")) && is_compressed(&s));
    if !any_compressed {
        return Ok((dwarf_sections(file, base)?, None));
    }
    let endian = endian(file);
    if let Some(kept) = sections::read(cache, build_id, path) {
        let dwarf = gimli::Dwarf::load(|id| {
            if !used_for_names(id) {
                return Ok(Reader::new(Bytes::empty(), endian));
            }
            match kept.get(id.name()).filter(|_| compressed(id.name())) {
                Some(bytes) => Ok(Reader::new(bytes.clone(), endian)),
                None => section_bytes(file, base, id.name()).map(|b| Reader::new(b, endian)),
            }
        })?;
        return Ok((dwarf, kept.values().next().map(|b| b.base.clone())));
    }
    let mut inflated = Vec::new();
    let dwarf = gimli::Dwarf::load(|id| {
        if !used_for_names(id) {
            return Ok(Reader::new(Bytes::empty(), endian));
        }
        let bytes = section_bytes(file, base, id.name())?;
        if compressed(id.name()) {
            inflated.push((id.name(), bytes.clone()));
        }
        Ok::<_, String>(Reader::new(bytes, endian))
    })?;
    if !inflated.is_empty() {
        let listed: Vec<(&str, &[u8])> = inflated.iter().map(|(n, b)| (*n, &b[..])).collect();
        // Best effort: without it the next run inflates the sections again.
        let _ = sections::write(cache, build_id, path, &listed);
    }
    Ok((dwarf, None))
}

/// Whether naming addresses (addr2line: units, functions, inline frames, lines) reads section
/// `id`. Variable locations, macros and type units are not read, so they are not loaded: a
/// compressed debug file would otherwise decompress them into memory (libc's location lists
/// are larger than its line tables; issue 13).
fn used_for_names(id: gimli::SectionId) -> bool {
    !matches!(
        id,
        gimli::SectionId::DebugLoc
            | gimli::SectionId::DebugLocLists
            | gimli::SectionId::DebugMacinfo
            | gimli::SectionId::DebugMacro
            | gimli::SectionId::DebugTypes
    )
}

/// The `.dwo` sections of a split DWARF file or package.
pub(crate) fn dwo_sections(
    file: &object::File<'_>,
    base: &Base,
) -> Result<gimli::Dwarf<Reader>, String> {
    let endian = endian(file);
    gimli::Dwarf::load(|id| match id.dwo_name() {
        Some(name) if used_for_names(id) => {
            section_bytes(file, base, name).map(|b| Reader::new(b, endian))
        }
        _ => Ok(Reader::new(Bytes::empty(), endian)),
    })
}

/// Loads the DWARF of `file` (found at `path`): into the lazy namer, or, for a module with split
/// DWARF units or a dwz supplementary file (`.gnu_debugaltlink`, loaded when it can be found
/// and matches), into an addr2line context.
fn load_dwarf(
    file: &object::File<'_>,
    base: &Base,
    path: &Path,
    roots: &[PathBuf],
    cache: Option<(&CacheDir, &[u8])>,
) -> Result<Names, String> {
    let (mut dwarf, kept) = match cache {
        Some((cache, build_id)) => kept_dwarf_sections(file, base, path, cache, build_id)?,
        None => (dwarf_sections(file, base)?, None),
    };
    // The pages naming reads are given back from both files (dwarf.rs, `Backing`).
    let bases: Vec<Base> = std::iter::once(base.clone()).chain(kept).collect();
    let altlink = matches!(file.gnu_debugaltlink(), Ok(Some(_)));
    if altlink {
        if let Some(sup) = load_altlink(file, path, roots) {
            dwarf.set_sup(sup);
        }
    } else if let Some(saved) = cache.and_then(|(cache, id)| units::read(cache, id, path)) {
        // Kept only for a lazily named file (no split units) that is still the same file.
        match LazyDwarf::with_index(dwarf, bases.clone(), &saved) {
            Ok(lazy) => return Ok(Names::Lazy(Box::new(lazy))),
            Err(back) => dwarf = *back,
        }
    }
    if altlink || crate::dwarf::has_split_units(&dwarf, &bases) {
        return full_context(dwarf).map(Names::Full);
    }
    let lazy = LazyDwarf::new(dwarf, bases).map_err(|e| e.to_string())?;
    if let Some((cache, build_id)) = cache {
        // Best effort: without it the next run builds the index again.
        let _ = units::write(cache, build_id, path, &lazy.index_bytes());
    }
    Ok(Names::Lazy(Box::new(lazy)))
}

/// An addr2line context over all of `dwarf`.
pub(crate) fn full_context(
    mut dwarf: gimli::Dwarf<Reader>,
) -> Result<Box<addr2line::Context<Reader>>, String> {
    // Units that share an abbreviation table (common in dwz-processed and in Rust debug info)
    // share one parsed copy: addr2line parses every unit's table when it opens a module.
    dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::All);
    addr2line::Context::from_dwarf(dwarf)
        .map(Box::new)
        .map_err(|e| e.to_string())
}

/// The supplementary DWARF named by `.gnu_debugaltlink`, verified by its build id.
fn load_altlink(
    file: &object::File<'_>,
    debug_path: &Path,
    roots: &[PathBuf],
) -> Option<gimli::Dwarf<Reader>> {
    let (name, id) = file.gnu_debugaltlink().ok().flatten()?;
    let mut candidates = Vec::new();
    if let Some(name) = os_path(name) {
        if name.is_absolute() {
            candidates.push(name);
        } else if let Some(dir) = debug_path.parent() {
            candidates.push(dir.join(name));
        }
    }
    for root in roots {
        candidates.extend(build_id_path(root, id, ".debug"));
    }
    candidates.into_iter().find_map(|path| {
        let base = open(&path).ok()?;
        let sup = parse(&base, &path.display().to_string()).ok()?;
        let have = sup.build_id().ok().flatten()?;
        if !same_build_id(id, have) {
            return None;
        }
        dwarf_sections(&sup, &base).ok()
    })
}

/// Adds the code symbols of `.symtab` and `.dynsym`.
fn collect_symbols(file: &object::File<'_>, out: &mut Vec<RawSymbol>) {
    let section_end = |index: Option<SectionIndex>| -> Option<(u64, bool)> {
        let section = file.section_by_index(index?).ok()?;
        let exec = match section.flags() {
            SectionFlags::Elf { sh_flags, .. } => sh_flags.contains(object::elf::SHF_EXECINSTR),
            _ => false,
        };
        Some((section.address().saturating_add(section.size()), exec))
    };
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
        let Ok(name) = symbol.name_bytes() else {
            continue;
        };
        if name.is_empty() || symbol.is_undefined() {
            continue;
        }
        let section = section_end(symbol.section_index());
        let code = match symbol.kind() {
            SymbolKind::Text => true,
            // Untyped labels in executable sections: hand-written assembly, such as `_start`
            // and the dynamic loader's `_dl_start_user` (local). Assembler-internal labels are
            // not names; labels inside a sized function are dropped by the table.
            SymbolKind::Unknown => {
                section.is_some_and(|(_, exec)| exec)
                    && !name.starts_with(b".L")
                    && !name.starts_with(b"$")
            }
            _ => false,
        };
        if !code {
            continue;
        }
        let name = String::from_utf8_lossy(name);
        let binding = if symbol.is_weak() {
            1
        } else if symbol.is_global() {
            0
        } else {
            2
        };
        out.push(RawSymbol {
            addr: symbol.address(),
            size: symbol.size(),
            limit: section.map_or(u64::MAX, |(end, _)| end),
            rank: Rank::new(symbol.size() > 0, binding, &name),
            name: name.into(),
        });
    }
}

/// Names x86-64 PLT stubs `target@plt`, by decoding each entry's `jmp *slot(%rip)` and finding
/// the dynamic relocation (`JUMP_SLOT` or `GLOB_DAT`) that fills that GOT slot. Covers `.plt`
/// (lazy binding), `.plt.sec` (IBT) and `.plt.got` entries, with or without `endbr64`.
fn plt_symbols(file: &object::File<'_>, out: &mut Vec<RawSymbol>) {
    if file.architecture() != object::Architecture::X86_64 {
        return;
    }
    let (Some(relocations), Some(dynsym)) =
        (file.dynamic_relocations(), file.dynamic_symbol_table())
    else {
        return;
    };
    let mut slots: HashMap<u64, String> = HashMap::new();
    for (slot, reloc) in relocations {
        let object::RelocationFlags::Elf { r_type } = reloc.flags() else {
            continue;
        };
        if r_type != object::elf::R_X86_64_JUMP_SLOT && r_type != object::elf::R_X86_64_GLOB_DAT {
            continue;
        }
        let object::RelocationTarget::Symbol(index) = reloc.target() else {
            continue;
        };
        if let Some(name) = dynsym
            .symbol_by_index(index)
            .ok()
            .and_then(|s| s.name().ok())
        {
            if !name.is_empty() {
                slots.insert(slot, name.to_owned());
            }
        }
    }
    if slots.is_empty() {
        return;
    }
    for name in [".plt", ".plt.sec", ".plt.got"] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else {
            continue;
        };
        let entry = if name == ".plt.got" && !data.starts_with(&ENDBR64) {
            8
        } else {
            16
        };
        for (i, bytes) in data.chunks(entry).enumerate() {
            let Some(start) = section.address().checked_add((i * entry) as u64) else {
                break;
            };
            let Some(slot) = plt_jump_slot(bytes, start) else {
                continue;
            };
            if let Some(target) = slots.get(&slot) {
                let name = format!("{target}@plt");
                out.push(RawSymbol {
                    addr: start,
                    size: entry as u64,
                    limit: u64::MAX,
                    rank: Rank::new(true, 2, &name),
                    name: name.into(),
                });
            }
        }
    }
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// The GOT slot read by the `jmp *disp32(%rip)` at the start of a PLT entry at `addr`
/// (after an optional `endbr64` and `bnd` prefix).
fn plt_jump_slot(entry: &[u8], addr: u64) -> Option<u64> {
    let mut at = 0usize;
    if entry.starts_with(&ENDBR64) {
        at += ENDBR64.len();
    }
    if entry.get(at) == Some(&0xf2) {
        at += 1;
    }
    if entry.get(at..at + 2)? != [0xff, 0x25] {
        return None;
    }
    let disp: [u8; 4] = entry.get(at + 2..at + 6)?.try_into().ok()?;
    let next = addr.checked_add(at as u64 + 6)?;
    Some(next.wrapping_add_signed(i64::from(i32::from_le_bytes(disp))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: what naming reads is loaded; variable locations, macros and type units (which
    /// a compressed debug file would decompress into memory for nothing) are not.
    #[test]
    fn only_the_sections_naming_reads_are_loaded() {
        use gimli::SectionId::*;
        for id in [
            DebugAbbrev,
            DebugAddr,
            DebugAranges,
            DebugInfo,
            DebugLine,
            DebugLineStr,
            DebugRanges,
            DebugRngLists,
            DebugStr,
            DebugStrOffsets,
        ] {
            assert!(used_for_names(id), "{id:?}");
        }
        for id in [
            DebugLoc,
            DebugLocLists,
            DebugMacinfo,
            DebugMacro,
            DebugTypes,
        ] {
            assert!(!used_for_names(id), "{id:?}");
        }
    }

    #[test]
    fn plt_entries_decode() {
        // jmp *0x2fca(%rip) at 0x1030: next instruction 0x1036, slot 0x4000.
        let lazy = [
            0xff, 0x25, 0xca, 0x2f, 0, 0, 0x68, 0, 0, 0, 0, 0xe9, 0xe0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(plt_jump_slot(&lazy, 0x1030), Some(0x4000));
        // endbr64; bnd jmp *-0x10(%rip)
        let ibt = [
            0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xf0, 0xff, 0xff, 0xff, 0x90,
        ];
        assert_eq!(plt_jump_slot(&ibt, 0x2000), Some(0x2000 + 11 - 0x10));
        // PLT0 (push; jmp) and truncated entries.
        assert_eq!(plt_jump_slot(&[0xff, 0x35, 0, 0, 0, 0], 0), None);
        assert_eq!(plt_jump_slot(&[0xff, 0x25, 0, 0], 0), None);
        assert_eq!(plt_jump_slot(&[], 0), None);
    }

    #[test]
    fn build_id_comparison() {
        assert!(same_build_id(&[1, 2, 3], &[1, 2, 3]));
        assert!(same_build_id(&[1, 2, 3], &[1, 2, 3, 0, 0]));
        assert!(!same_build_id(&[1, 2, 3], &[1, 2, 4]));
        assert!(!same_build_id(&[1, 2, 3], &[1, 2, 3, 0, 1]));
        assert!(!same_build_id(&[], &[]));
    }

    #[test]
    fn build_id_paths() {
        let p = build_id_path(Path::new("/usr/lib/debug"), &[0xab, 0xcd, 0xef], ".debug");
        assert_eq!(
            p,
            Some(PathBuf::from("/usr/lib/debug/.build-id/ab/cdef.debug"))
        );
        assert_eq!(build_id_path(Path::new("/r"), &[0xab], ".debug"), None);
    }

    #[test]
    fn debuglink_search_order() {
        let dirs = debuglink_dirs(
            Path::new("/nonexistent/dir/prog"),
            &[PathBuf::from("/usr/lib/debug")],
        );
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/nonexistent/dir"),
                PathBuf::from("/nonexistent/dir/.debug"),
                PathBuf::from("/usr/lib/debug/nonexistent/dir"),
            ]
        );
    }

    #[test]
    fn bytes_ranges_are_checked() {
        let base = Base::Heap(Arc::from(&[1u8, 2, 3, 4][..]));
        assert_eq!(&*Bytes::range(&base, 1, 2).unwrap(), &[2, 3]);
        assert!(Bytes::range(&base, 3, 2).is_none());
        assert!(Bytes::range(&base, u64::MAX, 2).is_none());
        assert!(Bytes::empty().is_empty());
    }

    #[test]
    fn garbage_in_memory_is_not_elf() {
        let mut m = ElfModule::from_memory(vec![0x7f, b'E', b'L', b'F', 2, 1, 1], "[x]", &[]);
        assert!(matches!(
            m.status().problem,
            Some(ModuleProblem::Malformed { .. })
        ));
        assert!(m.locate(0x1000).frames.is_empty());
    }
}
