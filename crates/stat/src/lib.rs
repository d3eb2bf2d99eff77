//! rprof-stat: counting events like `perf stat`.
//!
//! Counters that feed a ratio are opened as one group (so the ratio is over the same time),
//! with `PERF_FORMAT_GROUP | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING | ID`, inherited by every
//! thread and child of COMMAND, enabled at its `execve`. Multiplexed counts are scaled by
//! `time_enabled / time_running` and shown with the share of time they ran. `-r N` gives the
//! mean and perf's relative spread (the standard deviation of the mean, in % of the mean).
//! `--per-thread` splits COMMAND's counts by thread through the READ records the kernel writes
//! at each thread's exit (`inherit_stat`); with `-p` each existing thread has its own counters.
//!
//! Layers: [`plan`] (grouping), [`read`] (read format), [`summary`] (statistics),
//! [`metrics`] (derived metrics) and [`format`] (table, `-x`, JSON) are pure and unit-tested on
//! recorded counter values; [`counters`] and [`runner`] make the syscalls. The `--per-thread`
//! ring buffer, its records and the thread list come from `rprof-perf`.
//!
//! What it leaves to others: event names (`rprof-events`), perf ring buffers, record and
//! read-format parsing (`rprof-perf`), starting COMMAND and signals
//! (`rprof-launch`), the command line and exit codes (the `rprof` binary).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod counters;
pub mod format;
pub mod metrics;
pub mod plan;
pub mod read;
pub mod runner;
pub mod summary;

use std::ffi::OsString;
use std::time::Duration;

use rprof_events::{Event, OpenError};
use rprof_launch::{Exit, LaunchError};

pub use format::{render, Style};
pub use summary::{Summary, Target};

/// perf stat's default events.
pub const DEFAULT_EVENTS: &str =
    "task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,branches,branch-misses";

/// The default event set, parsed.
pub fn default_events() -> Vec<Event> {
    // Every name in DEFAULT_EVENTS is a built-in event, so parsing cannot fail; stay total anyway.
    rprof_events::parse_list(DEFAULT_EVENTS).unwrap_or_default()
}

/// What to count.
#[derive(Clone, Debug)]
pub enum What {
    /// Run this command line.
    Command {
        /// argv; argv[0] is looked up in PATH.
        argv: Vec<OsString>,
        /// How many times (`-r`), at least 1.
        repeat: usize,
    },
    /// Attach to this process.
    Pid {
        /// The process id.
        pid: u32,
        /// Stop after this long (else at exit or Ctrl-C).
        duration: Option<Duration>,
    },
}

/// Options of one `rprof stat`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Events to count (see [`default_events`]).
    pub events: Vec<Event>,
    /// What to count.
    pub what: What,
    /// Split counts by thread.
    pub per_thread: bool,
}

/// The result of a `rprof stat`.
#[derive(Debug)]
pub struct Outcome {
    /// What to print.
    pub summary: Summary,
    /// The exit code rprof should end with: COMMAND's (128+N if killed by signal N), or 0 for
    /// `-p` (130 etc. when interrupted).
    pub exit_code: i32,
    /// Things the user should know (user-space-only fallbacks, lost records).
    pub notes: Vec<String>,
}

/// Why `rprof stat` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatError {
    /// COMMAND could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The kernel refused a counter.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// `-p` of a process that does not exist.
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    /// Reading a counter failed.
    #[error("cannot read the counters: {0}")]
    Read(String),
    /// Another system call failed.
    #[error("cannot {what}: {error}")]
    Io {
        /// What rprof was doing.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

impl StatError {
    /// The exit code this error calls for, when it is not plain failure (1): 127/126 for a
    /// COMMAND that cannot be run, 2 for a `-p` PID that does not exist.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StatError::Launch(e) => e.exit_code(),
            StatError::NoSuchProcess(_) => Some(2),
            _ => None,
        }
    }
}

/// Counts `options.events` for the command or process, and summarizes.
pub fn run(options: &Options) -> Result<Outcome, StatError> {
    let mut set = counters::EventSet::new(options.events.clone());
    match &options.what {
        What::Command { argv, repeat } => {
            let target = Target::Command(
                argv.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            );
            let mut runs = Vec::new();
            let mut last_exit = Exit::Code(0);
            for _ in 0..(*repeat).max(1) {
                let (result, exit) = runner::run_command(&mut set, argv, options.per_thread)?;
                runs.push(result);
                last_exit = exit;
                if rprof_launch::interrupted().is_some() {
                    break;
                }
            }
            Ok(Outcome {
                summary: summary::summarize(target, set.events.clone(), &runs),
                exit_code: last_exit.shell_code(),
                notes: notes(set),
            })
        }
        What::Pid { pid, duration } => {
            let (result, end) = runner::attach(&mut set, *pid, *duration, options.per_thread)?;
            let exit_code = match end {
                runner::AttachEnd::Interrupted(sig) => 128 + sig,
                _ => 0,
            };
            Ok(Outcome {
                summary: summary::summarize(Target::Pid(*pid), set.events.clone(), &[result]),
                exit_code,
                notes: notes(set),
            })
        }
    }
}

/// The notes of a session: one line for all user-space-only fallbacks, then the others.
fn notes(set: counters::EventSet) -> Vec<String> {
    let mut out = Vec::new();
    if !set.downgraded.is_empty() {
        let level = rprof_events::paranoid().map_or("unknown".to_string(), |p| p.to_string());
        out.push(format!(
            "counting user space only ({}): the kernel refused to count kernel space \
             (kernel.perf_event_paranoid={level}; run as root or \
             `sudo sysctl kernel.perf_event_paranoid=1` to count it)",
            set.downgraded.join(", ")
        ));
    }
    let mut seen = std::collections::HashSet::new();
    out.extend(set.notes.into_iter().filter(|n| seen.insert(n.clone())));
    out
}
