//! rprof-alloc: allocation profiling through uprobes (`rprof record --alloc`), like heaptrack
//! but without `LD_PRELOAD` or recompiling.
//!
//! - [`allocator`]: the C library the target maps and its allocator functions.
//! - [`bpf`]: the in-kernel filter: only the target's calls, and a stack for about one call per
//!   R bytes allocated.
//! - [`probes`]: entry, return and stack probes per CPU writing into one ring a CPU.
//! - [`heap`]: every block's life from the records: totals, leaks, temporaries, the peak.
//! - [`report`]: the text and JSON reports and the flame graph weights of a profile.
//! - [`record`] (this file): the loop: start COMMAND held before exec (rprof-launch) or attach,
//!   drain the rings, order the records by time, pair each call's entry, stack and return per
//!   thread, unwind the sampled stacks (rprof-unwind), then write the profile: modules,
//!   [`AllocStack`] and [`AllocSummary`] records and the names the binary's `symbolize` gives.
//!
//! What it leaves to others: resolving symbols and the uprobe PMU (rprof-latency), the ring
//! buffer and record parsing (rprof-perf), the file format (rprof-profile), naming (the binary,
//! through rprof-symbols), printing and exit codes (the binary).

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod allocator;
pub mod bpf;
pub mod heap;
pub mod probes;
pub mod report;

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rprof_latency::probes::UprobePmu;
use rprof_latency::resolve::Modules;
use rprof_launch::{spawn_pending, LaunchError};
use rprof_perf::parse::{x86_64, FileId};
use rprof_perf::{parse_record, PerfRecord};
use rprof_profile::{
    lookup_address, Address, AllocStack, AllocSummary, Header, LookupSet, Module, ModuleId,
    ModuleKind, Record, Summary, Writer,
};
use rprof_unwind::{Frame, Mapping, Mode, ModuleIndex, Outcome as UnwindOutcome, Regs, Unwinder};

use crate::allocator::{Allocator, Kind};
use crate::heap::{Block, Heap};
use crate::probes::{ProbeId, Probes, Role};

/// The default stack sampling: about one stack per this many bytes allocated.
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

/// Why an allocation recording failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// Missing privileges; the text says how to fix it.
    #[error("{0}")]
    Permission(String),
    /// The kernel cannot do it (no uprobe PMU).
    #[error("{0}")]
    Unsupported(String),
    /// No allocator found in the target; the text names what was searched.
    #[error("{0}")]
    NoAllocator(String),
    /// `-p` of a process that is gone.
    #[error("no process with id {0} (it exited before rprof could attach)")]
    Gone(u32),
    /// Opening a probe or the BPF filter failed otherwise.
    #[error("{0}")]
    Open(String),
    /// COMMAND could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The profile could not be created or written.
    #[error(transparent)]
    Write(#[from] rprof_fs::WriteError),
    /// Another step failed.
    #[error("cannot {what}: {error}")]
    Io {
        /// What rprof was doing.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

/// What to record: a command to run, or a running process (the same choice as
/// `rprof latency`'s).
pub use rprof_latency::What;

/// Everything `rprof record --alloc` needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The target.
    pub what: What,
    /// Where the profile goes.
    pub output: PathBuf,
    /// A stack for about one call per this many bytes (0: every call). Default
    /// [`DEFAULT_SAMPLE_BYTES`].
    pub sample_bytes: u64,
}

/// How the recording ended (as `rprof latency`'s measurement).
pub use rprof_latency::End;

/// The totals and how the target ended.
#[derive(Debug)]
pub struct Outcome {
    /// The totals, as written.
    pub summary: AllocSummary,
    /// How it ended.
    pub end: End,
    /// Bytes of the profile.
    pub size: u64,
}

/// Records are applied once they are this old, so that a record another CPU has
/// time-stamped but not yet written cannot be overtaken.
const SETTLE_NS: u64 = 20_000_000;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec.max(0) as u64 * 1_000_000_000 + ts.tv_nsec.max(0) as u64
}

/// A record waiting to be applied in time order.
#[derive(Debug)]
enum Item {
    Entry {
        function: usize,
        pid: u32,
        tid: u32,
        args: [u64; 2],
        ip: u64,
        ret: Option<u64>,
    },
    Return {
        function: usize,
        pid: u32,
        tid: u32,
        result: u64,
    },
    Stack {
        function: usize,
        pid: u32,
        tid: u32,
        regs: Regs,
        stack: Vec<u8>,
    },
    Exit {
        tid: u32,
    },
    Exec {
        pid: u32,
    },
    Fork {
        parent: u32,
        child: u32,
    },
    Mmap {
        pid: u32,
        mapping: Box<Mapping>,
    },
}

/// An allocating call between its entry and its return.
#[derive(Debug)]
struct Open {
    function: usize,
    time: u64,
    args: [u64; 2],
    ip: u64,
    ret: Option<u64>,
    stack: Option<(Regs, Vec<u8>)>,
    /// `realloc`: the old block, freed at the entry, and whether that free was temporary.
    old: Option<(u64, Block, bool)>,
    /// Called by another allocator call of the thread that is still running.
    nested: bool,
}

/// Records parsed between two copies of the rings, at most.
const PARSE_CHUNK: usize = 20_000;

/// The rings are copied at least this often while records are parsed and applied.
const COPY_EVERY: Duration = Duration::from_millis(2);

/// Open calls kept per thread at most (more only when return records are lost).
const MAX_OPEN: usize = 64;

/// The pairing state of one thread.
#[derive(Debug, Default)]
struct ThreadState {
    /// Calls entered and not yet returned, innermost last.
    open: Vec<Open>,
    /// A stack copy that came before its entry record.
    early_stack: Option<(usize, u64, Regs, Vec<u8>)>,
}

/// A frame of a stored stack: module and SVMA (absolute when the module is unknown).
type Key = (Option<ModuleIndex>, u64);

/// The recording's state from the records on.
struct Session {
    allocator: Allocator,
    sample_bytes: u64,
    ids: HashMap<u64, ProbeId>,
    tracker_format: rprof_perf::SampleFormat,
    pending: Vec<(u64, Item)>,
    tracked: HashSet<u32>,
    /// COMMAND: its calls count from its `execve` on (before, it is rprof's held child).
    started: HashSet<u32>,
    threads: HashMap<u32, ThreadState>,
    unwinder: Unwinder,
    heap: Heap,
    /// Call sites: (allocator function, return address) → index, and back.
    sites: HashMap<(Key, Key, u32), u32>,
    site_list: Vec<(u32, Key, Key)>,
    /// (pid, ip, return address) → site, reset when mappings change.
    site_cache: HashMap<(u32, u64, u64), u32>,
    stacks: HashMap<(Vec<Key>, bool), u32>,
    stack_list: Vec<(u32, Vec<Key>, bool)>,
    calls_by_function: Vec<u64>,
    lost: u64,
    unpaired: u64,
    first_time: Option<u64>,
    last_time: u64,
    follow_errors: u64,
    /// Stack copies the kernel dropped (their ring was full): those calls are counted, but
    /// without a stack.
    stacks_lost: u64,
    /// Records copied from the rings, back to back, and how far they are parsed.
    backlog: Vec<u8>,
    parsed: usize,
}

impl Session {
    fn new(allocator: Allocator, probes: &Probes, root: u32, attach: bool, sample: u64) -> Self {
        let (ids, format) = (probes.ids(), probes.tracker_format());
        Session::with_ids(allocator, ids, format, root, attach, sample)
    }

    fn with_ids(
        allocator: Allocator,
        ids: HashMap<u64, ProbeId>,
        tracker_format: rprof_perf::SampleFormat,
        root: u32,
        attach: bool,
        sample: u64,
    ) -> Self {
        let n = allocator.functions.len();
        Session {
            allocator,
            sample_bytes: sample,
            ids,
            tracker_format,
            pending: Vec::new(),
            tracked: HashSet::from([root]),
            started: if attach {
                HashSet::from([root])
            } else {
                HashSet::new()
            },
            threads: HashMap::new(),
            unwinder: Unwinder::new(),
            heap: Heap::new(),
            sites: HashMap::new(),
            site_list: Vec::new(),
            site_cache: HashMap::new(),
            stacks: HashMap::new(),
            stack_list: Vec::new(),
            calls_by_function: vec![0; n],
            lost: 0,
            unpaired: 0,
            first_time: None,
            last_time: 0,
            follow_errors: 0,
            stacks_lost: 0,
            backlog: Vec::new(),
            parsed: 0,
        }
    }

    /// Reads every ring into `pending`; a FORK adds the child to the BPF filter at once.
    /// Copies every ring's records into the backlog, so that the kernel gets its space back at
    /// once whatever the parsing costs; a FORK adds the child to the BPF filter at once.
    fn copy_rings(&mut self, probes: &mut Probes) {
        let mut forks = Vec::new();
        for ring in probes.rings_mut() {
            let batch = ring.read();
            for bytes in batch.iter() {
                // PERF_RECORD_FORK: pid at 8, ppid at 12. Only the target's processes have
                // the tracker, so every FORK record is one of theirs.
                let word = |at: usize| {
                    bytes
                        .get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_ne_bytes)
                };
                if word(0) == Some(7) {
                    if let (Some(pid), Some(ppid)) = (word(8), word(12)) {
                        if pid != ppid {
                            forks.push(pid);
                        }
                    }
                }
                self.backlog.extend_from_slice(bytes);
            }
        }
        for ring in probes.stack_rings_mut() {
            let batch = ring.read();
            for bytes in batch.iter() {
                // PERF_RECORD_LOST: id at 8, lost at 16.
                if bytes.get(0..4) == Some(&2u32.to_ne_bytes()[..]) {
                    let lost = bytes
                        .get(16..24)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_ne_bytes);
                    self.stacks_lost += lost;
                    continue;
                }
                self.backlog.extend_from_slice(bytes);
            }
        }
        for child in forks {
            if probes.follow(child).is_err() {
                self.follow_errors += 1;
            }
        }
    }

    /// Parses up to `max` records of the backlog into `pending`.
    fn parse_backlog(&mut self, max: usize) {
        let started = Instant::now();
        let mut at = self.parsed;
        let mut n = 0;
        let backlog = std::mem::take(&mut self.backlog);
        while n < max && (n % 64 != 63 || started.elapsed() < COPY_EVERY) {
            let Some(size) = backlog
                .get(at + 6..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(|b| usize::from(u16::from_ne_bytes(b)))
            else {
                break;
            };
            let Some(bytes) = backlog.get(at..at + size.max(8)) else {
                break;
            };
            at += size.max(8);
            n += 1;
            {
                let id = bytes
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_ne_bytes);
                let is_sample = bytes
                    .get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_ne_bytes)
                    == Some(9);
                let probe = id.and_then(|id| self.ids.get(&id)).filter(|_| is_sample);
                let format = probe.map_or(self.tracker_format, |p| p.format);
                // A record that does not parse can only cost one call.
                let Ok(record) = parse_record(&format, bytes) else {
                    continue;
                };
                match record {
                    PerfRecord::Sample(s) => {
                        let (Some(p), Some(pid), Some(tid), Some(time)) =
                            (probe, s.pid, s.tid, s.time)
                        else {
                            continue;
                        };
                        let regs = s.regs_user;
                        let reg = |r: u32| regs.and_then(|g| g.get(r)).unwrap_or(0);
                        let item = match p.role {
                            Role::Entry => Item::Entry {
                                function: p.function,
                                pid,
                                tid,
                                args: [reg(x86_64::DI), reg(x86_64::SI)],
                                ip: reg(x86_64::IP),
                                ret: s
                                    .stack_user
                                    .and_then(|b| b.get(0..8))
                                    .and_then(|b| b.try_into().ok())
                                    .map(u64::from_ne_bytes),
                            },
                            Role::Return => Item::Return {
                                function: p.function,
                                pid,
                                tid,
                                result: reg(probes::AX),
                            },
                            Role::Stack => Item::Stack {
                                function: p.function,
                                pid,
                                tid,
                                regs: Regs {
                                    ip: reg(x86_64::IP),
                                    sp: reg(x86_64::SP),
                                    bp: reg(x86_64::BP),
                                },
                                stack: s.stack_user.unwrap_or_default().to_vec(),
                            },
                        };
                        self.pending.push((time, item));
                    }
                    PerfRecord::Mmap(m) => {
                        let (build_id, inode) = match m.file_id {
                            Some(FileId::BuildId(id)) => (Some(id.to_vec()), 0),
                            Some(FileId::Inode { ino, .. }) => (None, ino),
                            None => (None, 0),
                        };
                        let mapping = Mapping {
                            start: m.addr,
                            end: m.addr.saturating_add(m.len),
                            pgoff: m.pgoff,
                            path: String::from_utf8_lossy(m.filename).into_owned(),
                            build_id,
                            inode,
                            executable: m.is_executable(),
                        };
                        let time = m.sample_id.time.unwrap_or(0);
                        self.pending.push((
                            time,
                            Item::Mmap {
                                pid: m.pid,
                                mapping: Box::new(mapping),
                            },
                        ));
                    }
                    PerfRecord::Exit(t) => self.pending.push((t.time, Item::Exit { tid: t.tid })),
                    PerfRecord::Fork(t) => {
                        self.pending.push((
                            t.time,
                            Item::Fork {
                                parent: t.ppid,
                                child: t.pid,
                            },
                        ));
                    }
                    PerfRecord::Comm(c) if c.exec => {
                        let time = c.sample_id.time.unwrap_or(0);
                        self.pending.push((time, Item::Exec { pid: c.pid }));
                    }
                    PerfRecord::Lost(l) => self.lost += l.lost,
                    PerfRecord::LostSamples(l) => self.lost += l.lost,
                    _ => {}
                }
            }
        }
        if at >= backlog.len() {
            self.backlog = backlog;
            self.backlog.clear();
            self.parsed = 0;
        } else {
            self.backlog = backlog;
            self.parsed = at;
        }
    }

    /// Records parsed but not applied, and bytes copied but not parsed.
    fn has_backlog(&self) -> bool {
        self.parsed < self.backlog.len()
    }

    /// Applies the pending records up to `until` (all with `None`), in time order.
    /// Between chunks, the rings are copied again (into the backlog, applied later).
    fn apply(&mut self, until: Option<u64>, probes: &mut Probes) {
        self.pending.sort_by_key(|(t, _)| *t);
        let cut = match until {
            Some(t) => self.pending.partition_point(|(time, _)| *time <= t),
            None => self.pending.len(),
        };
        let ready: Vec<(u64, Item)> = self.pending.drain(..cut).collect();
        let mut copied = Instant::now();
        for (i, (time, item)) in ready.into_iter().enumerate() {
            if i % 64 == 63 && copied.elapsed() >= COPY_EVERY {
                self.copy_rings(probes);
                copied = Instant::now();
            }
            self.apply_one(time, item);
        }
    }

    fn counts(&self, pid: u32) -> bool {
        self.tracked.contains(&pid) && self.started.contains(&pid)
    }

    fn apply_one(&mut self, time: u64, item: Item) {
        match item {
            Item::Fork { parent, child } => {
                if self.tracked.contains(&parent) {
                    self.tracked.insert(child);
                    if parent != child {
                        self.started.insert(child);
                        self.unwinder.fork(parent, child);
                    }
                }
            }
            Item::Exec { pid } => {
                if self.tracked.contains(&pid) {
                    self.started.insert(pid);
                    self.heap.exec(pid, time);
                    self.unwinder.exec(pid);
                    self.site_cache.clear();
                }
            }
            Item::Mmap { pid, mapping } => {
                self.unwinder.add_mapping(pid, *mapping);
                self.site_cache.clear();
            }
            Item::Exit { tid } => {
                self.threads.remove(&tid);
            }
            Item::Entry {
                function,
                pid,
                tid,
                args,
                ip,
                ret,
            } => {
                if !self.counts(pid) {
                    return;
                }
                self.seen(time);
                let Some(kind) = self.allocator.functions.get(function).map(|f| f.kind) else {
                    return;
                };
                let state = self.threads.entry(tid).or_default();
                // A call made by an allocator function that is still running (glibc's
                // `realloc(NULL, n)` calls `malloc`, `realloc(p, 0)` calls `free`) is part of
                // the outer call: not counted on its own.
                let nested = !state.open.is_empty();
                if kind == Kind::Free {
                    if !nested {
                        if let Some(n) = self.calls_by_function.get_mut(function) {
                            *n += 1;
                        }
                        self.heap.free(pid, tid, time, args[0]);
                    }
                    return;
                }
                let stack = match state.early_stack.take() {
                    Some((f, t, regs, stack)) if f == function && time.abs_diff(t) < 1_000_000 => {
                        Some((regs, stack))
                    }
                    _ => None,
                };
                if state.open.len() >= MAX_OPEN {
                    // Entries without returns pile up only when records are lost.
                    state.open.remove(0);
                    self.unpaired += 1;
                }
                state.open.push(Open {
                    function,
                    time,
                    args,
                    ip,
                    ret,
                    stack,
                    old: None,
                    nested,
                });
                if nested {
                    return;
                }
                if let Some(n) = self.calls_by_function.get_mut(function) {
                    *n += 1;
                }
                if kind == Kind::Realloc && args[0] != 0 {
                    let before = self.heap.temporaries();
                    let old = self
                        .heap
                        .free(pid, tid, time, args[0])
                        .map(|b| (args[0], b, self.heap.temporaries() > before));
                    if let Some(open) = self.threads.get_mut(&tid).and_then(|s| s.open.last_mut()) {
                        open.old = old;
                    }
                }
            }
            Item::Stack {
                function,
                pid,
                tid,
                regs,
                stack,
            } => {
                if !self.counts(pid) {
                    return;
                }
                let state = self.threads.entry(tid).or_default();
                match state.open.last_mut() {
                    Some(open)
                        if open.function == function
                            && open.stack.is_none()
                            && time.abs_diff(open.time) < 1_000_000 =>
                    {
                        open.stack = Some((regs, stack));
                    }
                    _ => state.early_stack = Some((function, time, regs, stack)),
                }
            }
            Item::Return {
                function,
                pid,
                tid,
                result,
            } => {
                if !self.counts(pid) {
                    return;
                }
                self.seen(time);
                let Some(state) = self.threads.get_mut(&tid) else {
                    self.unpaired += 1;
                    return;
                };
                let Some(at) = state.open.iter().rposition(|o| o.function == function) else {
                    self.unpaired += 1;
                    return;
                };
                // Entries above it never returned through their probe (a lost record).
                self.unpaired += (state.open.len() - at - 1) as u64;
                // Drained in place: `split_off` would allocate, and rprof's own `malloc`
                // takes the breakpoints too (the probes are per CPU), once per record here.
                let Some(open) = state.open.drain(at..).next() else {
                    return;
                };
                if !open.nested {
                    self.returned(pid, tid, time, open, result);
                }
            }
        }
    }

    fn seen(&mut self, time: u64) {
        self.first_time.get_or_insert(time);
        self.last_time = self.last_time.max(time);
    }

    fn returned(&mut self, pid: u32, tid: u32, time: u64, open: Open, result: u64) {
        let Some(kind) = self.allocator.functions.get(open.function).map(|f| f.kind) else {
            return;
        };
        let [a, b] = open.args;
        let size = match kind {
            Kind::Malloc => a,
            Kind::Calloc => a.saturating_mul(b),
            Kind::Realloc | Kind::Aligned => b,
            Kind::Free => return,
        };
        if let Some((ptr, block, temporary)) = open.old {
            if result == 0 && size > 0 {
                // realloc failed: the old block stays.
                self.heap.restore(pid, ptr, block, temporary);
            }
        }
        let site = self.site(pid, open.function, open.ip, open.ret.unwrap_or(0));
        let sample = open.stack.map(|(regs, stack)| {
            let mut frames = Vec::new();
            let outcome = self
                .unwinder
                .unwind(pid, regs, &stack, Mode::Dwarf, &mut frames);
            let truncated = outcome != UnwindOutcome::Complete;
            let keys: Vec<Key> = frames.iter().map(key).collect();
            let next = self.stack_list.len() as u32;
            let index = *self
                .stacks
                .entry((keys.clone(), truncated))
                .or_insert_with(|| next);
            if index == next {
                self.stack_list.push((pid, keys, truncated));
            }
            (index, heap::weight(size, self.sample_bytes))
        });
        self.heap.alloc(pid, tid, time, result, size, site, sample);
    }

    fn site(&mut self, pid: u32, function: usize, ip: u64, ret: u64) -> u32 {
        if let Some(&site) = self.site_cache.get(&(pid, ip, ret)) {
            return site;
        }
        let leaf = key(&self.unwinder.locate(pid, ip));
        let caller = key(&self.unwinder.locate(pid, ret));
        let next = self.site_list.len() as u32;
        let site = *self
            .sites
            .entry((leaf, caller, function as u32))
            .or_insert(next);
        if site == next {
            self.site_list.push((pid, leaf, caller));
        }
        self.site_cache.insert((pid, ip, ret), site);
        site
    }

    /// The profile's records: modules, stacks, the summary; and the addresses to name.
    fn records(&mut self) -> (Vec<Record>, Vec<Module>, LookupSet, AllocSummary) {
        self.heap.finish();
        let mut used: HashSet<ModuleIndex> = HashSet::new();
        let address = |k: &Key, used: &mut HashSet<ModuleIndex>| {
            if let Some(m) = k.0 {
                used.insert(m);
            }
            Address {
                module: k.0.map(|m| ModuleId(m.0)),
                address: k.1,
            }
        };
        let mut stacks = Vec::new();
        for (i, s) in self.heap.sites().iter().enumerate() {
            let Some((pid, leaf, caller)) = self.site_list.get(i) else {
                continue;
            };
            stacks.push(AllocStack {
                pid: *pid,
                user: vec![address(leaf, &mut used), address(caller, &mut used)],
                truncated: true,
                exact: true,
                calls: s.calls,
                bytes: s.bytes,
                leaked_calls: s.leaked_calls,
                leaked_bytes: s.leaked_bytes,
                temporary_calls: s.temporary_calls,
                peak_calls: s.peak_calls,
                peak_bytes: s.peak_bytes,
            });
        }
        // Sampled stacks: estimates summed per stack.
        let mut estimates = vec![[0f64; 7]; self.stack_list.len()];
        for s in &self.heap.sampled {
            let Some(e) = estimates.get_mut(s.stack as usize) else {
                continue;
            };
            let (calls, bytes) = (s.calls(), s.weight as f64);
            e[0] += calls;
            e[1] += bytes;
            if s.freed.is_none() {
                e[2] += calls;
                e[3] += bytes;
            }
            if s.temporary {
                e[4] += calls;
            }
            if self.heap.live_at_peak(s) {
                e[5] += calls;
                e[6] += bytes;
            }
        }
        self.calibrate(&mut estimates);
        for ((pid, keys, truncated), e) in self.stack_list.iter().zip(&estimates) {
            let r = |x: f64| x.round() as u64;
            stacks.push(AllocStack {
                pid: *pid,
                user: keys.iter().map(|k| address(k, &mut used)).collect(),
                truncated: *truncated,
                exact: false,
                calls: r(e[0]),
                bytes: r(e[1]),
                leaked_calls: r(e[2]),
                leaked_bytes: r(e[3]),
                temporary_calls: r(e[4]),
                peak_calls: r(e[5]),
                peak_bytes: r(e[6]),
            });
        }
        let mut lookups = LookupSet::new();
        for s in &stacks {
            for (i, a) in s.user.iter().enumerate() {
                if let Some(m) = a.module {
                    lookups.add(m, lookup_address(i, a.address));
                }
            }
        }
        let infos = self.unwinder.modules();
        let mut modules: Vec<Module> = used
            .iter()
            .filter_map(|m| {
                let info = infos.get(m.0 as usize)?;
                Some(Module {
                    id: ModuleId(m.0),
                    path: info.path.clone(),
                    build_id: info.build_id.clone(),
                    kind: match info.kind {
                        rprof_unwind::ModuleKind::Elf => ModuleKind::Elf,
                        rprof_unwind::ModuleKind::Vdso => ModuleKind::Vdso,
                        rprof_unwind::ModuleKind::Jit => ModuleKind::Jit,
                        rprof_unwind::ModuleKind::Anonymous => ModuleKind::Anonymous,
                    },
                    jit_pid: info.pid_for_jit,
                })
            })
            .collect();
        modules.sort_by_key(|m| m.id);
        let h = &self.heap;
        let first = self.first_time.unwrap_or(0);
        let summary = AllocSummary {
            allocator: self.allocator.path.display().to_string(),
            sample_bytes: self.sample_bytes,
            alloc_calls: h.alloc_calls,
            alloc_bytes: h.alloc_bytes,
            free_calls: h.free_calls,
            unknown_frees: h.unknown_frees,
            temporary_calls: h.temporary_calls,
            leaked_calls: h.leaked_calls,
            leaked_bytes: h.leaked_bytes,
            peak_bytes: h.peak_bytes,
            peak_time_ns: h.peak_time.saturating_sub(first),
            duration_ns: self.last_time.saturating_sub(first),
            calls_by_function: self
                .allocator
                .functions
                .iter()
                .zip(&self.calls_by_function)
                .map(|(f, n)| (f.name.to_string(), *n))
                .collect(),
            stacks: h.sampled.len() as u64,
            lost: self.lost,
        };
        let mut records: Vec<Record> = modules.iter().cloned().map(Record::Module).collect();
        records.extend(stacks.into_iter().map(Record::AllocStack));
        records.push(Record::AllocSummary(summary.clone()));
        (records, modules, lookups, summary)
    }
}

impl Session {
    /// Makes the sampled stacks' numbers add up to the exact numbers of their call site: the
    /// stacks through one call site (the allocator function and the return address, the first
    /// two frames of a stack) share that site's exact calls, bytes, leaks, temporaries and
    /// bytes at the peak in proportion to their sampled weights (a ratio estimate: only how
    /// the site's numbers split among its callers is estimated). A number no sampled stack of
    /// the site has stays with the site alone (the sites table), and a stack whose site is
    /// unknown keeps its plain estimate.
    fn calibrate(&self, estimates: &mut [[f64; 7]]) {
        let mut exact: HashMap<(Key, Key), [f64; 7]> = HashMap::new();
        for (s, (_, leaf, caller)) in self.heap.sites().iter().zip(&self.site_list) {
            let e = exact.entry((*leaf, *caller)).or_default();
            let numbers = [
                s.calls,
                s.bytes,
                s.leaked_calls,
                s.leaked_bytes,
                s.temporary_calls,
                s.peak_calls,
                s.peak_bytes,
            ];
            for (total, n) in e.iter_mut().zip(numbers) {
                *total += n as f64;
            }
        }
        let mut sampled: HashMap<(Key, Key), [f64; 7]> = HashMap::new();
        let site_of = |keys: &[Key]| match keys {
            [leaf, caller, ..] => Some((*leaf, *caller)),
            _ => None,
        };
        for ((_, keys, _), e) in self.stack_list.iter().zip(estimates.iter()) {
            if let Some(site) = site_of(keys) {
                let sum = sampled.entry(site).or_default();
                for (total, n) in sum.iter_mut().zip(e) {
                    *total += n;
                }
            }
        }
        for ((_, keys, _), e) in self.stack_list.iter().zip(estimates.iter_mut()) {
            let Some(site) = site_of(keys) else { continue };
            let (Some(exact), Some(sum)) = (exact.get(&site), sampled.get(&site)) else {
                continue;
            };
            for m in 0..7 {
                if sum[m] > 0.0 {
                    e[m] = exact[m] * e[m] / sum[m];
                }
            }
        }
    }
}

fn key(f: &Frame) -> Key {
    (f.module, f.address)
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> AllocError + '_ {
    move |error| AllocError::Io {
        what: what.to_string(),
        error,
    }
}

/// Waits up to `timeout` for records on any ring; when every task is gone, a moment more (the
/// caller sees the exit then).
fn wait_for_records(probes: &Probes, timeout: Duration) {
    if rprof_perf::ring::wait_for_records(&probes.poll_fds(), timeout) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn header(options: &Options) -> Header {
    // SAFETY: uname fills the struct we pass; all-zero is a valid utsname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ok = unsafe { libc::uname(&mut uts) } == 0;
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let (command, target_pid) = match &options.what {
        What::Command(argv) => (
            argv.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            None,
        ),
        What::Pid { pid, .. } => (Vec::new(), Some(*pid)),
    };
    Header {
        rprof_version: env!("CARGO_PKG_VERSION").to_string(),
        command,
        target_pid,
        event: "alloc".into(),
        frequency: None,
        period: None,
        call_graph: format!("dwarf,{}", probes::STACK_COPY),
        start_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        hostname: if ok {
            field(&uts.nodename)
        } else {
            String::new()
        },
        kernel_release: if ok {
            field(&uts.release)
        } else {
            String::new()
        },
    }
}

/// The ELF file that will run for `path`: the file itself, or the interpreter of a `#!` script
/// (`#!/usr/bin/env NAME` looked up in `PATH`), one level deep.
fn executable(path: &std::path::Path) -> PathBuf {
    use std::io::Read;
    let mut head = Vec::new();
    let opened = rprof_fs::read::open_regular(
        path,
        &rprof_fs::read::Options::new("a program", rprof_fs::read::ELF_LIMIT),
    );
    if let Ok((file, _)) = opened {
        // Only the first line matters; a read error leaves the program as it is.
        let _ = file.take(256).read_to_end(&mut head);
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return path.to_path_buf();
    };
    let line = String::from_utf8_lossy(line);
    let line = line.lines().next().unwrap_or("");
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(env), Some(name)) if env.ends_with("/env") => {
            rprof_launch::find_program(std::ffi::OsStr::new(name)).unwrap_or_else(|_| path.into())
        }
        (Some(interpreter), _) => PathBuf::from(interpreter),
        _ => path.to_path_buf(),
    }
}

/// Checks what `--alloc` needs before anything starts: the uprobe PMU.
fn pmu() -> Result<UprobePmu, AllocError> {
    UprobePmu::detect().map_err(|e| {
        AllocError::Unsupported(format!(
            "{}; --alloc places uprobes on the allocator",
            e.to_string()
                .replace("rprof latency", "rprof record --alloc")
        ))
    })
}

/// Records the allocations of `options`' target into `options.output`. `symbolize` names the
/// addresses (the binary's naming), `tell` receives messages for stderr.
pub fn record(
    options: &Options,
    symbolize: impl FnOnce(&[Module], &LookupSet) -> Vec<Record>,
    mut tell: impl FnMut(String),
) -> Result<Outcome, AllocError> {
    let pmu = pmu()?;
    let cpus = rprof_events::online_cpus().map_err(io("list the online CPUs"))?;
    let sample = options.sample_bytes.min(bpf::MAX_SAMPLE_BYTES);
    let (mut probes, mut running, attach_pid, allocator, file) = match &options.what {
        What::Command(argv) => {
            let pending = spawn_pending(argv)?;
            let modules = Modules::of_command(&executable(pending.path()));
            let what = pending.path().display().to_string();
            let prepared = allocator::find(&modules, &what).and_then(|allocator| {
                let probes = Probes::open_process(pmu, &allocator, pending.pid(), &cpus, sample)?;
                let file = rprof_fs::NewFile::create(&options.output, rprof_fs::Access::Private)?;
                rprof_launch::forward_signals_to(pending.pid())
                    .map_err(io("install signal handlers"))?;
                Ok((probes, allocator, file))
            });
            let (probes, allocator, file) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    pending.abort();
                    return Err(e);
                }
            };
            let running = pending.start()?;
            (probes, Some(running), None, allocator, file)
        }
        What::Pid { pid, .. } => {
            let pid = *pid;
            if pid == 0 || !rprof_launch::process_alive(pid) {
                return Err(AllocError::Gone(pid));
            }
            let modules = Modules::of_process(pid).map_err(|_| AllocError::Gone(pid))?;
            let allocator = allocator::find(&modules, &format!("process {pid}"))?;
            rprof_launch::catch_interrupts().map_err(io("install signal handlers"))?;
            let probes = Probes::attach(pmu, &allocator, pid, &cpus, sample)?;
            let file = rprof_fs::NewFile::create(&options.output, rprof_fs::Access::Private)?;
            tell(format!(
                "attached to {} threads of process {pid}; Ctrl-C to stop",
                probes.attached_threads()
            ));
            (probes, None, Some(pid), allocator, file)
        }
    };
    if let Some(handover) = file.handover_problem() {
        tell(handover);
    }
    let root = attach_pid
        .or(running.as_ref().map(|r| r.pid()))
        .unwrap_or(0);
    let mut session = Session::new(allocator, &probes, root, attach_pid.is_some(), sample);
    if let Some(pid) = attach_pid {
        // Without them, stacks fall back to frame pointers and call sites stay unnamed.
        let _ = session.unwinder.load_proc_maps(pid);
    }
    let start = Instant::now();
    let end = loop {
        if let Some(end) = rprof_latency::ended(running.as_mut(), attach_pid, &options.what, start)?
        {
            break end;
        }
        if !session.has_backlog() {
            wait_for_records(&probes, Duration::from_millis(50));
        }
        if attach_pid.is_some() && start.elapsed() < Duration::from_secs(1) {
            probes.rescan();
        }
        // The rings are emptied between chunks of parsing: a slow parse (a loaded machine, a
        // debug build) grows the backlog in memory instead of losing records in the kernel.
        session.copy_rings(&mut probes);
        session.parse_backlog(PARSE_CHUNK);
        // Records still unparsed may be older than parsed ones of another CPU.
        if !session.has_backlog() {
            session.apply(Some(monotonic_ns().saturating_sub(SETTLE_NS)), &mut probes);
        }
    };
    probes.stop();
    session.copy_rings(&mut probes);
    while session.has_backlog() {
        session.parse_backlog(PARSE_CHUNK);
        session.copy_rings(&mut probes);
    }
    session.apply(None, &mut probes);
    drop(probes);
    if session.unpaired > 0 {
        tell(format!(
            "{} allocator calls had an entry without a return or the reverse (a lost record, \
             or a call running when the probes were placed); they are not counted",
            session.unpaired
        ));
    }
    if session.stacks_lost > 0 {
        tell(format!(
            "the kernel dropped {} stack copies (their ring was full): those calls are counted \
             exactly but have no stack; a larger --alloc-sample takes fewer",
            session.stacks_lost
        ));
    }
    if session.follow_errors > 0 {
        tell(format!(
            "{} forked processes could not be added to the BPF filter (more than {}): their \
             calls are missing",
            session.follow_errors,
            bpf::MAX_PIDS
        ));
    }
    let (records, modules, lookups, summary) = session.records();
    let names = symbolize(&modules, &lookups);
    let write = |file: &rprof_fs::NewFile| -> std::io::Result<u64> {
        let out = BufWriter::new(file.file().try_clone()?);
        let mut writer = Writer::new(out, &header(options))?;
        for r in records.into_iter().chain(names) {
            writer.push(r)?;
        }
        let end_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut out = writer.finish(Summary {
            end_unix_ns,
            ..Summary::default()
        })?;
        out.flush()?;
        Ok(file.file().metadata()?.len())
    };
    let size = write(&file).map_err(io("write the profile"))?;
    file.commit()?;
    Ok(Outcome { summary, end, size })
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;
    use crate::allocator::Function;
    use rprof_latency::resolve::Target;

    /// Counts the allocations of the current thread.
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator; the counter is a thread-local Cell.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's layout, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: a block of System's, with its layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn function(name: &'static str, kind: Kind) -> Function {
        Function {
            name,
            kind,
            target: Target {
                name: name.into(),
                path: "/lib/libc.so.6".into(),
                address: 0,
                offset: 0,
                symbol: name.into(),
            },
            probe_offset: 0,
        }
    }

    /// Issue 14 (cost): applying a malloc/free pair allocates nothing in rprof. The probes are
    /// per CPU, so rprof's own `malloc` takes the breakpoint too: one allocation per record
    /// (a `split_off` per return did that) doubled the traps of a recording and took a third
    /// of its time.
    #[test]
    fn pairing_a_call_allocates_nothing() {
        let allocator = Allocator {
            path: "/lib/libc.so.6".into(),
            functions: vec![
                function("malloc", Kind::Malloc),
                function("free", Kind::Free),
            ],
        };
        let format = rprof_perf::SampleFormat::from_attr(&probes::probe_attr(
            rprof_latency::probes::UprobePmu {
                type_: 8,
                retprobe_bit: 0,
            },
            &std::ffi::CString::default(),
            0,
            Kind::Malloc,
            Role::Return,
        ));
        let mut session = Session::with_ids(allocator, HashMap::new(), format, 7, true, 0);
        let mut time = 0;
        let mut pair = |session: &mut Session, i: u64| {
            let block = 0x10_000 + (i % 512) * 64;
            let entry = Item::Entry {
                function: 0,
                pid: 7,
                tid: 7,
                args: [48, 0],
                ip: 0x1000,
                ret: Some(0x2000),
            };
            let ret = Item::Return {
                function: 0,
                pid: 7,
                tid: 7,
                result: block,
            };
            let free = Item::Entry {
                function: 1,
                pid: 7,
                tid: 7,
                args: [block, 0],
                ip: 0x3000,
                ret: None,
            };
            for item in [entry, ret, free] {
                time += 100;
                session.apply_one(time, item);
            }
        };
        // Tables grow to their size first.
        for i in 0..2_000 {
            pair(&mut session, i);
        }
        let before = ALLOCATIONS.with(|n| n.get());
        for i in 0..10_000 {
            pair(&mut session, i);
        }
        let allocations = ALLOCATIONS.with(|n| n.get()) - before;
        assert!(
            allocations < 100,
            "{allocations} allocations for 10,000 pairs"
        );
        assert_eq!(session.heap.alloc_calls, 12_000);
        assert_eq!(session.heap.free_calls, 12_000);
    }
}
