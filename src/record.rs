//! `rprof record`: run COMMAND (or attach to a running process) with samplers on every CPU,
//! unwind each sample as it arrives, and stream the result into a self-contained profile.
//!
//! Data flow: `rprof-perf` opens the samplers and hands out the records of each CPU's ring
//! buffer; each round (after `poll`) the records of all buffers are sorted by time and applied in
//! order: MMAP2/FORK/COMM-exec/EXIT keep `rprof-unwind`'s address spaces current, and each SAMPLE
//! is unwound right away, so that only addresses (never stack copies) reach the file. Modules get
//! profile ids on first use. When the target is done, `resolve` names every address that was
//! used and the names are appended before the summary.

use std::cell::OnceCell;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rprof_events::{Event, EventKind};
use rprof_fs::{Access, NewFile};
use rprof_perf::{CallGraph, Rate, SamplerError, Samplers, SamplingOptions};
use rprof_profile::{Header, Record};
use rprof_record::{Recorder, Stats};

use crate::exit::{event_error, usage, with_code, FAILURE, NOT_EXECUTABLE, NOT_FOUND};

/// Default sampling frequency (Hz): near 1 kHz, but not a multiple of common timer ticks.
const DEFAULT_FREQUENCY: u64 = 999;
/// Default user-stack copy for `--call-graph dwarf`: the largest the kernel takes. A 300-deep
/// recursion of ~100-byte frames needs ~30 KB, so this leaves room for bigger frames too.
const DEFAULT_STACK_COPY: u32 = rprof_perf::MAX_STACK_COPY;
/// With --duration and a launched COMMAND: how long COMMAND gets to exit after SIGTERM.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Smallest ring buffer (data pages) tried when the default size is refused.
const MIN_PAGES: usize = 8;

/// Arguments of `rprof record`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  rprof record -- ./my-program --its-args\n  rprof record -F 4999 --call-graph fp -o prof.data -- make -j2\n  rprof record -p 1234 --duration 10"
)]
pub struct Args {
    /// Where to write the profile.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "rprof.data"
    )]
    output: PathBuf,

    /// Samples per second per thread (default 999; clamped to kernel.perf_event_max_sample_rate).
    #[arg(
        short = 'F',
        long = "freq",
        value_name = "HZ",
        conflicts_with = "period"
    )]
    freq: Option<u64>,

    /// Sample every N events instead of at a frequency (default for tracepoints: 1).
    #[arg(short = 'c', long = "period", value_name = "N")]
    period: Option<u64>,

    /// The event that triggers samples: cpu-clock, task-clock, page-faults, cycles (with a PMU),
    /// a tracepoint such as sched:sched_switch, ...
    #[arg(
        short = 'e',
        long = "event",
        value_name = "EVENT",
        default_value = "cpu-clock"
    )]
    event: String,

    /// How to capture call stacks: dwarf[,SIZE] (user registers + SIZE bytes of user stack,
    /// unwound with DWARF CFI; default SIZE 65528), fp (frame pointers), or none.
    #[arg(long = "call-graph", value_name = "MODE", default_value = "dwarf")]
    call_graph: String,

    /// Stop after this many seconds (with COMMAND: COMMAND then gets SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Attach to this running process (all its threads) instead of running COMMAND.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<String>,

    /// Ring-buffer size per CPU: data pages (a power of two) or a size such as 512K or 16M.
    #[arg(short = 'm', long = "mmap-pages", value_name = "PAGES")]
    mmap_pages: Option<String>,

    /// Sample user space only (no kernel frames).
    #[arg(long = "no-kernel")]
    no_kernel: bool,

    /// The command to run and its arguments (after `--`).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        num_args = 0..
    )]
    command: Vec<OsString>,
}

/// What to record, validated.
struct Plan {
    output: PathBuf,
    event: Event,
    rate: Rate,
    call_graph: CallGraph,
    duration: Option<Duration>,
    target: Target,
    pages: Pages,
    no_kernel: bool,
}

enum Target {
    Command(Vec<OsString>),
    Attach(u32),
}

#[derive(Clone, Copy)]
enum Pages {
    /// Chosen by rprof: may be reduced if the kernel refuses it.
    Default(usize),
    /// Asked for with -m: refused means an error.
    Explicit(usize),
}

impl Pages {
    fn get(self) -> usize {
        match self {
            Pages::Default(n) | Pages::Explicit(n) => n,
        }
    }
}

fn note(message: impl std::fmt::Display) {
    eprintln!("rprof: note: {message}");
}

/// The longest `--duration` (seconds): about 31 years, far beyond any recording, and small
/// enough for every clock rprof uses.
pub const MAX_DURATION_SECS: f64 = 1e9;

/// Checks `--duration SECS`: a positive number of seconds, at most [`MAX_DURATION_SECS`].
pub fn parse_duration(secs: f64) -> anyhow::Result<Duration> {
    if secs.is_nan() || secs <= 0.0 {
        return Err(usage(format!(
            "--duration must be a positive number of seconds, not {secs}"
        )));
    }
    if secs >= MAX_DURATION_SECS {
        return Err(usage(format!(
            "--duration {secs} is too large: at most {MAX_DURATION_SECS:.0} seconds (about 31 years); leave it out to record until the target exits or Ctrl-C"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--call-graph`.
fn parse_call_graph(spec: &str) -> anyhow::Result<CallGraph> {
    let (mode, size) = match spec.split_once(',') {
        Some((mode, size)) => (mode, Some(size)),
        None => (spec, None),
    };
    match (mode, size) {
        ("dwarf", None) => Ok(CallGraph::Dwarf {
            stack_size: DEFAULT_STACK_COPY,
        }),
        ("dwarf", Some(size)) => {
            let bytes = parse_size(size).filter(|&b| b > 0).ok_or_else(|| {
                usage(format!(
                    "invalid stack size '{size}' in --call-graph {spec} (expected bytes, e.g. dwarf,32768)"
                ))
            })?;
            let max = u64::from(rprof_perf::MAX_STACK_COPY);
            let mut rounded = bytes.div_ceil(8) * 8;
            if rounded > max {
                note(format!(
                    "a stack copy of {bytes} bytes is over the kernel's limit; using {max}"
                ));
                rounded = max;
            }
            Ok(CallGraph::Dwarf {
                stack_size: rounded as u32,
            })
        }
        ("fp", None) => Ok(CallGraph::FramePointer),
        ("none", None) => Ok(CallGraph::None),
        _ => Err(usage(format!(
            "invalid --call-graph '{spec}' (expected dwarf, dwarf,SIZE, fp or none)"
        ))),
    }
}

fn call_graph_name(call_graph: CallGraph) -> String {
    match call_graph {
        CallGraph::Dwarf { stack_size } => format!("dwarf,{stack_size}"),
        CallGraph::FramePointer => "fp".to_string(),
        CallGraph::None => "none".to_string(),
    }
}

/// A byte count with an optional K/M/G suffix (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Parses `-m`: pages, or a size with a unit; rounded up to a power of two.
fn parse_pages(text: &str) -> anyhow::Result<usize> {
    let page = rprof_perf::ring::page_size() as u64;
    let bad = || {
        usage(format!(
            "invalid --mmap-pages '{text}' (expected a number of pages such as 256, or a size such as 512K or 16M)"
        ))
    };
    let pages = if text.trim().chars().all(|c| c.is_ascii_digit()) {
        text.trim().parse::<u64>().map_err(|_| bad())?
    } else {
        parse_size(text).ok_or_else(bad)?.div_ceil(page)
    };
    if pages == 0 {
        return Err(usage("--mmap-pages must be at least 1 page"));
    }
    let rounded = pages
        .checked_next_power_of_two()
        .filter(|&p| p <= 1 << 30)
        .ok_or_else(bad)?;
    if rounded != pages {
        note(format!(
            "ring buffers hold a power of two of pages: using {rounded} instead of {pages}"
        ));
    }
    Ok(rounded as usize)
}

/// True when the kernel lets us lock as much memory as we like for ring buffers.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    // CAP_IPC_LOCK (bit 14) in the effective set.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The default ring-buffer size per CPU (data pages): room for ~250 ms of dwarf samples at the
/// default rate on a busy CPU; without privileges, at most [`affordable_pages`]. If the kernel
/// refuses it anyway, `open_samplers` halves it.
fn default_pages(call_graph: CallGraph) -> usize {
    let page = rprof_perf::ring::page_size();
    let wanted = match call_graph {
        CallGraph::Dwarf { .. } => default_dwarf_pages(),
        _ => (1 << 20) / page,
    };
    if privileged() {
        return wanted;
    }
    affordable_pages().map_or(wanted, |pages| pages.min(wanted))
}

/// The default ring-buffer size per CPU for dwarf stacks (data pages): 16 MiB.
fn default_dwarf_pages() -> usize {
    (16 << 20) / rprof_perf::ring::page_size()
}

/// The largest power-of-two buffer (data pages per CPU) the locked-memory limits grant an
/// unprivileged user: `perf_event_mlock_kb` per CPU plus `RLIMIT_MEMLOCK` shared by all CPUs
/// (None: unlimited).
fn affordable_pages() -> Option<usize> {
    let page_kb = (rprof_perf::ring::page_size() as u64 / 1024).max(1);
    let mlock_kb = read_sysctl("perf_event_mlock_kb").unwrap_or(516);
    let cpus = rprof_events::online_cpus().map_or(1, |c| c.len().max(1)) as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let memlock_kb = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 {
        if limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        limit.rlim_cur / 1024
    } else {
        0
    };
    let budget_kb = mlock_kb + memlock_kb / cpus;
    // The metadata page counts too.
    let pages = (budget_kb / page_kb).saturating_sub(1).max(1);
    Some(1usize << (63 - pages.leading_zeros()))
}

fn validate(args: Args) -> anyhow::Result<Plan> {
    let event = rprof_events::parse(&args.event).map_err(event_error)?;
    let rate = match (args.freq, args.period) {
        (Some(0), _) => return Err(usage("the sampling frequency (-F) must be at least 1 Hz")),
        (_, Some(0)) => return Err(usage("the sampling period (-c) must be at least 1")),
        (_, Some(period)) => Rate::Period(period),
        (Some(hz), None) => Rate::Frequency(hz),
        (None, None) if event.kind == EventKind::Tracepoint => Rate::Period(1),
        (None, None) => Rate::Frequency(DEFAULT_FREQUENCY),
    };
    let rate = match rate {
        Rate::Frequency(hz) => match rprof_events::max_sample_rate() {
            Some(max) if hz > max => {
                note(format!(
                    "-F {hz} is above kernel.perf_event_max_sample_rate ({max}): sampling at {max} Hz"
                ));
                Rate::Frequency(max)
            }
            _ => Rate::Frequency(hz),
        },
        other => other,
    };
    let call_graph = parse_call_graph(&args.call_graph)?;
    let duration = args.duration.map(parse_duration).transpose()?;
    let target = match (args.pid, args.command.is_empty()) {
        (Some(_), false) => return Err(usage("give either -p PID or a COMMAND to run, not both")),
        (None, true) => {
            return Err(usage(
                "nothing to record: give a COMMAND (rprof record -- COMMAND ARGS...) or -p PID",
            ))
        }
        (Some(pid), true) => match pid.trim().parse::<u32>() {
            Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Target::Attach(pid),
            _ => return Err(usage(format!("invalid process id '{pid}' for -p"))),
        },
        (None, false) => Target::Command(args.command),
    };
    let pages = match args.mmap_pages {
        Some(text) => Pages::Explicit(parse_pages(&text)?),
        None => Pages::Default(default_pages(call_graph)),
    };
    Ok(Plan {
        output: args.output,
        event,
        rate,
        call_graph,
        duration,
        target,
        pages,
        no_kernel: args.no_kernel,
    })
}

/// Runs `rprof record`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let plan = validate(args)?;
    raise_fd_limit();
    match &plan.target {
        Target::Command(argv) => record_command(&plan, argv),
        Target::Attach(pid) => record_attach(&plan, *pid),
    }
}

/// Attaching to a thread-rich process opens (threads × CPUs) descriptors: use the hard limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Creates the profile's file beside the destination (`rprof-fs`): private (0600), handed to
/// the invoking user under sudo, and moved into place only when recording begins, so that a
/// recording that fails to start leaves an existing profile alone and no file behind.
fn create_output(path: &Path) -> anyhow::Result<NewFile> {
    let file = NewFile::create(path, Access::Private).map_err(|e| with_code(FAILURE, e))?;
    if let Some(problem) = file.handover_problem() {
        note(problem);
    }
    Ok(file)
}

/// Where the recorder's bytes go. The first write that fails (a full disk, a quota) is kept
/// and every later write is dropped, so the recorder keeps following the target and draining
/// the ring buffers; the file keeps what was written before, which `rprof report` reads up to
/// the last complete block.
struct Sink {
    file: File,
    failure: Rc<OnceCell<io::Error>>,
}

impl Sink {
    /// A sink writing to `file`, and the cell where its first failure will be.
    fn new(file: File) -> (Sink, Rc<OnceCell<io::Error>>) {
        let failure = Rc::new(OnceCell::new());
        (
            Sink {
                file,
                failure: Rc::clone(&failure),
            },
            failure,
        )
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failure.get().is_some() {
            return Ok(buf.len());
        }
        match self.file.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let _ = self.failure.set(e);
                Ok(buf.len())
            }
            written => written,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A recorder that writes a profile; `failure` says whether (and why) its writes stopped.
struct Recording {
    recorder: ProfileRecorder,
    failure: Rc<OnceCell<io::Error>>,
    /// When (after the start) the failure was noticed and told to the user.
    failed_after: Option<Duration>,
    /// The file is at its destination.
    placed: bool,
}

impl Recording {
    /// Starts the profile in `file` with `header`; the header reaches the file now, or this
    /// fails (and the caller does not start the target).
    fn start(file: &NewFile, header: &Header, call_graph: CallGraph) -> anyhow::Result<Recording> {
        let cannot = || format!("cannot write the profile to '{}'", file.path().display());
        let (sink, failure) = Sink::new(file.file().try_clone().with_context(cannot)?);
        let recorder = Recorder::new(BufWriter::with_capacity(1 << 20, sink), header, call_graph)
            .with_context(cannot)?;
        if let Some(e) = failure.get() {
            return Err(anyhow!("{}: {e}", cannot()));
        }
        Ok(Recording {
            recorder,
            failure,
            failed_after: None,
            placed: false,
        })
    }

    /// Recording has begun: moves the file to its destination. If that fails, the recording
    /// goes on without writing, like after a full disk.
    fn place(&mut self, file: NewFile) {
        match file.commit() {
            Ok(_) => self.placed = true,
            Err(e) => {
                let _ = self
                    .failure
                    .set(io::Error::other(format!("{:#}", anyhow::Error::new(e))));
            }
        }
    }

    /// Says once, when it happens, that the profile can no longer be written.
    fn tell_failure(&mut self, path: &Path, following: &str, started: Instant) {
        if self.failed_after.is_some() {
            return;
        }
        if let Some(e) = self.failure.get() {
            self.failed_after = Some(started.elapsed());
            note(format!(
                "cannot write to '{}': {e}; {following} to its end without recording",
                path.display()
            ));
        }
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when the process exits.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn now_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn header(plan: &Plan, event: &Event, command: Vec<String>, pid: Option<u32>) -> Header {
    let uname = nix::sys::utsname::uname().ok();
    let (frequency, period) = match plan.rate {
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
        call_graph: call_graph_name(plan.call_graph),
        start_unix_ns: unix_ns(),
        hostname: uname
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kernel_release: uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The samplers as opened, with the event as it ended up (user-only after a fallback).
struct Opened {
    samplers: Samplers,
    event: Event,
}

/// Opens the samplers for `pid`, falling back to user-only sampling when the kernel refuses
/// kernel sampling, and to smaller buffers when it refuses the default buffer size.
fn open_samplers(plan: &Plan, pid: u32, attach: bool) -> anyhow::Result<Opened> {
    let cpus = rprof_events::online_cpus().context("cannot list the online CPUs")?;
    let mut event = if plan.no_kernel {
        plan.event.user_only()
    } else {
        plan.event.clone()
    };
    let mut pages = plan.pages.get();
    let mut kernel_refused = None;
    let mut options = SamplingOptions {
        rate: plan.rate,
        call_graph: plan.call_graph,
        enable_on_exec: !attach,
        inherit: true,
        wakeup_bytes: 0,
        mmap_build_id: true,
    };
    loop {
        // Wake up when a quarter of the buffer is used.
        let bytes = pages.saturating_mul(rprof_perf::ring::page_size()) / 4;
        options.wakeup_bytes = bytes.clamp(1, u32::MAX as usize) as u32;
        let mut attr = rprof_perf::sampling_attr(&event.attr(), &options);
        if event.exclude_kernel {
            attr.set_exclude_callchain_kernel(1);
        }
        let result = if attach {
            Samplers::attach(&event.name, &attr, pid, &cpus, pages)
        } else {
            Samplers::open_process(&event.name, &attr, pid, &cpus, pages)
        };
        match result {
            Ok(samplers) => {
                if let Some(note_text) = kernel_refused.take() {
                    note(note_text);
                }
                if pages != plan.pages.get() {
                    note(format!(
                        "the kernel refused ring buffers of {} pages per CPU (locked-memory limit); using {pages} pages, samples may be lost (see docs/permissions.md)",
                        plan.pages.get()
                    ));
                }
                return Ok(Opened { samplers, event });
            }
            // Kernels before 5.12 do not know attr.build_id: MMAP2 records then carry the inode.
            Err(SamplerError::Open(e)) if e.errno == libc::EINVAL && options.mmap_build_id => {
                options.mmap_build_id = false;
            }
            Err(SamplerError::Open(e))
                if e.is_permission() && e.counts_kernel && !event.exclude_kernel =>
            {
                let level = e
                    .paranoid
                    .map_or("unreadable".to_string(), |p| p.to_string());
                // Said only once the user-only events open: attaching may still be refused.
                kernel_refused = Some(format!(
                    "the kernel refuses kernel-space sampling (kernel.perf_event_paranoid is {level}); recording user space only"
                ));
                event = event.user_only();
            }
            Err(SamplerError::Map { source, .. })
                if source.is_mlock_limit()
                    && matches!(plan.pages, Pages::Default(_))
                    && pages / 2 >= MIN_PAGES =>
            {
                pages /= 2;
            }
            Err(SamplerError::Map { source, .. }) if source.is_mlock_limit() => {
                return Err(anyhow!(mlock_message(pages, &source)));
            }
            Err(SamplerError::Open(e)) if e.is_permission() && attach => {
                return Err(anyhow!(attach_permission_message(pid, &e)));
            }
            Err(SamplerError::Open(e)) if e.is_no_such_process() && attach => {
                return Err(process_gone(pid));
            }
            Err(SamplerError::Gone { .. }) if attach => return Err(process_gone(pid)),
            Err(SamplerError::Threads { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(process_gone(pid));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn mlock_message(pages: usize, source: &rprof_perf::MapError) -> String {
    if privileged() {
        // Root (or CAP_IPC_LOCK) is not held to the locked-memory limits: the kernel could not
        // provide that much memory. Advising to run as root would be advising what is done.
        let page = rprof_perf::ring::page_size();
        return format!(
            "{source}: the kernel cannot provide ring buffers this large ({} MiB per CPU); use a smaller buffer (-m {}M, the default for dwarf stacks, is enough for most programs)",
            (pages as u64 * page as u64) >> 20,
            (default_dwarf_pages() * page) >> 20
        );
    }
    let mlock = read_sysctl("perf_event_mlock_kb")
        .map_or("unreadable".to_string(), |kb| format!("{kb} KiB"));
    format!(
        "{source}: over the locked-memory limit for perf buffers (kernel.perf_event_mlock_kb = {mlock} per CPU, plus `ulimit -l`); use a smaller buffer (-m {}), raise the limit with `sudo sysctl -w kernel.perf_event_mlock_kb={}`, or run as root",
        affordable_pages().map_or(pages / 4, |p| p.min(pages / 2)).max(1),
        (pages * rprof_perf::ring::page_size() / 1024 + 4).max(516)
    )
}

fn process_owner(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

fn attach_permission_message(pid: u32, e: &rprof_events::OpenError) -> String {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match process_owner(pid) {
        Some(owner) if owner != me => format!(
            "cannot attach to process {pid}: it belongs to uid {owner} and rprof runs as uid {me}; only root (or CAP_PERFMON with ptrace access) may profile other users' processes: run `sudo rprof record -p {pid}`"
        ),
        _ => e.to_string(),
    }
}

fn record_command(plan: &Plan, argv: &[OsString]) -> anyhow::Result<i32> {
    let Some(argv0) = argv.first() else {
        return Err(usage("no command given"));
    };
    // Resolve before anything is created or forked: a missing command leaves no profile.
    let path = rprof_launch::resolve(argv0).map_err(launch_error)?;
    let output = create_output(&plan.output)?;
    let pending = rprof_launch::spawn_pending(argv).map_err(launch_error)?;
    let pid = pending.pid() as u32;
    let opened = match open_samplers(plan, pid, false) {
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
    let header = header(plan, &opened.event, command, None);
    let mut recording = match Recording::start(&output, &header, plan.call_graph) {
        Ok(recording) => recording,
        Err(e) => {
            pending.abort();
            return Err(with_code(
                FAILURE,
                anyhow!("{e:#}; {shown} was not started"),
            ));
        }
    };
    let exit_watch = pidfd_open(pid).ok();
    rprof_launch::forward_signals_to(pid as i32).context("cannot install the Ctrl-C handler")?;
    let started = Instant::now();
    // Timed before COMMAND is released, so that the kernel's COMM of every `exec` it runs is
    // later and wins: its samples must not go back to this name (issue 9.11).
    let released_at = now_monotonic_ns();
    let mut running = pending.start().map_err(launch_error)?;
    // Recording has begun: the profile replaces the destination now and is kept whatever
    // happens next (a `kill -9` of rprof included). Records wait in the ring buffers meanwhile.
    recording.place(output);
    let following = format!("following {shown}");
    recording
        .recorder
        .push(Record::Comm {
            time: released_at,
            pid,
            tid: pid,
            name: comm,
            exec: true,
        })
        .context("cannot write to the profile")?;
    let mut samplers = opened.samplers;
    let mut terminated_at = None;
    loop {
        let exited = recording
            .recorder
            .wait_round(&mut samplers, exit_watch.as_ref().map(|fd| fd.as_fd()))
            .context("cannot write to the profile")?;
        recording.tell_failure(&plan.output, &following, started);
        if exited || running.try_wait().map_err(launch_error)?.is_some() {
            break;
        }
        if let Some(limit) = plan.duration {
            if started.elapsed() >= limit {
                match terminated_at {
                    None => {
                        // SAFETY: kill(2) on our own child.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                        terminated_at = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > TERM_GRACE => {
                        // SAFETY: kill(2) on our own child.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                    Some(_) => {}
                }
            }
        }
    }
    recording
        .recorder
        .drain(&mut samplers)
        .context("cannot write to the profile")?;
    drop(samplers);
    let exit = running.wait().map_err(launch_error)?;
    finish(
        recording,
        started.elapsed(),
        &plan.output,
        &format!("{shown} ran to its end ({exit})"),
    )?;
    Ok(exit.shell_code())
}

/// The one outcome of attaching to a process that is gone (it exited, perhaps a moment ago, or
/// never existed): exit code 1, this message, and no profile.
fn process_gone(pid: u32) -> anyhow::Error {
    anyhow!("no process with id {pid} (it exited before rprof could attach)")
}

/// True when the process has exited (it may still be a zombie waiting for its parent).
fn has_exited(pid: u32, exit_watch: Option<&OwnedFd>) -> bool {
    if let Some(fd) = exit_watch {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        // A pidfd is readable once its process has exited.
        if let Ok(n) = poll(&mut fds, PollTimeout::ZERO) {
            return n > 0;
        }
    }
    // Without a pidfd: the state in /proc/PID/stat, after the command name in parentheses.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

fn record_attach(plan: &Plan, pid: u32) -> anyhow::Result<i32> {
    let exit_watch = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(process_gone(pid)),
        Err(_) => None,
    };
    if has_exited(pid, exit_watch.as_ref()) {
        return Err(process_gone(pid));
    }
    let output = create_output(&plan.output)?;
    let opened = match open_samplers(plan, pid, true) {
        Ok(opened) => opened,
        Err(_) if has_exited(pid, exit_watch.as_ref()) => return Err(process_gone(pid)),
        Err(e) => return Err(e),
    };
    // Attached, unless it exited meanwhile: a process that was gone before the samplers were
    // on it gets no (empty) profile.
    if has_exited(pid, exit_watch.as_ref()) {
        return Err(process_gone(pid));
    }
    let header = header(plan, &opened.event, Vec::new(), Some(pid));
    let mut recording = Recording::start(&output, &header, plan.call_graph)?;
    recording.place(output);
    rprof_launch::catch_interrupts().context("cannot install the Ctrl-C handler")?;
    let started = Instant::now();
    let following = format!("following process {pid}");
    // What happened before we attached: mappings and thread names from /proc.
    if let Err(e) = recording.recorder.unwinder_mut().load_proc_maps(pid) {
        note(format!("cannot read /proc/{pid}/maps: {e}"));
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
                .context("cannot write to the profile")?;
        }
    }
    let mut samplers = opened.samplers;
    loop {
        let exited = recording
            .recorder
            .wait_round(&mut samplers, exit_watch.as_ref().map(|fd| fd.as_fd()))
            .context("cannot write to the profile")?;
        recording.tell_failure(&plan.output, &following, started);
        if exited || rprof_launch::interrupted().is_some() {
            break;
        }
        if plan
            .duration
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            break;
        }
        if exit_watch.is_none() && !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
    }
    recording
        .recorder
        .drain(&mut samplers)
        .context("cannot write to the profile")?;
    drop(samplers);
    finish(
        recording,
        started.elapsed(),
        &plan.output,
        &format!("process {pid} was followed to the end of the recording"),
    )?;
    Ok(0)
}

/// A launch failure, with the shell's exit code when there is one (127, 126).
fn launch_error(e: rprof_launch::LaunchError) -> anyhow::Error {
    match e.exit_code() {
        Some(NOT_FOUND) => with_code(NOT_FOUND, e),
        Some(NOT_EXECUTABLE) => with_code(NOT_EXECUTABLE, e),
        Some(code) => with_code(code, e),
        None => anyhow::Error::new(e),
    }
}

type ProfileRecorder = Recorder<BufWriter<Sink>>;

/// Names every address the samples used (so that the profile is self-contained), writes the
/// summary and prints it. If the profile could not be written to its end, that is the error,
/// with `outcome` (how the target ended).
fn finish(
    recording: Recording,
    elapsed: Duration,
    path: &Path,
    outcome: &str,
) -> anyhow::Result<()> {
    let Recording {
        recorder,
        failure,
        mut failed_after,
        placed,
    } = recording;
    if failure.get().is_some() && failed_after.is_none() {
        // It failed in the last round, after the target had ended.
        failed_after = Some(elapsed);
    }
    if failure.get().is_none() {
        let (out, stats) = recorder
            .finish(crate::resolve::symbolize)
            .context("cannot write to the profile")?;
        if failure.get().is_none() {
            let size = out
                .get_ref()
                .file
                .metadata()
                .map(|m| m.len())
                .unwrap_or_default();
            print_summary(&stats, elapsed, size, path);
            return Ok(());
        }
    }
    let held = match (placed, failed_after) {
        (false, _) => "no profile was written".to_string(),
        (true, Some(at)) => format!(
            "writing stopped after {:.1} s and rprof report reads what was written",
            at.as_secs_f64()
        ),
        (true, None) => {
            "it holds every sample but not all their names, and rprof report reads it".to_string()
        }
    };
    let why = failure
        .get()
        .map_or_else(|| "write failed".to_string(), ToString::to_string);
    Err(with_code(
        FAILURE,
        anyhow!(
            "cannot write the profile to '{}': {why}; {held}; {outcome}",
            path.display()
        ),
    ))
}

fn print_summary(stats: &Stats, elapsed: Duration, size: u64, path: &Path) {
    let truncated_share = if stats.samples > 0 {
        100.0 * stats.truncated as f64 / stats.samples as f64
    } else {
        0.0
    };
    eprintln!(
        "rprof: recorded {:.2} s: {}, {}, {}, {}, {} ({:.1}%); wrote {} to {}",
        elapsed.as_secs_f64(),
        count(stats.samples, "sample"),
        count(stats.threads.len() as u64, "thread"),
        count(stats.processes.len() as u64, "process"),
        count(stats.lost, "lost sample"),
        count(stats.truncated, "truncated stack"),
        truncated_share,
        human_size(size),
        path.display()
    );
    if stats.throttled > 0 {
        note(format!(
            "the kernel throttled sampling {} times (kernel.perf_cpu_time_max_percent); consider a lower -F",
            stats.throttled
        ));
    }
    if stats.unwind_failed > 0 {
        note(format!(
            "{} of the truncated stacks stopped because unwinding failed (no unwind information or an unexpected stack), not because the stack copy ran out",
            stats.unwind_failed
        ));
    }
    if stats.bad_records > 0 || stats.ring_errors > 0 {
        note(format!(
            "{} malformed perf records and {} ring-buffer inconsistencies were skipped",
            stats.bad_records, stats.ring_errors
        ));
    }
}

/// `n` and `noun`, plural when `n` is not 1 ("1 thread", "2 processes").
fn count(n: u64, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_plural_unless_one() {
        assert_eq!(count(1, "thread"), "1 thread");
        assert_eq!(count(0, "thread"), "0 threads");
        assert_eq!(count(1, "process"), "1 process");
        assert_eq!(count(3, "process"), "3 processes");
        assert_eq!(count(2, "lost sample"), "2 lost samples");
    }

    #[test]
    fn call_graph_specs() {
        assert_eq!(
            parse_call_graph("dwarf").unwrap(),
            CallGraph::Dwarf {
                stack_size: DEFAULT_STACK_COPY
            }
        );
        assert_eq!(
            parse_call_graph("dwarf,1000").unwrap(),
            CallGraph::Dwarf { stack_size: 1000 }
        );
        assert_eq!(
            parse_call_graph("dwarf,1001").unwrap(),
            CallGraph::Dwarf { stack_size: 1008 }
        );
        assert_eq!(
            parse_call_graph("dwarf,16K").unwrap(),
            CallGraph::Dwarf { stack_size: 16384 }
        );
        assert_eq!(
            parse_call_graph("dwarf,1M").unwrap(),
            CallGraph::Dwarf {
                stack_size: rprof_perf::MAX_STACK_COPY
            }
        );
        assert_eq!(parse_call_graph("fp").unwrap(), CallGraph::FramePointer);
        assert_eq!(parse_call_graph("none").unwrap(), CallGraph::None);
        for bad in [
            "", "lbr", "dwarf,", "dwarf,0", "dwarf,x", "fp,8", "dwarf,-8",
        ] {
            assert!(parse_call_graph(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_pages() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_pages("256").unwrap(), 256);
        assert_eq!(parse_pages("100").unwrap(), 128);
        let page = rprof_perf::ring::page_size();
        assert_eq!(parse_pages("1M").unwrap(), (1 << 20) / page);
        assert!(parse_pages("0").is_err());
        assert!(parse_pages("lots").is_err());
        assert!(parse_pages("99999999999999999999").is_err());
    }

    #[test]
    fn default_buffers_are_powers_of_two() {
        for cg in [
            CallGraph::Dwarf { stack_size: 8 },
            CallGraph::FramePointer,
            CallGraph::None,
        ] {
            let pages = default_pages(cg);
            assert!(pages.is_power_of_two() && pages >= 1, "{pages}");
        }
    }
}
