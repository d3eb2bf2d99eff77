//! `rprof annotate FUNCTION`: the source lines of a function with the samples on each.
//!
//! Reads the profile (as `report` does), counts the function's lines through
//! `rprof_report::annotate`, reads each source file it names from disk through `rprof-fs`
//! (regular files only, size-capped: the path comes from the profile and the text is shown,
//! escaped, on the terminal), and renders text or JSON to stdout. A source that cannot be read
//! is a note on stderr, and its lines are shown by number alone.

use std::collections::HashMap;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rprof_report::annotate::{self, AnnotateError, AnnotateOptions, Annotation, Source};
use rprof_report::visible;

use crate::exit::{usage, with_code, FAILURE};
use crate::report::{open_profile, selection, stdout_error, Color};

/// The largest source file read.
const SOURCE_LIMIT: u64 = 64 << 20;

/// Arguments of `rprof annotate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The function: its full name as `rprof report` shows it, or its last part (`hot` for
    /// `app::hot`) [default: the function with the most self samples that has source lines].
    #[arg(value_name = "FUNCTION")]
    pub function: Option<String>,
    /// The profile to read.
    #[arg(short, long, value_name = "FILE", default_value = "rprof.data")]
    pub input: PathBuf,
    /// Unsampled lines shown around each sampled line (longer stretches are folded).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub context: usize,
    /// Where to look for a source file that is not at the path the profile names (built
    /// elsewhere, or Rust's std: `$(rustc --print sysroot)/lib/rustlib/src/rust`): DIR joined
    /// with the path's trailing components, longest first. May be repeated.
    #[arg(long, value_name = "DIR")]
    pub source_dir: Vec<PathBuf>,
    /// Only samples of this thread (a thread id; or a name: the samples taken under it).
    #[arg(long, value_name = "NAME|TID")]
    pub thread: Option<String>,
    /// Only samples of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Merge inlined functions into the functions they were inlined into.
    #[arg(long)]
    pub no_inline: bool,
    /// Print JSON (the sampled lines, their counts and exact text) instead of the listing.
    #[arg(long)]
    pub json: bool,
    /// When to color the output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// Runs `rprof annotate`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let profile = open_profile(&args.input)?;
    let (selection, _) = selection(&profile, args.thread.as_deref(), args.pid, args.no_inline)?;
    let function = match args.function {
        Some(function) => function,
        None => {
            let Some(hottest) = annotate::hottest_function(&profile, &selection) else {
                return Err(with_code(
                    FAILURE,
                    anyhow::anyhow!(
                        "no sampled function of {} has source lines (build with -g, or \
                         debug = true in Cargo.toml)",
                        args.input.display()
                    ),
                ));
            };
            eprintln!(
                "rprof: note: annotating the hottest function with source lines, {} (name \
                 another as rprof annotate FUNCTION)",
                visible(&hottest)
            );
            hottest
        }
    };
    let annotation = match Annotation::new(&profile, &selection, &function) {
        Ok(a) => a,
        // Asked for a function the profile does not have: like an unknown --pid.
        Err(e @ (AnnotateError::NotFound { .. } | AnnotateError::Ambiguous { .. })) => {
            return Err(usage(format!(
                "{e}; `rprof report -i {}` lists the functions",
                args.input.display()
            )))
        }
        Err(e) => return Err(with_code(FAILURE, e)),
    };
    let recorded = profile.header.start_unix_ns;
    let mut sources = HashMap::new();
    for file in annotation.files() {
        let source = find_source(Path::new(file), &args.source_dir, recorded);
        match &source {
            Source::Missing(why) => eprintln!(
                "rprof: note: no source for {} in {}: {}; showing line numbers only",
                visible(&annotation.function),
                visible(file),
                visible(why)
            ),
            Source::Text {
                note: Some(note), ..
            } => eprintln!("rprof: note: {}", visible(note)),
            Source::Text { .. } => {}
        }
        sources.insert(file.to_string(), source);
    }
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        annotate::render_json(&annotation, &sources, &mut out).map_err(stdout_error)?;
    } else {
        let color = match args.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        let options = AnnotateOptions {
            context: args.context,
            color,
        };
        annotate::render(&annotation, &sources, &options, &mut out).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(0)
}

/// The text of the source file `path`, or of the first file found for it under `dirs` (see
/// [`Args::source_dir`]), or why there is none (the reason for `path` itself).
fn find_source(path: &Path, dirs: &[PathBuf], recorded_unix_ns: u64) -> Source {
    let first = read_source(path, recorded_unix_ns);
    if matches!(first, Source::Text { .. }) {
        return first;
    }
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    for dir in dirs {
        for start in 0..parts.len() {
            let candidate: PathBuf = dir.join(parts[start..].iter().collect::<PathBuf>());
            if let source @ Source::Text { .. } = read_source(&candidate, recorded_unix_ns) {
                return source;
            }
        }
    }
    first
}

/// The text of the source file `path` (a path the profile names: untrusted), or why not.
fn read_source(path: &Path, recorded_unix_ns: u64) -> Source {
    let options = rprof_fs::read::Options::new("a source file", SOURCE_LIMIT);
    let (file, meta) = match rprof_fs::read::open_regular(path, &options) {
        Ok(opened) => opened,
        Err(e) => return Source::Missing(e.reason()),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(SOURCE_LIMIT + 1).read_to_end(&mut bytes) {
        return Source::Missing(format!("cannot read it: {e}"));
    }
    if bytes.len() as u64 > SOURCE_LIMIT {
        return Source::Missing(format!(
            "it is larger than the limit for a source file ({})",
            rprof_fs::read::Size(SOURCE_LIMIT)
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines = text.lines().map(str::to_string).collect();
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos());
    let note = (recorded_unix_ns > 0
        && modified_ns.is_some_and(|m| m > u128::from(recorded_unix_ns)))
    .then(|| {
        format!(
            "{} changed after the recording: its lines may not match the profile",
            path.display()
        )
    });
    Source::Text { lines, note }
}
