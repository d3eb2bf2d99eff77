//! The records a profile is made of. Everything here is plain data; `format` reads and writes it.

use serde::{Deserialize, Serialize};

/// What was recorded, how, and when. The first block of every profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Version of the rprof that wrote the profile.
    pub rprof_version: String,
    /// The recorded command line (empty when a running process was attached with `-p`).
    pub command: Vec<String>,
    /// The attached process (`record -p`), if any.
    pub target_pid: Option<u32>,
    /// The sampled event as the user named it (e.g. `cpu-clock`).
    pub event: String,
    /// Sampling frequency in Hz, when sampling by frequency.
    pub frequency: Option<u64>,
    /// Sampling period in events, when sampling by period.
    pub period: Option<u64>,
    /// How stacks were captured: `dwarf,SIZE`, `fp` or `none`.
    pub call_graph: String,
    /// When recording started, in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Host the recording was made on.
    pub hostname: String,
    /// `uname -r` of the recording machine.
    pub kernel_release: String,
}

/// Identifies a module (binary, library, vDSO, kernel, JIT map) within one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModuleId(pub u32);

/// What kind of code a module holds; decides how its addresses are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleKind {
    /// An ELF file on disk: executable or shared library.
    Elf,
    /// The kernel's vDSO.
    Vdso,
    /// The kernel (addresses are absolute).
    Kernel,
    /// Anonymous code described by `/tmp/perf-PID.map` (addresses are absolute).
    Jit,
    /// Anonymous executable memory with no description (addresses are absolute).
    Anonymous,
}

/// A module that samples refer to. Written before the first sample that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// The id samples use for it.
    pub id: ModuleId,
    /// Path as the process mapped it (`[vdso]`, `[kernel.kallsyms]`, `/tmp/perf-PID.map` for JIT).
    pub path: String,
    /// GNU build id, when known.
    pub build_id: Option<Vec<u8>>,
    /// What kind of module this is.
    pub kind: ModuleKind,
    /// For JIT modules: the process whose perf map describes it.
    pub jit_pid: Option<u32>,
}

impl Module {
    /// The module's short name: the last component of its path.
    pub fn name(&self) -> &str {
        let path = self.path.trim_end_matches(" (deleted)");
        path.rsplit('/').next().unwrap_or(path)
    }
}

/// A code address: module-relative when the module is known, absolute otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The module the address is in, when known.
    pub module: Option<ModuleId>,
    /// The address as stated in the module's ELF file (SVMA); absolute for the kernel, JIT and
    /// anonymous modules and when the module is unknown.
    pub address: u64,
}

/// One sample: who was running, and the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Time in nanoseconds (the kernel's perf clock).
    pub time: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU the sample was taken on.
    pub cpu: u32,
    /// Weight of the sample in events (nanoseconds for cpu-clock).
    pub period: u64,
    /// User-space frames, leaf first: `[0]` is the instruction pointer, the rest are return
    /// addresses as found on the stack (not adjusted).
    pub user: Vec<Address>,
    /// Kernel frames, leaf first, with the same convention.
    pub kernel: Vec<Address>,
    /// The root of this stack is missing: the user stack ran past what was copied, or unwinding
    /// stopped part way.
    pub truncated: bool,
}

/// One off-CPU block (`rprof record --off-cpu`): a thread left the CPU and came back later.
///
/// Its times are the kernel's context-switch records (`PERF_RECORD_SWITCH`) of the thread; its
/// stack is the sample the `context-switches` sampler took in the thread as it left. The reason
/// it waited is not stored: readers find it from the stack's names and `preempted`
/// (`docs/off-cpu.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffCpu {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU the thread left.
    pub cpu: u32,
    /// When it left the CPU (switch-out), nanoseconds on the perf clock.
    pub start: u64,
    /// When it came back (switch-in); for a block that never ended (`ended` false): when the
    /// recording stopped or the thread exited.
    pub end: u64,
    /// A switch-in ended the block. False: the thread was still off the CPU when the recording
    /// stopped, or exited without one; `end` is then that moment.
    pub ended: bool,
    /// The thread was preempted while runnable (the switch-out's PREEMPT flag): it waited for
    /// a CPU, not for an event.
    pub preempted: bool,
    /// User-space frames at the switch-out, leaf first (the convention of [`Sample::user`]);
    /// empty when no stack was captured.
    pub user: Vec<Address>,
    /// Kernel frames at the switch-out, leaf first; empty when kernel stacks were not
    /// recorded (an unprivileged user) or no stack was captured.
    pub kernel: Vec<Address>,
    /// The root of the user stack is missing (as [`Sample::truncated`]).
    pub truncated: bool,
    /// The user registers DI, SI, DX at the switch-out, in that order (empty when not
    /// captured): inside a system call, its first three arguments (for `futex`, the lock's
    /// address, the operation and the value), for analyses such as lock contention.
    pub args: Vec<u64>,
}

/// The allocations made from one stack (`rprof record --alloc`, docs/alloc.md).
///
/// Two sorts share the record. An **exact** one is a call site: every call of an allocator
/// function that returned to one address, counted one by one; its stack is only the allocator
/// function and that return address (`truncated`). A **sampled** one is a full stack taken for
/// a sample of the calls (a call of `s` bytes is picked with probability `min(1, s / R)`,
/// `R` = [`AllocSummary::sample_bytes`]); its numbers are estimates (each picked call counts
/// `max(s, R)` bytes and `max(1, R / s)` calls), calibrated so that the sampled stacks through
/// one call site add up to that site's exact numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllocStack {
    /// Process id.
    pub pid: u32,
    /// Frames leaf first: `[0]` is the allocator function entered (its first instruction), the
    /// rest return addresses (the convention of [`Sample::user`]).
    pub user: Vec<Address>,
    /// The root of the stack is missing (always for an exact call site).
    pub truncated: bool,
    /// Exact totals of every call (a call site) rather than estimates from sampled stacks.
    pub exact: bool,
    /// Calls of allocation functions (`malloc`, `calloc`, `realloc`, `aligned_alloc`, ...).
    pub calls: u64,
    /// Bytes they asked for.
    pub bytes: u64,
    /// Of those, the calls whose block was never freed (still live when the process ended or
    /// the recording stopped).
    pub leaked_calls: u64,
    /// Bytes of those blocks.
    pub leaked_bytes: u64,
    /// Calls whose block was the next thing its thread freed (docs/alloc.md: temporary).
    pub temporary_calls: u64,
    /// Blocks of this stack live at the moment of the peak.
    pub peak_calls: u64,
    /// Their bytes.
    pub peak_bytes: u64,
}

/// The totals of an allocation recording (`rprof record --alloc`): every call counted, none
/// estimated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllocSummary {
    /// The allocator library probed (its path).
    pub allocator: String,
    /// Stack sampling: about one stack per this many bytes allocated (0: every call).
    pub sample_bytes: u64,
    /// Calls of allocation functions (everything but `free`).
    pub alloc_calls: u64,
    /// Bytes asked for by them.
    pub alloc_bytes: u64,
    /// Calls of `free` (and `realloc` to size 0) with a pointer rprof saw allocated.
    pub free_calls: u64,
    /// Frees of pointers never seen allocated (allocated before `-p` attached, or by an
    /// allocator that is not probed) and of NULL: ignored.
    pub unknown_frees: u64,
    /// Allocations freed by the next free of their thread (docs/alloc.md).
    pub temporary_calls: u64,
    /// Blocks never freed, and their bytes.
    pub leaked_calls: u64,
    /// Bytes of the blocks never freed.
    pub leaked_bytes: u64,
    /// The largest sum of live bytes (what the program asked for, not the allocator's
    /// overhead).
    pub peak_bytes: u64,
    /// When the peak was reached, ns after the first recorded call.
    pub peak_time_ns: u64,
    /// From the first recorded call to the end, ns.
    pub duration_ns: u64,
    /// Calls per allocator function (`malloc`, `free`, ...), in a fixed order.
    pub calls_by_function: Vec<(String, u64)>,
    /// Stacks taken.
    pub stacks: u64,
    /// Records the kernel dropped (a full ring): totals are then short.
    pub lost: u64,
}

/// One frame of a symbolized address, as stored in the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFrame {
    /// Index of the function name in the block's strings (`u32::MAX`: unknown).
    pub function: u32,
    /// Index of the source file in the block's strings (`u32::MAX`: unknown).
    pub file: u32,
    /// Source line (0: unknown).
    pub line: u32,
    /// This frame was inlined into the next one.
    pub inlined: bool,
}

/// Names for one module's addresses, found when recording finished.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Symbols {
    /// The module these addresses belong to.
    pub module: Option<ModuleId>,
    /// Strings the frames point into.
    pub strings: Vec<String>,
    /// Lookup address (see [`lookup_address`](crate::lookup_address)) and its frames, innermost
    /// first; an empty frame list means the address could not be named.
    pub entries: Vec<(u64, Vec<StoredFrame>)>,
}

/// Totals of a finished recording. Its presence marks the profile as complete.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// When recording ended, in nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// Samples written.
    pub samples: u64,
    /// Samples the kernel reported lost.
    pub lost: u64,
    /// Times the kernel throttled sampling.
    pub throttled: u64,
    /// Samples whose stack is incomplete at the root (marked truncated).
    pub truncated: u64,
    /// Of those, the samples whose unwinding failed rather than running out of copied stack.
    pub unwind_failed: u64,
}

/// One entry of the profile stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A module samples refer to.
    Module(Module),
    /// A thread got a name (at start, by `exec`, or by `prctl`/`pthread_setname_np`).
    Comm {
        /// Time in nanoseconds.
        time: u64,
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// The new name.
        name: String,
        /// The name comes from an `exec`.
        exec: bool,
    },
    /// A thread or process was created.
    Fork {
        /// Time in nanoseconds.
        time: u64,
        /// Process id of the new task.
        pid: u32,
        /// Process id of the parent.
        ppid: u32,
        /// Thread id of the new task.
        tid: u32,
        /// Thread id of the parent.
        ptid: u32,
    },
    /// A thread ended.
    Exit {
        /// Time in nanoseconds.
        time: u64,
        /// Process id.
        pid: u32,
        /// Parent process id.
        ppid: u32,
        /// Thread id.
        tid: u32,
        /// Parent thread id.
        ptid: u32,
    },
    /// A sample.
    Sample(Sample),
    /// The kernel dropped samples (its ring buffer was full).
    Lost {
        /// Time in nanoseconds.
        time: u64,
        /// How many.
        count: u64,
    },
    /// The kernel throttled (or unthrottled) sampling.
    Throttle {
        /// Time in nanoseconds.
        time: u64,
        /// True when throttled, false when unthrottled.
        throttled: bool,
    },
    /// Names for a module's addresses.
    Symbols(Symbols),
    /// Totals; the last record of a finished profile.
    Summary(Summary),
    /// An off-CPU block (kind 9, issue 11). Readers before it skip it as an unknown kind.
    OffCpu(OffCpu),
    /// Lock-contention data (kind 10, issue 17): futex wake-ups and where modules were loaded.
    /// Readers before it skip it as an unknown kind.
    Lock(LockRecord),
    /// The allocations of one stack (kind 11, issue 14: `rprof record --alloc`).
    AllocStack(AllocStack),
    /// The totals of an allocation recording (kind 12, issue 14).
    AllocSummary(AllocSummary),
}

/// What `rprof record --off-cpu` adds for lock analyses (`rprof report --locks`, issue 17).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockRecord {
    /// Whether wake-ups ([`Wake`]) were recorded; written once when the recording begins. When
    /// not, `note` says why (e.g. the privilege it needs).
    Wakers {
        /// Wake-ups were recorded.
        recorded: bool,
        /// Why they were not (empty when they were).
        note: String,
    },
    /// Where a module's ELF file is loaded in a process: `base` is the process address minus
    /// the address in the file (SVMA), the same for all its segments, so that a data address
    /// (a lock in `.data` or `.bss`) can be looked up in the file's symbol tables.
    Base {
        /// Process id.
        pid: u32,
        /// The module.
        module: ModuleId,
        /// Process address − SVMA.
        base: u64,
    },
    /// A thread's futex call woke a waiter (the `syscalls:sys_exit_futex` tracepoint filtered
    /// to calls that returned a positive count): the code that released a lock others waited
    /// on.
    Wake(Wake),
}

/// One futex call that woke (or requeued) waiters (`FUTEX_WAKE`, `FUTEX_WAKE_BITSET`,
/// `FUTEX_WAKE_OP`, `FUTEX_CMP_REQUEUE`...), in the calling thread's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    /// Time in nanoseconds (the kernel's perf clock).
    pub time: u64,
    /// Process id of the waker.
    pub pid: u32,
    /// Thread id of the waker.
    pub tid: u32,
    /// CPU it ran on.
    pub cpu: u32,
    /// The system call's first three arguments (user DI, SI, DX): the futex word's address,
    /// the operation and the value (for a wake: how many to wake).
    pub args: Vec<u64>,
    /// User-space frames, leaf first (the convention of [`Sample::user`]).
    pub user: Vec<Address>,
    /// Kernel frames, leaf first.
    pub kernel: Vec<Address>,
    /// The root of the user stack is missing (as [`Sample::truncated`]).
    pub truncated: bool,
}

/// The address to look up for the frame at `index` of a leaf-first stack: the instruction pointer
/// (index 0) as it is, a return address minus one so that it falls inside the call instruction.
pub fn lookup_address(index: usize, address: u64) -> u64 {
    if index == 0 {
        address
    } else {
        address.saturating_sub(1)
    }
}
