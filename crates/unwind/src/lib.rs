//! rprof-unwind: process address spaces and user-space stack unwinding for rprof (x86-64 Linux).
//!
//! What it does:
//! - Keeps the address space of every profiled process from MMAP2-like [`Mapping`]s (or from
//!   `/proc/PID/maps` for attached processes), through fork, exec and exit. Only executable
//!   mappings are kept; any mapping unmaps the executable ranges it covers (mmap semantics).
//! - Turns each mapping's file into a module, shared by all processes that map the same file
//!   (same path and build id, or inode). A module's file is read once, lazily, the first time an
//!   address in it is unwound or resolved: PT_LOAD segments, build id, `.eh_frame`,
//!   `.eh_frame_hdr`, `.debug_frame`, `.text` and `.got` ranges. The vDSO is read from this
//!   process (same kernel, same image). Anonymous executable memory becomes a per-process
//!   [`ModuleKind::Jit`] module when `/tmp/perf-PID.map` exists, else [`ModuleKind::Anonymous`];
//!   in a process with a JIT map, code outside every mapping (made executable by mprotect,
//!   which the kernel does not report) is attributed to the JIT module too.
//!   A deleted or replaced file is read through `/proc/PID/map_files` while its process lives
//!   (checked against the mapping's inode or build id). A file that still cannot be read is a
//!   module all the same, so its addresses stay attributed to it (as file offsets); unwinding
//!   through it uses frame pointers.
//! - Maps every address to the address as stated in the ELF file (SVMA), which is what a
//!   symbolizer looks up, from the mapping's file offset and the file's PT_LOAD segments (PIE,
//!   non-PIE and shared libraries alike).
//! - Unwinds a sample (registers + a copy of the stack from `sp` upward) with DWARF CFI, falling
//!   back to frame pointers where there is no CFI, or with frame pointers only, and says whether
//!   the stack is complete, truncated by the end of the copied stack, or broken ([`Outcome`]).
//!
//! What it leaves to others: reading perf records and copying stacks (rprof-perf and the
//! recorder), naming addresses (rprof-symbols: it gets [`Frame::address`] SVMAs and subtracts 1
//! from return addresses itself), kernel call chains (only [`Unwinder::resolve`] helps there).
//!
//! Why framehop: it is the unwinder samply uses; it only recovers what return addresses need
//! (ip, sp, bp), caches unwind rules per address across samples, handles `.eh_frame_hdr`,
//! indexes `.eh_frame`/`.debug_frame` without one, falls back to frame pointers where there is
//! no CFI, and detects the outermost frame (undefined return address). Writing that again on
//! gimli would buy nothing. What we add on top, on object and gimli: reading ELF files and the
//! vDSO, address-space bookkeeping and SVMA computation; checking `.eh_frame_hdr` with gimli
//! before handing it over (framehop trusts its search table blindly: a header without a usable
//! table would disable CFI for the whole module, a bad pointer in it overflows in gimli);
//! using `.debug_frame` where `.eh_frame` only covers the C runtime (framehop takes one CFI
//! section per module: we measure both with gimli and give framehop one module per range);
//! stepping over signal frames (framehop cannot evaluate the DWARF expressions of glibc's
//! `__restore_rt`: we find signal trampolines by their CIE's `S` augmentation and read the
//! interrupted registers from the kernel's `ucontext`); deciding truncated vs. failed from the
//! stack reads that failed; loop and depth limits; a frame-pointer-only mode; and a guard
//! around framehop for malformed CFI.

#![warn(missing_docs)]

// framehop's x86-64 unwinder and the kernel's x86-64 signal frame layout are hardcoded here.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "rprof-unwind supports x86-64 only: it unwinds with framehop's x86-64 unwinder and reads \
     x86-64 signal frames"
);

mod maps;
mod module;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder as _};

pub use maps::{parse_proc_maps, Mapping};
pub use module::{LoadError, ModuleIndex, ModuleInfo, ModuleKind};

use maps::{classify, NameKind, DELETED_SUFFIX};
use module::{Bytes, ElfData};

/// Unwinding stops with [`Outcome::Failed`] after this many frames (a loop or garbage).
pub const MAX_FRAMES: usize = 4096;

/// A stack read that fails at most this far above the end of the copied stack counts as "the
/// copy was too short" ([`Outcome::Truncated`]); farther away it is a bad pointer. No single
/// frame in practice is larger.
pub const TRUNCATION_WINDOW: u64 = 16 << 20;

/// User-space addresses are below this (x86-64 with 5-level paging: 2^56).
const USER_SPACE_END: u64 = 1 << 56;

/// One frame of an unwound stack.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The module the address is in, if any mapping covers it.
    pub module: Option<ModuleIndex>,
    /// The address as stated in the module's ELF file (SVMA) for ELF and vDSO modules (a file
    /// offset if the file could not be read); the process address for JIT, anonymous and
    /// unknown memory. For return addresses this is the return address itself, not minus 1.
    pub address: u64,
    /// The address in the process (AVMA).
    pub avma: u64,
}

/// The registers unwinding needs.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// Instruction pointer (rip).
    pub ip: u64,
    /// Stack pointer (rsp); the copied stack starts here.
    pub sp: u64,
    /// Frame pointer (rbp).
    pub bp: u64,
}

/// How to unwind.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// DWARF CFI, with frame pointers where a function has no CFI.
    #[default]
    Dwarf,
    /// Frame pointers only.
    FramePointer,
}

/// How unwinding ended. An empty stack copy never gives `Truncated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The outermost frame was reached (undefined or zero return address, zero frame pointer).
    Complete,
    /// Unwinding needed stack bytes beyond the end of the copied stack: the frames found so far
    /// are right, but the stack goes on.
    Truncated,
    /// Unwinding could not go on for another reason (the message says which).
    Failed(String),
}

/// Everything known about one loaded-or-not module.
struct Slot {
    /// Paths to read the file from, in order of preference.
    candidates: Vec<PathBuf>,
    /// Inode the mapping reported (0: unknown).
    inode: u64,
    /// Build id the mapping reported.
    build_id: Option<Vec<u8>>,
    /// `None` until the first use; then the file's data or why it could not be read.
    loaded: Option<Result<Arc<ElfData>, LoadError>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum ModuleKey {
    File {
        path: String,
        build_id: Option<Vec<u8>>,
        inode: u64,
    },
    Vdso,
    Jit {
        pid: u32,
    },
    Anonymous {
        pid: u32,
        name: String,
    },
}

/// All modules ever seen, never shrinking.
#[derive(Default)]
struct Modules {
    infos: Vec<ModuleInfo>,
    slots: Vec<Slot>,
    by_key: HashMap<ModuleKey, ModuleIndex>,
    /// framehop module additions and removals so far (see [`CACHE_RESET`]).
    framehop_changes: u64,
}

/// framehop stamps cached unwind rules with a global 16-bit "modules generation" that every
/// module addition or removal advances; after 65536 changes an old rule could be taken for a
/// current one. The rule cache is dropped every this many changes, long before that.
const CACHE_RESET: u64 = 16384;

impl Modules {
    fn intern(&mut self, key: ModuleKey, make: impl FnOnce() -> (ModuleInfo, Slot)) -> ModuleIndex {
        if let Some(&index) = self.by_key.get(&key) {
            return index;
        }
        let index = ModuleIndex(u32::try_from(self.infos.len()).unwrap_or(u32::MAX));
        let (info, slot) = make();
        self.infos.push(info);
        self.slots.push(slot);
        self.by_key.insert(key, index);
        index
    }

    /// The module for an executable mapping of process `pid`.
    fn for_mapping(&mut self, pid: u32, m: &Mapping) -> ModuleIndex {
        match classify(&m.path) {
            NameKind::Vdso => self.intern(ModuleKey::Vdso, || {
                (
                    ModuleInfo {
                        path: m.path.clone(),
                        build_id: m.build_id.clone(),
                        kind: ModuleKind::Vdso,
                        pid_for_jit: None,
                    },
                    Slot {
                        candidates: Vec::new(),
                        inode: 0,
                        build_id: None,
                        loaded: None,
                    },
                )
            }),
            NameKind::Anonymous => self.anonymous(pid, &m.path),
            NameKind::File => {
                let key = ModuleKey::File {
                    path: m.path.clone(),
                    build_id: m.build_id.clone(),
                    inode: if m.build_id.is_some() { 0 } else { m.inode },
                };
                self.intern(key, || {
                    let mut candidates = Vec::new();
                    if !m.path.ends_with(DELETED_SUFFIX) {
                        candidates.push(PathBuf::from(&m.path));
                    }
                    // While the process lives, root can read the mapped file itself, even when
                    // it was deleted or replaced on disk. Only with an inode or build id to
                    // check: by the time it is read, the pid may belong to another process.
                    if m.inode != 0 || m.build_id.is_some() {
                        candidates.push(PathBuf::from(format!(
                            "/proc/{pid}/map_files/{:x}-{:x}",
                            m.start, m.end
                        )));
                    }
                    (
                        ModuleInfo {
                            path: m.path.clone(),
                            build_id: m.build_id.clone(),
                            kind: ModuleKind::Elf,
                            pid_for_jit: None,
                        },
                        Slot {
                            candidates,
                            inode: m.inode,
                            build_id: m.build_id.clone(),
                            loaded: None,
                        },
                    )
                })
            }
        }
    }

    /// The module for anonymous executable memory named `name` in process `pid`.
    fn anonymous(&mut self, pid: u32, name: &str) -> ModuleIndex {
        let no_file = || Slot {
            candidates: Vec::new(),
            inode: 0,
            build_id: None,
            loaded: None,
        };
        let jit_map = jit_map_path(pid);
        if jit_map.exists() {
            return self.intern(ModuleKey::Jit { pid }, || {
                (
                    ModuleInfo {
                        path: jit_map.to_string_lossy().into_owned(),
                        build_id: None,
                        kind: ModuleKind::Jit,
                        pid_for_jit: Some(pid),
                    },
                    no_file(),
                )
            });
        }
        let name = if name.is_empty() { "//anon" } else { name };
        let key = ModuleKey::Anonymous {
            pid,
            name: name.to_string(),
        };
        self.intern(key, || {
            (
                ModuleInfo {
                    path: name.to_string(),
                    build_id: None,
                    kind: ModuleKind::Anonymous,
                    pid_for_jit: None,
                },
                no_file(),
            )
        })
    }

    /// The module's file data if it was read already.
    fn loaded(&self, index: ModuleIndex) -> Option<&ElfData> {
        let slot = self.slots.get(usize::try_from(index.0).ok()?)?;
        slot.loaded.as_ref()?.as_ref().ok().map(|d| &**d)
    }

    /// The module's file data, read on first use; `None` if it has none or cannot be read.
    fn data(&mut self, index: ModuleIndex) -> Option<Arc<ElfData>> {
        let i = usize::try_from(index.0).ok()?;
        let info = self.infos.get_mut(i)?;
        let slot = self.slots.get_mut(i)?;
        if slot.loaded.is_none() {
            let loaded = match info.kind {
                ModuleKind::Vdso => module::load_vdso(),
                ModuleKind::Elf => {
                    let mut first_error = None;
                    let mut found = None;
                    for path in &slot.candidates {
                        match module::load_file(path, slot.inode, slot.build_id.as_deref()) {
                            Ok(data) => {
                                found = Some(data);
                                break;
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    match (found, first_error) {
                        (Some(data), _) => Ok(data),
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(LoadError::Malformed {
                            path: PathBuf::from(&info.path),
                            reason: "no path to read it from".to_string(),
                        }),
                    }
                }
                ModuleKind::Jit | ModuleKind::Anonymous => return None,
            };
            if let Ok(data) = &loaded {
                if info.build_id.is_none() {
                    info.build_id = data.build_id.clone();
                }
            }
            slot.loaded = Some(loaded.map(Arc::new));
        }
        slot.loaded.as_ref()?.as_ref().ok().cloned()
    }
}

/// Where a JIT writes the names of its code for process `pid`.
fn jit_map_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// One executable mapping of a process.
#[derive(Clone, Debug)]
struct ProcMap {
    start: u64,
    end: u64,
    pgoff: u64,
    module: ModuleIndex,
    kind: ModuleKind,
    /// `base` and `framehop_starts` are up to date.
    prepared: bool,
    /// AVMA of the file's SVMA 0, once known.
    base: Option<u64>,
    /// Start addresses (framehop's key) of the framehop modules added for this mapping.
    framehop_starts: Vec<u64>,
    /// The module has signal trampolines (see `ElfData::signal_trampolines`).
    signal_trampolines: bool,
}

/// The address space of one process.
#[derive(Clone, Default)]
struct Process {
    /// The process id (`None` for the stand-in used for unknown processes).
    pid: Option<u32>,
    /// Executable mappings, sorted by start, not overlapping.
    maps: Vec<ProcMap>,
    /// framehop's view of the same, holding the modules with CFI that were used so far.
    framehop: UnwinderX86_64<Bytes>,
    /// The JIT module that addresses outside every mapping belong to, once the process was
    /// seen to have a `/tmp/perf-PID.map` (JITs often make code executable with mprotect,
    /// which produces no mapping record).
    jit: Option<ModuleIndex>,
    /// Lookups of addresses outside every mapping since the last check for a JIT map, modulo
    /// [`JIT_RECHECK`] (the map is checked when this is 0).
    unmapped_lookups: u32,
}

/// How many lookups of unmapped addresses pass between two checks for a JIT map.
const JIT_RECHECK: u32 = 1024;

impl Process {
    fn find(&self, avma: u64) -> Option<usize> {
        let i = self
            .maps
            .partition_point(|m| m.start <= avma)
            .checked_sub(1)?;
        (avma < self.maps[i].end).then_some(i)
    }

    /// Removes `[start, end)` from the executable mappings, keeping the parts outside it.
    /// Returns how many framehop modules this removed.
    fn unmap(&mut self, start: u64, end: u64) -> u64 {
        let mut removed = 0;
        let lo = self.maps.partition_point(|m| m.end <= start);
        let hi = self.maps.partition_point(|m| m.start < end);
        if lo >= hi {
            return 0;
        }
        let mut keep = Vec::new();
        for m in self.maps.drain(lo..hi) {
            for &module_start in &m.framehop_starts {
                self.framehop.remove_module(module_start);
                removed += 1;
            }
            let piece = ProcMap {
                prepared: false,
                framehop_starts: Vec::new(),
                ..m.clone()
            };
            if m.start < start {
                keep.push(ProcMap {
                    end: start,
                    ..piece.clone()
                });
            }
            if m.end > end {
                keep.push(ProcMap {
                    start: end,
                    pgoff: m.pgoff.wrapping_add(end - m.start),
                    ..piece
                });
            }
        }
        self.maps.splice(lo..lo, keep);
        removed
    }

    /// The JIT module for addresses outside every mapping, if the process has a JIT map.
    fn jit_module(&mut self, modules: &mut Modules) -> Option<ModuleIndex> {
        if self.jit.is_some() {
            return self.jit;
        }
        let pid = self.pid?;
        let check = self.unmapped_lookups == 0;
        self.unmapped_lookups = (self.unmapped_lookups + 1) % JIT_RECHECK;
        if check && jit_map_path(pid).exists() {
            self.jit = Some(modules.anonymous(pid, ""));
        }
        self.jit
    }

    fn insert(&mut self, map: ProcMap) {
        let at = self.maps.partition_point(|m| m.start < map.start);
        self.maps.insert(at, map);
    }

    /// Makes sure mapping `i`'s base address is known and its CFI is known to framehop.
    fn prepare(&mut self, i: usize, modules: &mut Modules) {
        let Some(map) = self.maps.get(i) else { return };
        if map.prepared {
            return;
        }
        let (start, end, pgoff, module, kind) =
            (map.start, map.end, map.pgoff, map.module, map.kind);
        let mut base = None;
        let mut framehop_starts = Vec::new();
        let mut signal_trampolines = false;
        if matches!(kind, ModuleKind::Elf | ModuleKind::Vdso) {
            if let Some(data) = modules.data(module) {
                base = data.base_avma(start, pgoff);
                signal_trampolines = !data.signal_trampolines.is_empty();
                if let Some(b) = base {
                    let name = modules
                        .infos
                        .get(module.0 as usize)
                        .map_or("", |info| info.path.as_str());
                    for fh in data.framehop_modules(name, start..end, b) {
                        framehop_starts.push(fh.avma_range().start);
                        self.framehop.add_module(fh);
                        modules.framehop_changes += 1;
                    }
                }
            }
        }
        if let Some(map) = self.maps.get_mut(i) {
            map.base = base;
            map.framehop_starts = framehop_starts;
            map.signal_trampolines = signal_trampolines;
            map.prepared = true;
        }
    }

    /// The frame for process address `avma`, looked up at `lookup` (`avma - 1` for return
    /// addresses, so that a call at the very end of a mapping stays in it).
    fn frame(&mut self, modules: &mut Modules, avma: u64, lookup: u64) -> Option<Frame> {
        self.frame_and_trampoline(modules, avma, lookup)
            .map(|(f, _)| f)
    }

    /// [`frame`](Self::frame), and whether `lookup` is in a signal trampoline.
    fn frame_and_trampoline(
        &mut self,
        modules: &mut Modules,
        avma: u64,
        lookup: u64,
    ) -> Option<(Frame, bool)> {
        let Some(i) = self.find(lookup) else {
            let jit = self.jit_module(modules)?;
            let frame = Frame {
                module: Some(jit),
                address: avma,
                avma,
            };
            return Some((frame, false));
        };
        self.prepare(i, modules);
        let m = &self.maps[i];
        let address = match m.kind {
            ModuleKind::Jit | ModuleKind::Anonymous => avma,
            ModuleKind::Elf | ModuleKind::Vdso => match m.base {
                Some(base) => avma.wrapping_sub(base),
                None => avma.wrapping_sub(m.start).wrapping_add(m.pgoff),
            },
        };
        let trampoline = match m.base {
            Some(base) if m.signal_trampolines => modules
                .loaded(m.module)
                .is_some_and(|data| data.is_signal_trampoline(lookup.wrapping_sub(base))),
            _ => false,
        };
        let frame = Frame {
            module: Some(m.module),
            address,
            avma,
        };
        Some((frame, trampoline))
    }
}

/// The copied stack: `bytes` are the memory at `sp..sp + bytes.len()`.
struct StackCopy<'a> {
    sp: u64,
    end: u64,
    bytes: &'a [u8],
}

impl<'a> StackCopy<'a> {
    fn new(sp: u64, bytes: &'a [u8]) -> Self {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let end = sp.saturating_add(len);
        let usable = usize::try_from(end - sp).unwrap_or(bytes.len());
        Self {
            sp,
            end,
            bytes: bytes.get(..usable).unwrap_or(bytes),
        }
    }

    fn read(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        let word = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(word.try_into().ok()?))
    }

    /// Whether a failed read at `addr` failed because the copy ends too early. An empty copy
    /// never does: the kernel copies nothing only when it cannot read the stack at all (e.g.
    /// a sample taken in the middle of an execve), which no larger copy would fix.
    fn needs_more(&self, addr: u64) -> bool {
        !self.bytes.is_empty()
            && addr >= self.sp
            && addr.saturating_add(8) > self.end
            && addr < self.end.saturating_add(TRUNCATION_WINDOW)
    }
}

/// Address spaces of the profiled processes and the unwinder working on them.
pub struct Unwinder {
    modules: Modules,
    processes: HashMap<u32, Process>,
    cache: CacheX86_64,
    /// When `modules.framehop_changes` reaches this, the rule cache is dropped.
    cache_reset_at: u64,
    /// Used for processes without known mappings (frame pointers everywhere).
    empty: Process,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    /// An unwinder that knows no process yet.
    pub fn new() -> Self {
        Self {
            modules: Modules::default(),
            processes: HashMap::new(),
            cache: CacheX86_64::new(),
            cache_reset_at: CACHE_RESET,
            empty: Process::default(),
        }
    }

    /// Adds a mapping to process `pid` (creating the process if needed). It replaces whatever
    /// executable mappings it overlaps; a non-executable mapping only does that.
    pub fn add_mapping(&mut self, pid: u32, m: Mapping) {
        if m.end <= m.start {
            return;
        }
        let process = self.processes.entry(pid).or_insert_with(|| Process {
            pid: Some(pid),
            ..Process::default()
        });
        self.modules.framehop_changes += process.unmap(m.start, m.end);
        if !m.executable {
            return;
        }
        let module = self.modules.for_mapping(pid, &m);
        let kind = self
            .modules
            .infos
            .get(module.0 as usize)
            .map_or(ModuleKind::Anonymous, |info| info.kind);
        process.insert(ProcMap {
            start: m.start,
            end: m.end,
            pgoff: m.pgoff,
            module,
            kind,
            prepared: false,
            base: None,
            framehop_starts: Vec::new(),
            signal_trampolines: false,
        });
        if kind == ModuleKind::Elf && m.path.ends_with(DELETED_SUFFIX) {
            // A deleted file can only be read through /proc/PID/map_files while the process
            // lives: read it now rather than on first use.
            if let Some(i) = process.find(m.start) {
                process.prepare(i, &mut self.modules);
            }
        }
    }

    /// Adds every mapping listed in `/proc/PID/maps` (for a process that is already running).
    pub fn load_proc_maps(&mut self, pid: u32) -> std::io::Result<()> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        for m in parse_proc_maps(&text) {
            self.add_mapping(pid, m);
        }
        Ok(())
    }

    /// Process `child_pid` was forked from `parent_pid`: it starts with a copy of the parent's
    /// address space (its anonymous memory becomes its own module).
    pub fn fork(&mut self, parent_pid: u32, child_pid: u32) {
        if parent_pid == child_pid {
            return;
        }
        let Some(parent) = self.processes.get(&parent_pid) else {
            self.processes.remove(&child_pid);
            return;
        };
        let mut child = parent.clone();
        child.pid = Some(child_pid);
        child.jit = None;
        child.unmapped_lookups = 0;
        for m in &mut child.maps {
            if matches!(m.kind, ModuleKind::Jit | ModuleKind::Anonymous) {
                let name = match m.kind {
                    ModuleKind::Anonymous => self
                        .modules
                        .infos
                        .get(m.module.0 as usize)
                        .map(|i| i.path.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                m.module = self.modules.anonymous(child_pid, &name);
                m.kind = self.modules.infos[m.module.0 as usize].kind;
            }
        }
        self.processes.insert(child_pid, child);
    }

    /// Process `pid` called exec: its mappings are gone (the new image's come next).
    pub fn exec(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// Process `pid` exited.
    pub fn exit(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// Unwinds one sample of process `pid`: `stack` holds the bytes copied from `regs.sp`
    /// upward. Appends the frames to `out`, leaf first: `out[0]` is the instruction pointer,
    /// the rest are return addresses (not minus 1). Never panics on any input.
    pub fn unwind(
        &mut self,
        pid: u32,
        regs: Regs,
        stack: &[u8],
        mode: Mode,
        out: &mut Vec<Frame>,
    ) -> Outcome {
        let known = self.processes.contains_key(&pid);
        let process = match self.processes.get_mut(&pid) {
            Some(p) => p,
            None => &mut self.empty,
        };
        if self.modules.framehop_changes >= self.cache_reset_at {
            self.cache = CacheX86_64::new();
            self.cache_reset_at = self.modules.framehop_changes + CACHE_RESET;
        }
        let stack = StackCopy::new(regs.sp, stack);
        let first = out.len();
        let outcome = match mode {
            Mode::Dwarf => unwind_dwarf(
                process,
                known,
                &mut self.modules,
                &mut self.cache,
                regs,
                &stack,
                out,
            ),
            Mode::FramePointer => {
                unwind_frame_pointers(process, known, &mut self.modules, regs, &stack, out)
            }
        };
        // The code at a program's or the dynamic loader's entry point is where a process
        // starts: nothing called it, and it often has no CFI to say so. Unwinding that fails
        // right after a frame there has found the whole stack.
        match (&outcome, out[first..].last()) {
            (
                Outcome::Failed(_),
                Some(&Frame {
                    module: Some(m),
                    address,
                    ..
                }),
            ) if self
                .modules
                .loaded(m)
                .is_some_and(|data| data.is_entry_code(address)) =>
            {
                Outcome::Complete
            }
            _ => outcome,
        }
    }

    /// Whether `pid` has an address space here (it was mapped, forked or loaded from /proc).
    /// A launched command has none until its `exec` maps the new program.
    pub fn knows(&self, pid: u32) -> bool {
        self.processes.contains_key(&pid)
    }

    /// The frame for one process address (e.g. from a kernel frame-pointer call chain).
    pub fn resolve(&mut self, pid: u32, avma: u64) -> Frame {
        self.processes
            .get_mut(&pid)
            .and_then(|p| p.frame(&mut self.modules, avma, avma))
            .unwrap_or(Frame {
                module: None,
                address: avma,
                avma,
            })
    }

    /// Every module seen so far, indexed by [`ModuleIndex`]; it never shrinks.
    pub fn modules(&self) -> &[ModuleInfo] {
        &self.modules.infos
    }

    /// Why a module's file could not be used, if it was tried and failed.
    pub fn load_error(&self, module: ModuleIndex) -> Option<&LoadError> {
        let slot = self.modules.slots.get(usize::try_from(module.0).ok()?)?;
        slot.loaded.as_ref()?.as_ref().err()
    }

    /// Unwind-rule cache statistics: (hits, misses) since the cache was created (it is
    /// recreated after many module changes, see the crate source).
    pub fn cache_stats(&self) -> (u64, u64) {
        let stats = self.cache.stats();
        (stats.hits(), stats.misses())
    }
}

/// The frame for `avma` in `process`, or an unknown-module frame.
fn frame_at(process: &mut Process, modules: &mut Modules, avma: u64, lookup: u64) -> Frame {
    process.frame(modules, avma, lookup).unwrap_or(Frame {
        module: None,
        address: avma,
        avma,
    })
}

fn unwind_dwarf(
    process: &mut Process,
    known: bool,
    modules: &mut Modules,
    cache: &mut CacheX86_64,
    regs: Regs,
    stack: &StackCopy<'_>,
    out: &mut Vec<Frame>,
) -> Outcome {
    let first = out.len();
    let short = Cell::new(false);
    let mut read_stack = |addr: u64| -> Result<u64, ()> {
        stack.read(addr).ok_or_else(|| {
            if stack.needs_more(addr) {
                short.set(true);
            }
        })
    };
    let mut fh_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    let mut address = FrameAddress::from_instruction_pointer(regs.ip);
    loop {
        let lookup = address.address_for_lookup();
        let (frame, trampoline) = process
            .frame_and_trampoline(modules, address.address(), lookup)
            .unwrap_or((
                Frame {
                    module: None,
                    address: address.address(),
                    avma: address.address(),
                },
                false,
            ));
        if known && frame.module.is_none() && address.is_return_address() {
            return Outcome::Failed(format!(
                "return address {:#x} is outside every executable mapping",
                frame.avma
            ));
        }
        out.push(frame);
        if out.len() - first >= MAX_FRAMES {
            return Outcome::Failed(format!("more than {MAX_FRAMES} frames"));
        }
        if trampoline && address.is_return_address() {
            match step_over_signal_frame(stack, fh_regs.sp()) {
                Ok((ip, sp, bp)) => {
                    fh_regs = UnwindRegsX86_64::new(ip, sp, bp);
                    address = FrameAddress::from_instruction_pointer(ip);
                    continue;
                }
                Err(outcome) => return outcome,
            }
        }
        short.set(false);
        let sp = fh_regs.sp();
        if !(16..USER_SPACE_END).contains(&sp) {
            // framehop computes `cfa - 8` unchecked, and a CFA expression such as the PLT's
            // (rsp + 8 + ...) wraps around near 2^64; no user stack is there anyway.
            return Outcome::Failed(format!(
                "stack pointer {sp:#x} is not a user-space stack address"
            ));
        }
        // framehop and gimli are careful with malformed CFI, but a few of their arithmetic
        // operations are unchecked (overflow panics in debug builds): a malformed file must
        // not take the profiler down with it.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process
                .framehop
                .unwind_frame(address, &mut fh_regs, cache, &mut read_stack)
        }));
        let Ok(step) = step else {
            *cache = CacheX86_64::new();
            return Outcome::Failed(format!(
                "the unwinder choked on the unwind information at {:#x}",
                address.address()
            ));
        };
        if short.get() {
            // A read past the copy failed during this step (framehop may have fallen back to
            // frame pointers after it): the rest of the stack is not in the sample.
            return Outcome::Truncated;
        }
        match step {
            Ok(Some(return_address)) => {
                if fh_regs.sp() <= sp {
                    return Outcome::Failed(format!(
                        "stack pointer did not move up at {:#x}",
                        address.address()
                    ));
                }
                match FrameAddress::from_return_address(return_address) {
                    Some(next) => address = next,
                    None => return Outcome::Complete,
                }
            }
            Ok(None) => return Outcome::Complete,
            Err(framehop::Error::CouldNotReadStack(at)) => {
                return Outcome::Failed(format!(
                    "cannot read stack at {at:#x}, outside the copied {:#x}..{:#x}",
                    stack.sp, stack.end
                ))
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
}

/// Offsets in the kernel's x86-64 `ucontext_t` (which a signal handler's return address sits
/// right below) of the interrupted rip, rsp and rbp: `uc_mcontext.gregs` starts at 40, and
/// REG_RIP, REG_RSP, REG_RBP are its registers 16, 15 and 10.
const UC_RIP: u64 = 40 + 16 * 8;
const UC_RSP: u64 = 40 + 15 * 8;
const UC_RBP: u64 = 40 + 10 * 8;

/// The interrupted registers (ip, sp, bp) saved in the signal frame at `ucontext`.
fn step_over_signal_frame(
    stack: &StackCopy<'_>,
    ucontext: u64,
) -> Result<(u64, u64, u64), Outcome> {
    let read = |offset: u64| -> Result<u64, Outcome> {
        let at = ucontext
            .checked_add(offset)
            .ok_or_else(|| Outcome::Failed("signal frame address overflows".to_string()))?;
        stack.read(at).ok_or_else(|| {
            if stack.needs_more(at) {
                Outcome::Truncated
            } else {
                Outcome::Failed(format!("cannot read the signal frame at {at:#x}"))
            }
        })
    };
    let (ip, sp, bp) = (read(UC_RIP)?, read(UC_RSP)?, read(UC_RBP)?);
    if sp <= ucontext {
        // On an alternate signal stack the interrupted stack is elsewhere, not in the copy.
        return Err(Outcome::Failed(format!(
            "the stack interrupted by a signal ({sp:#x}) is not above the signal frame"
        )));
    }
    Ok((ip, sp, bp))
}

fn unwind_frame_pointers(
    process: &mut Process,
    known: bool,
    modules: &mut Modules,
    regs: Regs,
    stack: &StackCopy<'_>,
    out: &mut Vec<Frame>,
) -> Outcome {
    let first = out.len();
    out.push(frame_at(process, modules, regs.ip, regs.ip));
    let (mut sp, mut bp) = (regs.sp, regs.bp);
    loop {
        if bp == 0 {
            return Outcome::Complete;
        }
        if bp < sp {
            return Outcome::Failed(format!(
                "frame pointer {bp:#x} is below the stack pointer {sp:#x}"
            ));
        }
        let Some(ra_slot) = bp.checked_add(8) else {
            return Outcome::Failed(format!("frame pointer {bp:#x} overflows"));
        };
        let (saved_bp, return_address) = match (stack.read(bp), stack.read(ra_slot)) {
            (Some(b), Some(r)) => (b, r),
            _ if stack.needs_more(bp) || stack.needs_more(ra_slot) => return Outcome::Truncated,
            _ => {
                return Outcome::Failed(format!(
                    "frame pointer {bp:#x} is outside the copied stack {:#x}..{:#x}",
                    stack.sp, stack.end
                ))
            }
        };
        if return_address == 0 {
            return Outcome::Complete;
        }
        let frame = frame_at(process, modules, return_address, return_address - 1);
        if known && frame.module.is_none() {
            return Outcome::Failed(format!(
                "return address {return_address:#x} is outside every executable mapping"
            ));
        }
        out.push(frame);
        if out.len() - first >= MAX_FRAMES {
            return Outcome::Failed(format!("more than {MAX_FRAMES} frames"));
        }
        sp = ra_slot.saturating_add(8);
        bp = saved_bp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid no real process has (pids are at most 2^22), so no /tmp/perf-PID.map exists.
    const PID: u32 = 3_999_999_001;

    fn anon(start: u64, end: u64) -> Mapping {
        Mapping {
            start,
            end,
            path: "//anon".to_string(),
            executable: true,
            ..Default::default()
        }
    }

    fn file(start: u64, end: u64, pgoff: u64, path: &str) -> Mapping {
        Mapping {
            start,
            end,
            pgoff,
            path: path.to_string(),
            inode: 77,
            executable: true,
            ..Default::default()
        }
    }

    /// A stack at `sp` holding a frame-pointer chain through `return_addresses`, the last frame
    /// pointing to 0. Returns (regs, bytes).
    fn fp_stack(sp: u64, ip: u64, return_addresses: &[u64]) -> (Regs, Vec<u8>) {
        let mut bytes = vec![0u8; 32];
        let mut words: Vec<u64> = vec![0xdead; 4]; // the leaf's locals
        let mut bp = sp + 8 * words.len() as u64;
        let first_bp = bp;
        for (i, &ra) in return_addresses.iter().enumerate() {
            let next_bp = if i + 1 == return_addresses.len() {
                0
            } else {
                bp + 16 + 16
            };
            words.push(next_bp);
            words.push(ra);
            words.extend([0x1111, 0x2222]); // caller locals
            bp = next_bp;
        }
        bytes.clear();
        for w in words {
            bytes.extend(w.to_le_bytes());
        }
        (
            Regs {
                ip,
                sp,
                bp: first_bp,
            },
            bytes,
        )
    }

    #[test]
    fn frame_pointers_through_anonymous_code() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let (regs, stack) = fp_stack(0x7ff0_0000, 0x10_0010, &[0x10_0100, 0x10_0200, 0x10_0300]);
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert_eq!(outcome, Outcome::Complete, "{mode:?}");
            let avmas: Vec<u64> = frames.iter().map(|f| f.avma).collect();
            assert_eq!(
                avmas,
                [0x10_0010, 0x10_0100, 0x10_0200, 0x10_0300],
                "{mode:?}"
            );
            // Anonymous memory: the address is the process address.
            assert!(frames.iter().all(|f| f.address == f.avma));
            let m = frames[0].module.unwrap();
            assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Anonymous);
            assert_eq!(u.modules()[m.0 as usize].path, "//anon");
        }
    }

    #[test]
    fn short_copy_is_truncated_not_failed() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let (regs, stack) = fp_stack(0x7ff0_0000, 0x10_0010, &[0x10_0100, 0x10_0200, 0x10_0300]);
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            let mut frames = Vec::new();
            let outcome = u.unwind(PID, regs, &stack[..64], mode, &mut frames);
            assert_eq!(outcome, Outcome::Truncated, "{mode:?}");
            assert_eq!(
                frames.len(),
                2,
                "{mode:?}: the frames before the cut are kept"
            );
        }
    }

    #[test]
    fn garbage_frame_pointers_fail() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let sp = 0x7ff0_0000u64;
        // bp points below sp.
        let regs = Regs {
            ip: 0x10_0010,
            sp,
            bp: sp - 64,
        };
        let stack = vec![0u8; 256];
        let mut frames = Vec::new();
        let outcome = u.unwind(PID, regs, &stack, Mode::FramePointer, &mut frames);
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
        // A frame-pointer loop: [bp] = bp.
        let mut stack = vec![0u8; 256];
        stack[..8].copy_from_slice(&sp.to_le_bytes());
        stack[8..16].copy_from_slice(&0x10_0100u64.to_le_bytes());
        let regs = Regs {
            ip: 0x10_0010,
            sp,
            bp: sp,
        };
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            frames.clear();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert!(
                matches!(outcome, Outcome::Failed(_)),
                "{mode:?} {outcome:?}"
            );
            assert!(frames.len() <= 3);
        }
        // A return address outside every mapping stops the walk.
        stack[8..16].copy_from_slice(&0x5000u64.to_le_bytes());
        stack[..8].copy_from_slice(&(sp + 64).to_le_bytes());
        for mode in [Mode::FramePointer, Mode::Dwarf] {
            frames.clear();
            let outcome = u.unwind(PID, regs, &stack, mode, &mut frames);
            assert!(
                matches!(outcome, Outcome::Failed(ref m) if m.contains("outside")),
                "{outcome:?}"
            );
            assert_eq!(frames.len(), 1);
        }
    }

    #[test]
    fn extreme_registers_do_not_panic() {
        let mut u = Unwinder::new();
        u.add_mapping(PID, anon(0x10_0000, 0x20_0000));
        let stack = vec![0xffu8; 128];
        for (ip, sp, bp) in [
            (0, 0, 0),
            (u64::MAX, u64::MAX, u64::MAX),
            (0x10_0000, u64::MAX - 7, u64::MAX - 3),
            (0x10_0000, u64::MAX - 200, u64::MAX - 100),
            (0x10_0000, 8, 0),
            (1, 0x1000, 0x1008),
        ] {
            for mode in [Mode::FramePointer, Mode::Dwarf] {
                for pid in [PID, 1] {
                    let mut frames = Vec::new();
                    let _ = u.unwind(pid, Regs { ip, sp, bp }, &stack, mode, &mut frames);
                    assert_eq!(frames[0].avma, ip);
                    assert!(frames.len() <= MAX_FRAMES);
                    frames.clear();
                    let _ = u.unwind(pid, Regs { ip, sp, bp }, &[], mode, &mut frames);
                    assert_eq!(frames.len(), 1);
                }
            }
        }
    }

    #[test]
    fn unwinder_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<Unwinder>();
    }

    #[test]
    fn unknown_process_resolves_to_no_module() {
        let mut u = Unwinder::new();
        let f = u.resolve(12345, 0x40_1000);
        assert_eq!(
            f,
            Frame {
                module: None,
                address: 0x40_1000,
                avma: 0x40_1000
            }
        );
        assert!(u.modules().is_empty());
    }

    #[test]
    fn unreadable_files_stay_modules_with_file_offsets() {
        let mut u = Unwinder::new();
        let path = "/nonexistent/rprof-test/libgone.so";
        u.add_mapping(PID, file(0x7f00_0000_1000, 0x7f00_0000_9000, 0x1000, path));
        let f = u.resolve(PID, 0x7f00_0000_2345);
        let m = f.module.expect("module");
        assert_eq!(u.modules()[m.0 as usize].path, path);
        assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Elf);
        assert_eq!(f.address, 0x2345, "file offset");
        assert!(matches!(u.load_error(m), Some(LoadError::Io { .. })));
        // Deleted files too.
        let deleted = "/tmp/rprof-test-libx.so (deleted)";
        u.add_mapping(PID, file(0x7f10_0000_0000, 0x7f10_0000_4000, 0, deleted));
        let f = u.resolve(PID, 0x7f10_0000_0010);
        let m = f.module.expect("module");
        assert_eq!(u.modules()[m.0 as usize].path, deleted);
        assert_eq!(f.address, 0x10);
        assert!(u.load_error(m).is_some());
    }

    #[test]
    fn mappings_replace_what_they_overlap() {
        let mut u = Unwinder::new();
        let path = "/nonexistent/rprof-test/a.so";
        u.add_mapping(PID, file(0x1000, 0x5000, 0x10000, path));
        // A data mapping over the middle.
        u.add_mapping(
            PID,
            Mapping {
                start: 0x2000,
                end: 0x3000,
                executable: false,
                ..Default::default()
            },
        );
        assert_eq!(u.resolve(PID, 0x2800).module, None);
        let left = u.resolve(PID, 0x1800);
        let right = u.resolve(PID, 0x3800);
        assert!(left.module.is_some() && left.module == right.module);
        assert_eq!(left.address, 0x10800);
        assert_eq!(
            right.address, 0x12800,
            "the right piece keeps its file offset"
        );
        // A new executable mapping replaces the right piece.
        u.add_mapping(PID, anon(0x3000, 0x6000));
        let f = u.resolve(PID, 0x3800);
        assert_ne!(f.module, left.module);
        assert_eq!(f.address, 0x3800);
        // Zero-sized and backwards mappings are ignored.
        u.add_mapping(PID, file(0x9000, 0x9000, 0, path));
        u.add_mapping(PID, file(0x9000, 0x8000, 0, path));
        assert_eq!(u.resolve(PID, 0x8800).module, None);
    }

    #[test]
    fn modules_are_shared_and_processes_fork_exec_exit() {
        let mut u = Unwinder::new();
        let path = "/nonexistent/rprof-test/shared.so";
        u.add_mapping(PID, file(0x1000, 0x2000, 0, path));
        u.add_mapping(PID + 1, file(0x7000, 0x8000, 0, path));
        let a = u.resolve(PID, 0x1100).module;
        assert!(a.is_some());
        assert_eq!(
            u.resolve(PID + 1, 0x7100).module,
            a,
            "same file, same module"
        );
        // A different inode is a different file.
        let mut other = file(0x9000, 0xa000, 0, path);
        other.inode = 78;
        u.add_mapping(PID + 1, other);
        assert_ne!(u.resolve(PID + 1, 0x9100).module, a);

        u.add_mapping(PID, anon(0x3000, 0x4000));
        u.fork(PID, PID + 2);
        assert_eq!(
            u.resolve(PID + 2, 0x1100).module,
            a,
            "the child inherits mappings"
        );
        let parent_anon = u.resolve(PID, 0x3100).module;
        let child_anon = u.resolve(PID + 2, 0x3100).module;
        assert!(
            child_anon.is_some() && child_anon != parent_anon,
            "anon memory is per process"
        );
        u.exec(PID + 2);
        assert_eq!(u.resolve(PID + 2, 0x1100).module, None);
        assert_eq!(
            u.resolve(PID, 0x1100).module,
            a,
            "the parent keeps its mappings"
        );
        u.exit(PID);
        assert_eq!(u.resolve(PID, 0x1100).module, None);
        // Forking an unknown process leaves the child unknown.
        u.fork(1, PID + 3);
        assert_eq!(u.resolve(PID + 3, 0x1100).module, None);
        let n = u.modules().len();
        assert_eq!(n, 4, "modules never shrink");
    }

    #[test]
    fn anonymous_code_with_a_perf_map_is_jit() {
        let pid = 3_999_999_002;
        let map = jit_map_path(pid);
        std::fs::write(&map, "100000 10 jitted_fn\n").unwrap();
        let mut u = Unwinder::new();
        u.add_mapping(pid, anon(0x10_0000, 0x20_0000));
        let _ = std::fs::remove_file(&map);
        let f = u.resolve(pid, 0x10_0005);
        let info = &u.modules()[f.module.unwrap().0 as usize];
        assert_eq!(info.kind, ModuleKind::Jit);
        assert_eq!(info.pid_for_jit, Some(pid));
        assert_eq!(f.address, 0x10_0005);
    }

    #[test]
    fn unmapped_code_of_a_jit_process_is_jit() {
        let pid = 3_999_999_003;
        let mut u = Unwinder::new();
        u.add_mapping(pid, anon(0x10_0000, 0x20_0000));
        // No JIT map: addresses outside every mapping have no module, and stop unwinding.
        assert_eq!(u.resolve(pid, 0x50_0000).module, None);
        let (regs, stack) = fp_stack(0x7ff0_0000, 0x10_0010, &[0x50_0100, 0x10_0200]);
        let mut frames = Vec::new();
        let outcome = u.unwind(pid, regs, &stack, Mode::Dwarf, &mut frames);
        assert!(matches!(outcome, Outcome::Failed(_)));
        assert_eq!(frames.len(), 1);

        let map = jit_map_path(pid);
        std::fs::write(&map, "500000 200 jitted\n").unwrap();
        let mut u = Unwinder::new();
        u.add_mapping(
            pid,
            file(0x10_0000, 0x20_0000, 0, "/nonexistent/rprof-test/vm"),
        );
        let f = u.resolve(pid, 0x50_0000);
        let _ = std::fs::remove_file(&map);
        let info = &u.modules()[f.module.expect("jit module").0 as usize];
        assert_eq!(info.kind, ModuleKind::Jit);
        assert_eq!(f.address, 0x50_0000);
        frames.clear();
        let outcome = u.unwind(pid, regs, &stack, Mode::Dwarf, &mut frames);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(frames.len(), 3, "unwinding goes on through JIT frames");
    }

    #[test]
    fn vdso_mapping_is_the_vdso_module() {
        let mut u = Unwinder::new();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let vdso = parse_proc_maps(&maps)
            .into_iter()
            .find(|m| m.path == "[vdso]")
            .unwrap();
        u.add_mapping(PID, vdso.clone());
        let f = u.resolve(PID, vdso.start + 0x10);
        let m = f.module.unwrap();
        let info = &u.modules()[m.0 as usize];
        assert_eq!(info.kind, ModuleKind::Vdso);
        assert!(info.build_id.is_some(), "read from the image");
        assert!(u.load_error(m).is_none());
        // The vDSO is linked at 0: SVMA = offset in the mapping.
        assert_eq!(f.address, 0x10);
    }

    #[test]
    fn own_process_maps_load() {
        let mut u = Unwinder::new();
        u.load_proc_maps(std::process::id()).unwrap();
        let here = own_process_maps_load as fn() as usize as u64;
        let f = u.resolve(std::process::id(), here);
        let m = f.module.unwrap();
        assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Elf);
        assert!(u.load_error(m).is_none(), "{:?}", u.load_error(m));
        assert!(u.modules()[m.0 as usize].build_id.is_some());
        assert!(u.load_proc_maps(u32::MAX).is_err());
    }
}
