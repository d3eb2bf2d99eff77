//! Opening the samplers of one recording: one ring buffer per CPU, fed either by one inherited
//! event per CPU on a launched process, or (when attaching) by one event per thread per CPU whose
//! output is redirected into that CPU's buffer.
//!
//! Per-task events with `cpu = -1` and `inherit` cannot be mmap'ed, which is why every event is
//! bound to a CPU.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use perf_event_open_sys::bindings::perf_event_attr;
use rprof_events::{OpenError, Tasks};

use crate::parse::SampleFormat;
use crate::ring::{MapError, RingBuffer};

/// Why the samplers could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// `perf_event_open` failed (its message says why and how to fix it).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The kernel refused to map a ring buffer.
    #[error("{source} (CPU {cpu})")]
    Map {
        /// The CPU whose buffer it was.
        cpu: u32,
        /// The mmap failure.
        source: MapError,
    },
    /// Redirecting an event's output into its CPU's buffer failed.
    #[error("cannot redirect perf output into the ring buffer of CPU {cpu}: {source}")]
    SetOutput {
        /// The CPU.
        cpu: u32,
        /// The ioctl failure.
        source: io::Error,
    },
    /// The threads of the process could not be listed.
    #[error("cannot list the threads of process {pid}: {source}")]
    Threads {
        /// The process.
        pid: u32,
        /// The failure (`NotFound`: no such process).
        source: io::Error,
    },
    /// Every thread of the process exited before an event could be attached.
    #[error("process {pid} exited before it could be attached")]
    Gone {
        /// The process.
        pid: u32,
    },
    /// The kernel refused a companion event's tracepoint filter.
    #[error("cannot set the filter of {event}: {source}")]
    Filter {
        /// The event.
        event: String,
        /// The ioctl failure.
        source: io::Error,
    },
    /// Enabling the events failed.
    #[error("cannot enable the perf events: {0}")]
    Enable(io::Error),
}

/// A second event opened wherever the sampler is (every followed task on every CPU), whose
/// records go into the sampler's ring buffer of the same CPU: the off-CPU sampler. Its attr must
/// lay out samples as the sampler's does (the buffer is parsed with one [`SampleFormat`]); its
/// samples are told apart by their identifier ([`Samplers::companion_ids`]).
#[derive(Debug, Clone, Copy)]
pub struct Companion<'a> {
    /// The event's name, for messages.
    pub event: &'a str,
    /// Its attr.
    pub attr: perf_event_attr,
    /// A tracepoint filter (`PERF_EVENT_IOC_SET_FILTER`, ftrace's syntax) set on each event
    /// opened; inherited events use their parent's.
    pub filter: Option<&'a str>,
}

/// The ring buffer of one CPU and the event that owns it.
#[derive(Debug)]
pub struct CpuBuffer {
    /// The CPU.
    pub cpu: u32,
    fd: OwnedFd,
    /// The mapped buffer.
    pub ring: RingBuffer,
}

impl CpuBuffer {
    /// The descriptor to poll for "records waiting" (POLLIN) and "target gone" (POLLHUP).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// All samplers of one recording.
#[derive(Debug)]
pub struct Samplers {
    event: String,
    attr: perf_event_attr,
    buffers: Vec<CpuBuffer>,
    /// Events whose output goes into one of `buffers` (attach mode), with that buffer's index.
    redirected: Vec<(usize, OwnedFd)>,
    /// Threads with events (attach mode).
    attached: BTreeSet<u32>,
    pid: u32,
    /// Companion events opened wherever the sampler is (their descriptors are in `redirected`),
    /// with their filters.
    companions: Vec<(String, perf_event_attr, Option<String>)>,
    /// The ids (PERF_EVENT_IOC_ID) of every companion event opened.
    companion_ids: Vec<u64>,
    /// For each of `companion_ids`, the index of its companion in `companions`.
    companion_of: Vec<usize>,
}

fn open(event: &str, attr: &perf_event_attr, tid: u32, cpu: u32) -> Result<OwnedFd, OpenError> {
    rprof_events::perf_event_open(attr, Tasks::Of(tid), Some(cpu), None, 0)
        .map_err(|e| e.with_event(event))
}

/// Sets a tracepoint filter on an event (`PERF_EVENT_IOC_SET_FILTER`).
fn set_filter(fd: BorrowedFd<'_>, filter: &str) -> io::Result<()> {
    let filter = std::ffi::CString::new(filter).map_err(io::Error::other)?;
    // SAFETY: SET_FILTER on a perf event descriptor we hold, with a NUL-terminated string that
    // lives across the call (the kernel copies it).
    let rc = unsafe {
        perf_event_open_sys::ioctls::SET_FILTER(fd.as_raw_fd(), filter.as_ptr().cast_mut())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn map(fd: OwnedFd, cpu: u32, data_pages: usize) -> Result<CpuBuffer, SamplerError> {
    let ring = RingBuffer::map(fd.as_fd(), data_pages)
        .map_err(|source| SamplerError::Map { cpu, source })?;
    Ok(CpuBuffer { cpu, fd, ring })
}

/// The thread ids of process `pid`, from `/proc/PID/task`.
pub fn list_threads(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// The name of thread `tid` of process `pid` (`/proc/PID/task/TID/comm`), if readable.
pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
    Some(name.trim_end_matches('\n').to_string())
}

impl Samplers {
    /// Samplers for process `pid` and everything it creates: one inherited event per CPU, each
    /// with its own ring buffer of `data_pages` pages. `attr` should have `inherit` set (and,
    /// for a command held before `execve`, `disabled` + `enable_on_exec`).
    pub fn open_process(
        event: &str,
        attr: &perf_event_attr,
        pid: u32,
        cpus: &[u32],
        data_pages: usize,
    ) -> Result<Samplers, SamplerError> {
        Self::open_process_with(event, attr, &[], pid, cpus, data_pages)
    }

    /// [`Samplers::open_process`] with companion events on every CPU, inherited as the sampler
    /// is, writing into its buffers.
    pub fn open_process_with(
        event: &str,
        attr: &perf_event_attr,
        companions: &[Companion<'_>],
        pid: u32,
        cpus: &[u32],
        data_pages: usize,
    ) -> Result<Samplers, SamplerError> {
        let mut samplers = Samplers::empty(event, attr, companions, pid, cpus.len());
        for &cpu in cpus {
            let fd = open(event, attr, pid, cpu)?;
            samplers.buffers.push(map(fd, cpu, data_pages)?);
        }
        samplers.open_companions(pid)?;
        Ok(samplers)
    }

    /// Samplers for the tasks of one cgroup (v2), whose directory is open as `cgroup`: one
    /// event per CPU scoped to the cgroup, each with its own ring buffer of `data_pages` pages.
    /// `pid` is the process the cgroup was made for (for messages).
    ///
    /// Unlike an inherited per-task event, whose copy in every new task starts a full period
    /// from zero (a process shorter than one period is never sampled), a cgroup event's timer
    /// runs across every task of the cgroup on its CPU: short processes are sampled at the rate
    /// asked for. It needs CPU-wide events (root or CAP_PERFMON). `attr` must not have
    /// `inherit` or `enable_on_exec` (open it `disabled` and [`Samplers::enable`] it).
    pub fn open_cgroup(
        event: &str,
        attr: &perf_event_attr,
        cgroup: BorrowedFd<'_>,
        pid: u32,
        cpus: &[u32],
        data_pages: usize,
    ) -> Result<Samplers, SamplerError> {
        let mut samplers = Samplers::empty(event, attr, &[], pid, cpus.len());
        for &cpu in cpus {
            let fd = rprof_events::perf_event_open(
                attr,
                Tasks::Cgroup(cgroup.as_raw_fd()),
                Some(cpu),
                None,
                0,
            )
            .map_err(|e| e.with_event(event))?;
            samplers.buffers.push(map(fd, cpu, data_pages)?);
        }
        Ok(samplers)
    }

    fn empty(
        event: &str,
        attr: &perf_event_attr,
        companions: &[Companion<'_>],
        pid: u32,
        cpus: usize,
    ) -> Samplers {
        Samplers {
            event: event.to_string(),
            attr: *attr,
            buffers: Vec::with_capacity(cpus),
            redirected: Vec::new(),
            attached: BTreeSet::new(),
            pid,
            companions: companions
                .iter()
                .map(|c| (c.event.to_string(), c.attr, c.filter.map(str::to_string)))
                .collect(),
            companion_ids: Vec::new(),
            companion_of: Vec::new(),
        }
    }

    /// Opens the companion events for task `tid` on every buffer's CPU and redirects them into
    /// the buffers; false if the task has exited.
    fn open_companions(&mut self, tid: u32) -> Result<bool, SamplerError> {
        let mut fds = Vec::with_capacity(self.buffers.len() * self.companions.len());
        for (companion, (event, attr, _)) in self.companions.iter().enumerate() {
            for (index, buffer) in self.buffers.iter().enumerate() {
                match open(event, attr, tid, buffer.cpu) {
                    Ok(fd) => fds.push((index, companion, fd)),
                    Err(e) if e.is_no_such_process() => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for (index, companion, fd) in fds {
            let buffer = &self.buffers[index];
            let (event, _, filter) = &self.companions[companion];
            if let Some(filter) = filter {
                set_filter(fd.as_fd(), filter).map_err(|source| SamplerError::Filter {
                    event: event.clone(),
                    source,
                })?;
            }
            set_output(fd.as_fd(), buffer.fd.as_fd()).map_err(|source| {
                SamplerError::SetOutput {
                    cpu: buffer.cpu,
                    source,
                }
            })?;
            let mut id = 0u64;
            // SAFETY: ID on a perf event descriptor we own, writing into a u64 we own.
            let rc = unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) };
            if rc < 0 {
                return Err(SamplerError::SetOutput {
                    cpu: buffer.cpu,
                    source: io::Error::last_os_error(),
                });
            }
            self.companion_ids.push(id);
            self.companion_of.push(companion);
            self.redirected.push((index, fd));
        }
        Ok(true)
    }

    /// The ids of the companion events (the `identifier` of their samples; inherited events
    /// report the id of the event they were inherited from).
    pub fn companion_ids(&self) -> &[u64] {
        &self.companion_ids
    }

    /// The ids of the companion events named `event` (as [`Companion::event`]).
    pub fn companion_ids_of(&self, event: &str) -> Vec<u64> {
        self.companion_ids
            .iter()
            .zip(&self.companion_of)
            .filter(|(_, &c)| self.companions.get(c).is_some_and(|(e, _, _)| e == event))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Samplers for the running process `pid`: one event per existing thread per CPU (with
    /// `inherit`, so threads they create later are followed), all of one CPU writing into that
    /// CPU's ring buffer. Threads that exit meanwhile are skipped; the thread list is read again
    /// until it holds no thread without events, so threads created during the attach are not
    /// missed.
    pub fn attach(
        event: &str,
        attr: &perf_event_attr,
        pid: u32,
        cpus: &[u32],
        data_pages: usize,
    ) -> Result<Samplers, SamplerError> {
        Self::attach_with(event, attr, &[], pid, cpus, data_pages)
    }

    /// [`Samplers::attach`] with companion events on every attached thread and CPU, writing
    /// into the sampler's buffers.
    pub fn attach_with(
        event: &str,
        attr: &perf_event_attr,
        companions: &[Companion<'_>],
        pid: u32,
        cpus: &[u32],
        data_pages: usize,
    ) -> Result<Samplers, SamplerError> {
        let mut samplers = Samplers::empty(event, attr, companions, pid, cpus.len());
        let tids = list_threads(pid).map_err(|source| SamplerError::Threads { pid, source })?;
        // The first thread that accepts events provides each CPU's buffer.
        let mut pending: Vec<u32> = tids.into_iter().rev().collect();
        while samplers.buffers.is_empty() {
            let Some(tid) = pending.pop() else {
                return Err(SamplerError::Gone { pid });
            };
            let mut fds = Vec::with_capacity(cpus.len());
            let mut gone = false;
            for &cpu in cpus {
                match open(event, attr, tid, cpu) {
                    Ok(fd) => fds.push((cpu, fd)),
                    Err(e) if e.is_no_such_process() => {
                        gone = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if gone {
                continue;
            }
            for (cpu, fd) in fds {
                samplers.buffers.push(map(fd, cpu, data_pages)?);
            }
            samplers.open_companions(tid)?;
            samplers.attached.insert(tid);
        }
        for tid in pending.into_iter().rev() {
            samplers.attach_thread(tid)?;
        }
        samplers.rescan()?;
        Ok(samplers)
    }

    /// Attaches events to thread `tid` on every CPU; false if it has exited.
    fn attach_thread(&mut self, tid: u32) -> Result<bool, SamplerError> {
        let mut fds = Vec::with_capacity(self.buffers.len());
        for buffer in &self.buffers {
            match open(&self.event, &self.attr, tid, buffer.cpu) {
                Ok(fd) => fds.push(fd),
                Err(e) if e.is_no_such_process() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        for (fd, buffer) in fds.iter().zip(&self.buffers) {
            set_output(fd.as_fd(), buffer.fd.as_fd()).map_err(|source| {
                SamplerError::SetOutput {
                    cpu: buffer.cpu,
                    source,
                }
            })?;
        }
        self.redirected.extend(fds.into_iter().enumerate());
        self.attached.insert(tid);
        self.open_companions(tid)
    }

    /// Attach mode: reads the process's thread list again and attaches events to threads that
    /// have none, until a pass finds no new thread. Returns how many threads were added.
    /// (Threads created by already attached threads are followed by `inherit`; this closes the
    /// window between listing the threads and opening their events.)
    pub fn rescan(&mut self) -> Result<usize, SamplerError> {
        if self.redirected.is_empty() && self.attached.is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        loop {
            let tids = match list_threads(self.pid) {
                Ok(tids) => tids,
                // The process has exited: nothing more to attach.
                Err(_) => return Ok(added),
            };
            let new: Vec<u32> = tids
                .into_iter()
                .filter(|tid| !self.attached.contains(tid))
                .collect();
            if new.is_empty() {
                return Ok(added);
            }
            for tid in new {
                if self.attach_thread(tid)? {
                    added += 1;
                } else {
                    // Exited: do not try again.
                    self.attached.insert(tid);
                }
            }
        }
    }

    /// Enables every event (for events opened disabled without `enable_on_exec`).
    pub fn enable(&self) -> Result<(), SamplerError> {
        let fds = self
            .buffers
            .iter()
            .map(|b| b.fd.as_fd())
            .chain(self.redirected.iter().map(|(_, fd)| fd.as_fd()));
        for fd in fds {
            // SAFETY: ENABLE on a perf event descriptor we own; the argument is unused.
            let rc = unsafe { perf_event_open_sys::ioctls::ENABLE(fd.as_raw_fd(), 0) };
            if rc < 0 {
                return Err(SamplerError::Enable(io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Every event descriptor whose records go into buffer `index` (of [`Samplers::buffers`]):
    /// the buffer's own event first, then (attach mode) the events redirected into it. Polling
    /// any of them reports records waiting in that buffer; each reports POLLHUP on its own when
    /// its task exits, so a reader can move on to another one.
    pub fn event_fds(&self, index: usize) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.buffers
            .get(index)
            .map(|b| b.fd.as_fd())
            .into_iter()
            .chain(
                self.redirected
                    .iter()
                    .filter(move |(i, _)| *i == index)
                    .map(|(_, fd)| fd.as_fd()),
            )
    }

    /// The layout of the records in the buffers.
    pub fn format(&self) -> SampleFormat {
        SampleFormat::from_attr(&self.attr)
    }

    /// The attr every event was opened with.
    pub fn attr(&self) -> &perf_event_attr {
        &self.attr
    }

    /// The per-CPU buffers.
    pub fn buffers(&self) -> &[CpuBuffer] {
        &self.buffers
    }

    /// The per-CPU buffers, for reading.
    pub fn buffers_mut(&mut self) -> &mut [CpuBuffer] {
        &mut self.buffers
    }

    /// Number of threads events were attached to (attach mode; 0 otherwise).
    pub fn attached_threads(&self) -> usize {
        self.attached.len()
    }
}

/// Sends the records of event `fd` into the ring buffer of event `target` (same CPU).
fn set_output(fd: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: SET_OUTPUT with two perf event descriptors we own.
    let rc = unsafe { perf_event_open_sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), target.as_raw_fd()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
