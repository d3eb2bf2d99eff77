//! The uprobe PMU of perf_event: an entry and a return probe per function, one event per
//! CPU for every process, their records filtered to the target's processes by pid.
//!
//! A uprobe event is opened with `type` from `/sys/bus/event_source/devices/uprobe/type`,
//! `config1` pointing at the file's path, `config2` the file offset, and the `retprobe` bit of
//! `config` (its position in `.../uprobe/format/retprobe`) for the return probe. It needs no
//! tracefs entry (`uprobe_events` stays untouched) and lives as long as its descriptor: every
//! probe goes away when rprof exits, whatever way it exits.
//!
//! Why not per task with `inherit`: the kernel initializes an inherited uprobe event again in
//! the task that calls `clone`, reading the path through the `config1` pointer *in that task's
//! memory*, where it means nothing: every `fork`/`pthread_create` of the target then fails with
//! EFAULT (Linux 6.x; checked by the `threads` test). So the probes are opened per CPU for all
//! processes (`pid = -1`, as bpftrace's uprobes are), and a software `dummy` event per CPU
//! follows the target with `inherit` (that one is safe) and owns the CPU's ring buffer: its
//! FORK, EXIT and COMM records say which processes belong to the target and when its threads
//! exit; the probes write into the same ring (`PERF_EVENT_IOC_SET_OUTPUT`), and hits of other
//! processes are dropped by pid. The cost: while rprof runs, every process that maps the
//! probed file takes the breakpoint (for `libc:malloc`, every process on the machine).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};
use rprof_events::Tasks;
use rprof_perf::{RingBuffer, SampleFormat, SamplerError, Samplers};

use crate::resolve::Target;
use crate::LatencyError;

/// Data pages of a ring with `--stacks` (4 MiB: 500 entry copies of 8 KiB).
pub const RING_PAGES_STACKS: usize = 1024;

fn ring_pages(stacks: bool) -> usize {
    if stacks {
        RING_PAGES_STACKS
    } else {
        RING_PAGES
    }
}

/// Data pages of each CPU's ring buffer (512 KiB: at 40 bytes a probe hit, 6,500 calls; the
/// reader is woken when a quarter is full and polls at least every 100 ms).
pub const RING_PAGES: usize = 128;

/// The uprobe PMU's type and where its `retprobe` bit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UprobePmu {
    /// `perf_event_attr.type`.
    pub type_: u32,
    /// Bit of `config` that makes a return probe.
    pub retprobe_bit: u32,
}

const PMU_DIR: &str = "/sys/bus/event_source/devices/uprobe";

impl UprobePmu {
    /// Reads the PMU's type and format from sysfs.
    pub fn detect() -> Result<UprobePmu, LatencyError> {
        let read = |name: &str| {
            let path = format!("{PMU_DIR}/{name}");
            rprof_fs::read::read_bounded(
                Path::new(&path),
                &rprof_fs::read::Options::new("a sysfs file", 4096),
            )
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .map_err(|e| {
                LatencyError::Unsupported(format!(
                    "this kernel has no uprobe PMU ({path}: {}); rprof latency needs \
                         Linux 4.17+ built with CONFIG_UPROBE_EVENTS",
                    e.reason()
                ))
            })
        };
        let type_ = read("type")?;
        let format = read("format/retprobe")?;
        let type_ = type_.parse().map_err(|_| {
            LatencyError::Unsupported(format!("{PMU_DIR}/type holds '{type_}', not a number"))
        })?;
        Ok(UprobePmu {
            type_,
            retprobe_bit: parse_format_bit(&format).ok_or_else(|| {
                LatencyError::Unsupported(format!(
                    "{PMU_DIR}/format/retprobe holds '{format}', not `config:N`"
                ))
            })?,
        })
    }
}

/// `config:0` → 0.
fn parse_format_bit(text: &str) -> Option<u32> {
    text.strip_prefix("config:")?
        .parse()
        .ok()
        .filter(|&b: &u32| b < 64)
}

fn base_attr() -> perf_event_attr {
    // SAFETY: all-zero is a valid perf_event_attr.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.sample_type =
        u64::from(sys::PERF_SAMPLE_IDENTIFIER | sys::PERF_SAMPLE_TID | sys::PERF_SAMPLE_TIME);
    attr.set_exclude_kernel(1);
    attr.set_exclude_hv(1);
    attr.set_sample_id_all(1);
    attr.set_use_clockid(1);
    attr.clockid = libc::CLOCK_MONOTONIC;
    attr.set_watermark(1);
    attr.__bindgen_anon_2.wakeup_watermark =
        (RING_PAGES * rprof_perf::ring::page_size() / 4) as u32;
    attr
}

/// The attr of one probe (enabled at once, not inherited); `path` must outlive the
/// `perf_event_open` call.
pub fn probe_attr(pmu: UprobePmu, path: &CString, offset: u64, ret: bool) -> perf_event_attr {
    let mut attr = base_attr();
    attr.type_ = pmu.type_;
    attr.config = if ret { 1u64 << pmu.retprobe_bit } else { 0 };
    attr.__bindgen_anon_3.uprobe_path = path.as_ptr() as u64;
    attr.__bindgen_anon_4.probe_offset = offset;
    attr
}

/// The attr of the `dummy` event that follows the target: inherited, FORK/EXIT/COMM records,
/// and (for a COMMAND held before exec) enabled at its `execve`.
fn tracker_attr(enable_on_exec: bool, mappings: bool) -> perf_event_attr {
    let mut attr = base_attr();
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.config = u64::from(sys::PERF_COUNT_SW_DUMMY);
    attr.set_inherit(1);
    attr.set_disabled(u64::from(enable_on_exec));
    attr.set_enable_on_exec(u64::from(enable_on_exec));
    attr.set_task(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_mmap(u64::from(mappings));
    attr.set_mmap2(u64::from(mappings));
    attr
}

/// Adds a copy of the user registers and stack to an entry probe's samples (`--stacks`).
fn with_stack_copy(mut attr: perf_event_attr) -> perf_event_attr {
    attr.sample_type |= u64::from(sys::PERF_SAMPLE_REGS_USER | sys::PERF_SAMPLE_STACK_USER);
    attr.sample_regs_user = rprof_perf::attr::REGS_USER_MASK;
    attr.sample_stack_user = crate::stacks::STACK_COPY;
    attr
}

/// How to read the records of the rings, and which probe each event id is.
#[derive(Clone, Debug)]
pub struct Layouts {
    base: SampleFormat,
    entry: Option<SampleFormat>,
    ids: HashMap<u64, (usize, bool)>,
}

impl Layouts {
    /// Which probe an event id belongs to: (function, is the return probe).
    pub fn probe_of(&self, id: u64) -> Option<(usize, bool)> {
        self.ids.get(&id).copied()
    }

    /// The layout of the record `bytes`: entry samples carry a stack copy with `--stacks`;
    /// every other record is laid out as the tracker's (the `sample_id` trailer does not
    /// depend on the stack copy). A sample starts with its IDENTIFIER, after the header.
    pub fn format_of(&self, bytes: &[u8]) -> SampleFormat {
        const PERF_RECORD_SAMPLE: u32 = 9;
        let Some(entry) = self.entry else {
            return self.base;
        };
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        let is_sample = word(0).is_some_and(|w| w as u32 == PERF_RECORD_SAMPLE);
        match word(8).and_then(|id| self.probe_of(id)) {
            Some((_, false)) if is_sample => entry,
            _ => self.base,
        }
    }
}

/// Every probe of one measurement.
pub struct Probes {
    tracker: Samplers,
    /// The probes and whether each is a return probe (kept open: closing one removes it).
    probes: Vec<(OwnedFd, bool)>,
    /// Event id → (function, is the return probe).
    ids: HashMap<u64, (usize, bool)>,
    /// The layout of entry samples when they carry a stack copy (`--stacks`).
    entry_format: Option<SampleFormat>,
    pid: u32,
}

fn sampler_error(e: SamplerError, pid: u32) -> LatencyError {
    match e {
        SamplerError::Gone { pid } => LatencyError::Gone(pid),
        SamplerError::Threads { pid, .. } => LatencyError::Gone(pid),
        SamplerError::Open(e) if e.is_no_such_process() => LatencyError::Gone(pid),
        SamplerError::Open(e) => LatencyError::Open(e),
        e => LatencyError::Io {
            what: "follow the target's threads".into(),
            error: std::io::Error::other(e.to_string()),
        },
    }
}

fn open_error(e: rprof_events::OpenError, probe: &str) -> LatencyError {
    if e.is_permission() {
        return LatencyError::Permission(format!(
            "cannot open the {probe}: permission denied; uprobes need root or CAP_PERFMON \
             (kernel.perf_event_paranoid does not allow them to other users): run rprof latency \
             with sudo, or `sudo setcap cap_perfmon+ep $(command -v rprof)`"
        ));
    }
    LatencyError::Open(e.with_event(probe))
}

impl Probes {
    /// Probes for COMMAND `pid`, held before exec: the tracker follows it and what it creates
    /// from its `execve` on.
    pub fn open_process(
        pmu: UprobePmu,
        targets: &[Target],
        pid: u32,
        cpus: &[u32],
        stacks: bool,
    ) -> Result<Probes, LatencyError> {
        let attr = tracker_attr(true, stacks);
        let tracker = Samplers::open_process("dummy", &attr, pid, cpus, ring_pages(stacks))
            .map_err(|e| sampler_error(e, pid))?;
        Probes::with_tracker(pmu, targets, tracker, pid, stacks)
    }

    /// Probes for the running process `pid`: the tracker is attached to each of its threads.
    pub fn attach(
        pmu: UprobePmu,
        targets: &[Target],
        pid: u32,
        cpus: &[u32],
        stacks: bool,
    ) -> Result<Probes, LatencyError> {
        let attr = tracker_attr(false, stacks);
        let tracker = Samplers::attach("dummy", &attr, pid, cpus, ring_pages(stacks))
            .map_err(|e| sampler_error(e, pid))?;
        Probes::with_tracker(pmu, targets, tracker, pid, stacks)
    }

    fn with_tracker(
        pmu: UprobePmu,
        targets: &[Target],
        tracker: Samplers,
        pid: u32,
        stacks: bool,
    ) -> Result<Probes, LatencyError> {
        let mut probes = Probes {
            tracker,
            probes: Vec::new(),
            ids: HashMap::new(),
            entry_format: None,
            pid,
        };
        for (func, t) in targets.iter().enumerate() {
            let path = CString::new(t.path.as_os_str().as_bytes()).map_err(|_| {
                LatencyError::Usage(format!("the path of '{}' contains a NUL byte", t.name))
            })?;
            // Past a first instruction the kernel would single-step (glibc's `free`): the
            // registers and the stack there are the entry's, and a single step would add about
            // 12 µs to every call, inside the measured time.
            let offset = crate::placement::probe_offset(t);
            // The return probe first: a call that starts between the two is then a return
            // without an entry (dropped), not an entry that never returns.
            for ret in [true, false] {
                let name = format!("uprobe{} on {}", if ret { " (return)" } else { "" }, t.name);
                let mut attr = probe_attr(pmu, &path, offset, ret);
                if stacks && !ret {
                    attr = with_stack_copy(attr);
                    probes.entry_format = Some(SampleFormat::from_attr(&attr));
                }
                probes.open_probe(&attr, &name, func, ret)?;
            }
        }
        Ok(probes)
    }

    /// Opens one probe on every CPU, writing into that CPU's ring.
    fn open_probe(
        &mut self,
        attr: &perf_event_attr,
        name: &str,
        func: usize,
        ret: bool,
    ) -> Result<(), LatencyError> {
        let mut opened = Vec::new();
        for buffer in self.tracker.buffers() {
            let fd = rprof_events::perf_event_open(attr, Tasks::All, Some(buffer.cpu), None, 0)
                .map_err(|e| open_error(e, name))?;
            let mut id = 0u64;
            // SAFETY: ID writes the event's id into the u64 we pass.
            let rc = unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) };
            // SAFETY: SET_OUTPUT between two perf descriptors we own, on the same CPU.
            let rc2 = unsafe {
                perf_event_open_sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), buffer.fd().as_raw_fd())
            };
            if rc < 0 || rc2 < 0 {
                return Err(LatencyError::Io {
                    what: format!(
                        "send the records of the {name} into the ring of CPU {}",
                        buffer.cpu
                    ),
                    error: std::io::Error::last_os_error(),
                });
            }
            self.ids.insert(id, (func, ret));
            opened.push((fd, ret));
        }
        self.probes.extend(opened);
        Ok(())
    }

    /// Stops every probe: entry probes first, then return probes (so a call whose entry was
    /// recorded keeps its return). Disabling takes microseconds, while closing a uprobe waits
    /// for RCU grace periods (tens of milliseconds each on a busy machine), during which the
    /// other probes would still record. Done before the last read, so that no hit arrives
    /// after it. The descriptors are closed when the `Probes` are dropped.
    pub fn stop(&mut self) {
        for entry_first in [false, true] {
            for (fd, ret) in &self.probes {
                if *ret == entry_first {
                    // SAFETY: DISABLE on a perf event descriptor we own; the argument is unused.
                    // A failure leaves that probe recording until it is closed: nothing worse
                    // than without the disable.
                    unsafe { perf_event_open_sys::ioctls::DISABLE(fd.as_raw_fd(), 0) };
                }
            }
        }
    }

    /// Attach mode: follows threads created while attaching (see `Samplers::rescan`).
    pub fn rescan(&mut self) {
        // A failure leaves those threads' exits unseen: their open calls count as in progress.
        let _ = self.tracker.rescan();
    }

    /// How to read the records of the rings.
    pub fn layouts(&self) -> Layouts {
        Layouts {
            base: self.tracker.format(),
            entry: self.entry_format,
            ids: self.ids.clone(),
        }
    }

    /// Which probe an event id belongs to: (function, is the return probe).
    pub fn probe_of(&self, id: u64) -> Option<(usize, bool)> {
        self.ids.get(&id).copied()
    }

    /// The ring buffers, for reading.
    pub fn rings_mut(&mut self) -> impl Iterator<Item = &mut RingBuffer> {
        self.tracker.buffers_mut().iter_mut().map(|b| &mut b.ring)
    }

    /// The descriptors to poll (one a ring).
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.tracker.buffers().iter().map(|b| b.fd()).collect()
    }

    /// Number of threads the tracker was attached to (`-p`).
    pub fn attached_threads(&self) -> usize {
        self.tracker.attached_threads()
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_bits() {
        assert_eq!(parse_format_bit("config:0"), Some(0));
        assert_eq!(parse_format_bit("config:63"), Some(63));
        assert_eq!(parse_format_bit("config:64"), None);
        assert_eq!(parse_format_bit("config1:0"), None);
        assert_eq!(parse_format_bit(""), None);
    }

    #[test]
    fn probes_are_never_inherited() {
        let pmu = UprobePmu {
            type_: 8,
            retprobe_bit: 0,
        };
        let path = CString::new("/bin/true").unwrap();
        let entry = probe_attr(pmu, &path, 0x1234, false);
        let ret = probe_attr(pmu, &path, 0x1234, true);
        assert_eq!(entry.config, 0);
        assert_eq!(ret.config, 1);
        // SAFETY: the union holds probe_offset, as set.
        assert_eq!(unsafe { ret.__bindgen_anon_4.probe_offset }, 0x1234);
        // An inherited uprobe event makes the target's clone() fail (module docs).
        assert_eq!(ret.inherit(), 0);
        assert_eq!(entry.inherit(), 0);
        let tracker = tracker_attr(true, false);
        assert_eq!(tracker.inherit(), 1);
        assert_eq!(tracker.enable_on_exec(), 1);
        assert_eq!(
            SampleFormat::from_attr(&tracker),
            SampleFormat::from_attr(&ret)
        );
    }
}
