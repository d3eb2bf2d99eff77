//! A whole recording: open the samplers, start COMMAND (or attach to a running process),
//! follow it round after round until it ends, and finish the profile. The binary turns the
//! command line into [`Options`], calls [`record`], prints the [`Note`]s as they come and the
//! [`Summary`] at the end.
//!
//! Both targets share one loop; what differs is data (`Followed`): a launched COMMAND is held
//! before `exec` while the samplers open and the header is written (so that a recording that
//! cannot start never runs it), ends when it exits and gets SIGTERM, then SIGKILL, at
//! `--duration`; an attached process must still be there once the samplers are on it (else
//! [`RecordError::Gone`] and no profile), its mappings and thread names come from /proc, and
//! the recording ends when it exits, on Ctrl-C, or at `--duration`.
//!
//! It leaves to others: the command line and exit codes (the binary), starting COMMAND and
//! signals (`rprof-launch`), naming addresses (the `name` function given to [`record`]).

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use rprof_events::Event;
use rprof_launch::Running;
use rprof_perf::{CallGraph, Rate, Samplers};
use rprof_profile::{Header, LookupSet, Module, ModuleId, Record};

use crate::cgroup::Cgroup;
use crate::error::{with_causes, RecordError};
use crate::note::Note;
use crate::open::{default_pages, open_samplers, wanted_pages, Opened, Request};
use crate::output::{self, Recording, CANNOT_WRITE};
use crate::priority;
use crate::process::{has_exited, now_monotonic_ns, pidfd_open, raise_fd_limit, signal_child};
use crate::Stats;

/// With `duration` and a launched COMMAND: how long COMMAND gets to exit after SIGTERM.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// What to record, validated by the caller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the profile goes.
    pub output: PathBuf,
    /// The event that triggers samples.
    pub event: Event,
    /// How often.
    pub rate: Rate,
    /// How call stacks are captured.
    pub call_graph: CallGraph,
    /// Stop after this long (a launched COMMAND then gets SIGTERM); `None`: until the target
    /// exits or Ctrl-C.
    pub duration: Option<Duration>,
    /// What to record.
    pub target: Target,
    /// Ring-buffer data pages per CPU (a power of two), never reduced; `None`: rprof's
    /// default ([`crate::open::default_pages`]), halved while the kernel refuses it.
    pub pages: Option<usize>,
    /// Sample user space only.
    pub no_kernel: bool,
    /// Record off-CPU blocks too (`--off-cpu`, docs/off-cpu.md). Default false.
    pub off_cpu: bool,
}

/// What a recording follows.
#[derive(Debug, Clone)]
pub enum Target {
    /// Run this command line (`argv[0]` is looked up in PATH).
    Command(Vec<OsString>),
    /// Attach to this running process, all its threads.
    Attach(u32),
}

/// The counts of a recording that was written to its end.
#[derive(Debug)]
pub struct Summary {
    /// What the recorder counted.
    pub stats: Stats,
    /// How long the recording ran (naming addresses excluded).
    pub elapsed: Duration,
    /// The profile's size in bytes.
    pub size: u64,
}

/// The result of a recording.
#[derive(Debug)]
pub struct Outcome {
    /// What to print.
    pub summary: Summary,
    /// The exit code rprof should end with: COMMAND's (128+N if killed by signal N), or 0 for
    /// an attached process.
    pub exit_code: i32,
}

/// Names the addresses a recording's samples used, so that the profile is self-contained. A
/// closure `FnOnce(&[Module], &LookupSet) -> Vec<Record>` names them all at the end.
pub trait Naming {
    /// Whether [`seen`](Self::seen) is to hear of addresses as samples first use them.
    fn early(&self) -> bool {
        false
    }

    /// While the target runs: the (module, lookup address) pairs samples used for the first
    /// time since the last call, with the modules known now (to be named ahead of the end).
    fn seen(&mut self, _modules: &[Module], _new: &[(ModuleId, u64)]) {}

    /// At the end: names for every address of `wanted`.
    fn finish(self, modules: &[Module], wanted: &LookupSet) -> Vec<Record>;
}

impl<F: FnOnce(&[Module], &LookupSet) -> Vec<Record>> Naming for F {
    fn finish(self, modules: &[Module], wanted: &LookupSet) -> Vec<Record> {
        self(modules, wanted)
    }
}

/// Records `options.target` into `options.output`. `tell` hears every [`Note`] when it arises;
/// `name` names the addresses the samples used (so the profile is self-contained).
pub fn record(
    options: &Options,
    name: impl Naming,
    tell: &mut dyn FnMut(Note),
) -> Result<Outcome, RecordError> {
    raise_fd_limit();
    let session = match &options.target {
        Target::Command(argv) => start_command(options, argv, tell)?,
        Target::Attach(pid) => start_attach(options, *pid, tell)?,
    };
    session.follow(options, name, tell)
}

/// What the loop follows, and how it ends.
enum Followed {
    /// A launched COMMAND (`shown` as given).
    Command {
        running: Running,
        shown: String,
        terminated_at: Option<Instant>,
    },
    /// An attached process.
    Process,
}

/// A recording under way.
struct Session {
    recording: Recording,
    samplers: Samplers,
    pid: u32,
    exit_watch: Option<OwnedFd>,
    started: Instant,
    /// The command's own cgroup, when the samplers are on it; removed after the last drain.
    cgroup: Option<Cgroup>,
    followed: Followed,
}

fn request<'a>(options: &'a Options) -> Request<'a> {
    Request {
        event: &options.event,
        wanted_pages: wanted_pages(options.call_graph, options.rate),
        rate: options.rate,
        call_graph: options.call_graph,
        no_kernel: options.no_kernel,
        off_cpu: options.off_cpu,
        pages: options
            .pages
            .unwrap_or_else(|| default_pages(options.call_graph, options.rate)),
        explicit_pages: options.pages.is_some(),
    }
}

fn start_command(
    options: &Options,
    argv: &[OsString],
    tell: &mut dyn FnMut(Note),
) -> Result<Session, RecordError> {
    let request = request(options);
    let argv0 = argv.first().ok_or(RecordError::NoCommand)?;
    // Find the program before anything is created or forked: a missing command leaves no profile.
    let path = rprof_launch::find_program(argv0)?;
    let output = output::create(&options.output, tell)?;
    // Short processes are sampled at the rate asked for only on a cgroup of the command's own
    // (crate::cgroup); without one (not root, no cgroup v2), inherited events. The command is
    // created inside it where the kernel can, else moved in.
    let cgroup = if options.off_cpu {
        None
    } else {
        Cgroup::create().ok()
    };
    let (pending, inside) =
        rprof_launch::spawn_pending_into(argv, cgroup.as_ref().map(|c| c.fd()))?;
    let pid = pending.pid();
    let cgroup = cgroup.filter(|cgroup| inside || cgroup.add(pid).is_ok());
    let opened = match open_samplers(&request, pid, false, cgroup.as_ref(), tell) {
        Ok(opened) => opened,
        Err(e) => {
            pending.abort();
            return Err(e);
        }
    };
    let command: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let shown = argv0.to_string_lossy().into_owned();
    // The name the kernel gives the process at exec (it may not report that COMM itself,
    // because the events are enabled only by the exec).
    let comm: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect();
    // The header reaches the file while COMMAND is still held: if it cannot be written (a full
    // disk), COMMAND never runs.
    let header = header(options, &opened, command, None);
    let mut recording = match Recording::start(&output, &header, opened.call_graph) {
        Ok(recording) => recording,
        Err(e) => {
            pending.abort();
            return Err(RecordError::NotStarted {
                error: with_causes(&e),
                command: shown,
            });
        }
    };
    let exit_watch = pidfd_open(pid).ok();
    rprof_launch::forward_signals_to(pid)
        .map_err(|e| RecordError::io("cannot install the Ctrl-C handler", e))?;
    let cgroup = cgroup.filter(|_| opened.on_cgroup);
    if cgroup.is_some() {
        // Until its execve, the command is rprof's code: not sampled.
        recording.recorder.await_exec(pid);
        if let Err(e) = opened.samplers.enable() {
            pending.abort();
            return Err(RecordError::Sampler(e));
        }
    }
    let started = Instant::now();
    // Timed before COMMAND is released, so that the kernel's COMM of every `exec` it runs is
    // later and wins: its samples must not go back to this name (issue 9.11).
    let released_at = now_monotonic_ns();
    let running = pending.start()?;
    // Recording has begun: the profile replaces the destination now and is kept whatever
    // happens next (a `kill -9` of rprof included). Records wait in the ring buffers meanwhile.
    recording.place(output);
    if let Some(wakers) = &opened.wakers {
        recording
            .recorder
            .push(crate::locks::wakers_record(wakers))
            .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
    }
    recording
        .recorder
        .push(Record::Comm {
            time: released_at,
            pid,
            tid: pid,
            name: comm,
            exec: true,
        })
        .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
    Ok(Session {
        recording,
        samplers: opened.samplers,
        pid,
        exit_watch,
        started,
        cgroup,
        followed: Followed::Command {
            running,
            shown,
            terminated_at: None,
        },
    })
}

fn start_attach(
    options: &Options,
    pid: u32,
    tell: &mut dyn FnMut(Note),
) -> Result<Session, RecordError> {
    let request = request(options);
    let exit_watch = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(RecordError::Gone(pid)),
        Err(_) => None,
    };
    if has_exited(pid, exit_watch.as_ref()) {
        return Err(RecordError::Gone(pid));
    }
    let output = output::create(&options.output, tell)?;
    let opened = match open_samplers(&request, pid, true, None, tell) {
        Ok(opened) => opened,
        Err(_) if has_exited(pid, exit_watch.as_ref()) => return Err(RecordError::Gone(pid)),
        Err(e) => return Err(e),
    };
    // Attached, unless it exited meanwhile: a process that was gone before the samplers were
    // on it gets no (empty) profile.
    if has_exited(pid, exit_watch.as_ref()) {
        return Err(RecordError::Gone(pid));
    }
    let header = header(options, &opened, Vec::new(), Some(pid));
    let mut recording = Recording::start(&output, &header, opened.call_graph)?;
    recording.place(output);
    if let Some(wakers) = &opened.wakers {
        recording
            .recorder
            .push(crate::locks::wakers_record(wakers))
            .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
    }
    rprof_launch::catch_interrupts()
        .map_err(|e| RecordError::io("cannot install the Ctrl-C handler", e))?;
    let started = Instant::now();
    recording.recorder.set_start_time(now_monotonic_ns());
    // What happened before we attached: mappings and thread names from /proc.
    if let Err(error) = recording.recorder.unwinder_mut().load_proc_maps(pid) {
        tell(Note::NoMaps { pid, error });
    }
    let time = now_monotonic_ns();
    for tid in rprof_perf::list_threads(pid).unwrap_or_default() {
        if let Some(name) = rprof_perf::thread_name(pid, tid) {
            recording
                .recorder
                .push(Record::Comm {
                    time,
                    pid,
                    tid,
                    name,
                    exec: false,
                })
                .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
        }
    }
    Ok(Session {
        recording,
        samplers: opened.samplers,
        pid,
        exit_watch,
        started,
        cgroup: None,
        followed: Followed::Process,
    })
}

impl Session {
    /// The one loop: a round of records, then whether the target (or the time) is up.
    fn follow(
        mut self,
        options: &Options,
        mut name: impl Naming,
        tell: &mut dyn FnMut(Note),
    ) -> Result<Outcome, RecordError> {
        let pid = self.pid;
        let target = match &self.followed {
            Followed::Command { shown, .. } => shown.clone(),
            Followed::Process => format!("process {pid}"),
        };
        let recorder_tid = priority::current_tid();
        // The recorder drains the rings at a raised priority from the start when it may (the
        // command, forked already, keeps its own); it has nothing more to do to keep up.
        let raised = priority::raise(recorder_tid);
        // Otherwise a launched COMMAND is watched from the start (its threads may starve the
        // recorder before it reads their FORK records); the recorder also acts when it sees
        // itself behind. Either acts once.
        let mut watch = match self.followed {
            Followed::Command { .. } if raised.is_none() => Some(priority::Watch::start(
                pid,
                recorder_tid,
                self.samplers.buffers().len(),
            )),
            _ => None,
        };
        let mut kept_up = raised.is_some();
        if name.early() {
            self.recording.recorder.note_new_lookups();
        }
        loop {
            if let Some(w) = &watch {
                // Finished first: a note set just before it finished is still taken.
                let finished = w.finished();
                if let Some(note) = w.take_note() {
                    kept_up = true;
                    tell(note);
                }
                if finished {
                    watch = None;
                }
            }
            if !kept_up && self.behind() {
                kept_up = true;
                drop(watch.take());
                let pids = match self.followed {
                    Followed::Command { .. } => {
                        let mut pids: Vec<u32> = (self.recording.recorder.stats().processes)
                            .iter()
                            .copied()
                            .chain([pid])
                            .collect();
                        pids.sort_unstable();
                        pids.dedup();
                        pids
                    }
                    Followed::Process => Vec::new(),
                };
                tell(priority::keep_up(recorder_tid, &pids));
            }
            let exited = self
                .recording
                .recorder
                .wait_round(
                    &mut self.samplers,
                    self.exit_watch.as_ref().map(|fd| fd.as_fd()),
                )
                .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
            self.recording
                .tell_failure(&options.output, &target, self.started, tell);
            if name.early() {
                let (modules, new) = self.recording.recorder.take_new_lookups();
                if !new.is_empty() {
                    name.seen(modules, &new);
                }
            }
            if exited || self.ended()? {
                break;
            }
            let time_up = options
                .duration
                .is_some_and(|limit| self.started.elapsed() >= limit);
            if time_up && self.stop_at_time_up() {
                break;
            }
        }
        self.recording
            .recorder
            .drain(&mut self.samplers)
            .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
        drop(watch);
        if let Some(before) = raised {
            priority::restore(recorder_tid, before);
        }
        drop(self.samplers);
        drop(self.cgroup.take());
        // Threads still off the CPU are counted up to now (docs/off-cpu.md).
        self.recording.recorder.set_stop_time(now_monotonic_ns());
        let (outcome, exit_code) = match &mut self.followed {
            Followed::Command { running, shown, .. } => {
                let exit = running.wait()?;
                (
                    format!("{shown} ran to its end ({exit})"),
                    exit.shell_code(),
                )
            }
            Followed::Process => (
                format!("process {pid} was followed to the end of the recording"),
                0,
            ),
        };
        let summary = self.recording.finish(
            |modules: &[Module], wanted: &LookupSet| name.finish(modules, wanted),
            self.started.elapsed(),
            &options.output,
            &outcome,
        )?;
        Ok(Outcome { summary, exit_code })
    }

    /// True when the recorder is falling behind, or is about to: the target has more live
    /// threads than [`priority::THREADS_PER_CPU`] per ring buffer (CPU), a ring buffer is more
    /// than half full at the start of a round, or records were lost.
    fn behind(&self) -> bool {
        let recorder = &self.recording.recorder;
        recorder.live_threads() > priority::THREADS_PER_CPU * self.samplers.buffers().len()
            || recorder.stats().lost > 0
            || self
                .samplers
                .buffers()
                .iter()
                .any(|b| priority::behind(b.ring.pending(), b.ring.data_size()))
    }

    /// True when the target has ended (seen otherwise than through the exit watch): COMMAND
    /// was reaped; the attached process was interrupted (Ctrl-C) or, without a pidfd, is gone
    /// from /proc.
    fn ended(&mut self) -> Result<bool, RecordError> {
        Ok(match &mut self.followed {
            Followed::Command { running, .. } => running.try_wait()?.is_some(),
            Followed::Process => {
                rprof_launch::interrupted().is_some()
                    || (self.exit_watch.is_none()
                        && !Path::new(&format!("/proc/{}", self.pid)).exists())
            }
        })
    }

    /// The duration is up: an attached process is left alone (stop now); COMMAND gets SIGTERM,
    /// then SIGKILL after [`TERM_GRACE`], and is followed until it exits.
    fn stop_at_time_up(&mut self) -> bool {
        match &mut self.followed {
            Followed::Process => true,
            Followed::Command { terminated_at, .. } => {
                match terminated_at {
                    None => {
                        signal_child(self.pid, Signal::SIGTERM);
                        *terminated_at = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > TERM_GRACE => {
                        signal_child(self.pid, Signal::SIGKILL);
                    }
                    Some(_) => {}
                }
                false
            }
        }
    }
}

/// The name of `call_graph` in the profile's header (as `--call-graph` spells it).
fn call_graph_name(call_graph: CallGraph) -> String {
    match call_graph {
        CallGraph::Dwarf { stack_size } => format!("dwarf,{stack_size}"),
        CallGraph::FramePointer => "fp".to_string(),
        CallGraph::None => "none".to_string(),
    }
}

fn header(options: &Options, opened: &Opened, command: Vec<String>, pid: Option<u32>) -> Header {
    let event = &opened.event;
    let uname = nix::sys::utsname::uname().ok();
    let (frequency, period) = match options.rate {
        Rate::Frequency(hz) => (Some(hz), None),
        Rate::Period(n) => (None, Some(n)),
    };
    Header {
        rprof_version: env!("CARGO_PKG_VERSION").to_string(),
        command,
        target_pid: pid,
        event: event.name.clone(),
        frequency,
        period,
        call_graph: call_graph_name(opened.call_graph),
        start_unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        hostname: uname
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kernel_release: uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}
