//! Opening the planned groups on a task and reading them (the syscall side of `rprof stat`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use perf_event_open_sys::bindings::{perf_event_attr, PERF_SAMPLE_IDENTIFIER};
use rprof_events::{Event, OpenError, Tasks};
use rprof_perf::SampleFormat;

pub use crate::read::READ_FORMAT;
use crate::read::{parse_group_read, Reading};

/// How the records of the `--per-thread` ring buffer are laid out (see [`OpenMode`]): READ
/// records in [`READ_FORMAT`], and every record ends with the id of the counter that wrote it.
pub fn per_thread_record_format() -> SampleFormat {
    SampleFormat {
        sample_type: u64::from(PER_THREAD_SAMPLE_TYPE),
        regs_user_mask: 0,
        read_format: READ_FORMAT,
        sample_id_all: true,
    }
}

/// `sample_type` of the `--per-thread` counters: only the emitter's id, in every record's
/// `sample_id` trailer.
const PER_THREAD_SAMPLE_TYPE: u32 = PERF_SAMPLE_IDENTIFIER;

/// How counters are opened on a task.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    /// Count the task's future threads and children too.
    pub inherit: bool,
    /// Start disabled and let the kernel enable the counters at `execve` (COMMAND mode).
    pub enable_on_exec: bool,
    /// Ask for per-thread READ records at thread exit (`inherit_stat`) and COMM/FORK records.
    pub per_thread_records: bool,
}

/// The session's events as they are actually counted: a kernel-refused event is downgraded to
/// user space only (`:u`), an event this machine cannot count is marked unsupported.
#[derive(Clone, Debug)]
pub struct EventSet {
    /// The events (names updated when downgraded).
    pub events: Vec<Event>,
    /// Groups of indices into `events`, leader first.
    pub groups: Vec<Vec<usize>>,
    /// `true` for events known not to be countable here.
    pub unsupported: Vec<bool>,
    /// Events the kernel would only count in user space (now named `...:u`).
    pub downgraded: Vec<String>,
    /// Other notes for the user, printed once.
    pub notes: Vec<String>,
}

impl EventSet {
    /// A set with the planned groups and nothing known about support yet.
    pub fn new(events: Vec<Event>) -> EventSet {
        let groups = crate::plan::plan_groups(&events);
        let unsupported = vec![false; events.len()];
        EventSet {
            events,
            groups,
            unsupported,
            downgraded: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl EventSet {
    /// Puts every event in one group (see `runner::run_command` for why `--per-thread` needs
    /// it). Hardware events beyond the PMU's counters then all show as `<not counted>`.
    pub fn use_one_group(&mut self) {
        self.groups = if self.events.is_empty() {
            Vec::new()
        } else {
            vec![(0..self.events.len()).collect()]
        };
    }
}

struct OpenGroup {
    leader: OwnedFd,
    members: Vec<OwnedFd>,
    /// (event index, kernel id), leader first.
    ids: Vec<(usize, u64)>,
}

/// The counters open on one task.
pub struct TaskCounters {
    groups: Vec<OpenGroup>,
    n_events: usize,
}

fn event_id(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut id = 0u64;
    // SAFETY: PERF_EVENT_IOC_ID writes one u64 to the pointer we pass.
    let rc = unsafe { perf_event_open_sys::ioctls::ID(fd.as_raw_fd(), &mut id) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(id)
    }
}

fn attr_for(event: &Event, leader: bool, mode: OpenMode, tracking: bool) -> perf_event_attr {
    let mut attr = event.attr();
    attr.read_format = READ_FORMAT;
    attr.set_inherit(u64::from(mode.inherit));
    if mode.per_thread_records {
        // Every event, not only the leader: the kernel swaps counts between cloned contexts
        // only for events that have inherit_stat, and the others would then follow the
        // context instead of the thread. Each event's READ record names its emitter.
        attr.set_inherit_stat(1);
        attr.set_sample_id_all(1);
        attr.sample_type = u64::from(PER_THREAD_SAMPLE_TYPE);
    }
    if leader {
        attr.set_disabled(u64::from(mode.enable_on_exec));
        attr.set_enable_on_exec(u64::from(mode.enable_on_exec));
        if mode.per_thread_records {
            // Wake a poller for every record: there are few (one per thread exit).
            attr.__bindgen_anon_2.wakeup_events = 1;
            if tracking {
                attr.set_comm(1);
                attr.set_comm_exec(1);
                attr.set_task(1);
            }
        }
    }
    attr
}

/// Why opening failed for good.
#[derive(Debug)]
pub enum OpenFailure {
    /// The kernel refused an event (permission, no such process, too many files, ...).
    Open(OpenError),
    /// An ioctl on an opened counter failed.
    Io(&'static str, std::io::Error),
}

impl TaskCounters {
    /// Opens every supported event of `set` on task `tid` (a process's pid is its main thread's
    /// tid) on `cpu` (`None`: any CPU). An event the machine cannot count is marked unsupported
    /// in `set` (and skipped for later tasks); a permission refusal of an event that counts the
    /// kernel is retried for user space only.
    pub fn open(
        set: &mut EventSet,
        tid: u32,
        cpu: Option<u32>,
        mode: OpenMode,
    ) -> Result<TaskCounters, OpenFailure> {
        let mut groups = Vec::new();
        let mut tracking_pending = mode.per_thread_records;
        for g in 0..set.groups.len() {
            let members_idx = set.groups[g].clone();
            let mut leader: Option<OwnedFd> = None;
            let mut members = Vec::new();
            let mut ids = Vec::new();
            for idx in members_idx {
                if set.unsupported[idx] {
                    continue;
                }
                let is_leader = leader.is_none();
                let fd = loop {
                    let event = &set.events[idx];
                    let attr = attr_for(event, is_leader, mode, is_leader && tracking_pending);
                    let group_fd = leader.as_ref().map(|l| l.as_fd());
                    match event.open(&attr, Tasks::Of(tid), cpu, group_fd, 0) {
                        Ok(fd) => break Some(fd),
                        Err(e) if e.is_permission() && !event.exclude_kernel => {
                            let user = event.user_only();
                            set.downgraded.push(user.name.clone());
                            set.events[idx] = user;
                        }
                        Err(e) if e.is_not_supported() => {
                            set.unsupported[idx] = true;
                            break None;
                        }
                        Err(e) => return Err(OpenFailure::Open(e)),
                    }
                };
                let Some(fd) = fd else { continue };
                let id =
                    event_id(fd.as_fd()).map_err(|e| OpenFailure::Io("get a counter's id", e))?;
                ids.push((idx, id));
                if is_leader {
                    tracking_pending = false;
                    leader = Some(fd);
                } else {
                    members.push(fd);
                }
            }
            if let Some(leader) = leader {
                groups.push(OpenGroup {
                    leader,
                    members,
                    ids,
                });
            }
        }
        Ok(TaskCounters {
            groups,
            n_events: set.events.len(),
        })
    }

    /// How many events the set has (open or not).
    pub fn n_events(&self) -> usize {
        self.n_events
    }

    /// The leaders' descriptors (one per open group).
    pub fn leaders(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.groups.iter().map(|g| g.leader.as_fd())
    }

    /// Every open counter's descriptor, leaders and members, group by group.
    pub fn all_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.groups.iter().flat_map(|g| {
            std::iter::once(g.leader.as_fd()).chain(g.members.iter().map(|m| m.as_fd()))
        })
    }

    /// Maps kernel ids to event indices (for READ records).
    pub fn index_of_id(&self, id: u64) -> Option<usize> {
        self.groups
            .iter()
            .flat_map(|g| &g.ids)
            .find(|(_, i)| *i == id)
            .map(|(idx, _)| *idx)
    }

    /// Enables every group now (for `-p`, where there is no exec to wait for).
    pub fn enable(&self) -> std::io::Result<()> {
        for g in &self.groups {
            // SAFETY: ENABLE with PERF_IOC_FLAG_GROUP on a perf fd we own.
            let rc = unsafe {
                perf_event_open_sys::ioctls::ENABLE(
                    g.leader.as_raw_fd(),
                    perf_event_open_sys::bindings::PERF_IOC_FLAG_GROUP,
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Reads every group: one reading per event of the set (not open = not supported).
    pub fn read(&self) -> Result<Vec<Reading>, String> {
        let mut readings = vec![Reading::NotSupported; self.n_events];
        for g in &self.groups {
            let mut buf = vec![0u8; 8 * (3 + 2 * g.ids.len())];
            let n = loop {
                // SAFETY: reading into a buffer of buf.len() bytes we own.
                let n =
                    unsafe { libc::read(g.leader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break n;
            };
            let n = usize::try_from(n).map_err(|_| {
                format!(
                    "read of a counter failed: {}",
                    std::io::Error::last_os_error()
                )
            })?;
            let (group, _) =
                parse_group_read(&buf[..n.min(buf.len())]).map_err(|e| e.to_string())?;
            for &(idx, id) in &g.ids {
                if let (Some(slot), Some(r)) = (readings.get_mut(idx), group.reading(id)) {
                    *slot = r;
                }
            }
        }
        Ok(readings)
    }
}
