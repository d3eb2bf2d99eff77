//! The probes of an allocation recording, per CPU for every process (as `rprof latency`'s, for
//! the same reason: an inherited uprobe breaks the target's `clone`), each with the BPF filter
//! of [`crate::bpf`] so that only the target's calls take ring space:
//!
//! | probe | on | sample | bytes a call |
//! |---|---|---|---|
//! | entry | every function | TID, TIME, regs DI SI, the 8 stack bytes at SP (the return address) | 88 (`free`: 48, no stack) |
//! | return | allocating functions | TID, TIME, reg AX (the block) | 48 |
//! | stack | allocating functions | TID, TIME, regs IP SP BP, [`STACK_COPY`] bytes of stack | 16 KiB, about once per R bytes |
//!
//! A software `dummy` event per CPU, inherited by the target, owns each CPU's ring and gives the
//! FORK / EXIT / COMM / MMAP2 records; the probes write into the same rings
//! (`PERF_EVENT_IOC_SET_OUTPUT`). Everything is tied to descriptors: when rprof exits, however
//! it exits, the probes, the BPF programs and the map go.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};
use rprof_events::Tasks;
use rprof_latency::probes::UprobePmu;
use rprof_perf::parse::x86_64;
use rprof_perf::{RingBuffer, SampleFormat, SamplerError, Samplers};

use crate::allocator::{Allocator, Kind};
use crate::bpf::{self, Pids};
use crate::AllocError;

/// Bytes of user stack copied for a sampled stack.
pub const STACK_COPY: u32 = 16 * 1024;

/// Data pages of each CPU's ring (8 MiB: about 90,000 calls between two reads).
pub const RING_PAGES: usize = 2048;

/// Data pages of each CPU's ring of stack copies (8 MiB: 500 stacks between two reads).
pub const STACK_RING_PAGES: usize = 2048;

/// `PERF_REG_X86_AX`.
pub const AX: u32 = 0;

/// What a probe records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The entry of every call: arguments and return address.
    Entry,
    /// The return of an allocating call: the block.
    Return,
    /// The entry of a call picked for a stack.
    Stack,
}

/// Which probe an event id is, and how its samples are laid out.
#[derive(Clone, Copy, Debug)]
pub struct ProbeId {
    /// Index into the allocator's functions.
    pub function: usize,
    /// What it records.
    pub role: Role,
    /// Its samples' layout.
    pub format: SampleFormat,
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
    // Woken at an eighth full: a burst of calls has seven eighths left while rprof reads.
    attr.__bindgen_anon_2.wakeup_watermark =
        (RING_PAGES * rprof_perf::ring::page_size() / 8) as u32;
    attr
}

/// The tracker: inherited, FORK/EXIT/COMM/MMAP2 records, enabled at exec for a held COMMAND.
fn tracker_attr(enable_on_exec: bool) -> perf_event_attr {
    let mut attr = base_attr();
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.config = u64::from(sys::PERF_COUNT_SW_DUMMY);
    attr.set_inherit(1);
    attr.set_disabled(u64::from(enable_on_exec));
    attr.set_enable_on_exec(u64::from(enable_on_exec));
    attr.set_task(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_mmap(1);
    attr.set_mmap2(1);
    attr
}

/// The attr of one probe of `kind` in `role`.
pub fn probe_attr(
    pmu: UprobePmu,
    path: &CString,
    offset: u64,
    kind: Kind,
    role: Role,
) -> perf_event_attr {
    let mut attr = rprof_latency::probes::probe_attr(pmu, path, offset, role == Role::Return);
    let wakeup = base_attr();
    attr.__bindgen_anon_2 = wakeup.__bindgen_anon_2;
    // Opened disabled and enabled once its BPF filter is attached: enabled at once, it would
    // record every process's calls (and copy their stacks) until then.
    attr.set_disabled(1);
    attr.sample_type |= u64::from(sys::PERF_SAMPLE_REGS_USER);
    match role {
        Role::Entry => {
            attr.sample_regs_user = (1 << x86_64::DI) | (1 << x86_64::SI) | (1 << x86_64::IP);
            if kind != Kind::Free {
                attr.sample_type |= u64::from(sys::PERF_SAMPLE_STACK_USER);
                attr.sample_stack_user = 8;
            }
        }
        Role::Return => attr.sample_regs_user = 1 << AX,
        Role::Stack => {
            attr.sample_regs_user = rprof_perf::attr::REGS_USER_MASK;
            attr.sample_type |= u64::from(sys::PERF_SAMPLE_STACK_USER);
            attr.sample_stack_user = STACK_COPY;
        }
    }
    attr
}

/// Every probe of one recording.
pub struct Probes {
    tracker: Samplers,
    /// Per CPU, the ring of the stack copies: its own, so that a flood of stacks (a low
    /// `--alloc-sample`) loses stacks, never the calls of the exact totals. Owned by the
    /// CPU's first stack probe event.
    stack_rings: Vec<(u32, RingBuffer)>,
    /// (CPU, descriptor of the event that owns its stack ring); the descriptor is in `probes`.
    stack_owner_fds: Vec<(u32, i32)>,
    /// Kept open: closing one removes the probe.
    probes: Vec<(OwnedFd, Role)>,
    ids: HashMap<u64, ProbeId>,
    pids: Pids,
}

fn sampler_error(e: SamplerError, pid: u32) -> AllocError {
    match e {
        SamplerError::Gone { pid } | SamplerError::Threads { pid, .. } => AllocError::Gone(pid),
        SamplerError::Open(e) if e.is_no_such_process() => AllocError::Gone(pid),
        SamplerError::Open(e) if e.is_permission() => AllocError::Permission(permission_text()),
        SamplerError::Open(e) => AllocError::Open(e.to_string()),
        e => AllocError::Open(e.to_string()),
    }
}

/// The one line a user without the privilege sees.
pub fn permission_text() -> String {
    "cannot place the allocator probes: permission denied; --alloc needs uprobes and BPF \
     (root, or CAP_PERFMON + CAP_BPF; kernel.perf_event_paranoid does not open them to other \
     users): run rprof record --alloc with sudo, or `sudo setcap cap_perfmon,cap_bpf+ep \
     $(command -v rprof)`"
        .to_string()
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> AllocError {
    move |e| {
        if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
            AllocError::Permission(permission_text())
        } else {
            AllocError::Open(format!("cannot {what}: {e}"))
        }
    }
}

impl Probes {
    /// Probes for the COMMAND `pid`, held before exec; `sample` = R (0: a stack every call).
    pub fn open_process(
        pmu: UprobePmu,
        allocator: &Allocator,
        pid: u32,
        cpus: &[u32],
        sample: u64,
    ) -> Result<Probes, AllocError> {
        let pids =
            Pids::new().map_err(io_error("create the BPF map of traced processes".into()))?;
        let tracker = Samplers::open_process("dummy", &tracker_attr(true), pid, cpus, RING_PAGES)
            .map_err(|e| sampler_error(e, pid))?;
        Probes::with_tracker(pmu, allocator, tracker, pids, pid, sample)
    }

    /// Probes for the running process `pid` (the tracker on each of its threads).
    pub fn attach(
        pmu: UprobePmu,
        allocator: &Allocator,
        pid: u32,
        cpus: &[u32],
        sample: u64,
    ) -> Result<Probes, AllocError> {
        let pids =
            Pids::new().map_err(io_error("create the BPF map of traced processes".into()))?;
        let tracker = Samplers::attach("dummy", &tracker_attr(false), pid, cpus, RING_PAGES)
            .map_err(|e| sampler_error(e, pid))?;
        Probes::with_tracker(pmu, allocator, tracker, pids, pid, sample)
    }

    fn with_tracker(
        pmu: UprobePmu,
        allocator: &Allocator,
        tracker: Samplers,
        pids: Pids,
        pid: u32,
        sample: u64,
    ) -> Result<Probes, AllocError> {
        pids.insert(pid)
            .map_err(io_error(format!("add process {pid} to the BPF map")))?;
        let mut probes = Probes {
            tracker,
            stack_rings: Vec::new(),
            stack_owner_fds: Vec::new(),
            probes: Vec::new(),
            ids: HashMap::new(),
            pids,
        };
        let path = CString::new(allocator.path.as_os_str().as_bytes())
            .map_err(|_| AllocError::Open("the C library's path holds a NUL byte".into()))?;
        let load = |sample: Option<(bpf::SizeArg, u64)>, fd: BorrowedFd<'_>| {
            bpf::load(&bpf::program(fd.as_raw_fd(), sample)).map_err(|e| {
                if e.contains("Operation not permitted") || e.contains("Permission denied") {
                    AllocError::Permission(permission_text())
                } else {
                    AllocError::Open(format!("cannot load the BPF filter of the probes: {e}"))
                }
            })
        };
        let filter = load(None, probes.pids.fd())?;
        for (index, f) in allocator.functions.iter().enumerate() {
            // The return probe first: a call that starts between the two has no entry and
            // its return is dropped, rather than an entry that never returns.
            let mut roles = vec![];
            if f.kind.allocates() {
                roles.push(Role::Return);
            }
            roles.push(Role::Entry);
            let stack_filter = match f.kind.size_arg() {
                Some(arg) if sample > 0 => Some(load(Some((arg, sample)), probes.pids.fd())?),
                _ => None,
            };
            if f.kind.allocates() {
                roles.push(Role::Stack);
            }
            for role in roles {
                let attr = probe_attr(pmu, &path, f.probe_offset, f.kind, role);
                let program = match (role, &stack_filter) {
                    (Role::Stack, Some(p)) => p.as_fd(),
                    _ => filter.as_fd(),
                };
                let name = format!("{role:?} probe on {}", f.name).to_lowercase();
                probes.open_probe(&attr, &name, index, role, program)?;
            }
        }
        for (fd, _) in &probes.probes {
            // SAFETY: ENABLE on a perf event descriptor we own; the argument is unused.
            if unsafe { perf_event_open_sys::ioctls::ENABLE(fd.as_raw_fd(), 0) } < 0 {
                return Err(io_error("enable the allocator probes".into())(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(probes)
    }

    fn open_probe(
        &mut self,
        attr: &perf_event_attr,
        name: &str,
        function: usize,
        role: Role,
        program: BorrowedFd<'_>,
    ) -> Result<(), AllocError> {
        let format = SampleFormat::from_attr(attr);
        let cpus: Vec<(u32, i32)> = self
            .tracker
            .buffers()
            .iter()
            .map(|b| (b.cpu, b.fd().as_raw_fd()))
            .collect();
        for (cpu, tracker_fd) in cpus {
            let fd = rprof_events::perf_event_open(attr, Tasks::All, Some(cpu), None, 0).map_err(
                |e| {
                    if e.is_permission() {
                        AllocError::Permission(permission_text())
                    } else {
                        AllocError::Open(e.with_event(name).to_string())
                    }
                },
            )?;
            let mut id = 0u64;
            // SAFETY: ID writes the event's id into the u64 we pass.
            let rc = unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) };
            let owner = if role == Role::Stack {
                match self.stack_owner(cpu) {
                    Some(owner) => Some(owner),
                    None => {
                        let ring = RingBuffer::map(fd.as_fd(), STACK_RING_PAGES).map_err(|e| {
                            AllocError::Open(format!(
                                "cannot map the stack ring of CPU {cpu}: {}",
                                std::io::Error::from_raw_os_error(e.errno)
                            ))
                        })?;
                        self.stack_rings.push((cpu, ring));
                        self.stack_owner_fds.push((cpu, fd.as_raw_fd()));
                        None
                    }
                }
            } else {
                Some(tracker_fd)
            };
            // SAFETY: SET_OUTPUT between two perf descriptors we own, on the same CPU.
            let rc2 = match owner {
                Some(owner) => unsafe {
                    perf_event_open_sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), owner)
                },
                None => 0,
            };
            if rc < 0 || rc2 < 0 {
                return Err(io_error(format!(
                    "send the records of the {name} into the ring of CPU {cpu}"
                ))(std::io::Error::last_os_error()));
            }
            bpf::attach(fd.as_fd(), program)
                .map_err(io_error(format!("attach the BPF filter to the {name}")))?;
            self.ids.insert(
                id,
                ProbeId {
                    function,
                    role,
                    format,
                },
            );
            self.probes.push((fd, role));
        }
        Ok(())
    }

    /// The descriptor of the event that owns CPU `cpu`'s stack ring, once there is one.
    fn stack_owner(&self, cpu: u32) -> Option<i32> {
        self.stack_owner_fds
            .iter()
            .find(|(c, _)| *c == cpu)
            .map(|(_, fd)| *fd)
    }

    /// The rings of the stack copies.
    pub fn stack_rings_mut(&mut self) -> impl Iterator<Item = &mut RingBuffer> {
        self.stack_rings.iter_mut().map(|(_, r)| r)
    }

    /// Records the calls of process `pid` too (a process the target forked).
    pub fn follow(&self, pid: u32) -> std::io::Result<()> {
        self.pids.insert(pid)
    }

    /// Stops every probe, entries first (a call whose entry was recorded keeps its return).
    pub fn stop(&mut self) {
        for returns in [false, true] {
            for (fd, role) in &self.probes {
                if (*role == Role::Return) == returns {
                    // SAFETY: DISABLE on a perf event descriptor we own.
                    unsafe { perf_event_open_sys::ioctls::DISABLE(fd.as_raw_fd(), 0) };
                }
            }
        }
    }

    /// Attach mode: follows threads created while attaching.
    pub fn rescan(&mut self) {
        let _ = self.tracker.rescan();
    }

    /// Which probe an event id is.
    pub fn ids(&self) -> HashMap<u64, ProbeId> {
        self.ids.clone()
    }

    /// The layout of the tracker's records.
    pub fn tracker_format(&self) -> SampleFormat {
        self.tracker.format()
    }

    /// The rings.
    pub fn rings_mut(&mut self) -> impl Iterator<Item = &mut RingBuffer> {
        self.tracker.buffers_mut().iter_mut().map(|b| &mut b.ring)
    }

    /// The descriptors to poll: the trackers' (POLLHUP when the target is gone).
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.tracker.buffers().iter().map(|b| b.fd()).collect()
    }

    /// Threads the tracker was attached to (`-p`).
    pub fn attached_threads(&self) -> usize {
        self.tracker.attached_threads()
    }
}
