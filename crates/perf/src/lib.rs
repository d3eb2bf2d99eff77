//! rprof-perf: the kernel side of sampling, as seen from user space.
//!
//! - [`parse`]: perf ring-buffer records (SAMPLE, MMAP2, COMM, FORK, EXIT, LOST, THROTTLE,
//!   LOST_SAMPLES, SWITCH) from bytes into typed, borrowed records. Pure: no I/O, every read
//!   bounds-checked, malformed input is an error.
//! - [`ring`]: the mmap'ed ring buffer (`data_head`/`data_tail` protocol), drained in place.
//! - [`attr`]: the sampling settings of a `perf_event_attr` (sample type, rate, call-graph mode,
//!   side records, wakeups).
//! - [`open`]: opening the samplers of a recording (per CPU for a launched command, per thread ×
//!   CPU with redirected output when attaching to a running process), with companion events
//!   (the off-CPU sampler) writing into the same buffers.
//!
//! What it leaves to others: event names and the `perf_event_open` syscall itself
//! (`rprof-events`), unwinding the sampled stacks (`rprof-unwind`), and what to do with the
//! records (the `rprof record` command).

// The sampled user registers (`sample_regs_user`) use x86-64's perf register numbers
// (`parse::x86_64`); on another architecture rprof would silently record the wrong registers.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "rprof-perf supports x86-64 only: its sampled user registers (IP, SP, BP) are x86-64 perf \
     register numbers; another architecture needs its own register layout in parse.rs and attr.rs"
);

pub mod attr;
pub mod open;
pub mod parse;
pub mod ring;

pub use attr::{
    sampling_attr, switch_attr, with_argument_registers, CallGraph, Rate, SamplingOptions,
    MAX_STACK_COPY,
};
pub use open::{list_threads, thread_name, Companion, CpuBuffer, SamplerError, Samplers};
pub use parse::{parse_record, ParseError, PerfRecord, SampleFormat};
pub use ring::{Batch, MapError, RingBuffer, RingError};
