//! rprof-unwind: process address spaces and user-space stack unwinding for rprof (x86-64 Linux).
//!
//! What it does:
//! - Keeps the address space of every profiled process from MMAP2-like [`Mapping`]s (or from
//!   `/proc/PID/maps` for attached processes), through fork, exec and exit. Only executable
//!   mappings are kept; any mapping unmaps the executable ranges it covers (mmap semantics).
//! - Turns each mapping's file into a module, shared by all processes that map the same file
//!   (same path and build id, or inode). A module's file is read once, lazily, the first time an
//!   address in it is unwound or located: PT_LOAD segments, build id, `.eh_frame`,
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
//! Layout, one job a file: this file is the public face ([`Unwinder`] and its types);
//! `maps.rs` reads mapping descriptions; `module.rs` reads a module's file (ELF, vDSO);
//! `module_cache.rs` interns modules and loads each once; `address_space.rs` keeps each
//! process's mappings and turns addresses into frames; `stack.rs` reads the copied stack;
//! `dwarf.rs` and `frame_pointer.rs` walk a stack.
//!
//! What it leaves to others: reading perf records and copying stacks (rprof-perf and the
//! recorder), naming addresses (rprof-symbols: it gets [`Frame::address`] SVMAs and subtracts 1
//! from return addresses itself), kernel call chains (only [`Unwinder::locate`] helps there).
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

mod address_space;
mod dwarf;
mod frame_pointer;
mod maps;
mod module;
mod module_cache;
mod stack;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;

use framehop::x86_64::CacheX86_64;

pub use maps::{parse_proc_maps, Mapping};
pub use module::{LoadError, ModuleIndex, ModuleInfo, ModuleKind};

use address_space::{ProcMap, Process};
use dwarf::unwind_dwarf;
use frame_pointer::unwind_frame_pointers;
use maps::DELETED_SUFFIX;
use module_cache::{Modules, CACHE_RESET};
use stack::StackCopy;

/// Unwinding stops with [`Outcome::Failed`] after this many frames (a loop or garbage).
pub const MAX_FRAMES: usize = 4096;

/// A stack read that fails at most this far above the end of the copied stack counts as "the
/// copy was too short" ([`Outcome::Truncated`]); farther away it is a bad pointer. No single
/// frame in practice is larger.
pub const TRUNCATION_WINDOW: u64 = 16 << 20;

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
        let path = std::path::PathBuf::from(format!("/proc/{pid}/maps"));
        let options = rprof_fs::read::Options::new("a memory map", rprof_fs::read::PROC_MAPS_LIMIT);
        let text = rprof_fs::read::read_bounded(&path, &options).map_err(std::io::Error::other)?;
        for m in parse_proc_maps(&String::from_utf8_lossy(&text)) {
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

    /// Locates one process address: the module it is in and its SVMA there, as a frame (e.g.
    /// for an address of a kernel frame-pointer call chain).
    pub fn locate(&mut self, pid: u32, avma: u64) -> Frame {
        self.processes
            .get_mut(&pid)
            .and_then(|p| p.frame(&mut self.modules, avma, avma))
            .unwrap_or(Frame {
                module: None,
                address: avma,
                avma,
            })
    }

    /// Where the ELF files of process `pid` are loaded, as far as known: each module whose
    /// executable mapping was used (an address in it located or unwound), with the process
    /// address of its file's SVMA 0. The same base holds for the file's data segments, so a
    /// data address (a lock in `.bss`) minus the base is its address in the file.
    pub fn bases(&self, pid: u32) -> Vec<(ModuleIndex, u64)> {
        let Some(process) = self.processes.get(&pid) else {
            return Vec::new();
        };
        let mut out: Vec<(ModuleIndex, u64)> = process
            .maps
            .iter()
            .filter(|m| m.kind == ModuleKind::Elf)
            .filter_map(|m| Some((m.module, m.base?)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
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

#[cfg(test)]
mod tests {
    use crate::test_support::{anon, file, PID};

    use super::*;

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
    fn address_of_unknown_process_is_in_no_module() {
        let mut u = Unwinder::new();
        let f = u.locate(12345, 0x40_1000);
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
    fn modules_are_shared_and_processes_fork_exec_exit() {
        let mut u = Unwinder::new();
        let path = "/nonexistent/rprof-test/shared.so";
        u.add_mapping(PID, file(0x1000, 0x2000, 0, path));
        u.add_mapping(PID + 1, file(0x7000, 0x8000, 0, path));
        let a = u.locate(PID, 0x1100).module;
        assert!(a.is_some());
        assert_eq!(
            u.locate(PID + 1, 0x7100).module,
            a,
            "same file, same module"
        );
        // A different inode is a different file.
        let mut other = file(0x9000, 0xa000, 0, path);
        other.inode = 78;
        u.add_mapping(PID + 1, other);
        assert_ne!(u.locate(PID + 1, 0x9100).module, a);

        u.add_mapping(PID, anon(0x3000, 0x4000));
        u.fork(PID, PID + 2);
        assert_eq!(
            u.locate(PID + 2, 0x1100).module,
            a,
            "the child inherits mappings"
        );
        let parent_anon = u.locate(PID, 0x3100).module;
        let child_anon = u.locate(PID + 2, 0x3100).module;
        assert!(
            child_anon.is_some() && child_anon != parent_anon,
            "anon memory is per process"
        );
        u.exec(PID + 2);
        assert_eq!(u.locate(PID + 2, 0x1100).module, None);
        assert_eq!(
            u.locate(PID, 0x1100).module,
            a,
            "the parent keeps its mappings"
        );
        u.exit(PID);
        assert_eq!(u.locate(PID, 0x1100).module, None);
        // Forking an unknown process leaves the child unknown.
        u.fork(1, PID + 3);
        assert_eq!(u.locate(PID + 3, 0x1100).module, None);
        let n = u.modules().len();
        assert_eq!(n, 4, "modules never shrink");
    }

    #[test]
    fn own_process_maps_load() {
        let mut u = Unwinder::new();
        u.load_proc_maps(std::process::id()).unwrap();
        let here = own_process_maps_load as fn() as usize as u64;
        let f = u.locate(std::process::id(), here);
        let m = f.module.unwrap();
        assert_eq!(u.modules()[m.0 as usize].kind, ModuleKind::Elf);
        assert!(u.load_error(m).is_none(), "{:?}", u.load_error(m));
        assert!(u.modules()[m.0 as usize].build_id.is_some());
        assert!(u.load_proc_maps(u32::MAX).is_err());
    }
}
