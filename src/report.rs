//! `rprof report`: the hottest functions of a profile, as a table or JSON.
//!
//! Turns the command line into `rprof_report` options (terminal width and color decided here),
//! reads the profile, and renders it to stdout. Also home of what `rprof flame` shares with it:
//! opening a profile with helpful errors and turning `--thread`/`--pid` into a selection.
//! Names of the profile quoted in a message or warning are shown through `rprof_report::visible`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use rprof_profile::{Profile, ReadError};
use rprof_report::json::JsonOptions;
use rprof_report::top::TopOptions;
use rprof_report::{visible, Selection, SortBy, TableKind, Weight};

use crate::exit::usage;

/// Arguments of `rprof report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The profile to read.
    #[arg(short, long, value_name = "FILE", default_value = "rprof.data")]
    pub input: PathBuf,
    /// Show the N hottest functions (0: all) [default: a screenful on a terminal, else 50; all
    /// with --json]. With --locks: the waiting and waking sites listed per lock [default: 5].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Rank by samples in the function itself (self) or including its callees (total).
    #[arg(long, value_enum, default_value_t = Sort::SelfSamples)]
    pub sort: Sort,
    /// Show the samples and CPU time of each thread before the table.
    #[arg(long)]
    pub threads: bool,
    /// Only samples of this thread (a thread id; or a name: the samples taken under it).
    #[arg(long, value_name = "NAME|TID")]
    pub thread: Option<String>,
    /// Only samples of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print JSON (schema in docs/report.md) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Merge inlined functions into the functions they were inlined into.
    #[arg(long)]
    pub no_inline: bool,
    /// Rank source lines instead of functions.
    #[arg(long)]
    pub lines: bool,
    /// Fit the table into this many columns [default: the terminal's width; no limit when
    /// stdout is not a terminal].
    #[arg(long, value_name = "COLUMNS")]
    pub width: Option<usize>,
    /// When to color the output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Rank functions by off-CPU time, with why they waited (a profile recorded with
    /// `rprof record --off-cpu`).
    #[arg(long, conflicts_with = "wall")]
    pub off_cpu: bool,
    /// Report allocations (a profile of `rprof record --alloc`; the default for one): sites
    /// by calls, bytes, peak and leaks, and the summary (docs/alloc.md).
    #[arg(long, conflicts_with_all = ["off_cpu", "wall", "lines", "threads"])]
    pub alloc: bool,
    /// Rank functions by wall-clock time: on-CPU plus off-CPU (a profile recorded with
    /// `rprof record --off-cpu`).
    #[arg(long)]
    pub wall: bool,
    /// Lock contention: one row per lock (futex word) with its blocking waits, wait times,
    /// waiting threads and call sites, and who woke the waiters (a profile recorded with
    /// `rprof record --off-cpu`; docs/off-cpu.md).
    #[arg(long, conflicts_with_all = ["off_cpu", "wall", "lines", "threads", "thread", "alloc"])]
    pub locks: bool,
}

/// Ranking of the table.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Samples in the function itself.
    #[value(name = "self")]
    SelfSamples,
    /// Samples in the function and everything it called.
    Total,
}

/// When to use color.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Runs `rprof report`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let profile = open_profile(&args.input)?;
    if args.locks {
        return locks(&profile, &args);
    }
    if args.alloc {
        crate::alloc::require(&profile, &args.input)?;
    }
    if args.alloc || (profile.alloc_summary.is_some() && profile.samples.is_empty()) {
        return crate::alloc::report(&profile, args.json, args.top);
    }
    let (mut selection, label) =
        selection(&profile, args.thread.as_deref(), args.pid, args.no_inline)?;
    selection.weight = weight(&profile, "report", args.off_cpu, args.wall)?;
    let kind = if args.lines {
        TableKind::Lines
    } else {
        TableKind::Functions
    };
    let sort = match args.sort {
        Sort::SelfSamples => SortBy::SelfSamples,
        Sort::Total => SortBy::Total,
    };
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let options = JsonOptions {
            selection,
            kind,
            sort,
            limit: args.top.filter(|&n| n > 0),
        };
        rprof_report::json::render(&profile, &options, &mut out).map_err(stdout_error)?;
    } else {
        let size = if tty { terminal_size() } else { None };
        let limit = match args.top {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(size.map_or(50, |(_, rows)| rows.saturating_sub(10).max(10))),
        };
        let color = match args.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        let options = TopOptions {
            selection,
            kind,
            sort,
            limit,
            width: args.width.or(size.map(|(cols, _)| cols)),
            color,
            threads: args.threads,
            selection_label: label,
        };
        rprof_report::top::render(&profile, &options, &mut out).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

/// `rprof report --locks`.
fn locks(profile: &Profile, args: &Args) -> anyhow::Result<i32> {
    let analysis = lock_analysis(profile, "report", args.pid, args.top)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        rprof_locks::render::json(&analysis, &mut out).map_err(stdout_error)?;
    } else {
        rprof_locks::render::table(&analysis, &mut out).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

/// The lock analysis of `--locks` (`command` names the subcommand in messages); a usage
/// error (exit 2) on a profile without off-CPU data, or for a process it does not hold.
pub(crate) fn lock_analysis(
    profile: &Profile,
    command: &str,
    pid: Option<u32>,
    sites: Option<usize>,
) -> anyhow::Result<rprof_locks::Analysis> {
    if !profile.has_off_cpu() {
        return Err(usage(format!(
            "{command} --locks: the profile holds no off-CPU data (it was recorded without \
             --off-cpu); record it again with `rprof record --off-cpu -- COMMAND`"
        )));
    }
    if let Some(pid) = pid {
        selection(profile, None, Some(pid), false)?;
    }
    let options = rprof_locks::Options {
        pid,
        sites: sites.filter(|&n| n > 0).unwrap_or(5),
    };
    Ok(rprof_locks::analyze(profile, &options))
}

/// A failed write to stdout, saying it was stdout (`rprof report > /dev/full`). A broken pipe
/// stays recognizable underneath, so that `rprof report | head` is not an error.
pub fn stdout_error(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("cannot write to standard output")
}

/// Reads the profile at `path`, printing its warnings (a cut-short file, an unfinished
/// recording) on stderr.
pub(crate) fn open_profile(path: &Path) -> anyhow::Result<Profile> {
    let reading = crate::progress::Progress::new(&format!("reading {}", path.display()), None);
    let profile = match Profile::open(path) {
        Ok(p) => p,
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no profile at {}: make one with `rprof record -- COMMAND`, or name another \
                 with -i FILE",
                path.display()
            );
        }
        Err(e) => return Err(e.into()),
    };
    drop(reading);
    for warning in &profile.warnings {
        // A warning may quote the profile (a module path, a name).
        eprintln!("rprof: warning: {}", visible(warning));
    }
    let mut profile = profile;
    crate::naming::fill_missing(&mut profile)?;
    Ok(profile)
}

/// The selection `--thread`, `--pid` and `--no-inline` ask for, and a label for the report's
/// header.
pub(crate) fn selection(
    profile: &Profile,
    thread: Option<&str>,
    pid: Option<u32>,
    merge_inline: bool,
) -> anyhow::Result<(Selection, Option<String>)> {
    let mut labels = Vec::new();
    let threads = match thread {
        Some(spec) => {
            let threads = rprof_report::parse_thread_filter(profile, spec).map_err(usage)?;
            labels.push(format!("thread {spec}"));
            Some(threads)
        }
        None => None,
    };
    if let Some(pid) = pid {
        if !profile.processes.contains_key(&pid) {
            let known: Vec<String> = profile
                .processes
                .values()
                .map(|p| format!("{} ({})", visible(&p.name), p.pid))
                .collect();
            return Err(usage(format!(
                "no process {pid} in the profile (processes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        labels.push(format!("process {pid}"));
    }
    let selection = Selection {
        threads,
        pid,
        merge_inline,
        weight: Weight::Samples,
    };
    let label = (!labels.is_empty()).then(|| labels.join(", "));
    Ok((selection, label))
}

/// What `--off-cpu` / `--wall` ask stacks to weigh; a usage error (exit 2) when the profile
/// holds no off-CPU data for them.
pub(crate) fn weight(
    profile: &Profile,
    command: &str,
    off_cpu: bool,
    wall: bool,
) -> anyhow::Result<Weight> {
    let (weight, flag) = match (off_cpu, wall) {
        (true, _) => (Weight::OffCpu, "--off-cpu"),
        (false, true) => (Weight::Wall, "--wall"),
        (false, false) => return Ok(Weight::Samples),
    };
    if !profile.has_off_cpu() {
        return Err(usage(format!(
            "{command} {flag}: the profile holds no off-CPU data (it was recorded without --off-cpu); record it again with `rprof record --off-cpu -- COMMAND`"
        )));
    }
    Ok(weight)
}

/// Columns and rows of the terminal on stdout, if it is one.
fn terminal_size() -> Option<(usize, usize)> {
    let (terminal_size::Width(cols), terminal_size::Height(rows)) =
        terminal_size::terminal_size_of(std::io::stdout())?;
    (cols > 0).then_some((usize::from(cols), usize::from(rows)))
}
