//! `rprof timeline`: a thread timeline of a profile as one self-contained HTML file.
//!
//! Glue only: opens the profile as `rprof report` does (same errors and exit codes), creates
//! the output file before any work (so an unwritable destination fails first), builds the
//! timeline input with `rprof_timeline::from_profile` and renders it (`crates/timeline`).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use rprof_fs::{Access, NewFile};
use rprof_timeline::FromProfileOptions;

use crate::report::open_profile;

/// Arguments of `rprof timeline`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The profile to read.
    #[arg(short, long, value_name = "FILE", default_value = "rprof.data")]
    pub input: PathBuf,
    /// Where to write the HTML page.
    #[arg(short, long, value_name = "FILE", default_value = "timeline.html")]
    pub output: PathBuf,
    /// Merge inlined functions into their callers in the stacks shown [default: inlined
    /// functions are frames of their own].
    #[arg(long)]
    pub no_inline: bool,
}

/// Runs `rprof timeline`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    // The destination first: a page that cannot be written fails before the profile is read.
    // It is written beside the destination and moved there once complete (`rprof-fs`).
    let new = NewFile::create(&args.output, Access::Shared)?;
    if let Some(problem) = new.handover_problem() {
        eprintln!("rprof: note: {problem}");
    }
    let profile = open_profile(&args.input)?;
    if !profile.has_off_cpu() {
        return Err(crate::exit::usage(
            "timeline: the profile holds no off-CPU data (it was recorded without --off-cpu), so \
             it cannot say when threads ran, waited or were blocked; record it again with \
             `rprof record --off-cpu -- COMMAND`",
        ));
    }
    if profile.threads.is_empty() {
        anyhow::bail!(
            "the profile has no threads: nothing to draw (was the command too short-lived?)"
        );
    }
    let options = FromProfileOptions {
        merge_inline: args.no_inline,
    };
    let input = rprof_timeline::from_profile(&profile, &options);
    drop(profile);
    let written = |e: std::io::Error| -> anyhow::Error {
        anyhow::Error::new(e).context(format!("cannot write {}", args.output.display()))
    };
    let mut out = BufWriter::with_capacity(1 << 20, new);
    rprof_timeline::render(&input, &mut out).map_err(written)?;
    out.flush().map_err(written)?;
    let new = out.into_inner().map_err(|e| written(e.into_error()))?;
    new.commit()?;
    let lanes: usize = input.processes.iter().map(|p| p.threads.len()).sum();
    let processes = input.processes.len();
    eprintln!(
        "rprof: wrote the timeline ({lanes} thread{} in {processes} process{}) to {}",
        if lanes == 1 { "" } else { "s" },
        if processes == 1 { "" } else { "es" },
        args.output.display()
    );
    Ok(0)
}
