//! What `--off-cpu` records for lock analyses (`rprof report --locks`, issue 17), beside the
//! off-CPU blocks themselves:
//!
//! - **Wake-ups**: a companion event on the `syscalls:sys_exit_futex` tracepoint, filtered in
//!   the kernel to the calls that returned a positive count (`ret > 0`: a wake operation that
//!   woke or requeued at least one waiter; waits return 0 or an error), sampled like the
//!   off-CPU sampler with a smaller stack copy ([`WAKER_STACK_COPY`]). It fires in the waker's
//!   context as the system call returns; the user registers saved at its entry still hold its
//!   arguments (the futex word's address in DI, the operation in SI) and the stack is the code
//!   that released the lock. Each becomes a [`Wake`] record. Opening it needs tracefs
//!   (root) and kernel-space sampling; without them the profile says so ([`LockRecord::Wakers`]).
//! - **Module bases**: for each process with a blocked thread, where its ELF files are loaded
//!   (process address of SVMA 0, [`LockRecord::Base`]), so that a lock word in a module's data
//!   (a global or static mutex) can be named from its symbol tables when the report is made.
//!
//! It leaves the analysis and naming to `rprof-locks`, the ring buffers to `rprof-perf`.

use std::io::{self, Write};

use perf_event_open_sys::bindings::perf_event_attr;
use rprof_perf::parse::x86_64;
use rprof_profile::{Address, LockRecord, Record, Wake};

use crate::Recorder;

/// The tracepoint of the wake-up sampler, as its companion event is named.
pub const WAKER_EVENT: &str = "syscalls:sys_exit_futex";

/// The kernel-side filter of the wake-up sampler: futex calls that returned a positive count.
/// Only the waking operations do (`FUTEX_WAKE`, `FUTEX_WAKE_BITSET`, `FUTEX_WAKE_OP` return
/// how many they woke, the requeues how many they woke or moved); waits return 0 or an error.
/// A wake call that found nobody waiting is left out: it released nothing anyone waited for,
/// and on a futex-heavy program most calls are such (a filter on the operation at the entry
/// recorded them all and cost twice as much). `FUTEX_UNLOCK_PI` returns 0 and is not seen.
pub const WAKE_FILTER: &str = "ret > 0";

/// Bytes of user stack the wake-up sampler copies: enough for the waker's call site a few
/// frames above the system call (libc's or std's unlock), a quarter of the off-CPU sampler's.
/// A deeper stack is marked truncated; only its first frames are used.
pub const WAKER_STACK_COPY: u32 = 4096;

/// The attr of the wake-up sampler: the off-CPU sampler's (`switch`: same sample layout; stack
/// copy at most [`WAKER_STACK_COPY`]) on the `sys_exit_futex` tracepoint, counting in kernel
/// space (where the tracepoint fires). Err: why it cannot be opened (tracefs not readable, no
/// such tracepoint).
pub(crate) fn waker_attr(switch: &perf_event_attr) -> Result<perf_event_attr, String> {
    // Parsing a tracepoint's name reads its id from tracefs.
    let event = rprof_events::parse(WAKER_EVENT).map_err(|e| {
        if nix::unistd::geteuid().is_root() {
            // Root reads tracefs: the kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS).
            format!("the kernel offers no {WAKER_EVENT} tracepoint ({e})")
        } else {
            format!("the {WAKER_EVENT} tracepoint is not available ({e}); run rprof record as root")
        }
    })?;
    let tracepoint = event.attr();
    let mut attr = *switch;
    attr.type_ = tracepoint.type_;
    attr.config = tracepoint.config;
    attr.set_context_switch(0);
    attr.set_exclude_kernel(0);
    if attr.sample_stack_user > WAKER_STACK_COPY {
        attr.sample_stack_user = WAKER_STACK_COPY;
    }
    Ok(attr)
}

/// The profile record that says whether wake-ups are recorded, and if not why.
pub(crate) fn wakers_record(wakers: &Result<(), String>) -> Record {
    Record::Lock(LockRecord::Wakers {
        recorded: wakers.is_ok(),
        note: wakers.clone().err().unwrap_or_default(),
    })
}

/// True when `op` (a futex call's second argument) wakes or requeues waiters: `FUTEX_WAKE` 1,
/// `FUTEX_REQUEUE` 3, `FUTEX_CMP_REQUEUE` 4, `FUTEX_WAKE_OP` 5, `FUTEX_UNLOCK_PI` 7,
/// `FUTEX_WAKE_BITSET` 10, `FUTEX_CMP_REQUEUE_PI` 12 (flags masked off).
pub fn is_wake_op(op: u64) -> bool {
    matches!(op & 127, 1 | 3 | 4 | 5 | 7 | 10 | 12)
}

impl<W: Write> Recorder<W> {
    /// A sample of the wake-up sampler: a thread returning from a futex call that woke
    /// someone.
    pub(crate) fn wake_sample(&mut self, s: &rprof_perf::parse::Sample<'_>) -> io::Result<()> {
        let pid = s.pid.unwrap_or(0);
        let tid = s.tid.unwrap_or(pid);
        let args: Vec<u64> = s
            .regs_user
            .map(|r| {
                [x86_64::DI, x86_64::SI, x86_64::DX]
                    .iter()
                    .map_while(|&reg| r.get(reg))
                    .collect()
            })
            .unwrap_or_default();
        // Without the address the wake-up cannot be tied to a lock; the filter already keeps
        // only calls that woke someone, this keeps only wake operations.
        if !args.get(1).is_some_and(|&op| is_wake_op(op)) {
            return Ok(());
        }
        let (user, kernel, truncated, _) = self.unwind_sample(s)?;
        self.note_thread(pid, tid);
        self.note_lookups(&user, &kernel);
        self.note_bases(pid, &user)?;
        self.push(Record::Lock(LockRecord::Wake(Wake {
            time: s.time.unwrap_or(0),
            pid,
            tid,
            cpu: s.cpu.unwrap_or(0),
            args,
            user,
            kernel,
            truncated,
        })))
    }

    /// Writes where process `pid`'s ELF files are loaded, for those not written yet (a
    /// [`LockRecord::Base`] each), so that lock addresses in their data can be named. Looked
    /// at only when `user` (a stack of the process) holds a module not seen in its stacks
    /// before: a module's base is known once an address in it was unwound, and this runs for
    /// every off-CPU block.
    pub(crate) fn note_bases(&mut self, pid: u32, user: &[Address]) -> io::Result<()> {
        let mut new = false;
        for address in user {
            if let Some(module) = address.module {
                new |= self.bases_seen.insert((pid, module));
            }
        }
        if !new {
            return Ok(());
        }
        for (index, base) in self.unwinder.bases(pid) {
            if self.bases_written.contains(&(pid, index, base)) {
                continue;
            }
            self.bases_written.insert((pid, index, base));
            if let Some(module) = self.module_id(index)? {
                self.push(Record::Lock(LockRecord::Base { pid, module, base }))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: wake operations with and without FUTEX_PRIVATE_FLAG; waits are not.
    #[test]
    fn wake_ops() {
        assert!(is_wake_op(1));
        assert!(is_wake_op(129));
        assert!(is_wake_op(138));
        assert!(!is_wake_op(128));
        assert!(!is_wake_op(137));
        assert!(!is_wake_op(9 | 256));
    }
}
