//! `rprof diff BASE NEW`: which functions' cost changed between two profiles, as a table, JSON
//! or a differential flame graph; `--fail-if-slower` for CI.
//!
//! Glue: validates the command line, opens the output file first (so that an unwritable `-o`
//! fails before any work), reads both profiles as `rprof report` does (same messages, same
//! warnings), hands them to `rprof-diff`, and turns "NEW is slower than allowed" into exit
//! code 1 with one line naming the functions that account for it.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rprof_diff::flame::{FlameError, FlameOptions};
use rprof_diff::json::JsonOptions;
use rprof_diff::table::TableOptions;
use rprof_diff::{Diff, DiffError, DiffOptions, Measure};
use rprof_fs::{Access, NewFile};
use rprof_report::SortBy;

use crate::exit::{usage, with_code, FAILURE, USAGE};
use crate::report::{open_profile, selection, stdout_error, weight, Sort};

/// Arguments of `rprof diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The baseline profile.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The profile to compare with it.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Show the N functions that changed most (0: all) [default: 30; all with --json].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Compare each function's self samples (in the function itself) or total samples
    /// (including its callees).
    #[arg(long, value_enum, default_value_t = Sort::SelfSamples)]
    pub sort: Sort,
    /// Compare shares of each profile's samples instead of estimated time (for runs of
    /// different lengths).
    #[arg(long)]
    pub normalize: bool,
    /// Only samples of this thread, in both profiles (a name; or a thread id).
    #[arg(long, value_name = "NAME|TID")]
    pub thread: Option<String>,
    /// Merge inlined functions into the functions they were inlined into.
    #[arg(long)]
    pub no_inline: bool,
    /// Compare off-CPU time per function, with why it waited (two profiles recorded with
    /// `rprof record --off-cpu`).
    #[arg(long, conflicts_with_all = ["wall", "flame"])]
    pub off_cpu: bool,
    /// Compare wall-clock time per function: on-CPU plus off-CPU (two profiles recorded with
    /// `rprof record --off-cpu`).
    #[arg(long, conflicts_with = "flame")]
    pub wall: bool,
    /// Print JSON (schema in docs/diff.md) instead of the table.
    #[arg(long, conflicts_with = "flame")]
    pub json: bool,
    /// Write a differential flame graph (SVG) on NEW's stacks instead of the table.
    #[arg(long)]
    pub flame: bool,
    /// Where --flame writes; `-` for stdout [default: diff.svg].
    #[arg(short, long, value_name = "FILE", requires = "flame")]
    pub output: Option<PathBuf>,
    /// Exit with code 1 when NEW's whole estimated time is more than PCT percent above BASE's.
    #[arg(long, value_name = "PCT")]
    pub fail_if_slower: Option<f64>,
}

/// Runs `rprof diff`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(pct) = args.fail_if_slower {
        if !(pct.is_finite() && pct >= 0.0) {
            return Err(usage(format!(
                "--fail-if-slower takes a percentage of 0 or more, not {pct}"
            )));
        }
    }
    // The output first: an unwritable -o fails before the profiles are read.
    let flame_output = if args.flame {
        let path = args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("diff.svg"));
        if path.as_os_str() == "-" {
            Some((path, None))
        } else {
            let new = NewFile::create(&path, Access::Shared)?;
            if let Some(problem) = new.handover_problem() {
                eprintln!("rprof: note: {problem}");
            }
            Some((path, Some(new)))
        }
    } else {
        None
    };

    let base = open_profile(&args.base)?;
    let new = open_profile(&args.new)?;
    let side = |which: &str, path: &Path| format!("{which} {}", path.display());
    let (mut base_selection, label) =
        selection(&base, args.thread.as_deref(), None, args.no_inline)
            .with_context(|| side("BASE", &args.base))?;
    let (mut new_selection, _) = selection(&new, args.thread.as_deref(), None, args.no_inline)
        .with_context(|| side("NEW", &args.new))?;
    // --off-cpu / --wall: both profiles need off-CPU data (a usage error, exit 2, if not).
    base_selection.weight =
        weight(&base, "diff", args.off_cpu, args.wall).with_context(|| side("BASE", &args.base))?;
    new_selection.weight =
        weight(&new, "diff", args.off_cpu, args.wall).with_context(|| side("NEW", &args.new))?;
    let options = DiffOptions {
        base: base_selection,
        new: new_selection,
        measure: if args.normalize {
            Measure::Share
        } else {
            Measure::Time
        },
        rank_by: match args.sort {
            Sort::SelfSamples => SortBy::SelfSamples,
            Sort::Total => SortBy::Total,
        },
        ..DiffOptions::default()
    };
    let diff = Diff::new(&base, &new, &options).map_err(|e| diff_error(e, &args))?;
    let base_label = args.base.display().to_string();
    let new_label = args.new.display().to_string();

    if let Some((path, file)) = flame_output {
        let flame = FlameOptions {
            base_label,
            new_label,
            ..FlameOptions::default()
        };
        let mut svg = Vec::new();
        rprof_diff::flame::render(&base, &new, &options, &flame, &mut svg).map_err(
            |e| match e {
                FlameError::Diff(e) => diff_error(e, &args),
                e => e.into(),
            },
        )?;
        match file {
            None => {
                let mut out = io::stdout().lock();
                out.write_all(&svg).map_err(stdout_error)?;
                out.flush().map_err(stdout_error)?;
            }
            Some(file) => {
                let written = |e: io::Error| {
                    anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
                };
                let mut out = BufWriter::new(file);
                out.write_all(&svg).map_err(written)?;
                let file = out.into_inner().map_err(|e| written(e.into_error()))?;
                file.commit()?;
                eprintln!(
                    "rprof: wrote the differential flame graph to {}",
                    path.display()
                );
            }
        }
    } else {
        let mut out = BufWriter::new(io::stdout().lock());
        if args.json {
            let options = JsonOptions {
                limit: args.top.filter(|&n| n > 0),
                base_label,
                new_label,
            };
            rprof_diff::json::render(&diff, &options, &mut out).map_err(stdout_error)?;
        } else {
            let options = TableOptions {
                limit: match args.top {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => Some(30),
                },
                base_label,
                new_label,
                selection_label: label,
            };
            rprof_diff::table::render(&diff, &options, &mut out).map_err(stdout_error)?;
        }
        out.flush().map_err(stdout_error)?;
    }

    if let Some(pct) = args.fail_if_slower {
        if let Some(line) = rprof_diff::table::slower_than(&diff, pct) {
            eprintln!("rprof: {line}");
            return Ok(FAILURE);
        }
    }
    Ok(0)
}

/// Why the two profiles cannot be compared, saying which files: different events are a usage
/// error (2), not "slower" (1); a profile without samples is a failure (1).
fn diff_error(e: DiffError, args: &Args) -> anyhow::Error {
    let code = match e {
        DiffError::DifferentEvents { .. } | DiffError::NoOffCpu { .. } => USAGE,
        _ => FAILURE,
    };
    with_code(
        code,
        anyhow::Error::new(e).context(format!(
            "cannot compare {} with {}",
            args.base.display(),
            args.new.display()
        )),
    )
}
