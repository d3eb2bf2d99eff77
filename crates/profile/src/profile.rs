//! A profile read into memory, with every sample's stack built of shared, named frames.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::format::{BlockReader, End, ReadError, ReadNotes};
use crate::lookup::LookupSet;
use crate::model::{
    lookup_address, Address, AllocStack, AllocSummary, Header, LockRecord, Module, ModuleId,
    ModuleKind, OffCpu, Record, Sample, Summary, Symbols, Wake,
};
use crate::off_cpu::{classify, OffCpuInterval, ReasonSource, ThreadActivity, WaitReason};

/// Index of a frame in [`Profile::frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(pub u32);

/// Index of a stack in [`Profile::stacks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackId(pub u32);

/// Where a frame's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameKind {
    /// User-space code.
    User,
    /// Kernel code.
    Kernel,
    /// Not code: marks the root of a stack that ran past the copied user stack.
    Truncated,
    /// Not code: the reason an off-CPU block waited (`lock`, `sleep`, ...), the leaf of every
    /// off-CPU stack (see [`Profile::off_cpu_stack`]).
    Wait,
}

/// A named frame. Frames are shared between stacks: one per distinct (name, module, location).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Function name (demangled); `module+0xADDR` when the address has no name, `[unknown]` when
    /// not even the module is known, `[truncated]` for the truncation marker.
    pub function: String,
    /// The module the code belongs to.
    pub module: Option<ModuleId>,
    /// Source file, when known.
    pub file: Option<String>,
    /// Source line, when known.
    pub line: Option<u32>,
    /// This frame was inlined into its caller (the next frame towards the root).
    pub inlined: bool,
    /// User, kernel, or the truncation marker.
    pub kind: FrameKind,
    /// The name comes from symbols (false for the `module+0xADDR` fallback).
    pub symbolized: bool,
}

/// A thread seen in the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's last name.
    pub name: String,
    /// Samples taken on it.
    pub samples: u64,
    /// Sum of those samples' periods (nanoseconds of CPU time for cpu-clock).
    pub period: u64,
    /// Every name the thread had, in time order, each with the samples taken while it had
    /// that name (a thread that runs `exec` changes its name; its earlier samples keep the old
    /// one).
    pub names: Vec<ThreadName>,
    /// When the thread was created (its `Fork` record; perf clock, nanoseconds), if recorded.
    pub created: Option<u64>,
    /// When the thread ended (its `Exit` record), if recorded.
    pub exited: Option<u64>,
}

/// One name of a thread, from the time it got it until its next name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadName {
    /// When the thread got this name (perf clock, nanoseconds; 0 when unknown).
    pub since: u64,
    /// The name.
    pub name: String,
    /// Samples taken while the thread had this name.
    pub samples: u64,
    /// Sum of those samples' periods.
    pub period: u64,
}

impl Thread {
    /// Which of [`names`](Self::names) the thread had at `time`: the last name given at or
    /// before it, or the first name for a sample taken before any (its time was unknown). Every
    /// per-name count of the profile and of the reports uses this rule.
    pub fn name_at(&self, time: u64) -> usize {
        self.names
            .partition_point(|n| n.since <= time)
            .saturating_sub(1)
    }

    /// Notes that the thread got `name` at `time` (a repeat of its current name is not a new
    /// name).
    fn add_name(&mut self, time: u64, name: &str) {
        if self.names.last().is_some_and(|last| last.name == name) {
            return;
        }
        self.names.push(ThreadName {
            since: time,
            name: name.to_owned(),
            samples: 0,
            period: 0,
        });
    }
}

/// A process seen in the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent process id, when its creation was recorded.
    pub ppid: Option<u32>,
    /// The name of its main thread.
    pub name: String,
}

/// The largest profile file read. The reader streams and bounds each block; this only keeps a
/// file that claims an absurd size (a sparse file, a link to a huge one) from being read at all.
const MAX_PROFILE_SIZE: u64 = 1 << 40;

/// A profile in memory: what was recorded plus every sample's stack as named frames.
#[derive(Debug, Clone)]
pub struct Profile {
    /// How the recording was made.
    pub header: Header,
    /// Modules by id.
    pub modules: BTreeMap<ModuleId, Module>,
    /// Samples in file order.
    pub samples: Vec<Sample>,
    /// Off-CPU blocks in file order (`rprof record --off-cpu`; empty otherwise).
    pub off_cpu: Vec<OffCpu>,
    /// Futex wake-ups in file order (`rprof record --off-cpu` with the privilege to record
    /// them; see [`wakers`](Self::wakers)).
    pub wakes: Vec<Wake>,
    /// Whether the recording asked for wake-ups: `None` when it said nothing (an older rprof,
    /// or no `--off-cpu`), else whether they were recorded and, if not, why.
    pub wakers: Option<(bool, String)>,
    /// Where modules' files were loaded: (pid, module, process address − SVMA).
    pub bases: Vec<(u32, ModuleId, u64)>,
    /// Allocation stacks in file order (`rprof record --alloc`; empty otherwise).
    pub alloc: Vec<AllocStack>,
    /// The totals of an allocation recording (`rprof record --alloc`).
    pub alloc_summary: Option<AllocSummary>,
    /// Threads by thread id.
    pub threads: BTreeMap<u32, Thread>,
    /// Processes by process id.
    pub processes: BTreeMap<u32, Process>,
    /// Totals written when the recording finished; `None` for an interrupted recording.
    pub summary: Option<Summary>,
    /// Samples reported lost by the kernel (counted from the records).
    pub lost: u64,
    /// Throttle events seen.
    pub throttled: u64,
    /// Problems met while reading, for the user to see: a cut-short or damaged file, blocks
    /// repeated, out of order or missing, a summary that contradicts the records, records of
    /// kinds from a newer rprof.
    pub warnings: Vec<String>,
    /// Names by (module, lookup address): a range of `named`.
    names: HashMap<(ModuleId, u64), (u32, u32)>,
    /// The function levels of every named address, back to back.
    named: Vec<Named>,
    /// Every distinct function and file name of the symbols, stored once.
    strings: Strings,
    frames: Vec<FrameInfo>,
    stacks: Vec<Vec<FrameId>>,
    sample_stacks: Vec<StackId>,
    /// Per off-CPU block: its stack (the reason frame first) and its reason.
    off_cpu_stacks: Vec<(StackId, WaitReason, ReasonSource)>,
    /// Per wake-up: its stack.
    wake_stacks: Vec<StackId>,
    /// Per allocation stack: its stack of named frames.
    alloc_stacks: Vec<StackId>,
    /// Per thread id: (created, exited, first time seen), from FORK, EXIT and any timed record.
    lifetimes: BTreeMap<u32, Lifetime>,
    /// The latest time of any record (nanoseconds, perf clock).
    last_time: u64,
    /// Lookup addresses without names, found while building stacks (see `missing_lookups`).
    missing: LookupSet,
}

/// What the records say about one thread's life.
#[derive(Debug, Clone, Copy, Default)]
struct Lifetime {
    created: Option<u64>,
    exited: Option<u64>,
    first_seen: Option<u64>,
}

/// One function level of a named address: indexes into [`Strings`] (`NONE`: absent), so that
/// a million addresses of a thousand functions hold a thousand names, not a million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Named {
    function: u32,
    file: u32,
    /// 0: no line.
    line: u32,
    inlined: bool,
}

/// No string: a function or file that is not known.
const NONE: u32 = u32::MAX;

/// Interned strings of the symbols.
#[derive(Debug, Clone, Default)]
struct Strings {
    list: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> Option<&str> {
        self.list.get(i as usize).map(|s| &**s)
    }
}

/// What makes two frames the same, in integers: a frame's strings are only built the first time
/// its key is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FrameKey {
    module: Option<ModuleId>,
    function: FunctionKey,
    /// Into [`Strings`]; `NONE` when absent.
    file: u32,
    /// 0: no line.
    line: u32,
    inlined: bool,
    kind: FrameKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FunctionKey {
    /// A name from the symbols, into [`Strings`].
    Named(u32),
    /// No name: shown as `module+0xLOOKUP`.
    Unnamed(u64),
    /// Not even the module is known.
    Unknown,
}

impl Profile {
    /// Reads the profile at `path`. A cut-short or damaged file gives what could be read, with
    /// a warning in [`warnings`](Self::warnings); only an unreadable start is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Profile, ReadError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        // Regular files only, opened without blocking: `-i` naming a FIFO must not hang.
        let options = rprof_fs::read::Options::new("a profile", MAX_PROFILE_SIZE);
        let (file, _) = rprof_fs::read::open_regular(path, &options).map_err(|e| match e {
            rprof_fs::read::ReadError::Open { source, .. }
            | rprof_fs::read::ReadError::Read { source, .. } => ReadError::Io {
                path: label.clone(),
                source,
            },
            other => ReadError::Refused {
                path: label.clone(),
                reason: other.reason(),
            },
        })?;
        Self::read(BufReader::with_capacity(1 << 20, file), &label)
    }

    /// Reads a profile from `input`; `label` names it in messages.
    pub fn read(input: impl Read, label: &str) -> Result<Profile, ReadError> {
        let (header, mut reader) = BlockReader::new(input, label)?;
        let mut profile = Profile {
            header,
            modules: BTreeMap::new(),
            samples: Vec::new(),
            off_cpu: Vec::new(),
            wakes: Vec::new(),
            wakers: None,
            bases: Vec::new(),
            alloc: Vec::new(),
            alloc_summary: None,
            threads: BTreeMap::new(),
            processes: BTreeMap::new(),
            summary: None,
            lost: 0,
            throttled: 0,
            warnings: Vec::new(),
            names: HashMap::default(),
            named: Vec::new(),
            strings: Strings::default(),
            frames: Vec::new(),
            stacks: Vec::new(),
            sample_stacks: Vec::new(),
            off_cpu_stacks: Vec::new(),
            wake_stacks: Vec::new(),
            alloc_stacks: Vec::new(),
            lifetimes: BTreeMap::new(),
            last_time: 0,
            missing: LookupSet::new(),
        };
        let mut symbols = Vec::new();
        loop {
            match reader.next_records() {
                Ok(Some(records)) => {
                    for record in records {
                        profile.apply(record, &mut symbols);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    profile
                        .warnings
                        .push(format!("{label}: read error after the last block: {e}"));
                    break;
                }
            }
        }
        match reader.end() {
            Some(End::Truncated { offset }) => profile.warnings.push(format!(
                "{label} is cut short at byte {offset} (the recording was interrupted); \
                 showing what was written before"
            )),
            Some(End::Corrupt { offset, reason }) => profile.warnings.push(format!(
                "{label} is damaged at byte {offset} ({reason}); showing what comes before"
            )),
            Some(End::SecondHeader { offset }) => profile.warnings.push(format!(
                "{label} holds a second profile from byte {offset} on (files joined together); \
                 showing only the first"
            )),
            _ => {}
        }
        let damaged = !profile.warnings.is_empty();
        profile.warn_about_blocks(label, reader.notes());
        profile.check_summary(label);
        profile.name_samples();
        if profile.summary.is_none() && !damaged {
            profile.warnings.push(format!(
                "{label}: the recording did not finish (rprof record was stopped before it could \
                 write its summary); showing what was written"
            ));
        }
        profile.add_symbols(symbols);
        Ok(profile)
    }

    fn apply(&mut self, record: Record, symbols: &mut Vec<Symbols>) {
        match record {
            Record::Module(module) => {
                self.modules.insert(module.id, module);
            }
            Record::Comm {
                time,
                pid,
                tid,
                name,
                exec,
            } => {
                if tid == pid || exec {
                    let process = self.process(pid);
                    process.name.clone_from(&name);
                }
                let thread = self.thread(pid, tid);
                thread.add_name(time, &name);
                thread.name = name;
                self.seen(tid, time);
            }
            Record::Fork {
                time,
                pid,
                ppid,
                tid,
                ptid,
            } => {
                self.seen(tid, time);
                let life = self.lifetimes.entry(tid).or_default();
                life.created = Some(life.created.map_or(time, |t| t.min(time)));
                let parent_name = self.threads.get(&ptid).map(|t| t.name.clone());
                if pid != ppid {
                    let parent_process = self.processes.get(&ppid).map(|p| p.name.clone());
                    let process = self.process(pid);
                    process.ppid = Some(ppid);
                    if process.name.is_empty() {
                        process.name = parent_process.or(parent_name.clone()).unwrap_or_default();
                    }
                }
                let thread = self.thread(pid, tid);
                thread.created = Some(thread.created.map_or(time, |t| t.min(time)));
                if thread.name.is_empty() {
                    thread.name = parent_name.unwrap_or_default();
                    if thread.names.is_empty() && !thread.name.is_empty() {
                        let name = thread.name.clone();
                        thread.add_name(time, &name);
                    }
                }
            }
            // Only a thread seen before gets an end: an exit alone does not make a thread.
            Record::Exit { time, tid, .. } => {
                if let Some(thread) = self.threads.get_mut(&tid) {
                    thread.exited = Some(thread.exited.map_or(time, |t| t.max(time)));
                }
                self.seen(tid, time);
                let life = self.lifetimes.entry(tid).or_default();
                life.exited = Some(life.exited.map_or(time, |t| t.max(time)));
            }
            Record::OffCpu(block) => {
                self.thread(block.pid, block.tid);
                self.process(block.pid);
                self.seen(block.tid, block.start);
                self.last_time = self.last_time.max(block.end);
                self.off_cpu.push(block);
            }
            Record::Sample(sample) => {
                self.seen(sample.tid, sample.time);
                let thread = self.thread(sample.pid, sample.tid);
                thread.samples = thread.samples.saturating_add(1);
                thread.period = thread.period.saturating_add(sample.period);
                self.process(sample.pid);
                self.samples.push(sample);
            }
            Record::Lost { count, .. } => self.lost = self.lost.saturating_add(count),
            Record::Throttle { throttled, .. } => {
                if throttled {
                    self.throttled = self.throttled.saturating_add(1);
                }
            }
            Record::Symbols(block) => symbols.push(block),
            Record::Summary(summary) => self.summary = Some(summary),
            Record::Lock(LockRecord::Wakers { recorded, note }) => {
                self.wakers = Some((recorded, note));
            }
            Record::Lock(LockRecord::Base { pid, module, base }) => {
                if !self.bases.contains(&(pid, module, base)) {
                    self.bases.push((pid, module, base));
                }
            }
            Record::Lock(LockRecord::Wake(wake)) => {
                self.seen(wake.tid, wake.time);
                self.wakes.push(wake);
            }
            Record::AllocStack(stack) => {
                self.process(stack.pid);
                self.alloc.push(stack);
            }
            Record::AllocSummary(summary) => self.alloc_summary = Some(summary),
        }
    }

    /// Notes a record of thread `tid` at `time` (0: unknown).
    fn seen(&mut self, tid: u32, time: u64) {
        if time == 0 {
            return;
        }
        self.last_time = self.last_time.max(time);
        let life = self.lifetimes.entry(tid).or_default();
        life.first_seen = Some(life.first_seen.map_or(time, |t| t.min(time)));
    }

    fn thread(&mut self, pid: u32, tid: u32) -> &mut Thread {
        self.threads.entry(tid).or_insert_with(|| Thread {
            pid,
            tid,
            name: String::new(),
            samples: 0,
            period: 0,
            names: Vec::new(),
            created: None,
            exited: None,
        })
    }

    /// Warnings for blocks that were repeated, out of place, missing or of unknown kinds.
    fn warn_about_blocks(&mut self, label: &str, notes: &ReadNotes) {
        let blocks = |n: u64| {
            if n == 1 {
                "1 block".to_string()
            } else {
                format!("{n} blocks")
            }
        };
        if notes.repeated_blocks > 0 {
            self.warnings.push(format!(
                "{label}: skipped {} repeating earlier ones (a file joined to a copy of itself, \
                 or an upload retried); every sample is counted once",
                blocks(notes.repeated_blocks)
            ));
        }
        if notes.conflicting_blocks > 0 {
            self.warnings.push(format!(
                "{label}: skipped {} reusing the sequence number of an earlier block with other \
                 contents (parts of two profiles joined?); the first of each was read",
                blocks(notes.conflicting_blocks)
            ));
        }
        if notes.out_of_order_blocks > 0 {
            self.warnings.push(format!(
                "{label}: {} out of order (the file was cut and put together again?); read \
                 where they are",
                blocks(notes.out_of_order_blocks)
            ));
        }
        if notes.missing_blocks > 0 {
            self.warnings.push(format!(
                "{label}: {} missing (sequence numbers skipped); their samples are not in the \
                 report",
                blocks(notes.missing_blocks)
            ));
        }
        if notes.unknown_records > 0 {
            let n = notes.unknown_records;
            self.warnings.push(format!(
                "{label}: {n} {} of unknown kinds skipped (written by a newer rprof)",
                if n == 1 { "record" } else { "records" }
            ));
        }
        if notes.unknown_blocks > 0 {
            self.warnings.push(format!(
                "{label}: {} of unknown kinds skipped (written by a newer rprof)",
                blocks(notes.unknown_blocks)
            ));
        }
    }

    /// Compares the summary with what the records say. The records are trusted: they are
    /// checksummed block by block and repeats are skipped, while a summary is one record that
    /// a joined or edited file can leave stale.
    fn check_summary(&mut self, label: &str) {
        let Some(summary) = &self.summary else {
            return;
        };
        let truncated = self.samples.iter().filter(|s| s.truncated).count() as u64;
        let read = [
            ("samples", summary.samples, self.samples.len() as u64),
            ("lost", summary.lost, self.lost),
            ("throttled", summary.throttled, self.throttled),
            ("truncated", summary.truncated, truncated),
        ];
        let differ: Vec<_> = read.iter().filter(|(_, s, r)| s != r).collect();
        if differ.is_empty() {
            return;
        }
        let says = |pick: fn(&(&str, u64, u64)) -> u64| {
            differ
                .iter()
                .map(|f| format!("{} {}", pick(f), f.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.warnings.push(format!(
            "{label}: its summary says {} but its records hold {}; the counts from the records \
             are used",
            says(|f| f.1),
            says(|f| f.2)
        ));
    }

    /// Counts every sample under the name its thread had when the sample was taken.
    fn name_samples(&mut self) {
        for thread in self.threads.values_mut() {
            // Records are in time order within a round; sort in case rounds overlapped.
            thread.names.sort_by_key(|n| n.since);
            if thread.names.is_empty() {
                // Never named (its start was not recorded): one unnamed span.
                let name = thread.name.clone();
                thread.add_name(0, &name);
            }
        }
        for sample in &self.samples {
            let Some(thread) = self.threads.get_mut(&sample.tid) else {
                continue;
            };
            let at = thread.name_at(sample.time);
            if let Some(name) = thread.names.get_mut(at) {
                name.samples = name.samples.saturating_add(1);
                name.period = name.period.saturating_add(sample.period);
            }
        }
    }

    fn process(&mut self, pid: u32) -> &mut Process {
        self.processes.entry(pid).or_insert_with(|| Process {
            pid,
            ppid: None,
            name: String::new(),
        })
    }

    /// Lookup addresses that have no name yet, in modules that could have one: what a
    /// symbolizer should be asked for (all of them for an interrupted recording).
    pub fn missing_lookups(&self) -> LookupSet {
        self.missing.clone()
    }

    /// [`missing_lookups`](Self::missing_lookups) without the copy, for a caller about to name
    /// them and call [`add_symbols`](Self::add_symbols) (which finds what is still missing).
    pub fn take_missing_lookups(&mut self) -> LookupSet {
        std::mem::take(&mut self.missing)
    }

    /// Adds names for addresses and builds every sample's stack again.
    pub fn add_symbols(&mut self, blocks: Vec<Symbols>) {
        for block in blocks {
            let Some(module) = block.module else {
                continue;
            };
            let ids: Vec<u32> = block
                .strings
                .iter()
                .map(|s| self.strings.intern(s))
                .collect();
            let string = |index: u32| -> u32 { ids.get(index as usize).copied().unwrap_or(NONE) };
            for (lookup, frames) in &block.entries {
                let start = self.named.len() as u32;
                self.named.extend(frames.iter().map(|f| Named {
                    function: string(f.function),
                    file: string(f.file),
                    line: f.line,
                    inlined: f.inlined,
                }));
                let len = self.named.len() as u32 - start;
                self.names.insert((module, *lookup), (start, len));
            }
        }
        self.build_stacks();
    }

    /// All distinct frames.
    pub fn frames(&self) -> &[FrameInfo] {
        &self.frames
    }

    /// One frame.
    pub fn frame(&self, id: FrameId) -> &FrameInfo {
        &self.frames[id.0 as usize]
    }

    /// All distinct stacks, each leaf first.
    pub fn stacks(&self) -> &[Vec<FrameId>] {
        &self.stacks
    }

    /// One stack, leaf first: kernel frames, then user frames (inlined frames before the
    /// function they were inlined into), then `[truncated]` when the stack's root is missing.
    pub fn stack(&self, id: StackId) -> &[FrameId] {
        &self.stacks[id.0 as usize]
    }

    /// The stack of the sample at `index` in [`samples`](Self::samples).
    pub fn sample_stack(&self, index: usize) -> StackId {
        self.sample_stacks[index]
    }

    /// The name a report shows for a module.
    pub fn module_name(&self, id: ModuleId) -> &str {
        self.modules.get(&id).map_or("[unknown]", Module::name)
    }

    /// Total period (weight) of all samples.
    pub fn total_period(&self) -> u64 {
        self.samples
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.period))
    }

    /// Builds the shared frames and stacks of every sample from its addresses and the names
    /// known so far.
    fn build_stacks(&mut self) {
        // The previous frames and stacks are replaced: free them first rather than hold both.
        self.frames = Vec::new();
        self.stacks = Vec::new();
        self.sample_stacks = Vec::new();
        let mut frame_ids: HashMap<FrameKey, FrameId> = HashMap::default();
        let truncated = FrameId(0);
        let mut frames: Vec<FrameInfo> = vec![FrameInfo {
            function: "[truncated]".into(),
            module: None,
            file: None,
            line: None,
            inlined: false,
            kind: FrameKind::Truncated,
            symbolized: false,
        }];
        // The frames of each distinct address, as a range of `address_frames`.
        let mut by_address: HashMap<(Option<ModuleId>, u64, FrameKind), (u32, u32)> =
            HashMap::default();
        let mut address_frames: Vec<FrameId> = Vec::new();
        let mut stack_ids: HashMap<Vec<FrameId>, StackId> = HashMap::default();
        // Samples with the very same addresses share a stack: most samples repeat one, and
        // this skips naming their frames again.
        let mut raw_ids: HashMap<(&[Address], &[Address], bool), StackId> = HashMap::default();
        let mut stacks: Vec<Vec<FrameId>> = Vec::new();
        let mut sample_stacks =
            Vec::with_capacity(self.samples.len() + self.off_cpu.len() + self.wakes.len());
        let mut intern = |key: FrameKey| -> FrameId {
            *frame_ids.entry(key).or_insert_with(|| {
                let id = FrameId(frames.len() as u32);
                frames.push(self.frame_info(&key));
                id
            })
        };
        let mut missing = LookupSet::new();
        let mut stack = Vec::new();
        let raws = self
            .samples
            .iter()
            .map(|s| (&s.kernel[..], &s.user[..], s.truncated))
            .chain(
                self.off_cpu
                    .iter()
                    .map(|b| (&b.kernel[..], &b.user[..], b.truncated)),
            )
            .chain(
                self.wakes
                    .iter()
                    .map(|w| (&w.kernel[..], &w.user[..], w.truncated)),
            )
            .chain(
                self.alloc
                    .iter()
                    .map(|a| (&[][..], &a.user[..], a.truncated)),
            );
        for raw in raws {
            let (kernel, user, raw_truncated) = raw;
            if let Some(&id) = raw_ids.get(&raw) {
                sample_stacks.push(id);
                continue;
            }
            stack.clear();
            for (kind, addresses) in [(FrameKind::Kernel, kernel), (FrameKind::User, user)] {
                for (index, address) in addresses.iter().enumerate() {
                    let lookup = lookup_address(index, address.address);
                    let key = (address.module, lookup, kind);
                    let (start, len) = *by_address.entry(key).or_insert_with(|| {
                        if let Some(module) = address.module {
                            let nameable = self
                                .modules
                                .get(&module)
                                .is_some_and(|m| m.kind != ModuleKind::Anonymous);
                            if nameable && !self.names.contains_key(&(module, lookup)) {
                                missing.add(module, lookup);
                            }
                        }
                        let start = address_frames.len() as u32;
                        for frame in self.frame_keys(address.module, lookup, kind) {
                            address_frames.push(intern(frame));
                        }
                        (start, address_frames.len() as u32 - start)
                    });
                    let range = start as usize..(start + len) as usize;
                    stack.extend_from_slice(address_frames.get(range).unwrap_or_default());
                }
            }
            if raw_truncated {
                stack.push(truncated);
            }
            let id = match stack_ids.get(&stack) {
                Some(&id) => id,
                None => {
                    let id = StackId(stacks.len() as u32);
                    stacks.push(stack.clone());
                    stack_ids.insert(stack.clone(), id);
                    id
                }
            };
            raw_ids.insert(raw, id);
            sample_stacks.push(id);
        }
        // Off-CPU blocks: the reason (found from the names of the plain stack) as the leaf.
        let alloc_stacks =
            sample_stacks.split_off(self.samples.len() + self.off_cpu.len() + self.wakes.len());
        let wake_stacks = sample_stacks.split_off(self.samples.len() + self.off_cpu.len());
        let block_stacks = sample_stacks.split_off(self.samples.len());
        self.frames = frames;
        let mut reason_frames = [FrameId(0); 5];
        for (slot, reason) in reason_frames.iter_mut().zip(WaitReason::ALL) {
            *slot = FrameId(self.frames.len() as u32);
            self.frames.push(FrameInfo {
                function: format!("[{}]", reason.name()),
                module: None,
                file: None,
                line: None,
                inlined: false,
                kind: FrameKind::Wait,
                symbolized: false,
            });
        }
        self.stacks = stacks;
        let mut off_cpu_stacks = Vec::with_capacity(block_stacks.len());
        for (plain, block) in block_stacks.into_iter().zip(&self.off_cpu) {
            let plain = &self.stacks[plain.0 as usize];
            let (reason, source) = classify(self, plain, block.preempted);
            stack.clear();
            stack.push(reason_frames[reason.index()]);
            stack.extend_from_slice(plain);
            let id = match stack_ids.get(&stack) {
                Some(&id) => id,
                None => {
                    let id = StackId(self.stacks.len() as u32);
                    self.stacks.push(stack.clone());
                    stack_ids.insert(stack.clone(), id);
                    id
                }
            };
            off_cpu_stacks.push((id, reason, source));
        }
        self.sample_stacks = sample_stacks;
        self.off_cpu_stacks = off_cpu_stacks;
        self.wake_stacks = wake_stacks;
        self.alloc_stacks = alloc_stacks;
        self.missing = missing;
    }

    /// The stack of the allocation stack at `index` in [`alloc`](Self::alloc): its frames
    /// named, the allocator function first.
    pub fn alloc_stack(&self, index: usize) -> StackId {
        self.alloc_stacks[index]
    }

    /// True when the profile holds off-CPU blocks (recorded with `rprof record --off-cpu`).
    pub fn has_off_cpu(&self) -> bool {
        !self.off_cpu.is_empty()
    }

    /// The stack of the off-CPU block at `index` in [`off_cpu`](Self::off_cpu): a synthetic
    /// frame of kind [`FrameKind::Wait`] naming its reason (`[lock]`, ...) first, then its
    /// kernel and user frames as for a sample.
    pub fn off_cpu_stack(&self, index: usize) -> StackId {
        self.off_cpu_stacks[index].0
    }

    /// The stack of the wake-up at `index` in [`wakes`](Self::wakes): kernel and user frames as
    /// for a sample.
    pub fn wake_stack(&self, index: usize) -> StackId {
        self.wake_stacks[index]
    }

    /// Why the off-CPU block at `index` waited, and what that was found from.
    pub fn off_cpu_reason(&self, index: usize) -> (WaitReason, ReasonSource) {
        let (_, reason, source) = self.off_cpu_stacks[index];
        (reason, source)
    }

    /// How many off-CPU blocks had their reason found from each [`ReasonSource`], indexed
    /// `[preempted, kernel, user, nothing]`.
    pub fn reason_sources(&self) -> [u64; 4] {
        let mut out = [0u64; 4];
        for &(_, _, source) in &self.off_cpu_stacks {
            out[source as usize] += 1;
        }
        out
    }

    /// The end of the recording as the records tell it: the latest time of any record.
    pub fn last_time(&self) -> u64 {
        self.last_time
    }

    /// Per thread (by thread id), its life in the recording: alive from its creation (or first
    /// record) to its exit (or the end of the recording), its off-CPU intervals with reasons
    /// and stacks, and the times of its samples. The public seam for timelines and for the
    /// per-thread wall/on-CPU/off-CPU table:
    ///
    /// - an interval is `start..end` of an [`OffCpu`] block clipped to the thread's life;
    ///   `reason` from [`Profile::off_cpu_reason`], `stack` from [`Profile::off_cpu_stack`];
    /// - the thread runs between intervals ([`ThreadActivity::on_cpu_ns`]);
    /// - `samples` are `(time, index in Profile::samples)`, for on-CPU stacks at a time.
    ///
    /// Threads without any off-CPU block or sample are left out.
    pub fn thread_activity(&self) -> Vec<ThreadActivity> {
        let mut out: BTreeMap<u32, ThreadActivity> = BTreeMap::new();
        let activity = |tid: u32, pid: u32| -> ThreadActivity {
            let life = self.lifetimes.get(&tid).copied().unwrap_or_default();
            let start = life.created.or(life.first_seen).unwrap_or(0);
            let end = life.exited.unwrap_or(self.last_time).max(start);
            ThreadActivity {
                pid,
                tid,
                start,
                end,
                exited: life.exited.is_some(),
                off_cpu: Vec::new(),
                samples: Vec::new(),
            }
        };
        for (index, block) in self.off_cpu.iter().enumerate() {
            let thread = out
                .entry(block.tid)
                .or_insert_with(|| activity(block.tid, block.pid));
            let start = block.start.clamp(thread.start, thread.end);
            let end = block.end.clamp(start, thread.end);
            let (reason, _) = self.off_cpu_reason(index);
            thread.off_cpu.push(OffCpuInterval {
                start,
                end,
                reason,
                stack: self.off_cpu_stack(index),
                ended: block.ended,
                index,
            });
        }
        for (index, sample) in self.samples.iter().enumerate() {
            let thread = out
                .entry(sample.tid)
                .or_insert_with(|| activity(sample.tid, sample.pid));
            thread.samples.push((sample.time, index));
        }
        let mut threads: Vec<ThreadActivity> = out.into_values().collect();
        for thread in &mut threads {
            thread.off_cpu.sort_by_key(|i| (i.start, i.end));
            // Overlaps (a lost switch-in) must not count twice.
            let mut last_end = 0;
            for interval in &mut thread.off_cpu {
                interval.start = interval.start.max(last_end);
                interval.end = interval.end.max(interval.start);
                last_end = interval.end;
            }
            thread.samples.sort_unstable();
        }
        threads
    }

    /// The frames for one address, innermost first, as keys.
    fn frame_keys(
        &self,
        module: Option<ModuleId>,
        lookup: u64,
        kind: FrameKind,
    ) -> impl Iterator<Item = FrameKey> + '_ {
        let unnamed = FrameKey {
            module,
            function: match module {
                Some(_) => FunctionKey::Unnamed(lookup),
                None => FunctionKey::Unknown,
            },
            file: NONE,
            line: 0,
            inlined: false,
            kind,
        };
        let named = module
            .and_then(|m| self.names.get(&(m, lookup)))
            .and_then(|&(start, len)| self.named.get(start as usize..(start + len) as usize))
            .filter(|list| !list.is_empty())
            .unwrap_or_default();
        let fallback = named.is_empty().then_some(unnamed);
        named
            .iter()
            .map(move |n| FrameKey {
                function: if n.function == NONE {
                    FunctionKey::Unnamed(lookup)
                } else {
                    FunctionKey::Named(n.function)
                },
                file: n.file,
                line: n.line,
                inlined: n.inlined,
                ..unnamed
            })
            .chain(fallback)
    }

    /// The frame a key stands for, with its strings.
    fn frame_info(&self, key: &FrameKey) -> FrameInfo {
        let (function, symbolized) = match key.function {
            FunctionKey::Named(i) => (self.strings.get(i).unwrap_or_default().to_owned(), true),
            FunctionKey::Unnamed(lookup) => {
                let module = key.module.map_or("[unknown]", |m| self.module_name(m));
                (format!("{module}+{lookup:#x}"), false)
            }
            FunctionKey::Unknown => ("[unknown]".to_owned(), false),
        };
        FrameInfo {
            function,
            module: key.module,
            file: self.strings.get(key.file).map(str::to_owned),
            line: (key.line != 0).then_some(key.line),
            inlined: key.inlined,
            kind: key.kind,
            symbolized,
        }
    }
}
