//! `--stacks N`: who made the slowest calls.
//!
//! With `--stacks`, each entry probe also copies the user registers and the top
//! [`STACK_COPY`] bytes of the user stack (as `rprof record` samples do). The copy waits beside
//! its open entry; when the call returns and is among the N slowest of its function so far, it
//! is unwound at once with rprof-unwind (DWARF CFI, frame pointers where there is none), in
//! the address space the tracker's MMAP2 records (and, for `-p`, `/proc/PID/maps` at attach)
//! describe. Names come from rprof-symbols at the end. Other copies are dropped when their call
//! returns, so memory stays bounded by the open calls.

use std::collections::HashMap;

use rprof_unwind::{Frame, Mapping, Mode, Outcome, Regs, Unwinder};

/// Bytes of user stack copied at each entry (enough for the callers of most functions; a
/// deeper stack is shown truncated).
pub const STACK_COPY: u32 = 8192;

/// One of the slowest calls, unwound.
#[derive(Clone, Debug)]
struct Slow {
    duration: u64,
    tid: u32,
    frames: Vec<Frame>,
    truncated: bool,
}

/// A slow call with its caller stack, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowCall {
    /// Duration, ns.
    pub duration_ns: u64,
    /// Thread.
    pub tid: u32,
    /// The probed function first, then its callers, outermost last.
    pub stack: Vec<String>,
    /// The stack copy ended before the outermost frame.
    pub truncated: bool,
}

/// The copies waiting for their calls, and the slowest calls per function.
pub struct Stacks {
    keep: usize,
    unwinder: Unwinder,
    /// (tid, entry time) → (pid, registers, stack copy).
    waiting: HashMap<(u32, u64), (u32, Regs, Vec<u8>)>,
    slowest: Vec<Vec<Slow>>,
}

impl Stacks {
    /// Keeps the `keep` slowest calls of each of `functions` functions.
    pub fn new(keep: usize, functions: usize) -> Stacks {
        Stacks {
            keep,
            unwinder: Unwinder::new(),
            waiting: HashMap::new(),
            slowest: vec![Vec::new(); functions],
        }
    }

    /// The current mappings of `pid` (an attached process).
    pub fn load_process(&mut self, pid: u32) {
        // Without them, unwinding falls back to frame pointers and names stay unknown.
        let _ = self.unwinder.load_proc_maps(pid);
    }

    /// A mapping of process `pid` (from an MMAP2 record).
    pub fn mapping(&mut self, pid: u32, mapping: Mapping) {
        self.unwinder.add_mapping(pid, mapping);
    }

    /// Process `pid` called execve.
    pub fn exec(&mut self, pid: u32) {
        self.unwinder.exec(pid);
    }

    /// Process `parent` forked `child`.
    pub fn fork(&mut self, parent: u32, child: u32) {
        self.unwinder.fork(parent, child);
    }

    /// The copy taken at the entry of thread `tid` of `pid` at `time`.
    pub fn entry(&mut self, pid: u32, tid: u32, time: u64, regs: Regs, stack: &[u8]) {
        self.waiting
            .insert((tid, time), (pid, regs, stack.to_vec()));
    }

    /// Drops the copy of an entry that will not be timed (another process's).
    pub fn forget(&mut self, tid: u32, time: u64) {
        self.waiting.remove(&(tid, time));
    }

    /// The call of `func` that entered at `start` on `tid` returned after `duration` ns.
    pub fn returned(&mut self, func: usize, tid: u32, start: u64, duration: u64) {
        let Some((pid, regs, stack)) = self.waiting.remove(&(tid, start)) else {
            return;
        };
        let Some(list) = self.slowest.get_mut(func) else {
            return;
        };
        let qualifies =
            list.len() < self.keep || list.last().is_some_and(|s| duration > s.duration);
        if !qualifies {
            return;
        }
        let mut frames = Vec::new();
        let outcome = self
            .unwinder
            .unwind(pid, regs, &stack, Mode::Dwarf, &mut frames);
        list.push(Slow {
            duration,
            tid,
            frames,
            truncated: outcome == Outcome::Truncated,
        });
        list.sort_by_key(|s| std::cmp::Reverse(s.duration));
        list.truncate(self.keep);
    }

    /// Entries never paired (their threads ended, or the run did): their copies go.
    pub fn clear_waiting(&mut self) {
        self.waiting.clear();
    }

    /// The slowest calls of function `func`, named, slowest first.
    pub fn named(&self, func: usize, symbolizer: &mut rprof_symbols::Symbolizer) -> Vec<SlowCall> {
        let modules = self.unwinder.modules();
        let Some(list) = self.slowest.get(func) else {
            return Vec::new();
        };
        list.iter()
            .map(|slow| SlowCall {
                duration_ns: slow.duration,
                tid: slow.tid,
                truncated: slow.truncated,
                stack: slow
                    .frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let info = f.module.and_then(|m| modules.get(m.0 as usize));
                        let Some(info) = info else {
                            return format!("{:#x}", f.avma);
                        };
                        // A caller frame holds a return address: the call is the byte before.
                        let lookup = if i == 0 {
                            f.address
                        } else {
                            f.address.saturating_sub(1)
                        };
                        let source = rprof_symbols::ModuleSource::Elf {
                            path: &info.path,
                            build_id: info.build_id.as_deref(),
                        };
                        let name = symbolizer
                            .symbolize(&source, &[lookup])
                            .into_iter()
                            .next()
                            .and_then(|loc| loc.frames.last().and_then(|fr| fr.function.clone()));
                        let file = info.path.rsplit('/').next().unwrap_or(&info.path);
                        match name {
                            Some(n) => n,
                            None => format!("{file}+{:#x}", f.address),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}
