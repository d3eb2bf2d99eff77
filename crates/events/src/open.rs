//! The `perf_event_open` syscall and an error that explains itself.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use perf_event_open_sys::bindings::{self, perf_event_attr};

use crate::sys::paranoid;

/// The tasks an event counts: the `pid` argument of `perf_event_open(2)` without its magic
/// values (`-1` for every process, `0` for the calling thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tasks {
    /// The process or thread with this pid or tid (and, with `inherit`, the tasks it creates).
    Of(u32),
    /// Every process and thread on one CPU (the syscall's `pid = -1`; needs a CPU).
    All,
    /// The tasks of one cgroup (v2) on one CPU: the descriptor of its open directory is the
    /// syscall's `pid`, with `PERF_FLAG_PID_CGROUP` (needs a CPU).
    Cgroup(i32),
}

impl Tasks {
    /// The syscall's `pid`; `None` for a pid no process can have (0, or beyond `i32`), which the
    /// kernel would read as the calling thread or as every process.
    fn raw(self) -> Option<i32> {
        match self {
            Tasks::Of(pid) => i32::try_from(pid).ok().filter(|&p| p > 0),
            Tasks::All => Some(-1),
            Tasks::Cgroup(fd) => Some(fd).filter(|&fd| fd >= 0),
        }
    }
}

/// Calls `perf_event_open(2)` with `attr` for `tasks` on `cpu` (`None`: any CPU);
/// `PERF_FLAG_FD_CLOEXEC` is always added to `flags`.
///
/// A pid no process can have is refused as the kernel refuses a pid that does not exist
/// (`ESRCH`), a CPU beyond `i32` as an invalid argument (`EINVAL`). The error carries the errno
/// and a name for the event derived from `attr` (use [`crate::Event::open`] or
/// [`OpenError::with_event`] for the name the user typed).
pub fn perf_event_open(
    attr: &perf_event_attr,
    tasks: Tasks,
    cpu: Option<u32>,
    group: Option<BorrowedFd<'_>>,
    flags: u64,
) -> Result<OwnedFd, OpenError> {
    let Some(pid) = tasks.raw() else {
        return Err(OpenError::new(libc::ESRCH, attr, tasks, cpu));
    };
    let Some(raw_cpu) = cpu.map_or(Some(-1), |c| i32::try_from(c).ok()) else {
        return Err(OpenError::new(libc::EINVAL, attr, tasks, cpu));
    };
    let mut attr_copy = *attr;
    let group_fd = group.map_or(-1, |fd| fd.as_raw_fd());
    let mut flags = flags | u64::from(bindings::PERF_FLAG_FD_CLOEXEC);
    if let Tasks::Cgroup(_) = tasks {
        flags |= u64::from(bindings::PERF_FLAG_PID_CGROUP);
    }
    loop {
        // SAFETY: attr_copy is a valid, initialized perf_event_attr that outlives the call; the
        // kernel only reads it (and may write the size field back on E2BIG).
        let fd = unsafe {
            perf_event_open_sys::perf_event_open(
                &mut attr_copy,
                pid,
                raw_cpu,
                group_fd,
                flags as libc::c_ulong,
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if errno == libc::EINTR {
            continue;
        }
        return Err(OpenError::new(errno, attr, tasks, cpu));
    }
}

/// `perf_event_open` failed. `Display` is one line: what failed, why, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// The errno the kernel returned.
    pub errno: i32,
    /// The event's name (from the caller, or derived from the attr's type and config).
    pub event: String,
    /// The tasks it was opened for.
    pub tasks: Tasks,
    /// The CPU it was opened for (`None`: any).
    pub cpu: Option<u32>,
    /// `perf_event_attr.type` of the event.
    pub type_: u32,
    /// Whether the event asked to count kernel space (exclude_kernel was 0).
    pub counts_kernel: bool,
    /// perf_event_paranoid at the time of the error, if readable.
    pub paranoid: Option<i32>,
}

impl OpenError {
    fn new(errno: i32, attr: &perf_event_attr, tasks: Tasks, cpu: Option<u32>) -> OpenError {
        OpenError {
            errno,
            event: name_from_attr(attr),
            tasks,
            cpu,
            type_: attr.type_,
            counts_kernel: attr.exclude_kernel() == 0,
            paranoid: paranoid(),
        }
    }

    /// The same error naming the event `name`.
    pub fn with_event(mut self, name: &str) -> OpenError {
        self.event = name.to_string();
        self
    }

    /// True when the kernel says it cannot count this event here at all (no such counter: a
    /// machine or VM without the PMU, an event the PMU does not have). perf stat shows these
    /// as `<not supported>`; the same errnos perf treats that way.
    pub fn is_not_supported(&self) -> bool {
        matches!(
            self.errno,
            libc::ENOENT
                | libc::EOPNOTSUPP
                | libc::ENODEV
                | libc::ENXIO
                | libc::ENOSYS
                | libc::EINVAL
        )
    }

    /// True when the kernel refused for lack of privilege (EACCES/EPERM).
    pub fn is_permission(&self) -> bool {
        matches!(self.errno, libc::EACCES | libc::EPERM)
    }

    /// True when the target process does not exist (any more).
    pub fn is_no_such_process(&self) -> bool {
        self.errno == libc::ESRCH
    }

    fn is_pmu_type(&self) -> bool {
        matches!(
            self.type_,
            bindings::PERF_TYPE_HARDWARE | bindings::PERF_TYPE_HW_CACHE | bindings::PERF_TYPE_RAW
        )
    }

    fn target(&self) -> String {
        match (self.tasks, self.cpu) {
            (Tasks::All, Some(cpu)) => format!(" on CPU {cpu}"),
            (Tasks::All, None) => " for every process on every CPU".to_string(),
            (Tasks::Of(pid), _) => format!(" for pid {pid}"),
            (Tasks::Cgroup(_), Some(cpu)) => format!(" for a cgroup on CPU {cpu}"),
            (Tasks::Cgroup(_), None) => " for a cgroup".to_string(),
        }
    }
}

/// What a perf_event_paranoid value allows, in words.
pub(crate) fn paranoid_meaning(level: i32) -> &'static str {
    match level {
        i32::MIN..=-1 => "no restrictions",
        0 => "unprivileged users may measure their own processes and CPUs, kernel included",
        1 => "unprivileged users may measure their own processes, kernel included, but not whole CPUs",
        2 => "unprivileged users may measure only user space of their own processes",
        _ => "unprivileged users may not use perf_event_open at all",
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open event '{}'{}: ", self.event, self.target())?;
        match self.errno {
            libc::EACCES | libc::EPERM => {
                write!(f, "permission denied")?;
                match self.paranoid {
                    Some(level) => write!(
                        f,
                        " (kernel.perf_event_paranoid is {level}: {})",
                        paranoid_meaning(level)
                    )?,
                    None => write!(f, " (kernel.perf_event_paranoid is unreadable)")?,
                }
                write!(
                    f,
                    "; run as root, or allow it with `sudo sysctl kernel.perf_event_paranoid=1`"
                )?;
                if self.counts_kernel {
                    write!(f, ", or count user space only with '{}:u'", self.event)?;
                }
                Ok(())
            }
            libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::ENXIO
                if self.is_pmu_type() =>
            {
                write!(
                    f,
                    "this machine has no such hardware counter (no PMU, e.g. a VM without PMU \
                     passthrough, or a CPU without this event); use a software event such as \
                     cpu-clock or task-clock instead"
                )
            }
            libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::ENXIO | libc::ENOSYS => write!(
                f,
                "the kernel does not support this event here ({})",
                std::io::Error::from_raw_os_error(self.errno)
            ),
            libc::ESRCH => write!(
                f,
                "no such process (it has exited, or the pid is wrong)"
            ),
            libc::EMFILE => write!(
                f,
                "too many open files (one per event per thread); raise the limit with `ulimit -n 65536` or count fewer events"
            ),
            libc::ENFILE => write!(
                f,
                "the system's open-file table is full; raise fs.file-max or count fewer events"
            ),
            libc::EBUSY => write!(
                f,
                "the counter is in use by another tool (e.g. a watchdog or another profiler); stop it and retry"
            ),
            libc::EINVAL if self.is_pmu_type() => write!(
                f,
                "the kernel rejected the event's settings (invalid argument): this PMU does not accept this event or one of its options"
            ),
            libc::EINVAL => write!(
                f,
                "the kernel rejected the event's settings (invalid argument)"
            ),
            errno => write!(f, "{}", std::io::Error::from_raw_os_error(errno)),
        }
    }
}

impl std::error::Error for OpenError {}

/// A readable name for an attr's event when the caller gave none.
fn name_from_attr(attr: &perf_event_attr) -> String {
    let known = crate::known_names();
    let found = known.iter().find_map(|(name, _)| {
        crate::parse(name)
            .ok()
            .filter(|e| e.type_ == attr.type_ && e.config == attr.config)
            .map(|e| e.name)
    });
    match (found, attr.type_) {
        (Some(name), _) => name,
        (None, bindings::PERF_TYPE_RAW) => format!("r{:x}", attr.config),
        (None, bindings::PERF_TYPE_TRACEPOINT) => format!("tracepoint id {}", attr.config),
        (None, t) => format!("type {t} config {:#x}", attr.config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn err(errno: i32, spec: &str, pid: u32) -> OpenError {
        let event = parse(spec).unwrap();
        OpenError {
            paranoid: Some(2),
            ..OpenError::new(errno, &event.attr(), Tasks::Of(pid), None)
        }
    }

    /// This process: the tests run on other threads than its main one, which is as good for
    /// checking that an event opens.
    fn me() -> Tasks {
        Tasks::Of(std::process::id())
    }

    #[test]
    fn messages_are_one_line_and_say_how_to_fix() {
        for errno in [
            libc::EACCES,
            libc::EPERM,
            libc::ENOENT,
            libc::EOPNOTSUPP,
            libc::ESRCH,
            libc::EMFILE,
            libc::EINVAL,
            libc::EBUSY,
            libc::E2BIG,
        ] {
            let text = err(errno, "cycles", 42).to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(
                text.starts_with("cannot open event 'cycles' for pid 42: "),
                "{text}"
            );
        }
        let text = err(libc::EACCES, "cycles", 42).to_string();
        assert!(text.contains("perf_event_paranoid is 2"), "{text}");
        assert!(text.contains("only user space"), "{text}");
        assert!(
            text.contains("sudo sysctl kernel.perf_event_paranoid=1"),
            "{text}"
        );
        assert!(text.contains("'cycles:u'"), "{text}");
        let text = err(libc::EPERM, "cycles:u", 0).to_string();
        assert!(!text.contains(":u'"), "{text}");
        let text = err(libc::ENOENT, "cycles", 0).to_string();
        assert!(text.contains("no such hardware counter"), "{text}");
        let text = err(libc::ESRCH, "task-clock", 7).to_string();
        assert!(text.contains("no such process"), "{text}");
        let text = err(libc::EMFILE, "task-clock", 7).to_string();
        assert!(text.contains("ulimit -n"), "{text}");
    }

    #[test]
    fn classification() {
        assert!(err(libc::ENOENT, "cycles", 0).is_not_supported());
        assert!(err(libc::EOPNOTSUPP, "cycles", 0).is_not_supported());
        assert!(!err(libc::EACCES, "cycles", 0).is_not_supported());
        assert!(err(libc::EACCES, "cycles", 0).is_permission());
        assert!(err(libc::EPERM, "cycles", 0).is_permission());
        assert!(err(libc::ESRCH, "cycles", 0).is_no_such_process());
    }

    #[test]
    fn names_from_attrs() {
        assert_eq!(
            err(libc::EINVAL, "L1-dcache-load-misses", 0).event,
            "L1-dcache-load-misses"
        );
        assert_eq!(err(libc::EINVAL, "r1c2", 0).event, "r1c2");
        assert_eq!(err(libc::EINVAL, "cs", 0).event, "context-switches");
        let named = err(libc::EINVAL, "cs", 0).with_event("cs:u");
        assert!(named.to_string().starts_with("cannot open event 'cs:u'"));
    }

    #[test]
    fn software_event_opens_on_self() {
        let event = parse("task-clock").unwrap();
        let fd = event.open(&event.attr(), me(), None, None, 0).unwrap();
        // The descriptor is close-on-exec.
        // SAFETY: fcntl F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn missing_process_is_esrch() {
        let event = parse("task-clock").unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        let e = event
            .open(&event.attr(), Tasks::Of(1 << 30), None, None, 0)
            .unwrap_err();
        assert!(e.is_no_such_process(), "{e}");
        assert!(e.to_string().contains("for pid 1073741824"), "{e}");
    }

    /// Issue 10 (one pid type): pids are u32; one that the syscall's i32 would read as "the
    /// calling thread" (0) or "every process" (u32::MAX is -1) names no process instead.
    #[test]
    fn pid_without_a_process_is_esrch_not_a_magic_value() {
        let event = parse("task-clock").unwrap();
        for pid in [0, u32::MAX, 1 << 31] {
            let e = event
                .open(&event.attr(), Tasks::Of(pid), None, None, 0)
                .unwrap_err();
            assert!(e.is_no_such_process(), "{pid}: {e}");
            assert!(e.to_string().contains(&format!("for pid {pid}:")), "{e}");
        }
        let e = event
            .open(&event.attr(), me(), Some(u32::MAX), None, 0)
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{e}");
    }

    #[test]
    fn hardware_event_opens_or_is_not_supported() {
        // Either the machine has a PMU, or the error says it has none: never something else.
        let event = parse("instructions:u").unwrap();
        match event.open(&event.attr(), me(), None, None, 0) {
            Ok(_) => {}
            Err(e) => assert!(e.is_not_supported() || e.is_permission(), "{e}"),
        }
    }
}
