//! `rprof flame`: a flame graph SVG (drawn by inferno) or folded stacks from a profile.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use rprof_fs::{Access, NewFile};

use rprof_report::flame::{FlameError, FlameOptions};
use rprof_report::folded::FoldedOptions;
use rprof_report::StackCounts;

use crate::exit::usage;
use crate::report::{open_profile, selection, weight};

/// Arguments of `rprof flame`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The profile to read.
    #[arg(short, long, value_name = "FILE", default_value = "rprof.data")]
    pub input: PathBuf,
    /// Where to write; `-` for stdout [default: flamegraph.svg; stdout with --folded].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write folded stacks (`thread;main;f;g 42` lines) instead of an SVG.
    #[arg(long)]
    pub folded: bool,
    /// Only samples of this thread (a thread id; or a name: the samples taken under it).
    #[arg(long, value_name = "NAME|TID")]
    pub thread: Option<String>,
    /// Only samples of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Merge inlined functions into their callers [default: inlined functions are frames of
    /// their own, in aqua].
    #[arg(long)]
    pub no_inline: bool,
    /// Title of the graph [default: rprof: COMMAND (N samples)].
    #[arg(long)]
    pub title: Option<String>,
    /// Reverse the stacks: leaf functions at the base, their callers above.
    #[arg(long)]
    pub reverse: bool,
    /// Draw top-down, as an icicle graph.
    #[arg(long, visible_alias = "icicle")]
    pub inverted: bool,
    /// Width of the image in pixels [default: fills the browser window].
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(100..))]
    pub width: Option<u32>,
    /// Leave out frames narrower than this percentage of all samples.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.01)]
    pub min_width: f64,
    /// Draw off-CPU time (a profile recorded with `rprof record --off-cpu`): where threads
    /// waited and why; folded counts are microseconds.
    #[arg(long, conflicts_with = "wall")]
    pub off_cpu: bool,
    /// Draw wall-clock time: on-CPU plus off-CPU (a profile recorded with `--off-cpu`);
    /// folded counts are microseconds.
    #[arg(long)]
    pub wall: bool,
    /// Draw the waits for contended locks, each lock the root frame of its waiting stacks (a
    /// profile recorded with `--off-cpu`); folded counts are microseconds.
    #[arg(long, conflicts_with_all = ["off_cpu", "wall", "thread", "reverse", "no_inline", "alloc"])]
    pub locks: bool,
    /// Draw allocations (a profile of `rprof record --alloc`), weighed by bytes allocated,
    /// calls, bytes leaked or bytes live at the peak; estimated from the sampled stacks.
    #[arg(long, value_name = "WHAT", value_parser = ["bytes", "count", "leaked", "peak"], conflicts_with_all = ["off_cpu", "wall", "thread", "pid"])]
    pub alloc: Option<String>,
}

/// Runs `rprof flame`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    if !(0.0..=100.0).contains(&args.min_width) {
        return Err(usage(format!(
            "--min-width must be a percentage between 0 and 100, not {}",
            args.min_width
        )));
    }
    let profile = open_profile(&args.input)?;
    let lock_lines = if args.locks {
        let analysis = crate::report::lock_analysis(&profile, "flame", args.pid, None)?;
        let lines = rprof_locks::render::folded_lines(&profile, &analysis);
        if lines.is_empty() {
            anyhow::bail!("{}: nothing to draw", rprof_locks::render::NO_LOCK_WAITS);
        }
        Some(lines)
    } else {
        None
    };
    let metric = args
        .alloc
        .as_deref()
        .and_then(rprof_alloc::report::Metric::parse);
    if let Some(metric) = metric {
        crate::alloc::require(&profile, &args.input)?;
        if rprof_alloc::report::folded(&profile, metric).is_empty() {
            anyhow::bail!(
                "no sampled allocation stack has {} to draw (record with a smaller \
                 --alloc-sample for more stacks)",
                metric.title()
            );
        }
    }
    let (mut selection, _) = selection(&profile, args.thread.as_deref(), args.pid, args.no_inline)?;
    selection.weight = weight(&profile, "flame", args.off_cpu, args.wall)?;
    if lock_lines.is_none()
        && metric.is_none()
        && StackCounts::new(&profile, &selection).samples == 0
    {
        anyhow::bail!("{}", no_samples(&profile, selection.weight));
    }
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(if args.folded { "-" } else { "flamegraph.svg" }));
    let to_stdout = output.as_os_str() == "-";
    // A file is written beside the destination and moved there once complete (`rprof-fs`):
    // a link there is replaced, not followed, and under sudo the file goes to the invoking user.
    let mut out = if to_stdout {
        Out::Stdout(BufWriter::new(io::stdout().lock()))
    } else {
        let new = NewFile::create(&output, Access::Shared)?;
        if let Some(problem) = new.handover_problem() {
            eprintln!("rprof: note: {problem}");
        }
        Out::File(BufWriter::with_capacity(1 << 20, new))
    };
    let written = |e: io::Error| -> anyhow::Error {
        if to_stdout {
            crate::report::stdout_error(e)
        } else {
            anyhow::Error::new(e).context(format!("cannot write {}", output.display()))
        }
    };
    let what = if let Some(lines) = &lock_lines {
        if args.folded {
            for line in lines {
                writeln!(out, "{line}").map_err(written)?;
            }
            "folded lock stacks"
        } else {
            let micros: u64 = lines
                .iter()
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
                .sum();
            let title = args.title.clone().unwrap_or_else(|| {
                format!("rprof: lock waits ({:.3} s blocked)", micros as f64 / 1e6)
            });
            rprof_locks::render::flame(lines, &title, &mut out).map_err(written)?;
            "lock flame graph"
        }
    } else if let (Some(metric), true) = (metric, args.folded) {
        for line in rprof_alloc::report::folded(&profile, metric) {
            writeln!(out, "{line}").map_err(written)?;
        }
        "folded stacks"
    } else if let Some(metric) = metric {
        rprof_alloc::report::render_flame(&profile, metric, args.title, &mut out)
            .map_err(written)?;
        "flame graph"
    } else if args.folded {
        let options = FoldedOptions {
            selection,
            ..FoldedOptions::default()
        };
        rprof_report::folded::render(&profile, &options, &mut out).map_err(written)?;
        "folded stacks"
    } else {
        let weight = selection.weight;
        let options = FlameOptions {
            selection,
            title: args.title,
            width: args.width.map(|w| w as usize),
            min_width: args.min_width,
            reverse: args.reverse,
            inverted: args.inverted,
            ..FlameOptions::default()
        };
        match rprof_report::flame::render(&profile, &options, &mut out) {
            Ok(()) => {}
            Err(FlameError::NoSamples) => anyhow::bail!("{}", no_samples(&profile, weight)),
            Err(FlameError::Io(e)) => return Err(written(e)),
            Err(e) => return Err(e.into()),
        }
        "flame graph"
    };
    match out {
        Out::Stdout(mut out) => out.flush().map_err(written)?,
        Out::File(out) => {
            let new = out.into_inner().map_err(|e| written(e.into_error()))?;
            new.commit()?;
        }
    }
    if !to_stdout {
        eprintln!("rprof: wrote the {what} to {}", output.display());
    }
    Ok(0)
}

/// Where the output goes: standard output, or a new file moved into place when complete.
enum Out<'a> {
    Stdout(BufWriter<io::StdoutLock<'a>>),
    File(BufWriter<NewFile>),
}

impl Write for Out<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Stdout(out) => out.write(buf),
            Out::File(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout(out) => out.flush(),
            Out::File(out) => out.flush(),
        }
    }
}

/// Why there is nothing to draw.
fn no_samples(profile: &rprof_profile::Profile, weight: rprof_report::Weight) -> String {
    if weight.is_time() {
        "nothing off the CPU matches --thread/--pid: nothing to draw".into()
    } else if profile.samples.is_empty() {
        "the profile has no samples: nothing to draw (was the command too short-lived?)".into()
    } else {
        "no samples match --thread/--pid: nothing to draw".into()
    }
}
