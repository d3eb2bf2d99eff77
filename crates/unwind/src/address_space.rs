//! Per-process address spaces: the executable mappings of one process, sorted and not
//! overlapping, each tied to its module in the cache, with the process address of the file's
//! SVMA 0 and framehop's view of the same (the modules with CFI, added on first use). Turns a
//! process address into a [`Frame`]. What a module is and its file data are the module cache's
//! (`module_cache`); walking a stack is `dwarf`'s and `frame_pointer`'s.

use std::path::PathBuf;

use framehop::x86_64::UnwinderX86_64;
use framehop::Unwinder as _;

use crate::module::Bytes;
use crate::module_cache::Modules;
use crate::{Frame, ModuleIndex, ModuleKind};

/// Where a JIT writes the names of its code for process `pid`.
pub(crate) fn jit_map_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// One executable mapping of a process.
#[derive(Clone, Debug)]
pub(crate) struct ProcMap {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) pgoff: u64,
    pub(crate) module: ModuleIndex,
    pub(crate) kind: ModuleKind,
    /// `base` and `framehop_starts` are up to date.
    pub(crate) prepared: bool,
    /// AVMA of the file's SVMA 0, once known.
    pub(crate) base: Option<u64>,
    /// Start addresses (framehop's key) of the framehop modules added for this mapping.
    pub(crate) framehop_starts: Vec<u64>,
    /// The module has signal trampolines (see `ElfData::signal_trampolines`).
    pub(crate) signal_trampolines: bool,
}

/// The address space of one process.
#[derive(Clone, Default)]
pub(crate) struct Process {
    /// The process id (`None` for the stand-in used for unknown processes).
    pub(crate) pid: Option<u32>,
    /// Executable mappings, sorted by start, not overlapping.
    pub(crate) maps: Vec<ProcMap>,
    /// framehop's view of the same, holding the modules with CFI that were used so far.
    pub(crate) framehop: UnwinderX86_64<Bytes>,
    /// The JIT module that addresses outside every mapping belong to, once the process was
    /// seen to have a `/tmp/perf-PID.map` (JITs often make code executable with mprotect,
    /// which produces no mapping record).
    pub(crate) jit: Option<ModuleIndex>,
    /// Lookups of addresses outside every mapping since the last check for a JIT map, modulo
    /// [`JIT_RECHECK`] (the map is checked when this is 0).
    pub(crate) unmapped_lookups: u32,
}

/// How many lookups of unmapped addresses pass between two checks for a JIT map.
const JIT_RECHECK: u32 = 1024;

impl Process {
    pub(crate) fn find(&self, avma: u64) -> Option<usize> {
        let i = self
            .maps
            .partition_point(|m| m.start <= avma)
            .checked_sub(1)?;
        (avma < self.maps[i].end).then_some(i)
    }

    /// Removes `[start, end)` from the executable mappings, keeping the parts outside it.
    /// Returns how many framehop modules this removed.
    pub(crate) fn unmap(&mut self, start: u64, end: u64) -> u64 {
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

    pub(crate) fn insert(&mut self, map: ProcMap) {
        let at = self.maps.partition_point(|m| m.start < map.start);
        self.maps.insert(at, map);
    }

    /// Makes sure mapping `i`'s base address is known and its CFI is known to framehop.
    pub(crate) fn prepare(&mut self, i: usize, modules: &mut Modules) {
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
    pub(crate) fn frame(&mut self, modules: &mut Modules, avma: u64, lookup: u64) -> Option<Frame> {
        self.frame_and_trampoline(modules, avma, lookup)
            .map(|(f, _)| f)
    }

    /// [`frame`](Self::frame), and whether `lookup` is in a signal trampoline.
    pub(crate) fn frame_and_trampoline(
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

#[cfg(test)]
mod tests {
    use crate::test_support::{anon, file, fp_stack, PID};
    use crate::{Mapping, Mode, ModuleKind, Outcome, Unwinder};

    use super::*;

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
        assert_eq!(u.locate(PID, 0x2800).module, None);
        let left = u.locate(PID, 0x1800);
        let right = u.locate(PID, 0x3800);
        assert!(left.module.is_some() && left.module == right.module);
        assert_eq!(left.address, 0x10800);
        assert_eq!(
            right.address, 0x12800,
            "the right piece keeps its file offset"
        );
        // A new executable mapping replaces the right piece.
        u.add_mapping(PID, anon(0x3000, 0x6000));
        let f = u.locate(PID, 0x3800);
        assert_ne!(f.module, left.module);
        assert_eq!(f.address, 0x3800);
        // Zero-sized and backwards mappings are ignored.
        u.add_mapping(PID, file(0x9000, 0x9000, 0, path));
        u.add_mapping(PID, file(0x9000, 0x8000, 0, path));
        assert_eq!(u.locate(PID, 0x8800).module, None);
    }

    #[test]
    fn unmapped_code_of_a_jit_process_is_jit() {
        let pid = 3_999_999_003;
        let mut u = Unwinder::new();
        u.add_mapping(pid, anon(0x10_0000, 0x20_0000));
        // No JIT map: addresses outside every mapping have no module, and stop unwinding.
        assert_eq!(u.locate(pid, 0x50_0000).module, None);
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
        let f = u.locate(pid, 0x50_0000);
        let _ = std::fs::remove_file(&map);
        let info = &u.modules()[f.module.expect("jit module").0 as usize];
        assert_eq!(info.kind, ModuleKind::Jit);
        assert_eq!(f.address, 0x50_0000);
        frames.clear();
        let outcome = u.unwind(pid, regs, &stack, Mode::Dwarf, &mut frames);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(frames.len(), 3, "unwinding goes on through JIT frames");
    }
}
