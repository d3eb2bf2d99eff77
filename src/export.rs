//! `rprof export`: a profile in another tool's format (pprof, speedscope, Firefox Profiler),
//! written by `rprof-export`.
//!
//! The output file is created first (beside the destination, moved into place when complete,
//! through `rprof-fs`), so that an unwritable `-o` fails before the profile is read; the
//! profile is opened as `rprof report` opens it (same errors, same warnings for a cut-short
//! file) and `--thread`/`--pid` select samples as there.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use rprof_export::{ExportError, ExportOptions};
use rprof_fs::{Access, NewFile};

use crate::report::{open_profile, selection, stdout_error};

/// Arguments of `rprof export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The format to write.
    #[arg(short, long, value_enum)]
    pub format: Format,
    /// The profile to read.
    #[arg(short, long, value_name = "FILE", default_value = "rprof.data")]
    pub input: PathBuf,
    /// Where to write; `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Only samples of this thread (a thread id; or a name: the samples taken under it).
    #[arg(long, value_name = "NAME|TID")]
    pub thread: Option<String>,
    /// Only samples of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
}

/// The formats `rprof export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Gzipped profile.proto for go tool pprof, Grafana Pyroscope and Parca.
    Pprof,
    /// speedscope's JSON file format.
    Speedscope,
    /// The Firefox Profiler's processed format (profiler.firefox.com).
    Firefox,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Pprof => "pprof profile",
            Format::Speedscope => "speedscope profile",
            Format::Firefox => "Firefox Profiler profile",
        }
    }
}

/// Runs `rprof export`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let to_stdout = args.output.as_os_str() == "-";
    // Before any work: a destination that cannot be written fails now.
    let new = if to_stdout {
        None
    } else {
        let new = NewFile::create(&args.output, Access::Shared)?;
        if let Some(problem) = new.handover_problem() {
            eprintln!("rprof: note: {problem}");
        }
        Some(new)
    };
    let profile = open_profile(&args.input)?;
    let (selection, _) = selection(&profile, args.thread.as_deref(), args.pid, false)?;
    let options = ExportOptions { selection };
    let written = |e: io::Error| -> anyhow::Error {
        if to_stdout {
            stdout_error(e)
        } else {
            anyhow::Error::new(e).context(format!("cannot write {}", args.output.display()))
        }
    };
    let failed = |e: ExportError| -> anyhow::Error {
        match e {
            ExportError::Io(e) => written(e),
            ExportError::NoSamples if profile.samples.is_empty() => anyhow::anyhow!(
                "the profile has no samples: nothing to export (was the command too \
                 short-lived?)"
            ),
            ExportError::NoSamples => {
                anyhow::anyhow!("no samples match --thread/--pid: nothing to export")
            }
            e => e.into(),
        }
    };
    let render = |out: &mut dyn Write| -> Result<(), ExportError> {
        match args.format {
            Format::Pprof => rprof_export::pprof::render(&profile, &options, out),
            Format::Speedscope => rprof_export::speedscope::render(&profile, &options, out),
            Format::Firefox => rprof_export::firefox::render(&profile, &options, out),
        }
    };
    match new {
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            render(&mut out).map_err(failed)?;
            out.flush().map_err(written)?;
        }
        Some(new) => {
            let mut out = BufWriter::with_capacity(1 << 20, new);
            render(&mut out).map_err(failed)?;
            let new = out.into_inner().map_err(|e| written(e.into_error()))?;
            new.commit()?;
            eprintln!(
                "rprof: wrote the {} to {}",
                args.format.name(),
                args.output.display()
            );
        }
    }
    Ok(0)
}
