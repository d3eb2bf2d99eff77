//! rprof-latency: how long a function's calls take, measured with an entry and a return
//! uprobe (the uprobe PMU of perf_event), paired per thread, kept in HDR histograms.
//!
//! - [`resolve`]: FUNCTION (`name`, `app::server::handle`, `lib:symbol`, `path:symbol`) → the
//!   file and file offset to probe, from `.symtab`/`.dynsym`; clear refusals for IFUNCs, PLT
//!   stubs, imported and inlined-only functions; close matches for a typo.
//! - [`placement`]: where a probe goes (past a first instruction the kernel would single-step).
//! - [`probes`]: the probes, per CPU, inherited by the threads a COMMAND creates (or attached to
//!   every thread of `-p PID`), their records in one rprof-perf ring buffer a CPU.
//! - [`pairing`]: entry and return hits → calls, per thread (rules in that module).
//! - [`stats`]: histograms, percentiles, the text / JSON / histogram-file outputs.
//! - [`calibrate`]: the added cost of a probed call, measured on rprof's own empty function.
//! - [`run`]: the loop (this file): start COMMAND held before exec (rprof-launch) or attach,
//!   drain the rings, sort each round by time, pair, report at every `--interval` and at the
//!   end.
//!
//! What it leaves to others: parsing perf records and the ring-buffer protocol (rprof-perf),
//! starting COMMAND and signals (rprof-launch), printing, files and exit codes (the binary).

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod calibrate;
pub mod pairing;
pub mod placement;
pub mod probes;
pub mod resolve;
pub mod stacks;
pub mod stats;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::time::{Duration, Instant};

use rprof_launch::{spawn_pending, Exit, LaunchError};
use rprof_perf::{parse_record, PerfRecord};

use crate::pairing::{Event, Pairer};
use crate::probes::{Probes, UprobePmu};
use crate::resolve::{Modules, Target};
use crate::stacks::Stacks;
use crate::stats::{FunctionReport, Report, Stats};

/// Why a latency measurement failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LatencyError {
    /// The command line asks for something impossible (unknown function, IFUNC, ...).
    #[error("{0}")]
    Usage(String),
    /// Missing privileges; the text says how to fix it.
    #[error("{0}")]
    Permission(String),
    /// The kernel cannot do it.
    #[error("{0}")]
    Unsupported(String),
    /// `-p` of a process that is gone.
    #[error("no process with id {0} (it exited before rprof could attach)")]
    Gone(u32),
    /// `perf_event_open` failed otherwise.
    #[error(transparent)]
    Open(#[from] rprof_events::OpenError),
    /// COMMAND could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// Another step failed.
    #[error("cannot {what}: {error}")]
    Io {
        /// What rprof was doing.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

/// What to measure.
#[derive(Clone, Debug)]
pub enum What {
    /// Run this command.
    Command(Vec<OsString>),
    /// Attach to a running process, for at most `duration`.
    Pid {
        /// The process.
        pid: u32,
        /// Stop after this long (else when it exits or on Ctrl-C).
        duration: Option<Duration>,
    },
}

/// Everything `rprof latency` needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The FUNCTION arguments.
    pub functions: Vec<String>,
    /// The target.
    pub what: What,
    /// Report every this often while running (each report covers its own interval).
    pub interval: Option<Duration>,
    /// Keep per-thread histograms.
    pub per_thread: bool,
    /// Measure the probe cost at startup. Default: true.
    pub calibrate: bool,
    /// Keep the caller stacks of this many slowest calls per function (0: none).
    pub stacks: usize,
}

/// What the binary is told while the measurement runs.
#[derive(Debug)]
pub enum Note {
    /// A message for stderr.
    Message(String),
    /// An `--interval` report.
    Interval(Report),
}

/// How the measurement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// COMMAND ended like this.
    Command(Exit),
    /// The attached process exited.
    Exited,
    /// Ctrl-C (or another interrupt) while attached.
    Interrupted(i32),
    /// `--duration` passed.
    Duration,
}

/// Whether a probing session is over, checked once a round: COMMAND (`running`) ended, or the
/// process attached to (`attach_pid`) exited, was interrupted (Ctrl-C) or reached `what`'s
/// `--duration` since `start`. Shared by `rprof latency` and `rprof record --alloc`.
pub fn ended(
    running: Option<&mut rprof_launch::Running>,
    attach_pid: Option<u32>,
    what: &What,
    start: Instant,
) -> Result<Option<End>, LaunchError> {
    if let Some(running) = running {
        if let Some(exit) = running.try_wait()? {
            return Ok(Some(End::Command(exit)));
        }
    }
    if let Some(pid) = attach_pid {
        if let Some(sig) = rprof_launch::interrupted() {
            return Ok(Some(End::Interrupted(sig)));
        }
        if !rprof_launch::process_alive(pid) {
            return Ok(Some(End::Exited));
        }
        if let What::Pid {
            duration: Some(d), ..
        } = what
        {
            if start.elapsed() >= *d {
                return Ok(Some(End::Duration));
            }
        }
    }
    Ok(None)
}

/// The final report and how the target ended.
#[derive(Debug)]
pub struct Outcome {
    /// The totals.
    pub report: Report,
    /// How it ended.
    pub end: End,
}

/// Records are applied once they are older than this (CLOCK_MONOTONIC), so that a probe hit
/// another CPU has time-stamped but not yet written cannot be overtaken by a later hit of the
/// same thread on another CPU.
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
#[derive(Clone, Debug)]
enum Item {
    /// A probe hit or a thread exit of process `pid`.
    Event {
        /// The process.
        pid: u32,
        /// What happened.
        event: Event,
    },
    /// Process `parent` created `child` (a thread when they are equal).
    Fork {
        /// The creating process.
        parent: u32,
        /// The new process.
        child: u32,
    },
    /// Process `pid` called execve (`--stacks`: its address space starts over).
    Exec {
        /// The process.
        pid: u32,
    },
    /// Process `pid` mapped a file (`--stacks`: a call's stack is unwound when it returns, in
    /// the address space as it was then).
    Mmap {
        /// The process.
        pid: u32,
        /// The mapping.
        mapping: Box<rprof_unwind::Mapping>,
    },
}

/// The aggregation of one run: totals and the current interval.
struct Aggregate {
    functions: Vec<Target>,
    /// Per FUNCTION argument: its name and its index in `functions`.
    names_given: Vec<(String, usize)>,
    total: Vec<(Stats, BTreeMap<u32, Stats>)>,
    interval: Vec<(Stats, BTreeMap<u32, Stats>)>,
    per_thread: bool,
    pairer: Pairer,
    pending: Vec<(u64, Item)>,
    /// The target's processes (pids), from the root and FORK records.
    tracked: HashSet<u32>,
    lost: u64,
    names: BTreeMap<u32, String>,
    /// `--stacks`: copies waiting for their calls, the slowest calls.
    stacks: Option<Stacks>,
}

impl Aggregate {
    fn new(
        functions: Vec<Target>,
        names_given: Vec<(String, usize)>,
        per_thread: bool,
        root: u32,
        stacks: usize,
    ) -> Aggregate {
        let n = functions.len();
        let empty = || (0..n).map(|_| (Stats::new(), BTreeMap::new())).collect();
        Aggregate {
            functions,
            names_given,
            total: empty(),
            interval: empty(),
            per_thread,
            pairer: Pairer::new(n),
            pending: Vec::new(),
            tracked: HashSet::from([root]),
            lost: 0,
            names: BTreeMap::new(),
            stacks: (stacks > 0).then(|| Stacks::new(stacks, n)),
        }
    }

    /// Reads every ring; records go to `pending`.
    fn drain(&mut self, probes: &mut Probes) {
        let layouts = probes.layouts();
        let mut collected = Vec::new();
        let mut lost = 0;
        for ring in probes.rings_mut() {
            let batch = ring.read();
            for bytes in batch.iter() {
                // A record that does not parse can only cost one call.
                let Ok(record) = parse_record(&layouts.format_of(bytes), bytes) else {
                    continue;
                };
                match record {
                    PerfRecord::Sample(s) => {
                        let (Some(id), Some(pid), Some(tid), Some(time)) =
                            (s.identifier, s.pid, s.tid, s.time)
                        else {
                            continue;
                        };
                        collected.push((id, pid, tid, time));
                        if let (Some(stacks), Some(regs), Some(stack)) =
                            (self.stacks.as_mut(), s.regs_user, s.stack_user)
                        {
                            use rprof_perf::parse::x86_64;
                            let regs = rprof_unwind::Regs {
                                ip: regs.get(x86_64::IP).unwrap_or(0),
                                sp: regs.get(x86_64::SP).unwrap_or(0),
                                bp: regs.get(x86_64::BP).unwrap_or(0),
                            };
                            stacks.entry(pid, tid, time, regs, stack);
                        }
                    }
                    PerfRecord::Mmap(m) if self.stacks.is_some() => {
                        let (build_id, inode) = match m.file_id {
                            Some(rprof_perf::parse::FileId::BuildId(id)) => (Some(id.to_vec()), 0),
                            Some(rprof_perf::parse::FileId::Inode { ino, .. }) => (None, ino),
                            None => (None, 0),
                        };
                        let mapping = rprof_unwind::Mapping {
                            start: m.addr,
                            end: m.addr.saturating_add(m.len),
                            pgoff: m.pgoff,
                            path: String::from_utf8_lossy(m.filename).into_owned(),
                            build_id,
                            inode,
                            executable: m.is_executable(),
                        };
                        let time = m.sample_id.time.unwrap_or(0);
                        let item = Item::Mmap {
                            pid: m.pid,
                            mapping: Box::new(mapping),
                        };
                        self.pending.push((time, item));
                    }
                    PerfRecord::Exit(t) => self.pending.push((
                        t.time,
                        Item::Event {
                            pid: t.pid,
                            event: Event::ThreadExit { tid: t.tid },
                        },
                    )),
                    PerfRecord::Fork(t) => {
                        if let Some(name) = self.names.get(&t.ptid).cloned() {
                            self.names.insert(t.tid, name);
                        }
                        self.pending.push((
                            t.time,
                            Item::Fork {
                                parent: t.ppid,
                                child: t.pid,
                            },
                        ))
                    }
                    PerfRecord::Comm(c) => {
                        self.names
                            .insert(c.tid, String::from_utf8_lossy(c.name).into_owned());
                        if c.exec {
                            let time = c.sample_id.time.unwrap_or(0);
                            self.pending.push((time, Item::Exec { pid: c.pid }));
                        }
                    }
                    PerfRecord::Lost(l) => lost += l.lost,
                    PerfRecord::LostSamples(l) => lost += l.lost,
                    _ => {}
                }
            }
        }
        for (id, pid, tid, time) in collected {
            if let Some((func, ret)) = layouts.probe_of(id) {
                let event = if ret {
                    Event::Return { func, tid, time }
                } else {
                    Event::Entry { func, tid, time }
                };
                self.pending.push((time, Item::Event { pid, event }));
            }
        }
        self.lost += lost;
    }

    /// Applies the pending records up to `until` (all of them with `None`), in time order.
    fn apply(&mut self, until: Option<u64>) {
        self.pending.sort_by_key(|(t, _)| *t);
        let cut = match until {
            Some(t) => self.pending.partition_point(|(time, _)| *time <= t),
            None => self.pending.len(),
        };
        let ready: Vec<(u64, Item)> = self.pending.drain(..cut).collect();
        for (_, item) in ready {
            let event = match item {
                Item::Fork { parent, child } => {
                    if self.tracked.contains(&parent) {
                        self.tracked.insert(child);
                        if let (Some(stacks), true) = (self.stacks.as_mut(), parent != child) {
                            stacks.fork(parent, child);
                        }
                    }
                    continue;
                }
                Item::Exec { pid } => {
                    if let Some(stacks) = self.stacks.as_mut() {
                        stacks.exec(pid);
                    }
                    continue;
                }
                Item::Mmap { pid, mapping } => {
                    if let Some(stacks) = self.stacks.as_mut() {
                        stacks.mapping(pid, *mapping);
                    }
                    continue;
                }
                // A probe hit (or thread exit) of another process.
                Item::Event { pid, event } if !self.tracked.contains(&pid) => {
                    if let (Some(stacks), Event::Entry { tid, time, .. }) =
                        (self.stacks.as_mut(), event)
                    {
                        stacks.forget(tid, time);
                    }
                    continue;
                }
                Item::Event { event, .. } => event,
            };
            if let Some(call) = self.pairer.apply(event) {
                if let Some(stacks) = self.stacks.as_mut() {
                    stacks.returned(call.func, call.tid, call.start, call.duration);
                }
                for set in [&mut self.total, &mut self.interval] {
                    if let Some((stats, threads)) = set.get_mut(call.func) {
                        stats.record(call.duration);
                        if self.per_thread {
                            threads.entry(call.tid).or_default().record(call.duration);
                        }
                    }
                }
            }
        }
    }

    fn report(
        &mut self,
        interval: bool,
        elapsed_ns: u64,
        cost: &(Option<f64>, Option<String>),
    ) -> Report {
        let unpaired = if interval {
            self.pairer.unpaired().to_vec()
        } else {
            self.pairer.finish()
        };
        let mut symbolizer = rprof_symbols::Symbolizer::new();
        let mut slowest = |i: usize| match (&self.stacks, interval) {
            (Some(stacks), false) => stacks.named(i, &mut symbolizer),
            _ => Vec::new(),
        };
        let n = self.functions.len();
        let fresh = || (0..n).map(|_| (Stats::new(), BTreeMap::new())).collect();
        let sets: Vec<(Stats, BTreeMap<u32, Stats>)> = if interval {
            std::mem::replace(&mut self.interval, fresh())
        } else {
            self.total.clone()
        };
        let functions = self
            .names_given
            .iter()
            .filter_map(|(name, i)| {
                let t = self.functions.get(*i)?;
                let (stats, threads) = sets.get(*i)?.clone();
                Some(FunctionReport {
                    name: name.clone(),
                    path: t.path.display().to_string(),
                    symbol: t.symbol.clone(),
                    offset: t.offset,
                    stats,
                    threads,
                    unpaired: unpaired.get(*i).copied().unwrap_or_default(),
                    slowest: slowest(*i),
                })
            })
            .collect();
        Report {
            functions,
            elapsed_ns,
            lost: self.lost,
            probe_cost_ns: cost.0,
            probe_cost_problem: cost.1.clone(),
            thread_names: self.names.clone(),
            interval,
        }
    }
}

/// The targets of `functions`, one per distinct (file, offset) — two names of one function
/// share its probes, since two entry probes at one address would interleave with its returns
/// in no defined order — and, for each FUNCTION, the index of its target.
fn resolve_all(
    functions: &[String],
    modules: &Modules,
) -> Result<(Vec<Target>, Vec<usize>), LatencyError> {
    let mut unique: Vec<Target> = Vec::new();
    let mut index = Vec::with_capacity(functions.len());
    for f in functions {
        let t = resolve::resolve(f, modules)?;
        match unique
            .iter()
            .position(|u| u.path == t.path && u.offset == t.offset)
        {
            Some(i) => index.push(i),
            None => {
                index.push(unique.len());
                unique.push(t);
            }
        }
    }
    Ok((unique, index))
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> LatencyError + '_ {
    move |error| LatencyError::Io {
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

/// Measures the functions of `options`; `tell` receives messages and interval reports.
pub fn run(options: &Options, mut tell: impl FnMut(Note)) -> Result<Outcome, LatencyError> {
    let pmu = UprobePmu::detect()?;
    let cpus = rprof_events::online_cpus().map_err(io("list the online CPUs"))?;
    let cost = if options.calibrate {
        match calibrate::probe_cost(pmu) {
            Ok(ns) => (Some(ns), None),
            Err(why) => (None, Some(why)),
        }
    } else {
        (None, None)
    };
    let (mut probes, mut running, attach_pid, targets, index) = match &options.what {
        What::Command(argv) => {
            let pending = spawn_pending(argv)?;
            let modules = Modules::of_command(pending.path());
            let (targets, index) = match resolve_all(&options.functions, &modules) {
                Ok(t) => t,
                Err(e) => {
                    pending.abort();
                    return Err(e);
                }
            };
            let probes =
                match Probes::open_process(pmu, &targets, pending.pid(), &cpus, options.stacks > 0)
                {
                    Ok(p) => p,
                    Err(e) => {
                        pending.abort();
                        return Err(e);
                    }
                };
            if let Err(e) = rprof_launch::forward_signals_to(pending.pid()) {
                pending.abort();
                return Err(io("install signal handlers")(e));
            }
            let running = pending.start()?;
            (probes, Some(running), None, targets, index)
        }
        What::Pid { pid, .. } => {
            let pid = *pid;
            if pid == 0 || !rprof_launch::process_alive(pid) {
                return Err(LatencyError::Gone(pid));
            }
            let modules = Modules::of_process(pid)?;
            let (targets, index) = resolve_all(&options.functions, &modules)?;
            rprof_launch::catch_interrupts().map_err(io("install signal handlers"))?;
            let probes = Probes::attach(pmu, &targets, pid, &cpus, options.stacks > 0)?;
            tell(Note::Message(format!(
                "attached {} probes to {} threads of process {pid}; Ctrl-C to stop",
                targets.len() * 2,
                probes.attached_threads()
            )));
            (probes, None, Some(pid), targets, index)
        }
    };
    let root = attach_pid
        .or(running.as_ref().map(|r| r.pid()))
        .unwrap_or(0);
    let names_given = options.functions.iter().cloned().zip(index).collect();
    let mut agg = Aggregate::new(
        targets,
        names_given,
        options.per_thread,
        root,
        options.stacks,
    );
    if let (Some(stacks), Some(pid)) = (agg.stacks.as_mut(), attach_pid) {
        stacks.load_process(pid);
    }
    let start = Instant::now();
    let mut interval_start = Instant::now();
    let end = loop {
        if let Some(end) = ended(running.as_mut(), attach_pid, &options.what, start)? {
            break end;
        }
        wait_for_records(&probes, Duration::from_millis(100));
        if attach_pid.is_some() && start.elapsed() < Duration::from_secs(1) {
            probes.rescan();
        }
        agg.drain(&mut probes);
        agg.apply(Some(monotonic_ns().saturating_sub(SETTLE_NS)));
        if let Some(every) = options.interval {
            if interval_start.elapsed() >= every {
                let ns = interval_start.elapsed().as_nanos() as u64;
                interval_start = Instant::now();
                tell(Note::Interval(agg.report(true, ns, &cost)));
            }
        }
    };
    probes.stop();
    agg.drain(&mut probes);
    agg.apply(None);
    drop(probes);
    let elapsed = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    Ok(Outcome {
        report: agg.report(false, elapsed, &cost),
        end,
    })
}
