//! `rprof stat`: count events of COMMAND (or of a running process) like `perf stat`.
//!
//! Glue only: the flags become validated [`rprof_stat::Options`], `rprof_stat::run` counts,
//! `rprof_stat::render` formats. The table goes to stderr (as perf does, so COMMAND's stdout
//! stays clean) unless `-o FILE` says otherwise.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use rprof_fs::{Access, NewFile};
use rprof_stat::{Options, StatError, Style, What};

use crate::exit::{event_error, usage, with_code, FAILURE};

/// Arguments of `rprof stat`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  rprof stat -- ./my-program\n  rprof stat -e task-clock,page-faults,sched:sched_switch -r 5 -- make -j2\n  rprof stat -e cycles:u,instructions:u -x, -- ./bench\n  rprof stat -p 1234 --duration 10 --per-thread\n\nEvents: cycles instructions cache-references cache-misses branches branch-misses bus-cycles\nref-cycles stalled-cycles-frontend stalled-cycles-backend, task-clock cpu-clock page-faults (faults)\ncontext-switches (cs) cpu-migrations (migrations) minor-faults major-faults, cache events such as\nL1-dcache-load-misses LLC-loads dTLB-load-misses, raw rNNNN, tracepoints subsystem:name;\nmodifiers :u (user) :k (kernel) :h (hypervisor)."
)]
pub struct Args {
    /// Events to count, comma-separated; may be repeated (default: perf stat's set).
    #[arg(short = 'e', long = "event", value_name = "EVENT[,EVENT...]")]
    events: Vec<String>,

    /// Run COMMAND N times; show the mean and the relative standard deviation of the mean.
    #[arg(short = 'r', long = "repeat", value_name = "N", default_value_t = 1)]
    repeat: u32,

    /// Print one line per counter with fields separated by SEP (perf's -x format).
    #[arg(
        short = 'x',
        long = "field-separator",
        value_name = "SEP",
        conflicts_with = "json"
    )]
    separator: Option<String>,

    /// Print one JSON object per counter line.
    #[arg(short = 'j', long = "json")]
    json: bool,

    /// Split the counts by thread.
    #[arg(long = "per-thread")]
    per_thread: bool,

    /// Count an existing process (all its threads) instead of running COMMAND.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<String>,

    /// With -p: stop after this many seconds (else when the process exits or on Ctrl-C).
    #[arg(long, value_name = "SECS", requires = "pid")]
    duration: Option<f64>,

    /// Write the counts to FILE instead of stderr.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// The command to run and its arguments (after `--`).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        num_args = 0..
    )]
    command: Vec<OsString>,
}

/// Validated flags: what to count, how to print it, where.
struct Plan {
    options: Options,
    style: Style,
    output: Option<PathBuf>,
}

fn plan(args: Args) -> anyhow::Result<Plan> {
    let events = if args.events.is_empty() {
        rprof_stat::default_events()
    } else {
        let mut events = Vec::new();
        for spec in &args.events {
            events.extend(rprof_events::parse_list(spec).map_err(event_error)?);
        }
        events
    };
    if args.repeat == 0 {
        return Err(usage("-r/--repeat must be at least 1"));
    }
    let what = match (&args.pid, args.command.is_empty()) {
        (Some(_), false) => {
            return Err(usage(
                "give either -p PID or a COMMAND, not both (the COMMAND would not be counted)",
            ))
        }
        (None, true) => {
            return Err(usage(
                "nothing to count: give a COMMAND after `--` or -p PID (see rprof stat --help)",
            ))
        }
        (Some(pid), true) => {
            let pid: u32 = pid
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=i32::MAX as u32).contains(p))
                .ok_or_else(|| usage(format!("invalid process id '{pid}'")))?;
            if args.repeat > 1 {
                return Err(usage("-r/--repeat needs a COMMAND, not -p"));
            }
            let duration = args
                .duration
                .map(crate::record::parse_duration)
                .transpose()?;
            What::Pid { pid, duration }
        }
        (None, false) => What::Command {
            argv: args.command,
            repeat: args.repeat as usize,
        },
    };
    if args.per_thread && args.repeat > 1 {
        return Err(usage("--per-thread cannot be combined with -r/--repeat"));
    }
    let style = match (args.separator, args.json) {
        (Some(sep), _) if sep.is_empty() => return Err(usage("-x needs a non-empty separator")),
        (Some(sep), _) => Style::Separated(sep),
        (None, true) => Style::Json,
        (None, false) => Style::Table,
    };
    Ok(Plan {
        options: Options {
            events,
            what,
            per_thread: args.per_thread,
        },
        style,
        output: args.output,
    })
}

fn stat_error(e: StatError) -> anyhow::Error {
    match e.exit_code() {
        Some(code) => with_code(code, e),
        None => with_code(FAILURE, e),
    }
}

/// Runs `rprof stat`; returns COMMAND's exit code (128+N if it was killed by signal N).
pub fn run(args: Args) -> anyhow::Result<i32> {
    let plan = plan(args)?;
    // Create the output file before COMMAND runs: a typo must not cost a long measurement. It
    // is written beside the destination and moved there with the counts (`rprof-fs`), so a
    // failed run leaves an existing file alone and a planted link is replaced, not followed.
    let file = match &plan.output {
        Some(path) => {
            let file = NewFile::create(path, Access::Shared)?;
            if let Some(problem) = file.handover_problem() {
                eprintln!("rprof: note: {problem}");
            }
            Some(file)
        }
        None => None,
    };
    let outcome = rprof_stat::run(&plan.options).map_err(stat_error)?;
    for note in &outcome.notes {
        eprintln!("rprof: note: {note}");
    }
    let text = rprof_stat::render(&outcome.summary, &plan.style);
    match file {
        Some(mut f) => {
            let path = f.path().display().to_string();
            f.write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .with_context(|| format!("cannot write the counts to '{path}'"))?;
            f.commit()?;
        }
        None => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes())
                .and_then(|()| err.flush())
                .context("cannot write the counts to standard error")?;
        }
    }
    Ok(outcome.exit_code)
}
