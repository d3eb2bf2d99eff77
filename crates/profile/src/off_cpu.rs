//! Off-CPU blocks as readers see them: why each one waited ([`WaitReason`], found from the
//! names of its stack), and per thread its life on and off the CPU ([`ThreadActivity`]).
//!
//! The reasons are named in `docs/off-cpu.md`; [`classify`] is the one place that decides them.
//! A block's reason comes, in this order, from the switch's PREEMPT flag (`cpu`), from its
//! kernel stack (a kernel function or system call known to wait for a lock, a timer or I/O),
//! and, when the profile has no kernel stacks, from the user-space functions nearest the leaf
//! (libc's futex waits, `nanosleep`, `read`, `poll`, ...). What is not recognised is `other`.

use crate::profile::{FrameKind, Profile, StackId};

/// Why a thread was off the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaitReason {
    /// Runnable but preempted: waiting for a CPU.
    Cpu,
    /// Waiting for a lock (a futex: mutexes, condition variables, joins, semaphores).
    Lock,
    /// Sleeping on a timer (`nanosleep`, `clock_nanosleep`).
    Sleep,
    /// Waiting for I/O: reads and writes of files, pipes and sockets, `poll`, `select`,
    /// `epoll`, disk waits.
    Io,
    /// Anything else (or nothing recognised).
    Other,
}

impl WaitReason {
    /// Every reason, in report order.
    pub const ALL: [WaitReason; 5] = [
        WaitReason::Cpu,
        WaitReason::Lock,
        WaitReason::Sleep,
        WaitReason::Io,
        WaitReason::Other,
    ];

    /// The reason's name in reports and JSON (`cpu`, `lock`, `sleep`, `io`, `other`).
    pub fn name(self) -> &'static str {
        match self {
            WaitReason::Cpu => "cpu",
            WaitReason::Lock => "lock",
            WaitReason::Sleep => "sleep",
            WaitReason::Io => "io",
            WaitReason::Other => "other",
        }
    }

    /// Index in [`WaitReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a block's reason was found from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasonSource {
    /// The switch-out's PREEMPT flag.
    Preempted,
    /// A kernel function of the block's stack.
    Kernel,
    /// A user-space function near the leaf (no kernel stack).
    User,
    /// Nothing recognised (the reason is `other`).
    Nothing,
}

/// Kernel functions (exact names) that say why a thread waits, from the leaf up.
const KERNEL_FUNCTIONS: &[(&str, WaitReason)] = &[
    ("futex_wait_queue", WaitReason::Lock),
    ("futex_wait_queue_me", WaitReason::Lock),
    ("futex_wait", WaitReason::Lock),
    ("__futex_wait", WaitReason::Lock),
    ("futex_lock_pi", WaitReason::Lock),
    ("futex_wait_requeue_pi", WaitReason::Lock),
    ("futex_waitv", WaitReason::Lock),
    ("do_nanosleep", WaitReason::Sleep),
    ("hrtimer_nanosleep", WaitReason::Sleep),
    ("pipe_read", WaitReason::Io),
    ("anon_pipe_read", WaitReason::Io),
    ("anon_pipe_write", WaitReason::Io),
    ("pipe_write", WaitReason::Io),
    ("do_poll", WaitReason::Io),
    ("do_sys_poll", WaitReason::Io),
    ("do_select", WaitReason::Io),
    ("core_sys_select", WaitReason::Io),
    ("ep_poll", WaitReason::Io),
    ("do_epoll_wait", WaitReason::Io),
    ("io_schedule", WaitReason::Io),
    ("io_schedule_timeout", WaitReason::Io),
    ("wait_for_completion_io", WaitReason::Io),
    ("folio_wait_bit_common", WaitReason::Io),
    ("wait_on_page_bit_common", WaitReason::Io),
    ("sk_wait_data", WaitReason::Io),
    ("inet_csk_accept", WaitReason::Io),
    ("unix_stream_read_generic", WaitReason::Io),
    ("unix_stream_data_wait", WaitReason::Io),
    ("n_tty_read", WaitReason::Io),
    ("wait_woken", WaitReason::Io),
];

/// System calls (as in `__x64_sys_NAME`, `__do_sys_NAME`, `__se_sys_NAME`, `ksys_NAME`) that
/// say why a thread waits when no function of [`KERNEL_FUNCTIONS`] is on the stack.
const SYSCALLS: &[(&str, WaitReason)] = &[
    ("futex", WaitReason::Lock),
    ("futex_waitv", WaitReason::Lock),
    ("nanosleep", WaitReason::Sleep),
    ("clock_nanosleep", WaitReason::Sleep),
    ("read", WaitReason::Io),
    ("write", WaitReason::Io),
    ("readv", WaitReason::Io),
    ("writev", WaitReason::Io),
    ("pread64", WaitReason::Io),
    ("pwrite64", WaitReason::Io),
    ("poll", WaitReason::Io),
    ("ppoll", WaitReason::Io),
    ("select", WaitReason::Io),
    ("pselect6", WaitReason::Io),
    ("epoll_wait", WaitReason::Io),
    ("epoll_pwait", WaitReason::Io),
    ("epoll_pwait2", WaitReason::Io),
    ("recvfrom", WaitReason::Io),
    ("recvmsg", WaitReason::Io),
    ("recvmmsg", WaitReason::Io),
    ("sendto", WaitReason::Io),
    ("sendmsg", WaitReason::Io),
    ("accept", WaitReason::Io),
    ("accept4", WaitReason::Io),
    ("connect", WaitReason::Io),
    ("fsync", WaitReason::Io),
    ("fdatasync", WaitReason::Io),
    ("io_getevents", WaitReason::Io),
    ("io_uring_enter", WaitReason::Io),
];

/// User-space (libc) functions, with leading underscores and glibc's `GI_` prefix removed,
/// that say why a thread waits when the profile has no kernel stacks.
const USER_FUNCTIONS: &[(&str, WaitReason)] = &[
    ("futex_abstimed_wait_common", WaitReason::Lock),
    ("futex_abstimed_wait_common64", WaitReason::Lock),
    ("futex_wait", WaitReason::Lock),
    ("futex_lock_pi64", WaitReason::Lock),
    ("lll_lock_wait", WaitReason::Lock),
    ("lll_lock_wait_private", WaitReason::Lock),
    ("pthread_mutex_lock", WaitReason::Lock),
    ("pthread_mutex_timedlock", WaitReason::Lock),
    ("pthread_cond_wait", WaitReason::Lock),
    ("pthread_cond_timedwait", WaitReason::Lock),
    ("pthread_rwlock_rdlock", WaitReason::Lock),
    ("pthread_rwlock_wrlock", WaitReason::Lock),
    ("pthread_join", WaitReason::Lock),
    ("sem_wait", WaitReason::Lock),
    ("sem_timedwait", WaitReason::Lock),
    ("nanosleep", WaitReason::Sleep),
    ("clock_nanosleep", WaitReason::Sleep),
    ("usleep", WaitReason::Sleep),
    ("sleep", WaitReason::Sleep),
    ("read", WaitReason::Io),
    ("libc_read", WaitReason::Io),
    ("write", WaitReason::Io),
    ("libc_write", WaitReason::Io),
    ("readv", WaitReason::Io),
    ("writev", WaitReason::Io),
    ("pread64", WaitReason::Io),
    ("pwrite64", WaitReason::Io),
    ("poll", WaitReason::Io),
    ("ppoll", WaitReason::Io),
    ("select", WaitReason::Io),
    ("pselect", WaitReason::Io),
    ("epoll_wait", WaitReason::Io),
    ("epoll_pwait", WaitReason::Io),
    ("recv", WaitReason::Io),
    ("recvfrom", WaitReason::Io),
    ("recvmsg", WaitReason::Io),
    ("send", WaitReason::Io),
    ("sendto", WaitReason::Io),
    ("sendmsg", WaitReason::Io),
    ("accept", WaitReason::Io),
    ("accept4", WaitReason::Io),
    ("connect", WaitReason::Io),
    ("fsync", WaitReason::Io),
    ("fdatasync", WaitReason::Io),
];

/// How many user frames from the leaf are looked at without kernel stacks: the wait is in the
/// libc function that made the system call or in one of its first callers.
const USER_FRAMES_LOOKED_AT: usize = 4;

fn lookup(table: &[(&str, WaitReason)], name: &str) -> Option<WaitReason> {
    table.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

/// `__x64_sys_read` → `read` (also `__do_sys_`, `__se_sys_`, `ksys_`, `__ia32_sys_`).
fn syscall_name(function: &str) -> Option<&str> {
    [
        "__x64_sys_",
        "__do_sys_",
        "__se_sys_",
        "ksys_",
        "__ia32_sys_",
    ]
    .iter()
    .find_map(|prefix| function.strip_prefix(prefix))
}

/// A libc name as [`USER_FUNCTIONS`] spells it: `__GI___clock_nanosleep` → `clock_nanosleep`,
/// `__libc_read` → `libc_read`, `read@plt` → `read`.
fn user_name(function: &str) -> &str {
    let name = function.split('@').next().unwrap_or(function);
    let name = name.trim_start_matches('_');
    let name = name.strip_prefix("GI_").unwrap_or(name);
    name.trim_start_matches('_')
}

/// The reason of a block: preempted → `cpu`; else from the kernel frames of `stack` (leaf
/// first), else from its first user frames; else `other`.
pub fn classify(
    profile: &Profile,
    stack: &[crate::FrameId],
    preempted: bool,
) -> (WaitReason, ReasonSource) {
    if preempted {
        return (WaitReason::Cpu, ReasonSource::Preempted);
    }
    let frames = || stack.iter().map(|&f| profile.frame(f));
    let mut has_kernel = false;
    for frame in frames().filter(|f| f.kind == FrameKind::Kernel) {
        has_kernel = true;
        if let Some(reason) = lookup(KERNEL_FUNCTIONS, &frame.function) {
            return (reason, ReasonSource::Kernel);
        }
    }
    if has_kernel {
        for frame in frames().filter(|f| f.kind == FrameKind::Kernel) {
            if let Some(reason) = syscall_name(&frame.function).and_then(|s| lookup(SYSCALLS, s)) {
                return (reason, ReasonSource::Kernel);
            }
        }
        return (WaitReason::Other, ReasonSource::Nothing);
    }
    for frame in frames()
        .filter(|f| f.kind == FrameKind::User)
        .take(USER_FRAMES_LOOKED_AT)
    {
        if let Some(reason) = lookup(USER_FUNCTIONS, user_name(&frame.function)) {
            return (reason, ReasonSource::User);
        }
    }
    (WaitReason::Other, ReasonSource::Nothing)
}

/// One off-CPU interval of a thread, clipped to the thread's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffCpuInterval {
    /// Switch-out (nanoseconds, perf clock).
    pub start: u64,
    /// Switch-in, or the end of the recording / the thread's exit when `ended` is false.
    pub end: u64,
    /// Why it waited.
    pub reason: WaitReason,
    /// Its stack: the reason's synthetic frame (kind [`FrameKind::Wait`]) first, then the
    /// kernel and user frames at the switch-out, leaf first.
    pub stack: StackId,
    /// A switch-in ended it (see [`crate::OffCpu::ended`]).
    pub ended: bool,
    /// Index of the block in [`Profile::off_cpu`].
    pub index: usize,
}

impl OffCpuInterval {
    /// Its length in nanoseconds.
    pub fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// A thread's life in an off-CPU profile: when it was alive in the recording, its off-CPU
/// intervals and the times of its on-CPU samples. What the thread table and a timeline need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadActivity {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// From its creation (FORK) when recorded, else its first record (exec, first event).
    pub start: u64,
    /// Its EXIT when recorded, else the end of the recording.
    pub end: u64,
    /// Its EXIT was recorded.
    pub exited: bool,
    /// Off-CPU intervals in time order, clipped to `start..end`.
    pub off_cpu: Vec<OffCpuInterval>,
    /// `(time, index in Profile::samples)` of its samples, in time order.
    pub samples: Vec<(u64, usize)>,
}

impl ThreadActivity {
    /// Nanoseconds alive in the recording.
    pub fn alive_ns(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Nanoseconds off the CPU.
    pub fn off_cpu_ns(&self) -> u64 {
        self.off_cpu.iter().map(OffCpuInterval::duration).sum()
    }

    /// Nanoseconds off the CPU for each reason, indexed as [`WaitReason::ALL`].
    pub fn wait_ns(&self) -> [u64; 5] {
        let mut out = [0u64; 5];
        for interval in &self.off_cpu {
            out[interval.reason.index()] += interval.duration();
        }
        out
    }

    /// Nanoseconds on the CPU: alive and not off it. The switch records time every switch out
    /// and in, so this is the time between each switch-in and the next switch-out (the time
    /// `perf sched timehist` calls run time), not an estimate from samples.
    pub fn on_cpu_ns(&self) -> u64 {
        self.alive_ns().saturating_sub(self.off_cpu_ns())
    }
}
