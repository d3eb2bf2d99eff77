//! `rprof latency`: percentiles and histograms of how long a function's calls take, through
//! uprobes (see docs/latency.md).
//!
//! Glue only: the flags become [`rprof_latency::Options`], `rprof_latency::run` measures, the
//! summaries are printed here. The text summary goes to stderr (COMMAND's stdout stays clean),
//! `--json` to stdout, `-o FILE` gets the histograms (written through rprof-fs).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rprof_fs::{Access, NewFile};
use rprof_latency::stats::{render_histograms, render_json, render_text, Report};
use rprof_latency::{End, LatencyError, Note, Options, What};

use crate::exit::{usage, with_code, FAILURE, NOT_EXECUTABLE, NOT_FOUND};

/// Arguments of `rprof latency`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  rprof latency handle_request -- ./server\n  rprof latency 'app::server::handle' -p 1234 --interval 10\n  rprof latency libc:malloc libc:free --json -- ./bench\n  rprof latency ./build/libfoo.so:foo_parse -o parse.json -- ./app\n\nFUNCTION is a symbol of the executable (raw or demangled: Rust paths without hash, C++ names),\nLIBRARY:SYMBOL for a library the target maps (libc, libc.so.6, libfoo.so), or PATH:SYMBOL.\nProbes need root or CAP_PERFMON."
)]
pub struct Args {
    /// Functions to time (one entry and one return probe each).
    #[arg(value_name = "FUNCTION", required = true)]
    functions: Vec<String>,

    /// Attach to this running process instead of running COMMAND.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<String>,

    /// With -p: stop after this many seconds (else when the process exits or on Ctrl-C).
    #[arg(long, value_name = "SECS", requires = "pid")]
    duration: Option<f64>,

    /// Also print a summary of each interval of SECS seconds while the target runs.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,

    /// Also split each function's durations by thread.
    #[arg(long = "per-thread")]
    per_thread: bool,

    /// Print the summary as JSON on stdout (a `functions` array) instead of text on stderr.
    #[arg(long)]
    json: bool,

    /// Write the histograms to FILE (JSON, format in docs/latency.md).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Also show the caller stacks of the N slowest calls of each function (copies the user
    /// stack at every entry: more overhead per call).
    #[arg(long, value_name = "N")]
    stacks: Option<usize>,

    /// Do not measure the cost of a probed call at startup.
    #[arg(long = "no-calibrate")]
    no_calibrate: bool,

    /// The command to run and its arguments (after `--`).
    #[arg(value_name = "COMMAND", last = true)]
    command: Vec<OsString>,
}

fn plan(args: &Args) -> anyhow::Result<Options> {
    let what = match (&args.pid, args.command.is_empty()) {
        (Some(_), false) => return Err(usage("give either -p PID or a COMMAND, not both")),
        (None, true) => return Err(usage(
            "nothing to measure: give a COMMAND after `--` or -p PID (see rprof latency --help)",
        )),
        (Some(pid), true) => {
            let pid: u32 = pid
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=i32::MAX as u32).contains(p))
                .ok_or_else(|| usage(format!("invalid process id '{pid}'")))?;
            let duration = args
                .duration
                .map(crate::record::parse_duration)
                .transpose()?;
            What::Pid { pid, duration }
        }
        (None, false) => What::Command(args.command.clone()),
    };
    let interval = match args.interval {
        Some(s) if (0.1..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(usage(format!(
                "--interval {s}: give a number of seconds from 0.1 to 86400"
            )))
        }
        None => None,
    };
    Ok(Options {
        functions: args.functions.clone(),
        what,
        interval,
        per_thread: args.per_thread,
        calibrate: !args.no_calibrate,
        stacks: match args.stacks {
            Some(0) | Some(1001..) => {
                return Err(usage("--stacks N: give a number of calls from 1 to 1000"))
            }
            Some(n) => n,
            None => 0,
        },
    })
}

fn latency_error(e: LatencyError) -> anyhow::Error {
    match e {
        LatencyError::Usage(_) => usage(e),
        LatencyError::Launch(e) => match e.exit_code() {
            Some(NOT_FOUND) => with_code(NOT_FOUND, e),
            Some(NOT_EXECUTABLE) => with_code(NOT_EXECUTABLE, e),
            Some(code) => with_code(code, e),
            None => with_code(FAILURE, e),
        },
        e => with_code(FAILURE, e),
    }
}

fn print(report: &Report, args: &Args) -> anyhow::Result<()> {
    if args.json {
        let mut out = std::io::stdout().lock();
        let text = render_json(report, args.per_thread).to_string();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .context("cannot write the summary to standard output")?;
    } else {
        let mut err = std::io::stderr().lock();
        err.write_all(render_text(report, args.per_thread).as_bytes())
            .and_then(|()| err.flush())
            .context("cannot write the summary to standard error")?;
    }
    Ok(())
}

/// Runs `rprof latency`; returns COMMAND's exit code (128+N if killed by signal N), or 0.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let options = plan(&args)?;
    // Created before COMMAND runs: a typo in the path must not cost a measurement.
    let file = match &args.output {
        Some(path) => {
            let file = NewFile::create(path, Access::Shared)?;
            if let Some(problem) = file.handover_problem() {
                eprintln!("rprof: note: {problem}");
            }
            Some(file)
        }
        None => None,
    };
    let mut print_failed = None;
    let outcome = rprof_latency::run(&options, |note| match note {
        Note::Message(m) => eprintln!("rprof: {m}"),
        Note::Interval(report) => {
            if let Err(e) = print(&report, &args) {
                print_failed.get_or_insert(e);
            }
        }
    })
    .map_err(latency_error)?;
    if let Some(e) = print_failed {
        return Err(e);
    }
    print(&outcome.report, &args)?;
    if let Some(mut f) = file {
        let path = f.path().display().to_string();
        let text = render_histograms(&outcome.report, args.per_thread).to_string();
        writeln!(f.file(), "{text}")
            .and_then(|()| f.flush())
            .with_context(|| format!("cannot write the histograms to '{path}'"))?;
        f.commit()?;
    }
    Ok(match outcome.end {
        End::Command(exit) => exit.shell_code(),
        End::Exited | End::Duration | End::Interrupted(_) => 0,
    })
}
