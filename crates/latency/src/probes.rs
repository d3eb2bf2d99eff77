//! The uprobe PMU of perf_event: an entry and a return probe per function, opened per CPU
//! for a process and everything it creates, their records in one ring buffer a CPU.
//!
//! A uprobe event is opened with `type` from `/sys/bus/event_source/devices/uprobe/type`,
//! `config1` pointing at the file's path, `config2` the file offset, and the `retprobe` bit of
//! `config` (its position in `.../uprobe/format/retprobe`) for the return probe. It needs no
//! tracefs entry (`uprobe_events` stays untouched) and lives as long as its descriptor: every
//! probe goes away when rprof exits, whatever way it exits.
//!
//! Why per CPU: a per-task event with `cpu = -1` and `inherit` (needed to follow the threads a
//! COMMAND creates) cannot be mmap'ed, so each event is opened once per CPU with `pid` = the
//! target and `inherit`; the first event of each CPU owns the CPU's ring buffer and the others
//! write into it (`PERF_EVENT_IOC_SET_OUTPUT`). For `-p`, one event per thread per CPU (the
//! kernel's `inherit` follows threads created later).

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};
use rprof_events::Tasks;
use rprof_perf::{RingBuffer, SampleFormat};

use crate::resolve::Target;
use crate::LatencyError;

/// Data pages of each CPU's ring buffer (512 KiB: at ~40 bytes a hit, 13,000 calls between
/// two reads of a 100 ms poll timeout... and the reader is woken at a quarter full).
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
            rprof_fs::read::read_bounded(Path::new(&path), &rprof_fs::read::Options::new("a sysfs file", 4096))
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

/// How the events start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// Disabled until the target's `execve` (a COMMAND held before exec).
    pub enable_on_exec: bool,
    /// Also ask for COMM and EXIT records (one event a CPU is enough).
    pub side_records: bool,
}

/// The attr of one probe; `path` must outlive the `perf_event_open` call.
pub fn probe_attr(pmu: UprobePmu, path: &CString, offset: u64, ret: bool, start: Start) -> perf_event_attr {
    // SAFETY: all-zero is a valid perf_event_attr.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.type_ = pmu.type_;
    attr.config = if ret { 1u64 << pmu.retprobe_bit } else { 0 };
    attr.__bindgen_anon_3.uprobe_path = path.as_ptr() as u64;
    attr.__bindgen_anon_4.probe_offset = offset;
    attr.__bindgen_anon_1.sample_period = 1;
    attr.sample_type =
        u64::from(sys::PERF_SAMPLE_IDENTIFIER | sys::PERF_SAMPLE_TID | sys::PERF_SAMPLE_TIME);
    attr.set_disabled(u64::from(start.enable_on_exec));
    attr.set_enable_on_exec(u64::from(start.enable_on_exec));
    attr.set_inherit(1);
    attr.set_exclude_kernel(1);
    attr.set_exclude_hv(1);
    attr.set_sample_id_all(1);
    attr.set_task(u64::from(start.side_records));
    attr.set_comm(u64::from(start.side_records));
    attr.set_comm_exec(u64::from(start.side_records));
    attr.set_use_clockid(1);
    attr.clockid = libc::CLOCK_MONOTONIC;
    attr.set_watermark(1);
    attr.__bindgen_anon_2.wakeup_watermark =
        (RING_PAGES * rprof_perf::ring::page_size() / 4) as u32;
    attr
}

/// One probe to open: which function, entry or return, where.
struct ProbeSite {
    func: usize,
    ret: bool,
    path: CString,
    offset: u64,
}

/// A CPU's ring buffer and the event that owns it.
pub struct CpuRing {
    /// The owning event.
    pub fd: OwnedFd,
    /// The buffer.
    pub ring: RingBuffer,
}

/// Every probe of one measurement.
pub struct Probes {
    pmu: UprobePmu,
    sites: Vec<ProbeSite>,
    start: Start,
    rings: Vec<(u32, CpuRing)>,
    redirected: Vec<OwnedFd>,
    /// Event id → (function, is the return probe).
    ids: HashMap<u64, (usize, bool)>,
    attached: BTreeSet<u32>,
    pid: u32,
}

fn open_error(e: rprof_events::OpenError, site: &ProbeSite, targets: &[Target]) -> LatencyError {
    let name = targets.get(site.func).map_or("?", |t| t.name.as_str());
    let probe = format!("uprobe{} on {name}", if site.ret { " (return)" } else { "" });
    if e.is_permission() {
        return LatencyError::Permission(format!(
            "cannot open the {probe}: permission denied; uprobes need root or CAP_PERFMON \
             (kernel.perf_event_paranoid does not allow them to other users): run rprof latency \
             with sudo, or `sudo setcap cap_perfmon+ep $(command -v rprof)`"
        ));
    }
    if e.is_no_such_process() {
        return LatencyError::Gone(match e.tasks {
            Tasks::Of(p) => p,
            Tasks::All => 0,
        });
    }
    LatencyError::Open(e.with_event(&probe))
}

impl Probes {
    fn new(pmu: UprobePmu, targets: &[Target], start: Start, pid: u32) -> Result<Probes, LatencyError> {
        let mut sites = Vec::with_capacity(targets.len() * 2);
        for (func, t) in targets.iter().enumerate() {
            let path = CString::new(t.path.as_os_str().as_bytes()).map_err(|_| {
                LatencyError::Usage(format!("the path of '{}' contains a NUL byte", t.name))
            })?;
            for ret in [false, true] {
                sites.push(ProbeSite {
                    func,
                    ret,
                    path: path.clone(),
                    offset: t.offset,
                });
            }
        }
        Ok(Probes {
            pmu,
            sites,
            start,
            rings: Vec::new(),
            redirected: Vec::new(),
            ids: HashMap::new(),
            attached: BTreeSet::new(),
            pid,
        })
    }

    fn attr(&self, i: usize) -> perf_event_attr {
        let s = &self.sites[i];
        let start = Start {
            side_records: self.start.side_records && i == 0,
            ..self.start
        };
        probe_attr(self.pmu, &s.path, s.offset, s.ret, start)
    }

    /// Probes on process `pid` (a COMMAND held before exec) and every thread and process it
    /// creates, one event per probe per CPU.
    pub fn open_process(
        pmu: UprobePmu,
        targets: &[Target],
        pid: u32,
        cpus: &[u32],
    ) -> Result<Probes, LatencyError> {
        let start = Start {
            enable_on_exec: true,
            side_records: true,
        };
        let mut probes = Probes::new(pmu, targets, start, pid)?;
        for &cpu in cpus {
            probes.open_on(pid, cpu, targets)?;
        }
        Ok(probes)
    }

    /// Probes on every thread of the running process `pid` (and what they create later).
    pub fn attach(
        pmu: UprobePmu,
        targets: &[Target],
        pid: u32,
        cpus: &[u32],
    ) -> Result<Probes, LatencyError> {
        let start = Start {
            enable_on_exec: false,
            side_records: true,
        };
        let mut probes = Probes::new(pmu, targets, start, pid)?;
        for _ in 0..16 {
            let tids = rprof_perf::list_threads(pid).map_err(|_| LatencyError::Gone(pid))?;
            let new: Vec<u32> = tids
                .into_iter()
                .filter(|t| !probes.attached.contains(t))
                .collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                probes.attached.insert(tid);
                for &cpu in cpus {
                    match probes.open_on(tid, cpu, targets) {
                        Ok(()) => {}
                        // The thread exited meanwhile: nothing to measure there.
                        Err(LatencyError::Gone(_)) if tid != pid => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if probes.rings.is_empty() {
            return Err(LatencyError::Gone(pid));
        }
        Ok(probes)
    }

    /// Opens every probe for task `tid` on `cpu`; the CPU's first event gets the ring buffer.
    fn open_on(&mut self, tid: u32, cpu: u32, targets: &[Target]) -> Result<(), LatencyError> {
        let mut fds = Vec::with_capacity(self.sites.len());
        for i in 0..self.sites.len() {
            let attr = self.attr(i);
            let fd = rprof_events::perf_event_open(&attr, Tasks::Of(tid), Some(cpu), None, 0)
                .map_err(|e| open_error(e, &self.sites[i], targets))?;
            let mut id = 0u64;
            // SAFETY: ID writes the event's id into the u64 we pass.
            let rc = unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) };
            if rc < 0 {
                return Err(LatencyError::Io {
                    what: "read a probe's event id".into(),
                    error: std::io::Error::last_os_error(),
                });
            }
            self.ids.insert(id, (self.sites[i].func, self.sites[i].ret));
            fds.push(fd);
        }
        for fd in fds {
            match self.rings.iter().find(|(c, _)| *c == cpu) {
                Some((_, owner)) => {
                    // SAFETY: SET_OUTPUT between two perf descriptors we own, same CPU.
                    let rc = unsafe {
                        perf_event_open_sys::ioctls::SET_OUTPUT(
                            fd.as_raw_fd(),
                            owner.fd.as_raw_fd(),
                        )
                    };
                    if rc < 0 {
                        return Err(LatencyError::Io {
                            what: format!("send a probe's records into the ring of CPU {cpu}"),
                            error: std::io::Error::last_os_error(),
                        });
                    }
                    self.redirected.push(fd);
                }
                None => {
                    let ring = RingBuffer::map(fd.as_fd(), RING_PAGES).map_err(|e| {
                        LatencyError::Io {
                            what: format!(
                                "{e} (CPU {cpu}); raise `ulimit -l` or kernel.perf_event_mlock_kb"
                            ),
                            error: std::io::Error::from_raw_os_error(e.errno),
                        }
                    })?;
                    self.rings.push((cpu, CpuRing { fd, ring }));
                }
            }
        }
        Ok(())
    }

    /// The layout of the records.
    pub fn format(&self) -> SampleFormat {
        SampleFormat::from_attr(&self.attr(0))
    }

    /// Which probe an event id belongs to: (function, is the return probe).
    pub fn probe_of(&self, id: u64) -> Option<(usize, bool)> {
        self.ids.get(&id).copied()
    }

    /// The ring buffers, for reading.
    pub fn rings_mut(&mut self) -> impl Iterator<Item = &mut RingBuffer> {
        self.rings.iter_mut().map(|(_, r)| &mut r.ring)
    }

    /// The descriptors to poll (one a ring).
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.rings.iter().map(|(_, r)| r.fd.as_fd()).collect()
    }

    /// Number of threads probes were attached to (`-p`).
    pub fn attached_threads(&self) -> usize {
        self.attached.len()
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
    fn return_probe_sets_the_bit() {
        let pmu = UprobePmu {
            type_: 8,
            retprobe_bit: 0,
        };
        let path = CString::new("/bin/true").unwrap();
        let start = Start {
            enable_on_exec: true,
            side_records: false,
        };
        let entry = probe_attr(pmu, &path, 0x1234, false, start);
        let ret = probe_attr(pmu, &path, 0x1234, true, start);
        assert_eq!(entry.config, 0);
        assert_eq!(ret.config, 1);
        // SAFETY: the union holds probe_offset, as set.
        assert_eq!(unsafe { ret.__bindgen_anon_4.probe_offset }, 0x1234);
        assert_eq!(ret.inherit(), 1);
        assert_eq!(ret.enable_on_exec(), 1);
    }
}
