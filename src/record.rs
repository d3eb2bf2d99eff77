//! `rprof record`: run COMMAND (or attach to a running process) with samplers on every CPU,
//! unwind each sample as it arrives, and stream the result into a self-contained profile.
//!
//! Glue only: the flags become validated [`rprof_record::session::Options`] ([`plan`]),
//! [`rprof_record::record`] records (its notes are printed as they come), the summary is
//! printed here, and every [`RecordError`] becomes one line and an exit code. Addresses are
//! named while the target runs and at the end by [`crate::naming::Live`].

mod plan;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rprof_record::{RecordError, Stats};

use crate::exit::{usage, with_code, FAILURE, NOT_EXECUTABLE, NOT_FOUND};

pub use plan::parse_duration;

/// Arguments of `rprof record`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  rprof record -- ./my-program --its-args\n  rprof record -F 4999 --call-graph fp -o prof.data -- make -j2\n  rprof record -p 1234 --duration 10"
)]
pub struct Args {
    /// Where to write the profile.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "rprof.data"
    )]
    output: PathBuf,

    /// Samples per second per thread (default 999; clamped to kernel.perf_event_max_sample_rate).
    #[arg(
        short = 'F',
        long = "freq",
        value_name = "HZ",
        conflicts_with = "period"
    )]
    freq: Option<u64>,

    /// Sample every N events instead of at a frequency (default for tracepoints: 1).
    #[arg(short = 'c', long = "period", value_name = "N")]
    period: Option<u64>,

    /// The event that triggers samples: cpu-clock, task-clock, page-faults, cycles (with a PMU),
    /// a tracepoint such as sched:sched_switch, ...
    #[arg(
        short = 'e',
        long = "event",
        value_name = "EVENT",
        default_value = "cpu-clock"
    )]
    event: String,

    /// How to capture call stacks: dwarf[,SIZE] (user registers + SIZE bytes of user stack,
    /// unwound with DWARF CFI; default SIZE 65528), fp (frame pointers), or none.
    #[arg(long = "call-graph", value_name = "MODE", default_value = "dwarf")]
    call_graph: String,

    /// Stop after this many seconds (with COMMAND: COMMAND then gets SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Attach to this running process (all its threads) instead of running COMMAND.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<String>,

    /// Ring-buffer size per CPU: data pages (a power of two) or a size such as 512K or 16M.
    #[arg(short = 'm', long = "mmap-pages", value_name = "PAGES")]
    mmap_pages: Option<String>,

    /// Sample user space only (no kernel frames).
    #[arg(long = "no-kernel")]
    no_kernel: bool,

    /// Also record off-CPU time: every time a thread leaves the CPU, its stack, why and for
    /// how long (see `rprof report --off-cpu`, docs/off-cpu.md).
    #[arg(long = "off-cpu")]
    off_cpu: bool,

    /// Record allocations instead of CPU samples: every call of the C library's allocator
    /// functions (uprobes), stacks for a sample of them; see `rprof report`, docs/alloc.md.
    #[arg(long, conflicts_with_all = ["freq", "period", "event", "call_graph", "off_cpu", "mmap_pages", "no_kernel"])]
    alloc: bool,

    /// With --alloc: a stack for about one call per BYTES allocated (default 512K; 0: every
    /// call).
    #[arg(long = "alloc-sample", value_name = "BYTES", requires = "alloc")]
    alloc_sample: Option<String>,

    /// The command to run and its arguments (after `--`).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        num_args = 0..
    )]
    command: Vec<OsString>,
}

/// Prints a note: `rprof: note: ...`.
fn note(message: impl std::fmt::Display) {
    eprintln!("rprof: note: {message}");
}

/// Runs `rprof record`; returns COMMAND's exit code (0 for `-p`).
pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.alloc {
        return crate::alloc::record(&plan::validate_alloc(args)?);
    }
    let options = plan::validate(args)?;
    let naming = crate::naming::Live::start();
    let outcome = rprof_record::record(&options, naming, &mut |n| note(n)).map_err(record_error)?;
    let summary = &outcome.summary;
    print_summary(
        &summary.stats,
        summary.elapsed,
        summary.size,
        &options.output,
    );
    Ok(outcome.exit_code)
}

/// A recording's failure with its exit code: COMMAND's shell code (127, 126) when it could not
/// be started, 2 for no COMMAND, else 1.
fn record_error(e: RecordError) -> anyhow::Error {
    match e {
        RecordError::NoCommand => usage(e),
        RecordError::Launch(e) => launch_error(e),
        RecordError::Create(e) => with_code(FAILURE, e),
        e @ (RecordError::NotStarted { .. } | RecordError::Unfinished { .. }) => {
            with_code(FAILURE, e)
        }
        e => anyhow::Error::new(e),
    }
}

/// A launch failure, with the shell's exit code when there is one (127, 126).
fn launch_error(e: rprof_launch::LaunchError) -> anyhow::Error {
    match e.exit_code() {
        Some(NOT_FOUND) => with_code(NOT_FOUND, e),
        Some(NOT_EXECUTABLE) => with_code(NOT_EXECUTABLE, e),
        Some(code) => with_code(code, e),
        None => anyhow::Error::new(e),
    }
}

fn print_summary(stats: &Stats, elapsed: Duration, size: u64, path: &Path) {
    let truncated_share = if stats.samples > 0 {
        100.0 * stats.truncated as f64 / stats.samples as f64
    } else {
        0.0
    };
    eprintln!(
        "rprof: recorded {:.2} s: {}, {}, {}, {}, {} ({:.1}%); wrote {} to {}",
        elapsed.as_secs_f64(),
        count(stats.samples, "sample"),
        count(stats.threads.len() as u64, "thread"),
        count(stats.processes.len() as u64, "process"),
        count(stats.lost, "lost sample"),
        count(stats.truncated, "truncated stack"),
        truncated_share,
        human_size(size),
        path.display()
    );
    if stats.off_cpu_blocks > 0 {
        note(format!(
            "{} off the CPU ({} without a stack)",
            count(stats.off_cpu_blocks, "block"),
            stats.off_cpu_without_stack
        ));
    }
    if stats.unpaired_switches > 0 {
        note(format!(
            "{} context-switch records did not pair up (records lost): their off-CPU time is missing",
            stats.unpaired_switches
        ));
    }
    if stats.throttled > 0 {
        note(format!(
            "the kernel throttled sampling {} times (kernel.perf_cpu_time_max_percent); consider a lower -F",
            stats.throttled
        ));
    }
    if stats.unwind_failed > 0 {
        note(format!(
            "{} of the truncated stacks stopped because unwinding failed (no unwind information or an unexpected stack), not because the stack copy ran out",
            stats.unwind_failed
        ));
    }
    if stats.bad_records > 0 || stats.ring_errors > 0 {
        note(format!(
            "{} malformed perf records and {} ring-buffer inconsistencies were skipped",
            stats.bad_records, stats.ring_errors
        ));
    }
}

/// `n` and `noun`, plural when `n` is not 1 ("1 thread", "2 processes").
fn count(n: u64, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_plural_unless_one() {
        assert_eq!(count(1, "thread"), "1 thread");
        assert_eq!(count(0, "thread"), "0 threads");
        assert_eq!(count(1, "process"), "1 process");
        assert_eq!(count(3, "process"), "3 processes");
        assert_eq!(count(2, "lost sample"), "2 lost samples");
    }
}
