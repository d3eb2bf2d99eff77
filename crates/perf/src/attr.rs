//! The sampling half of a `perf_event_attr`: what each sample carries, how often, which side
//! records (mmap, comm, task) come along, and when the reader is woken up.

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};

use crate::parse::x86_64;

/// The largest user-stack copy the kernel accepts (`sample_stack_user` must be 8-byte aligned
/// and below `u16::MAX`, because a whole sample must fit in a record's 16-bit size).
pub const MAX_STACK_COPY: u32 = 65528;

/// The user registers sampled for unwinding on x86_64: IP, SP and BP.
pub const REGS_USER_MASK: u64 = (1 << x86_64::IP) | (1 << x86_64::SP) | (1 << x86_64::BP);

/// The user registers of an off-CPU recording: [`REGS_USER_MASK`] plus the first three argument
/// registers (DI, SI, DX), which at a switch-out inside a system call hold its first three
/// arguments (for `futex`: the lock's address, the operation, the expected value).
pub const REGS_ARGS_MASK: u64 =
    REGS_USER_MASK | (1 << x86_64::DI) | (1 << x86_64::SI) | (1 << x86_64::DX);

/// How samples get their call stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallGraph {
    /// User registers and a copy of `stack_size` bytes of the user stack, unwound with DWARF
    /// CFI afterwards; the kernel records only the kernel part of the callchain.
    Dwarf {
        /// Bytes of user stack copied per sample (a multiple of 8, at most [`MAX_STACK_COPY`]).
        stack_size: u32,
    },
    /// The kernel walks frame pointers and records the whole callchain, user part included.
    FramePointer,
    /// No user call stack: the user registers only (their IP), plus the kernel callchain.
    None,
}

/// How often to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Samples per second (the kernel adjusts the period).
    Frequency(u64),
    /// One sample every this many events.
    Period(u64),
}

/// Everything about sampling that is not the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingOptions {
    /// How often.
    pub rate: Rate,
    /// Call stacks.
    pub call_graph: CallGraph,
    /// Start disabled and let the kernel enable the event when the target calls `execve`
    /// (for a command launched by us); otherwise the event counts as soon as it is opened.
    pub enable_on_exec: bool,
    /// Follow threads and processes created by the target (`inherit`).
    pub inherit: bool,
    /// Wake the reader when this many bytes are waiting in the ring buffer.
    pub wakeup_bytes: u32,
    /// Ask for MMAP2 records that carry the mapped file's build id instead of its device and
    /// inode (`attr.build_id`, Linux 5.12+; older kernels refuse the attr with EINVAL).
    pub mmap_build_id: bool,
}

/// The `sample_type` rprof uses for a call-graph mode.
pub fn sample_type(call_graph: CallGraph) -> u64 {
    let mut bits = sys::PERF_SAMPLE_IDENTIFIER
        | sys::PERF_SAMPLE_IP
        | sys::PERF_SAMPLE_TID
        | sys::PERF_SAMPLE_TIME
        | sys::PERF_SAMPLE_CPU
        | sys::PERF_SAMPLE_PERIOD
        | sys::PERF_SAMPLE_CALLCHAIN;
    match call_graph {
        CallGraph::Dwarf { .. } => {
            bits |= sys::PERF_SAMPLE_REGS_USER | sys::PERF_SAMPLE_STACK_USER;
        }
        CallGraph::None => bits |= sys::PERF_SAMPLE_REGS_USER,
        CallGraph::FramePointer => {}
    }
    u64::from(bits)
}

/// Completes `base` (an event's attr: type, config and exclude bits set) for sampling.
///
/// Timestamps use `CLOCK_MONOTONIC`, so that records synthesized from `/proc` can be stamped
/// with `clock_gettime(CLOCK_MONOTONIC)` and sort among the kernel's records.
pub fn sampling_attr(base: &perf_event_attr, options: &SamplingOptions) -> perf_event_attr {
    let mut attr = *base;
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    match options.rate {
        Rate::Frequency(hz) => {
            attr.set_freq(1);
            attr.__bindgen_anon_1.sample_freq = hz;
        }
        Rate::Period(period) => {
            attr.set_freq(0);
            attr.__bindgen_anon_1.sample_period = period;
        }
    }
    attr.sample_type = sample_type(options.call_graph);
    match options.call_graph {
        CallGraph::Dwarf { stack_size } => {
            attr.sample_regs_user = REGS_USER_MASK;
            attr.sample_stack_user = stack_size.min(MAX_STACK_COPY) & !7;
            attr.set_exclude_callchain_user(1);
        }
        CallGraph::None => {
            attr.sample_regs_user = REGS_USER_MASK;
            attr.set_exclude_callchain_user(1);
        }
        CallGraph::FramePointer => {}
    }
    attr.set_disabled(u64::from(options.enable_on_exec));
    attr.set_enable_on_exec(u64::from(options.enable_on_exec));
    attr.set_inherit(u64::from(options.inherit));
    attr.set_mmap(1);
    attr.set_mmap2(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_task(1);
    attr.set_build_id(u64::from(options.mmap_build_id));
    attr.set_sample_id_all(1);
    // Software events and tracepoints have no skid to correct: precise_ip must stay 0 there,
    // and without a PMU there is nothing more precise to ask for anyway.
    attr.set_precise_ip(0);
    attr.set_use_clockid(1);
    attr.clockid = libc::CLOCK_MONOTONIC;
    attr.set_watermark(1);
    attr.__bindgen_anon_2.wakeup_watermark = options.wakeup_bytes.max(1);
    attr
}

/// Adds the argument registers ([`REGS_ARGS_MASK`]) to an attr that samples user registers
/// (no change in frame-pointer mode, which samples none). Every event writing into one ring
/// buffer must have the same register mask, since the mask decides the records' layout.
pub fn with_argument_registers(attr: &mut perf_event_attr) {
    if attr.sample_regs_user != 0 {
        attr.sample_regs_user |= REGS_ARGS_MASK;
    }
}

/// The attr of the off-CPU sampler that goes with the sampler `main` (see [`sampling_attr`]):
/// the software event `context-switches` with period 1, whose samples are taken in the thread
/// that is leaving the CPU, with the same sample layout and stack capture as `main` (so both
/// can share a ring buffer), plus `context_switch` (PERF_RECORD_SWITCH records at every switch
/// out and in of the followed threads). It asks for no MMAP/COMM/task records: `main` brings
/// those, and a second copy of each would be written into the same buffer.
pub fn switch_attr(main: &perf_event_attr) -> perf_event_attr {
    let mut attr = *main;
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.config = u64::from(sys::PERF_COUNT_SW_CONTEXT_SWITCHES);
    attr.set_freq(0);
    attr.__bindgen_anon_1.sample_period = 1;
    attr.set_context_switch(1);
    attr.set_mmap(0);
    attr.set_mmap2(0);
    attr.set_comm(0);
    attr.set_comm_exec(0);
    attr.set_task(0);
    attr.set_build_id(0);
    attr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::SampleFormat;

    fn base() -> perf_event_attr {
        // SAFETY: all-zero is a valid perf_event_attr.
        let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
        attr.type_ = sys::PERF_TYPE_SOFTWARE;
        attr.config = u64::from(sys::PERF_COUNT_SW_CPU_CLOCK);
        attr
    }

    fn options(call_graph: CallGraph) -> SamplingOptions {
        SamplingOptions {
            rate: Rate::Frequency(999),
            call_graph,
            enable_on_exec: true,
            inherit: true,
            wakeup_bytes: 4096,
            mmap_build_id: true,
        }
    }

    #[test]
    fn dwarf_mode_samples_registers_and_stack() {
        let attr = sampling_attr(
            &base(),
            &options(CallGraph::Dwarf {
                stack_size: 100_000,
            }),
        );
        assert_eq!(attr.sample_stack_user, MAX_STACK_COPY);
        assert_eq!(attr.sample_regs_user, REGS_USER_MASK);
        assert_eq!(attr.exclude_callchain_user(), 1);
        assert_ne!(attr.sample_type & u64::from(sys::PERF_SAMPLE_STACK_USER), 0);
        assert_eq!(attr.freq(), 1);
        // SAFETY: freq is set, so the union holds sample_freq.
        assert_eq!(unsafe { attr.__bindgen_anon_1.sample_freq }, 999);
        assert_eq!(attr.disabled(), 1);
        assert_eq!(attr.enable_on_exec(), 1);
        assert_eq!(attr.inherit(), 1);
        assert_eq!(attr.mmap2(), 1);
        assert_eq!(attr.comm_exec(), 1);
        assert_eq!(attr.task(), 1);
        assert_eq!(attr.build_id(), 1);
        let format = SampleFormat::from_attr(&attr);
        assert!(format.sample_id_all);
        // TID, TIME, CPU, IDENTIFIER.
        assert_eq!(format.sample_id_size(), 32);
    }

    /// Issue 11: the off-CPU sampler shares the main sampler's layout (so that one ring buffer
    /// parses with one format), samples every context switch, asks for switch records and no
    /// side records of its own.
    #[test]
    fn switch_sampler_shares_the_layout() {
        let mut main = sampling_attr(&base(), &options(CallGraph::Dwarf { stack_size: 8192 }));
        with_argument_registers(&mut main);
        assert_eq!(main.sample_regs_user, REGS_ARGS_MASK);
        let attr = switch_attr(&main);
        assert_eq!(attr.sample_type, main.sample_type);
        assert_eq!(attr.sample_regs_user, main.sample_regs_user);
        assert_eq!(attr.sample_stack_user, main.sample_stack_user);
        assert_eq!(attr.config, u64::from(sys::PERF_COUNT_SW_CONTEXT_SWITCHES));
        assert_eq!(attr.freq(), 0);
        // SAFETY: freq is clear, so the union holds sample_period.
        assert_eq!(unsafe { attr.__bindgen_anon_1.sample_period }, 1);
        assert_eq!(attr.context_switch(), 1);
        assert_eq!(attr.mmap2() + attr.comm() + attr.task() + attr.mmap(), 0);
        assert_eq!(attr.inherit(), main.inherit());
        assert_eq!(attr.enable_on_exec(), main.enable_on_exec());
        assert_eq!(attr.use_clockid(), 1);
        // Frame-pointer mode samples no registers: none are added.
        let mut fp = sampling_attr(&base(), &options(CallGraph::FramePointer));
        with_argument_registers(&mut fp);
        assert_eq!(fp.sample_regs_user, 0);
    }

    #[test]
    fn stack_size_is_aligned() {
        let attr = sampling_attr(&base(), &options(CallGraph::Dwarf { stack_size: 8191 }));
        assert_eq!(attr.sample_stack_user, 8184);
    }

    #[test]
    fn frame_pointer_mode_keeps_the_user_callchain() {
        let mut opts = options(CallGraph::FramePointer);
        opts.rate = Rate::Period(10_000);
        opts.enable_on_exec = false;
        let attr = sampling_attr(&base(), &opts);
        assert_eq!(attr.exclude_callchain_user(), 0);
        assert_eq!(attr.sample_type & u64::from(sys::PERF_SAMPLE_REGS_USER), 0);
        assert_eq!(attr.freq(), 0);
        // SAFETY: freq is clear, so the union holds sample_period.
        assert_eq!(unsafe { attr.__bindgen_anon_1.sample_period }, 10_000);
        assert_eq!(attr.disabled(), 0);
    }
}
