//! What `--off-cpu` records for lock analyses (`rprof report --locks`, issue 17), beside the
//! off-CPU blocks themselves:
//!
//! - **Wake-ups**: a companion event on the `syscalls:sys_enter_futex` tracepoint, filtered in
//!   the kernel to the waking operations (`FUTEX_WAKE`, `FUTEX_WAKE_BITSET`, `FUTEX_WAKE_OP`,
//!   `FUTEX_UNLOCK_PI`, the requeues), sampled with the same stack capture as the off-CPU
//!   sampler. It fires in the waker's context at the system call's entry, so its user
//!   registers hold the call's arguments (the futex word's address in DI) and its stack is the
//!   code that released the lock. Each becomes a [`Wake`] record. Opening it needs tracefs
//!   (root) and kernel-space sampling; without them the profile says so ([`LockRecord::Wakers`]).
//! - **Module bases**: for each process with a blocked thread, where its ELF files are loaded
//!   (process address of SVMA 0, [`LockRecord::Base`]), so that a lock word in a module's data
//!   (a global or static mutex) can be named from its symbol tables when the report is made.
//!
//! It leaves the analysis and naming to `rprof-locks`, the ring buffers to `rprof-perf`.

use std::io::{self, Write};

use perf_event_open_sys::bindings::perf_event_attr;
use rprof_perf::parse::x86_64;
use rprof_profile::{LockRecord, Record, Wake};

use crate::Recorder;

/// The tracepoint of the wake-up sampler, as its companion event is named.
pub const WAKER_EVENT: &str = "syscalls:sys_enter_futex";

/// The kernel-side filter of the wake-up sampler: the waking futex operations, with and
/// without `FUTEX_PRIVATE_FLAG` (128): `FUTEX_WAKE` 1, `FUTEX_REQUEUE` 3, `FUTEX_CMP_REQUEUE`
/// 4, `FUTEX_WAKE_OP` 5, `FUTEX_UNLOCK_PI` 7, `FUTEX_WAKE_BITSET` 10, `FUTEX_CMP_REQUEUE_PI`
/// 12. Waits (the other half of the futex calls) are already off-CPU blocks.
pub const WAKE_FILTER: &str = "op == 1 || op == 129 || op == 3 || op == 131 || op == 4 || \
     op == 132 || op == 5 || op == 133 || op == 7 || op == 135 || op == 10 || op == 138 || \
     op == 12 || op == 140";

/// The attr of the wake-up sampler: the off-CPU sampler's (`switch`: same sample layout, same
/// stack copy) on the `sys_enter_futex` tracepoint, counting in kernel space (where the
/// tracepoint fires). Err: why it cannot be opened (tracefs not readable, no such tracepoint).
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
    Ok(attr)
}

/// The profile record that says whether wake-ups are recorded, and if not why.
pub(crate) fn wakers_record(wakers: &Result<(), String>) -> Record {
    Record::Lock(LockRecord::Wakers {
        recorded: wakers.is_ok(),
        note: wakers.clone().err().unwrap_or_default(),
    })
}

impl<W: Write> Recorder<W> {
    /// A sample of the wake-up sampler: a thread entering a waking futex call.
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
        if args.is_empty() {
            // Without the address the wake-up cannot be tied to a lock.
            return Ok(());
        }
        let (user, kernel, truncated, _) = self.unwind_sample(s)?;
        self.note_thread(pid, tid);
        self.lookups.add_stack(&user, &kernel);
        self.note_bases(pid)?;
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
    /// [`LockRecord::Base`] each), so that lock addresses in their data can be named.
    pub(crate) fn note_bases(&mut self, pid: u32) -> io::Result<()> {
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
