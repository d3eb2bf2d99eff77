//! `rprof flame`: a flame graph SVG (drawn by inferno) or folded stacks from a profile.

use std::path::PathBuf;

use rprof_report::flame::{FlameError, FlameOptions};
use rprof_report::folded::FoldedOptions;

use crate::exit::usage;
use crate::report::{open_profile, selection, write_output};

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
    /// Only samples of this thread (a thread id, or every thread with this name).
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
    let (selection, _) = selection(&profile, args.thread.as_deref(), args.pid, args.no_inline)?;
    let mut bytes = Vec::new();
    let what = if args.folded {
        let options = FoldedOptions {
            selection,
            ..FoldedOptions::default()
        };
        rprof_report::folded::render(&profile, &options, &mut bytes)?;
        if bytes.is_empty() {
            anyhow::bail!("{}", no_samples(&profile));
        }
        "folded stacks"
    } else {
        let options = FlameOptions {
            selection,
            title: args.title,
            width: args.width.map(|w| w as usize),
            min_width: args.min_width,
            reverse: args.reverse,
            inverted: args.inverted,
            ..FlameOptions::default()
        };
        match rprof_report::flame::render(&profile, &options, &mut bytes) {
            Ok(()) => {}
            Err(FlameError::NoSamples) => anyhow::bail!("{}", no_samples(&profile)),
            Err(e) => return Err(e.into()),
        }
        "flame graph"
    };
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(if args.folded { "-" } else { "flamegraph.svg" }));
    write_output(&output, &bytes)?;
    if output.as_os_str() != "-" {
        eprintln!("rprof: wrote the {what} to {}", output.display());
    }
    Ok(0)
}

/// Why there is nothing to draw.
fn no_samples(profile: &rprof_profile::Profile) -> String {
    if profile.samples.is_empty() {
        "the profile has no samples: nothing to draw (was the command too short-lived?)".into()
    } else {
        "no samples match --thread/--pid: nothing to draw".into()
    }
}
