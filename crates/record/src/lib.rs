//! The core of a recording: perf records in, profile records out.
//!
//! A [`Recorder`] waits on the samplers' ring buffers (`rprof-perf`), drains every buffer each
//! round, sorts the round's records by time and applies them in order: MMAP2, FORK, COMM-exec
//! and EXIT keep `rprof-unwind`'s per-process address spaces current, and each SAMPLE is unwound
//! right away, so that only module-relative addresses (never stack copies) reach the profile
//! (`rprof-profile`). Modules get profile ids on first use. A block is flushed at least every
//! [`FLUSH_INTERVAL`], so a killed recording leaves a readable profile.
//!
//! Records come from a [`RecordSource`] ([`source`]): the live ring buffers of the samplers, or
//! a captured stream ([`capture`]; `RPROF_CAPTURE=PATH` makes a recording write one), so the
//! recorder's rules are tested on real kernel output without a kernel.
//!
//! Around the recorder, the session of `rprof record` ([`session::record`]): opening the
//! samplers with their fallbacks and sizing their ring buffers ([`open`]), the profile's file
//! and what happens when it cannot be written (`output`), the followed process (`process`),
//! and one loop for a launched COMMAND and an attached process. It hands the caller
//! [`Note`]s as they arise and a [`session::Summary`] at the end, or a [`RecordError`].
//!
//! It leaves to others: the command line, printing and exit codes (the `rprof` binary),
//! starting COMMAND and signals (`rprof-launch`), the samplers themselves (`rprof-perf`), and
//! naming addresses (the caller passes a naming function to [`session::record`] and
//! [`Recorder::finish`]).

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

// Samples are unwound from x86-64 registers (rprof_perf::parse::x86_64 IP, SP, BP).
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "rprof-record supports x86-64 only: it unwinds samples from x86-64 registers (IP, SP, BP)"
);

pub mod capture;
mod cgroup;
pub mod error;
pub mod locks;
pub mod note;
pub mod open;
mod output;
mod priority;
mod process;
pub mod session;
pub mod source;

pub use capture::{Capture, CaptureError, CaptureWriter, Replay, CAPTURE_ENV};
pub use error::RecordError;
pub use note::Note;
pub use session::{record, Naming};
pub use source::{BufferRecords, RecordSource};

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rprof_perf::parse::{x86_64, CallchainContext, FileId};
use rprof_perf::{parse_record, CallGraph, PerfRecord, SampleFormat, Samplers};
use rprof_profile::{
    Address, Header, LookupSet, Module, ModuleId, ModuleKind, OffCpu, Record, Sample, Summary,
    Writer,
};
use rprof_unwind::{Frame, Mapping, Mode, ModuleIndex, Outcome, Regs, Unwinder};

/// A finished block reaches the file at least this often, so that a killed record leaves a
/// readable profile of everything but its last second. (It was 250 ms: every block restates
/// the stacks it uses, and at 999 Hz 1 s blocks make an rg profile's samples 20 % smaller;
/// the profile's writer still ends a block at about 1 MiB, issue 13.)
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest sleep in `poll` (the caller checks --duration and interrupts between rounds).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Now, in nanoseconds since the Unix epoch.
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counts for the summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Samples written.
    pub samples: u64,
    /// Samples the kernel reported lost.
    pub lost: u64,
    /// Times the kernel throttled sampling.
    pub throttled: u64,
    /// Samples whose stack is incomplete at the root (marked `[truncated]`): the user stack ran
    /// past the copy, or unwinding failed part way.
    pub truncated: u64,
    /// Of those, the samples whose unwinding failed (rather than running out of copied stack).
    pub unwind_failed: u64,
    /// perf records that did not parse (skipped).
    pub bad_records: u64,
    /// Ring-buffer inconsistencies (skipped).
    pub ring_errors: u64,
    /// Every (pid, tid) seen.
    pub threads: HashSet<(u32, u32)>,
    /// Every pid seen.
    pub processes: HashSet<u32>,
    /// Off-CPU blocks written (`--off-cpu`).
    pub off_cpu_blocks: u64,
    /// Of those, the blocks without a stack (no sample of the off-CPU sampler came with the
    /// switch-out: kernel sampling not permitted, or the sample was lost).
    pub off_cpu_without_stack: u64,
    /// Switch records that did not pair up (a switch-out while the thread was already off the
    /// CPU, or a switch-in without a switch-out): records were lost, or the thread was
    /// already off the CPU when the recording began.
    pub unpaired_switches: u64,
}

/// The stack of a switch-out, waiting for the switch record that starts its block.
struct SwitchStack {
    user: Vec<Address>,
    kernel: Vec<Address>,
    truncated: bool,
    args: Vec<u64>,
}

/// An off-CPU block whose switch-in has not come yet.
struct Blocked {
    pid: u32,
    cpu: u32,
    start: u64,
    preempted: bool,
    stack: Option<SwitchStack>,
}

/// What a recording takes from the machine it runs on (a replay takes it from the capture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `kernel.perf_event_max_stack`: a frame-pointer callchain this long may be cut short.
    pub max_stack: usize,
    /// The running kernel's build id, for the kernel's module record.
    pub kernel_build_id: Option<Vec<u8>>,
    /// Where to capture the raw record stream, if anywhere (see [`capture`]).
    pub capture: Option<PathBuf>,
    /// The records come from this machine's running processes (not a capture replayed):
    /// `/proc/PID/maps` may be read to repair what lost records took away.
    pub live: bool,
}

impl Settings {
    /// This machine's settings; the capture path from [`CAPTURE_ENV`] when it is set.
    pub fn from_machine() -> Settings {
        Settings {
            max_stack: rprof_events::max_stack().unwrap_or(127) as usize,
            kernel_build_id: kernel_build_id(),
            capture: std::env::var_os(CAPTURE_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            live: true,
        }
    }
}

/// Applies perf records in time order and writes the profile.
pub struct Recorder<W: Write> {
    writer: Writer<W>,
    unwinder: Unwinder,
    call_graph: CallGraph,
    /// Profile module ids of the unwinder's modules that samples used.
    module_ids: HashMap<ModuleIndex, ModuleId>,
    kernel_module: Option<ModuleId>,
    modules: Vec<Module>,
    lookups: LookupSet,
    /// Lookups not taken yet by [`take_new_lookups`](Recorder::take_new_lookups) (only while
    /// `noting_lookups`).
    new_lookups: Vec<(ModuleId, u64)>,
    noting_lookups: bool,
    stats: Stats,
    /// Processes that exited: forgotten one round later, so that samples still in flight in
    /// another CPU's buffer can be unwound.
    exited: Vec<u32>,
    last_flush: Instant,
    /// Event descriptors that reported POLLHUP (their task ended): not polled again.
    hung_up: HashSet<i32>,
    max_stack: usize,
    kernel_build_id: Option<Vec<u8>>,
    capture: Option<CaptureWriter>,
    /// Whether `/proc` describes the recorded processes ([`Settings::live`]).
    proc_is_live: bool,
    /// Per process, the lost-record count when its maps were last read again from `/proc`
    /// ([`Recorder::reread_maps_after_loss`]).
    maps_reread: HashMap<u32, u64>,
    frames: Vec<Frame>,
    kernel_scratch: Vec<u64>,
    user_scratch: Vec<u64>,
    /// Identifiers of the off-CPU sampler's events: their samples are switch-out stacks.
    switch_ids: Vec<u64>,
    /// Identifiers of the wake-up sampler's events (`locks`): their samples are futex wakes.
    wake_ids: Vec<u64>,
    /// Module bases already written, by (pid, module, base) (`locks`).
    bases_written: HashSet<(u32, ModuleIndex, u64)>,
    /// (pid, module) pairs seen in off-CPU and wake-up stacks (`locks`).
    bases_seen: HashSet<(u32, ModuleId)>,
    /// Per thread, the stack its last switch sample captured, until its switch-out record.
    switch_stacks: HashMap<u32, SwitchStack>,
    /// Threads off the CPU, by thread id.
    blocked: HashMap<u32, Blocked>,
    /// Threads that had a switch record: a later switch-in without a switch-out means one
    /// was lost.
    switched: HashSet<u32>,
    /// Threads created during the recording that have not run yet: their creation time.
    created: HashMap<u32, u64>,
    /// Threads named before the recording began (attach: from /proc): they may be off the
    /// CPU since its start.
    pre_existing: HashSet<u32>,
    /// A switch-in applied before the switch-out (or FORK) it follows, by thread: (time, pid,
    /// cpu). Rounds are sorted by time, but a record of one CPU can reach a later round than a
    /// newer record of another CPU (its buffer was read first); the older record, when it
    /// comes, pairs with this one.
    early_in: HashMap<u32, (u64, u32, u32)>,
    /// When the recording began (perf clock), for threads already off the CPU then.
    start_time: Option<u64>,
    /// The latest record time applied.
    last_time: u64,
    /// When the recording stopped (perf clock), for blocks still open at the end.
    stop_time: Option<u64>,
    /// Processes whose samples are skipped until their `execve` (COMM exec record): a command
    /// sampled on its cgroup from before its release, while it still runs rprof's code.
    awaiting_exec: HashSet<u32>,
    /// Threads seen and not exited.
    live: HashSet<u32>,
}

impl<W: Write> Recorder<W> {
    /// Waits (at most [`POLL_INTERVAL`]) for records or the target's exit, then drains every
    /// buffer. Returns true when the target has exited.
    pub fn wait_round(
        &mut self,
        samplers: &mut Samplers,
        exit_watch: Option<BorrowedFd<'_>>,
    ) -> io::Result<bool> {
        // Per buffer, the first of its events that has not hung up (its thread ended): polling a
        // hung-up event would wake us up constantly, and any of them reports waiting records.
        let mut fds: Vec<libc::pollfd> = (0..samplers.buffers().len())
            .map(|i| libc::pollfd {
                fd: samplers
                    .event_fds(i)
                    .map(|fd| fd.as_raw_fd())
                    .find(|fd| !self.hung_up.contains(fd))
                    .unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let watch_index = exit_watch.map(|fd| {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            fds.len() - 1
        });
        let timeout = POLL_INTERVAL
            .min(FLUSH_INTERVAL.saturating_sub(self.last_flush.elapsed()))
            .as_millis() as i32;
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(io::Error::new(
                    err.kind(),
                    format!("poll on the perf ring buffers failed: {err}"),
                ));
            }
        }
        let mut exited = false;
        if rc > 0 {
            for (i, pfd) in fds.iter().enumerate() {
                if Some(i) == watch_index {
                    exited = pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0;
                } else if pfd.revents & libc::POLLHUP != 0 && pfd.revents & libc::POLLIN == 0 {
                    self.hung_up.insert(pfd.fd);
                }
            }
        }
        self.drain(samplers)?;
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(exited)
    }

    /// Starts the profile on `out` (the header is written at once), with this machine's
    /// [`Settings`].
    pub fn new(out: W, header: &Header, call_graph: CallGraph) -> io::Result<Recorder<W>> {
        Recorder::with_settings(out, header, call_graph, Settings::from_machine())
    }

    /// Starts the profile on `out` with the given settings (a capture file is created now).
    pub fn with_settings(
        out: W,
        header: &Header,
        call_graph: CallGraph,
        settings: Settings,
    ) -> io::Result<Recorder<W>> {
        let capture = match &settings.capture {
            Some(path) => Some(CaptureWriter::create(path, &settings, call_graph)?),
            None => None,
        };
        let writer = Writer::new(out, header)?;
        Ok(Recorder {
            writer,
            unwinder: Unwinder::new(),
            call_graph,
            module_ids: HashMap::new(),
            kernel_module: None,
            modules: Vec::new(),
            lookups: LookupSet::new(),
            new_lookups: Vec::new(),
            noting_lookups: false,
            stats: Stats::default(),
            exited: Vec::new(),
            last_flush: Instant::now(),
            hung_up: HashSet::new(),
            max_stack: settings.max_stack,
            kernel_build_id: settings.kernel_build_id,
            capture,
            proc_is_live: settings.live,
            maps_reread: HashMap::new(),
            frames: Vec::new(),
            kernel_scratch: Vec::new(),
            user_scratch: Vec::new(),
            switch_ids: Vec::new(),
            wake_ids: Vec::new(),
            bases_written: HashSet::new(),
            bases_seen: HashSet::new(),
            switch_stacks: HashMap::new(),
            blocked: HashMap::new(),
            switched: HashSet::new(),
            created: HashMap::new(),
            pre_existing: HashSet::new(),
            early_in: HashMap::new(),
            start_time: None,
            last_time: 0,
            stop_time: None,
            awaiting_exec: HashSet::new(),
            live: HashSet::new(),
        })
    }

    /// Sets when the recording began (perf clock): a thread of an attached process that was
    /// off the CPU then gets a block from there to its first switch-in. Without it, the first
    /// record's time.
    pub fn set_start_time(&mut self, time: u64) {
        self.start_time = Some(time);
    }

    /// Sets when the recording stopped (perf clock): threads still off the CPU then get a
    /// block that ends there ([`OffCpu::ended`] false). Without it, the latest record's time.
    pub fn set_stop_time(&mut self, time: u64) {
        self.stop_time = Some(time);
    }

    /// Skips the samples of process `pid` until its next `execve` (a launched command that is
    /// sampled from before its release: until then it runs rprof's code).
    pub fn await_exec(&mut self, pid: u32) {
        self.awaiting_exec.insert(pid);
    }

    /// Adds a record of the caller's (e.g. thread names read from /proc when attaching).
    pub fn push(&mut self, record: Record) -> io::Result<()> {
        if let Record::Comm { tid, .. } = record {
            if self.last_time == 0 {
                self.pre_existing.insert(tid);
            }
        }
        self.writer.push(record)
    }

    /// The unwinder, e.g. to load the mappings of an attached process from /proc.
    pub fn unwinder_mut(&mut self) -> &mut Unwinder {
        &mut self.unwinder
    }

    /// Threads of the target seen in records and not exited yet.
    pub fn live_threads(&self) -> usize {
        self.live.len()
    }

    /// From now on, keeps the lookup addresses first used since the last
    /// [`take_new_lookups`](Self::take_new_lookups), so that they can be named while the target
    /// runs.
    pub fn note_new_lookups(&mut self) {
        self.noting_lookups = true;
    }

    /// The (module, lookup address) pairs samples used for the first time since the last call
    /// (see [`note_new_lookups`](Self::note_new_lookups)), with the modules known now.
    pub fn take_new_lookups(&mut self) -> (&[Module], Vec<(ModuleId, u64)>) {
        (&self.modules, std::mem::take(&mut self.new_lookups))
    }

    /// Adds a stack's lookup addresses to those to name.
    fn note_lookups(&mut self, user: &[Address], kernel: &[Address]) {
        if self.noting_lookups {
            let new = &mut self.new_lookups;
            self.lookups
                .add_stack_noting(user, kernel, |module, lookup| new.push((module, lookup)));
        } else {
            self.lookups.add_stack(user, kernel);
        }
    }

    /// What the recording has counted so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Ends the current block and writes it out (and what the capture holds, if any).
    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        if let Some(capture) = &mut self.capture {
            capture.flush()?;
        }
        self.writer.flush()
    }

    /// Reads one round from `source` (every buffer once), sorts the round's records by time
    /// and applies them.
    pub fn drain<S: RecordSource + ?Sized>(&mut self, source: &mut S) -> io::Result<()> {
        for pid in std::mem::take(&mut self.exited) {
            self.unwinder.exit(pid);
        }
        let format = source.format();
        let ids = source.companion_ids();
        if ids.len() != self.switch_ids.len() {
            self.switch_ids = ids.to_vec();
        }
        let wake_ids = source.wake_ids();
        if wake_ids.len() != self.wake_ids.len() {
            self.wake_ids = wake_ids;
        }
        source.read_round(&mut |buffers| self.apply_round(&format, buffers))
    }

    fn apply_round(
        &mut self,
        format: &SampleFormat,
        buffers: &[BufferRecords<'_>],
    ) -> io::Result<()> {
        if let Some(capture) = &mut self.capture {
            capture.round(format, &self.switch_ids, &self.wake_ids, buffers)?;
        }
        let mut records = Vec::new();
        for buffer in buffers {
            if buffer.ring_error {
                self.stats.ring_errors += 1;
            }
            let mut last_time = 0;
            for &bytes in &buffer.records {
                match parse_record(format, bytes) {
                    Ok(record) => {
                        let time = record.time().unwrap_or(last_time);
                        last_time = time;
                        records.push((time, records.len(), record));
                    }
                    Err(_) => self.stats.bad_records += 1,
                }
            }
        }
        records.sort_unstable_by_key(|&(time, seq, _)| (time, seq));
        for (time, _, record) in &records {
            if self.start_time.is_none() && *time > 0 {
                self.start_time = Some(*time);
            }
            self.last_time = self.last_time.max(*time);
            self.apply(record)?;
        }
        Ok(())
    }

    fn apply(&mut self, record: &PerfRecord<'_>) -> io::Result<()> {
        match record {
            PerfRecord::Sample(s) if s.identifier.is_some_and(|id| self.wake_ids.contains(&id)) => {
                self.wake_sample(s)?
            }
            PerfRecord::Sample(s)
                if s.identifier.is_some_and(|id| self.switch_ids.contains(&id)) =>
            {
                self.switch_sample(s)?
            }
            PerfRecord::Sample(s) if s.pid.is_some_and(|pid| self.awaiting_exec.contains(&pid)) => {
            }
            PerfRecord::Sample(s) => self.sample(s)?,
            PerfRecord::Switch(sw) => self.switch(sw)?,
            PerfRecord::Mmap(m) => {
                let (build_id, inode) = match m.file_id {
                    Some(FileId::BuildId(id)) => (Some(id.to_vec()), 0),
                    Some(FileId::Inode { ino, .. }) => (None, ino),
                    None => (None, 0),
                };
                self.unwinder.add_mapping(
                    m.pid,
                    Mapping {
                        start: m.addr,
                        end: m.addr.saturating_add(m.len),
                        pgoff: m.pgoff,
                        path: String::from_utf8_lossy(m.filename).into_owned(),
                        build_id,
                        inode,
                        executable: m.is_executable(),
                    },
                );
            }
            PerfRecord::Comm(c) => {
                if c.exec {
                    self.unwinder.exec(c.pid);
                    // Its modules load at new bases (`locks`).
                    self.bases_seen.retain(|&(pid, _)| pid != c.pid);
                    self.awaiting_exec.remove(&c.pid);
                }
                self.note_thread(c.pid, c.tid);
                self.push(Record::Comm {
                    time: c.sample_id.time.unwrap_or(0),
                    pid: c.pid,
                    tid: c.tid,
                    name: String::from_utf8_lossy(c.name).into_owned(),
                    exec: c.exec,
                })?;
            }
            PerfRecord::Fork(t) => {
                if t.pid != t.ppid {
                    self.unwinder.fork(t.ppid, t.pid);
                }
                self.note_thread(t.pid, t.tid);
                match self.early_in.remove(&t.tid) {
                    // Its first switch-in came first: it waited for a CPU since now.
                    Some((time, pid, cpu)) if time >= t.time => {
                        self.stats.unpaired_switches =
                            self.stats.unpaired_switches.saturating_sub(1);
                        let blocked = Blocked {
                            pid,
                            cpu,
                            start: t.time,
                            preempted: true,
                            stack: None,
                        };
                        self.off_cpu(t.tid, blocked, time, true)?;
                    }
                    _ => {
                        self.created.insert(t.tid, t.time);
                    }
                }
                self.push(Record::Fork {
                    time: t.time,
                    pid: t.pid,
                    ppid: t.ppid,
                    tid: t.tid,
                    ptid: t.ptid,
                })?;
            }
            PerfRecord::Exit(t) => {
                self.live.remove(&t.tid);
                if t.pid == t.tid {
                    self.exited.push(t.pid);
                }
                self.switch_stacks.remove(&t.tid);
                self.switched.remove(&t.tid);
                self.created.remove(&t.tid);
                self.early_in.remove(&t.tid);
                if let Some(blocked) = self.blocked.remove(&t.tid) {
                    self.off_cpu(t.tid, blocked, t.time, false)?;
                }
                self.push(Record::Exit {
                    time: t.time,
                    pid: t.pid,
                    ppid: t.ppid,
                    tid: t.tid,
                    ptid: t.ptid,
                })?;
            }
            PerfRecord::Lost(l) => self.lost(l.sample_id.time, l.lost)?,
            PerfRecord::LostSamples(l) => self.lost(l.sample_id.time, l.lost)?,
            PerfRecord::Throttle(t) => {
                if t.throttled {
                    self.stats.throttled += 1;
                }
                self.push(Record::Throttle {
                    time: t.time,
                    throttled: t.throttled,
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads the mappings of `pid` again from `/proc/PID/maps` when records were lost since
    /// they were last read (once per loss, per process), and says whether it did: for a sample
    /// whose stack failed to unwind or whose code is in no known mapping. A LOST record
    /// may have taken the process's MMAP (or FORK, or EXEC) records with it; without them every
    /// later sample of the process fails to unwind (seen: 78 % of a target's stacks after 169
    /// lost records at 4,999 Hz). Only for a live recording: a replayed capture's processes
    /// are not the ones in `/proc`.
    fn reread_maps_after_loss(&mut self, pid: u32) -> bool {
        let lost = self.stats.lost;
        if !self.proc_is_live || pid == 0 || lost == 0 {
            return false;
        }
        if self.maps_reread.get(&pid).is_some_and(|&at| at >= lost) {
            return false;
        }
        self.maps_reread.insert(pid, lost);
        self.unwinder.load_proc_maps(pid).is_ok()
    }

    /// The kernel dropped `count` records (a full ring buffer) or samples.
    fn lost(&mut self, time: Option<u64>, count: u64) -> io::Result<()> {
        self.stats.lost += count;
        self.push(Record::Lost {
            time: time.unwrap_or(0),
            count,
        })
    }

    fn note_thread(&mut self, pid: u32, tid: u32) {
        self.live.insert(tid);
        self.stats.threads.insert((pid, tid));
        self.stats.processes.insert(pid);
    }

    /// The profile id of an unwinder module, writing its Module record on first use.
    fn module_id(&mut self, index: ModuleIndex) -> io::Result<Option<ModuleId>> {
        if let Some(&id) = self.module_ids.get(&index) {
            return Ok(Some(id));
        }
        let Some(info) = self.unwinder.modules().get(index.0 as usize) else {
            return Ok(None);
        };
        let kind = match info.kind {
            rprof_unwind::ModuleKind::Elf => ModuleKind::Elf,
            rprof_unwind::ModuleKind::Vdso => ModuleKind::Vdso,
            rprof_unwind::ModuleKind::Jit => ModuleKind::Jit,
            rprof_unwind::ModuleKind::Anonymous => ModuleKind::Anonymous,
        };
        let module = Module {
            id: ModuleId(self.modules.len() as u32),
            path: info.path.clone(),
            build_id: info.build_id.clone(),
            kind,
            jit_pid: info.pid_for_jit,
        };
        let id = module.id;
        self.module_ids.insert(index, id);
        self.modules.push(module.clone());
        self.push(Record::Module(module))?;
        Ok(Some(id))
    }

    fn kernel_module(&mut self) -> io::Result<ModuleId> {
        if let Some(id) = self.kernel_module {
            return Ok(id);
        }
        let module = Module {
            id: ModuleId(self.modules.len() as u32),
            path: "[kernel.kallsyms]".to_string(),
            build_id: self.kernel_build_id.clone(),
            kind: ModuleKind::Kernel,
            jit_pid: None,
        };
        let id = module.id;
        self.kernel_module = Some(id);
        self.modules.push(module.clone());
        self.push(Record::Module(module))?;
        Ok(id)
    }

    fn address(&mut self, frame: &Frame) -> io::Result<Address> {
        let module = match frame.module {
            Some(index) => self.module_id(index)?,
            None => None,
        };
        Ok(match module {
            Some(module) => Address {
                module: Some(module),
                address: frame.address,
            },
            None => Address {
                module: None,
                address: frame.avma,
            },
        })
    }

    fn sample(&mut self, s: &rprof_perf::parse::Sample<'_>) -> io::Result<()> {
        let pid = s.pid.unwrap_or(0);
        let tid = s.tid.unwrap_or(pid);
        self.note_thread(pid, tid);
        let (user, kernel, truncated, failed) = self.unwind_sample(s)?;
        if failed {
            self.stats.unwind_failed += 1;
        }
        if truncated {
            self.stats.truncated += 1;
        }
        self.stats.samples += 1;
        let sample = Sample {
            time: s.time.unwrap_or(0),
            pid,
            tid,
            cpu: s.cpu.unwrap_or(0),
            period: s.period.unwrap_or(1),
            user,
            kernel,
            truncated,
        };
        self.note_lookups(&sample.user, &sample.kernel);
        self.push(Record::Sample(sample))
    }

    /// A sample of the off-CPU sampler: the stack of a thread leaving the CPU, kept until the
    /// thread's switch-out record.
    fn switch_sample(&mut self, s: &rprof_perf::parse::Sample<'_>) -> io::Result<()> {
        let pid = s.pid.unwrap_or(0);
        let tid = s.tid.unwrap_or(pid);
        let (user, kernel, truncated, _) = self.unwind_sample(s)?;
        let args = s
            .regs_user
            .map(|r| {
                [x86_64::DI, x86_64::SI, x86_64::DX]
                    .iter()
                    .map_while(|&reg| r.get(reg))
                    .collect()
            })
            .unwrap_or_default();
        self.switch_stacks.insert(
            tid,
            SwitchStack {
                user,
                kernel,
                truncated,
                args,
            },
        );
        Ok(())
    }

    /// A switch record: a switch-out starts a block (with the stack its sample captured), a
    /// switch-in ends it. CPU-wide records are not opened by rprof and are ignored.
    fn switch(&mut self, sw: &rprof_perf::parse::Switch) -> io::Result<()> {
        if sw.other.is_some() {
            return Ok(());
        }
        let (Some(pid), Some(tid), Some(time)) =
            (sw.sample_id.pid, sw.sample_id.tid, sw.sample_id.time)
        else {
            return Ok(());
        };
        let first = self.switched.insert(tid);
        self.note_thread(pid, tid);
        let cpu = sw.sample_id.cpu.unwrap_or(0);
        if sw.out {
            let stack = self.switch_stacks.remove(&tid);
            let blocked = Blocked {
                pid,
                cpu,
                start: time,
                preempted: sw.preempt,
                stack,
            };
            if let Some((end, _, _)) = self.early_in.remove(&tid) {
                if end >= time {
                    // The switch-in that ends this block was applied already.
                    self.stats.unpaired_switches = self.stats.unpaired_switches.saturating_sub(1);
                    return self.off_cpu(tid, blocked, end, true);
                }
            }
            if self.blocked.insert(tid, blocked).is_some() {
                // The switch-in of the previous block was lost: its length is unknown.
                self.stats.unpaired_switches += 1;
            }
        } else {
            match self.blocked.remove(&tid) {
                Some(blocked) => self.off_cpu(tid, blocked, time, true)?,
                None => {
                    // A new thread's first switch-in: it was runnable, waiting for a CPU, since
                    // its creation. A thread of an attached process that was off the CPU when
                    // the recording began: off since then, for a reason not seen.
                    let since = match self.created.remove(&tid) {
                        Some(created) if first => Some((created, true)),
                        None if first && self.pre_existing.contains(&tid) => {
                            Some((self.start_time.unwrap_or(time), false))
                        }
                        _ => None,
                    };
                    match since {
                        Some((start, preempted)) if start < time => {
                            let blocked = Blocked {
                                pid,
                                cpu,
                                start,
                                preempted,
                                stack: None,
                            };
                            self.off_cpu(tid, blocked, time, true)?;
                        }
                        Some(_) => {}
                        None => {
                            // Its switch-out (or FORK) is still in another CPU's buffer, or
                            // was lost: counted as unpaired until it comes.
                            self.stats.unpaired_switches += 1;
                            self.early_in.insert(tid, (time, pid, cpu));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the block of thread `tid` that ends at `end`.
    fn off_cpu(&mut self, tid: u32, blocked: Blocked, end: u64, ended: bool) -> io::Result<()> {
        let stack = blocked.stack.unwrap_or(SwitchStack {
            user: Vec::new(),
            kernel: Vec::new(),
            truncated: false,
            args: Vec::new(),
        });
        self.stats.off_cpu_blocks += 1;
        if stack.user.is_empty() && stack.kernel.is_empty() {
            self.stats.off_cpu_without_stack += 1;
        }
        self.note_thread(blocked.pid, tid);
        self.note_lookups(&stack.user, &stack.kernel);
        if !stack.args.is_empty() {
            self.note_bases(blocked.pid, &stack.user)?;
        }
        self.push(Record::OffCpu(OffCpu {
            pid: blocked.pid,
            tid,
            cpu: blocked.cpu,
            start: blocked.start,
            end: end.max(blocked.start),
            ended,
            preempted: blocked.preempted,
            user: stack.user,
            kernel: stack.kernel,
            truncated: stack.truncated,
            args: stack.args,
        }))
    }

    /// The user and kernel stacks of a sample, unwound: `(user, kernel, truncated, failed)`.
    fn unwind_sample(
        &mut self,
        s: &rprof_perf::parse::Sample<'_>,
    ) -> io::Result<(Vec<Address>, Vec<Address>, bool, bool)> {
        let pid = s.pid.unwrap_or(0);
        let mut kernel_avmas = std::mem::take(&mut self.kernel_scratch);
        let mut user_avmas = std::mem::take(&mut self.user_scratch);
        kernel_avmas.clear();
        user_avmas.clear();
        let mut callchain_entries = 0;
        if let Some(chain) = s.callchain {
            for (context, address) in chain.addresses() {
                callchain_entries += 1;
                match context {
                    CallchainContext::Kernel => kernel_avmas.push(address),
                    CallchainContext::User => user_avmas.push(address),
                    CallchainContext::Other => {}
                }
            }
        }
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let mut truncated = false;
        let mut failed = false;
        let regs = s.regs_user.and_then(|r| {
            Some(Regs {
                ip: r.get(x86_64::IP)?,
                sp: r.get(x86_64::SP).unwrap_or(0),
                bp: r.get(x86_64::BP).unwrap_or(0),
            })
        });
        match self.call_graph {
            CallGraph::Dwarf { .. } => {
                if let Some(regs) = regs {
                    let stack = s.stack_user.unwrap_or(&[]);
                    let mut outcome =
                        self.unwinder
                            .unwind(pid, regs, stack, Mode::Dwarf, &mut frames);
                    // The stack failed, or the code it ran is in no known mapping (the whole
                    // process may be unknown: then there is nothing to unwind through).
                    let lost_code = matches!(outcome, Outcome::Failed(_))
                        || frames.first().is_some_and(|f| f.module.is_none());
                    if lost_code && self.reread_maps_after_loss(pid) {
                        frames.clear();
                        outcome = self
                            .unwinder
                            .unwind(pid, regs, stack, Mode::Dwarf, &mut frames);
                    }
                    match outcome {
                        Outcome::Complete => {}
                        Outcome::Truncated => truncated = true,
                        Outcome::Failed(_) => failed = true,
                    }
                }
            }
            CallGraph::FramePointer => {
                for &avma in &user_avmas {
                    frames.push(self.unwinder.locate(pid, avma));
                }
                truncated = !user_avmas.is_empty() && callchain_entries >= self.max_stack;
            }
            CallGraph::None => {
                if let Some(regs) = regs {
                    frames.push(self.unwinder.locate(pid, regs.ip));
                }
            }
        }
        let no_user_stack = s.stack_user.is_none_or(<[u8]>::is_empty);
        if failed && !kernel_avmas.is_empty() && (no_user_stack || !self.unwinder.knows(pid)) {
            // A sample inside `exec`: the kernel is loading the new program, and the user
            // registers belong to the image being replaced, whose memory is gone (no stack
            // bytes could be copied) or was never known (a launched command before its exec).
            // The kernel stack is the whole truth; there is no user stack to show.
            frames.clear();
            failed = false;
        }
        if failed {
            // The root of this stack is missing just as when the copy ran out: say so rather
            // than present the frames found as a complete stack.
            truncated = true;
        }
        let mut user = Vec::with_capacity(frames.len());
        for frame in &frames {
            user.push(self.address(frame)?);
        }
        let mut kernel = Vec::with_capacity(kernel_avmas.len());
        if !kernel_avmas.is_empty() {
            let id = self.kernel_module()?;
            kernel.extend(kernel_avmas.iter().map(|&address| Address {
                module: Some(id),
                address,
            }));
        }
        self.frames = frames;
        self.kernel_scratch = kernel_avmas;
        self.user_scratch = user_avmas;
        Ok((user, kernel, truncated, failed))
    }

    /// Appends names for every address the samples used (from `name`, so that the profile is
    /// self-contained) and the summary, and returns the output with the final counts.
    pub fn finish(
        mut self,
        name: impl FnOnce(&[Module], &LookupSet) -> Vec<Record>,
    ) -> io::Result<(W, Stats)> {
        // Threads still off the CPU: their blocks end when the recording stopped.
        let stop = self.stop_time.unwrap_or(self.last_time).max(self.last_time);
        let mut open: Vec<(u32, Blocked)> = self.blocked.drain().collect();
        open.sort_by_key(|(tid, b)| (b.start, *tid));
        for (tid, blocked) in open {
            self.off_cpu(tid, blocked, stop, false)?;
        }
        self.flush()?;
        // The capture is complete here (closing it also reports a late write error).
        if let Some(mut capture) = self.capture.take() {
            capture.flush()?;
        }
        // Recording ends here; naming the addresses is not part of its duration.
        let end_unix_ns = unix_ns();
        for record in name(&self.modules, &self.lookups) {
            self.push(record)?;
        }
        let stats = self.stats;
        let summary = Summary {
            end_unix_ns,
            samples: stats.samples,
            lost: stats.lost,
            throttled: stats.throttled,
            truncated: stats.truncated,
            unwind_failed: stats.unwind_failed,
        };
        let mut out = self.writer.finish(summary)?;
        out.flush()?;
        Ok((out, stats))
    }
}

/// Bytes of `/sys/kernel/notes` read at most (it holds a few small ELF notes).
const MAX_NOTES_BYTES: u64 = 64 << 10;

/// The running kernel's GNU build id, from `/sys/kernel/notes`.
pub fn kernel_build_id() -> Option<Vec<u8>> {
    use std::io::Read;
    let mut notes = Vec::new();
    std::fs::File::open("/sys/kernel/notes")
        .ok()?
        .take(MAX_NOTES_BYTES)
        .read_to_end(&mut notes)
        .ok()?;
    gnu_build_id(&notes)
}

/// The GNU build id (`NT_GNU_BUILD_ID` note of owner "GNU") in a sequence of ELF notes.
pub fn gnu_build_id(notes: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0usize;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(
            notes.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    while pos.checked_add(12)? <= notes.len() {
        let namesz = word(pos)? as usize;
        let descsz = word(pos + 4)? as usize;
        let kind = word(pos + 8)?;
        let name_start = pos + 12;
        let desc_start = name_start.checked_add(namesz.div_ceil(4) * 4)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(name_start..name_start.checked_add(namesz)?)?;
        // NT_GNU_BUILD_ID = 3, owner "GNU\0".
        if kind == 3 && name == b"GNU\0" {
            return Some(notes.get(desc_start..desc_end)?.to_vec());
        }
        pos = desc_start.checked_add(descsz.div_ceil(4) * 4)?;
    }
    None
}

#[cfg(test)]
mod tests;
