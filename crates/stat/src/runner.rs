//! Running COMMAND (N times) or attaching to a PID, with the counters open; the only module
//! that waits on processes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use rprof_launch::{spawn_pending, Exit};
use rprof_perf::{parse_record, PerfRecord, RingBuffer, SampleFormat};

use crate::counters::{per_thread_record_format, EventSet, OpenFailure, OpenMode, TaskCounters};
use crate::read::{GroupRead, Reading};
use crate::summary::{RunResult, ThreadResult};
use crate::StatError;

/// Data pages of the `--per-thread` ring (records are few: one per thread exit per group).
const RING_PAGES: usize = 16;

fn open_error(e: OpenFailure) -> StatError {
    match e {
        OpenFailure::Open(e) => StatError::Open(e),
        OpenFailure::Io(what, source) => StatError::Io {
            what: what.to_string(),
            error: source,
        },
    }
}

fn children_cpu_ns() -> (u64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let ns = |tv: libc::timeval| {
        tv.tv_sec.max(0) as u64 * 1_000_000_000 + tv.tv_usec.max(0) as u64 * 1000
    };
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

/// Runs `argv` once with the counters of `set` attached. Returns the run and how COMMAND ended.
///
/// Counters are opened once for the task on any CPU, inherited by its threads and children.
/// With `per_thread`, they are opened per CPU instead (the kernel maps no ring buffer for an
/// inherited any-CPU counter), all events as one group per CPU whose leader has a small ring
/// buffer, and every thread's own counts arrive there in a READ record when it exits.
///
/// Why one group: with `inherit_stat`, when the kernel switches between two threads whose
/// counter contexts are clones it swaps the counts of the two contexts' events *by list
/// position*. The main thread's list is in the order rprof created the events, the other
/// threads' in the order the kernel inherited them (grouped by CPU, then PMU); with several
/// groups of different PMUs these differ and counts of different events get swapped. One group
/// per CPU, created CPU by CPU, gives both lists the same order.
pub fn run_command(
    set: &mut EventSet,
    argv: &[OsString],
    per_thread: bool,
) -> Result<(RunResult, Exit), StatError> {
    let pending = spawn_pending(argv)?;
    let pid = pending.pid();
    let mode = OpenMode {
        inherit: true,
        enable_on_exec: true,
        per_thread_records: per_thread,
    };
    if per_thread {
        set.use_one_group();
    }
    let cpus: Vec<Option<u32>> = if per_thread {
        match rprof_events::online_cpus() {
            Ok(cpus) => cpus.into_iter().map(Some).collect(),
            Err(source) => {
                pending.abort();
                return Err(StatError::Io {
                    what: "list the online CPUs".into(),
                    error: source,
                });
            }
        }
    } else {
        vec![None]
    };
    let mut per_cpu = Vec::new();
    let mut rings = Vec::new();
    for cpu in cpus {
        let counters = match TaskCounters::open(set, pid, cpu, mode) {
            Ok(c) => c,
            Err(e) => {
                pending.abort();
                return Err(open_error(e));
            }
        };
        if per_thread {
            match attach_ring(&counters) {
                Ok(Some(ring)) => rings.push((ring, per_cpu.len())),
                Ok(None) => {}
                Err(e) => {
                    pending.abort();
                    return Err(e);
                }
            }
        }
        per_cpu.push(counters);
    }
    if let Err(source) = rprof_launch::forward_signals_to(pid) {
        pending.abort();
        return Err(StatError::Io {
            what: "install signal handlers".into(),
            error: source,
        });
    }
    let (user0, sys0) = children_cpu_ns();
    let start = Instant::now();
    let mut running = pending.start()?;
    let mut threads = ThreadTracker::new(per_thread_record_format());
    if per_thread {
        if let Some(comm) = rprof_perf::thread_name(pid, pid) {
            threads.comms.insert(pid, comm);
        }
    }
    let exit = if rings.is_empty() {
        running.wait()?
    } else {
        loop {
            if let Some(exit) = running.try_wait()? {
                for (ring, i) in rings.iter_mut() {
                    threads.consume(ring, &per_cpu[*i]);
                }
                break exit;
            }
            let mut pfds: Vec<libc::pollfd> = rings
                .iter()
                .filter_map(|(_, i)| per_cpu[*i].leaders().next())
                .map(|fd| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: pfds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 50) };
            if n > 0 && pfds.iter().any(|p| p.revents & libc::POLLHUP != 0) {
                // The task is gone; try_wait will see it in a moment.
                std::thread::sleep(Duration::from_millis(2));
            }
            for (ring, i) in rings.iter_mut() {
                threads.consume(ring, &per_cpu[*i]);
            }
        }
    };
    let elapsed_ns = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    let (user1, sys1) = children_cpu_ns();
    let mut readings = vec![Reading::NotSupported; set.events.len()];
    for counters in &per_cpu {
        let cpu_readings = counters.read().map_err(StatError::Read)?;
        for (total, r) in readings.iter_mut().zip(&cpu_readings) {
            *total = total.merge_cpu(r);
        }
    }
    let thread_results = if per_thread {
        // Per-CPU counters of software events and tracepoints are never multiplexed, but their
        // enabled times per CPU do not add up cleanly across context swaps: show them unscaled.
        let software: Vec<bool> = set.events.iter().map(|e| !e.kind.needs_pmu()).collect();
        unscale(&mut readings, &software);
        let mut results = threads.results(pid, &readings);
        for t in &mut results {
            unscale(&mut t.readings, &software);
        }
        results
    } else {
        Vec::new()
    };
    if threads.lost > 0 {
        set.notes.push(format!(
            "{} per-thread records were lost; the main thread's counts include those threads",
            threads.lost
        ));
    }
    Ok((
        RunResult {
            readings,
            threads: thread_results,
            elapsed_ns,
            user_ns: Some(user1.saturating_sub(user0)),
            sys_ns: Some(sys1.saturating_sub(sys0)),
        },
        exit,
    ))
}

/// Maps a ring on the first leader and sends every other counter's records into it (each
/// counter writes its own READ record when an inherited thread exits).
fn attach_ring(counters: &TaskCounters) -> Result<Option<RingBuffer>, StatError> {
    let mut leaders = counters.all_fds();
    let Some(first) = leaders.next() else {
        return Ok(None);
    };
    let ring = RingBuffer::map(first, RING_PAGES).map_err(|e| StatError::Io {
        what: "map the per-thread ring buffer (raise `ulimit -l` or kernel.perf_event_mlock_kb)"
            .into(),
        error: std::io::Error::from_raw_os_error(e.errno),
    })?;
    for other in leaders {
        // SAFETY: SET_OUTPUT between two perf fds we own, on the same task and CPU.
        let rc = unsafe {
            perf_event_open_sys::ioctls::SET_OUTPUT(other.as_raw_fd(), first.as_fd().as_raw_fd())
        };
        if rc < 0 {
            return Err(StatError::Io {
                what: "share the per-thread ring buffer".into(),
                error: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(Some(ring))
}

/// Sets enabled = running for the readings whose flag is set (events that cannot multiplex).
fn unscale(readings: &mut [Reading], flags: &[bool]) {
    for (r, &flag) in readings.iter_mut().zip(flags) {
        if let (
            Reading::Counted {
                enabled, running, ..
            },
            true,
        ) = (r, flag)
        {
            *enabled = *running;
        }
    }
}

/// Threads seen through COMM/FORK/READ records.
struct ThreadTracker {
    /// How the records are laid out.
    format: SampleFormat,
    comms: HashMap<u32, String>,
    /// Threads created (from FORK records).
    seen: std::collections::HashSet<u32>,
    /// Exited threads' own readings (one per event), in exit order.
    exited: Vec<(u32, Vec<Reading>)>,
    /// Index into `exited` by thread id.
    exited_index: HashMap<u32, usize>,
    lost: u64,
}

impl ThreadTracker {
    fn new(format: SampleFormat) -> ThreadTracker {
        ThreadTracker {
            format,
            comms: HashMap::new(),
            seen: std::collections::HashSet::new(),
            exited: Vec::new(),
            exited_index: HashMap::new(),
            lost: 0,
        }
    }

    /// Applies every record waiting in `ring` (then hands their space back to the kernel).
    fn consume(&mut self, ring: &mut RingBuffer, counters: &TaskCounters) {
        let batch = ring.read();
        for bytes in batch.iter() {
            // A record we cannot parse is skipped: it can only cost one thread's split.
            let Ok(record) = parse_record(&self.format, bytes) else {
                continue;
            };
            match record {
                PerfRecord::Comm(c) => {
                    self.comms
                        .insert(c.tid, String::from_utf8_lossy(c.name).into_owned());
                }
                PerfRecord::Fork(t) => {
                    if let Some(name) = self.comms.get(&t.ptid).cloned() {
                        self.comms.entry(t.tid).or_insert(name);
                    }
                    self.seen.insert(t.tid);
                }
                PerfRecord::Lost(l) => self.lost += l.lost,
                PerfRecord::Read(r) => {
                    self.exited_thread(
                        r.tid,
                        &GroupRead::from_values(&r.values),
                        r.sample_id.identifier,
                        counters,
                    );
                }
                _ => {}
            }
        }
    }

    /// Thread `tid` exited and counter `emitter` (if known) wrote its values.
    fn exited_thread(
        &mut self,
        tid: u32,
        values: &GroupRead,
        emitter: Option<u64>,
        counters: &TaskCounters,
    ) {
        let n = counters.n_events();
        let i = *self.exited_index.entry(tid).or_insert_with(|| {
            self.exited.push((tid, vec![Reading::NotSupported; n]));
            self.exited.len() - 1
        });
        let entry = &mut self.exited[i].1;
        // Only the emitting counter's own value: a kernel that keeps the group together at
        // exit would otherwise count members twice.
        for &(id, _) in values
            .values
            .iter()
            .filter(|(id, _)| emitter.is_none_or(|e| e == *id))
        {
            if let (Some(idx), Some(r)) = (counters.index_of_id(id), values.reading(id)) {
                if let Some(slot) = entry.get_mut(idx) {
                    // One record per CPU the counters were opened on.
                    *slot = slot.merge_cpu(&r);
                }
            }
        }
    }

    /// Per-thread results: every thread that sent its counts at exit, and the total minus
    /// them for the one that did not. That is usually the main thread, but not always: when
    /// the kernel swaps the counter contexts of two threads (a scheduling optimization), the
    /// original counters end up with the other thread, and that thread sends no record.
    fn results(&self, main_tid: u32, totals: &[Reading]) -> Vec<ThreadResult> {
        let mut rest = totals.to_vec();
        let mut out = Vec::new();
        let comm = |tid: &u32| self.comms.get(tid).cloned().unwrap_or_else(|| "?".into());
        for (tid, readings) in &self.exited {
            for (m, r) in rest.iter_mut().zip(readings) {
                *m = m.minus(r);
            }
            // Events not supported stay so per thread.
            let readings = readings
                .iter()
                .zip(totals)
                .map(|(r, t)| {
                    if *t == Reading::NotSupported {
                        Reading::NotSupported
                    } else {
                        *r
                    }
                })
                .collect();
            out.push(ThreadResult {
                tid: *tid,
                comm: comm(tid),
                readings,
            });
        }
        let reported = |tid: &u32| self.exited_index.contains_key(tid);
        let silent: Vec<u32> = std::iter::once(main_tid)
            .chain(self.seen.iter().copied())
            .filter(|t| !reported(t))
            .collect();
        // Counts and running times subtract exactly; enabled times only approximately (each
        // is the largest over CPUs), so give the rest the total's running/enabled ratio.
        for (r, t) in rest.iter_mut().zip(totals) {
            if let (
                Reading::Counted {
                    enabled, running, ..
                },
                Reading::Counted {
                    enabled: te,
                    running: tr,
                    ..
                },
            ) = (r, t)
            {
                *enabled = if *tr == 0 {
                    *running
                } else {
                    ((*running as u128 * *te as u128) / *tr as u128).min(u128::from(u64::MAX))
                        as u64
                };
            }
        }
        let rest_tid = match silent.as_slice() {
            [one] => *one,
            _ => main_tid,
        };
        out.insert(
            0,
            ThreadResult {
                tid: rest_tid,
                comm: comm(&rest_tid),
                readings: rest,
            },
        );
        out
    }
}

/// How an attach (`-p`) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachEnd {
    /// The process exited.
    Exited,
    /// SIGINT/SIGTERM/SIGHUP/SIGQUIT (the signal number).
    Interrupted(i32),
    /// `--duration` passed.
    Duration,
}

/// Counts every existing thread of `pid` (and what they create later, folded into their
/// creator) until the process exits, an interrupt arrives, or `duration` passes.
pub fn attach(
    set: &mut EventSet,
    pid: u32,
    duration: Option<Duration>,
    per_thread: bool,
) -> Result<(RunResult, AttachEnd), StatError> {
    if pid == 0 || !rprof_launch::process_alive(pid) {
        return Err(StatError::NoSuchProcess(pid));
    }
    rprof_launch::catch_interrupts().map_err(|source| StatError::Io {
        what: "install signal handlers".into(),
        error: source,
    })?;
    let tids = rprof_perf::list_threads(pid).map_err(|_| StatError::NoSuchProcess(pid))?;
    let mode = OpenMode {
        inherit: true,
        enable_on_exec: false,
        per_thread_records: false,
    };
    let mut tasks = Vec::new();
    for tid in tids {
        match TaskCounters::open(set, tid, None, mode) {
            Ok(c) => {
                let comm = rprof_perf::thread_name(pid, tid).unwrap_or_default();
                tasks.push((tid, comm, c));
            }
            // A thread that exited while we attached is simply not counted.
            Err(OpenFailure::Open(e)) if e.is_no_such_process() && tid != pid => {}
            Err(OpenFailure::Open(e)) if e.is_no_such_process() => {
                return Err(StatError::NoSuchProcess(pid))
            }
            Err(e) => return Err(open_error(e)),
        }
    }
    let start = Instant::now();
    let end = loop {
        if let Some(sig) = rprof_launch::interrupted() {
            break AttachEnd::Interrupted(sig);
        }
        if !rprof_launch::process_alive(pid) {
            break AttachEnd::Exited;
        }
        let left = match duration {
            Some(d) => match d.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => break AttachEnd::Duration,
            },
            None => None,
        };
        let tick = left.map_or(Duration::from_millis(100), |l| {
            l.min(Duration::from_millis(100))
        });
        std::thread::sleep(tick);
    };
    let elapsed_ns = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    let mut totals = vec![Reading::NotSupported; set.events.len()];
    let mut threads = Vec::new();
    for (tid, comm, counters) in &tasks {
        let readings = counters.read().map_err(StatError::Read)?;
        for (t, r) in totals.iter_mut().zip(&readings) {
            *t = t.plus(r);
        }
        if per_thread {
            threads.push(ThreadResult {
                tid: *tid,
                comm: comm.clone(),
                readings,
            });
        }
    }
    Ok((
        RunResult {
            readings: totals,
            threads,
            elapsed_ns,
            user_ns: None,
            sys_ns: None,
        },
        end,
    ))
}
