//! rprof: a sampling profiler for Linux.
//!
//! The binary is glue: it parses the command line with clap, hands each command's validated
//! arguments to the library crates under `crates/`, and maps every failure to one line on stderr
//! and an exit code (see [`exit`]).

mod alloc;
mod annotate;
mod diff;
mod exit;
mod export;
mod flame;
mod generate;
mod latency;
mod naming;
mod progress;
mod record;
mod report;
mod stat;
mod timeline;

use clap::{Parser, Subcommand};

/// A sampling profiler for Linux: record, report, flame graphs and counters.
#[derive(Parser, Debug)]
#[command(name = "rprof", version = env!("RPROF_VERSION"), about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command (or attach to a process) and sample it into a profile.
    Record(record::Args),
    /// Print the hottest functions of a profile.
    Report(report::Args),
    /// Write a flame graph (SVG) or folded stacks from a profile.
    Flame(flame::Args),
    /// Compare two profiles: the functions whose cost changed, or a differential flame graph.
    Diff(diff::Args),
    /// Write a profile for go tool pprof, speedscope or the Firefox Profiler.
    Export(export::Args),
    /// Count events of a command, like `perf stat`.
    Stat(stat::Args),
    /// Show a function's source lines with the samples on each.
    Annotate(annotate::Args),
    /// Time every call of a function (uprobes): percentiles and a histogram.
    Latency(latency::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Write man pages (rprof.1 and one per command) into a directory.
    Man(generate::ManArgs),
    /// Write a thread timeline (one self-contained HTML file) from a profile.
    Timeline(timeline::Args),
}

fn main() {
    // Writing into a closed pipe ends rprof quietly instead of turning every `println!` into
    // a panic.
    rprof_launch::default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: clap's own text on stdout, exit 0.
        Err(err) if !err.use_stderr() => {
            // Printing can only fail on a closed stream; nothing to add then.
            let _ = err.print();
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!("rprof: {}", usage_line(&err));
            std::process::exit(exit::USAGE);
        }
    };
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Report(args) => report::run(args),
        Command::Flame(args) => flame::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Export(args) => export::run(args),
        Command::Stat(args) => stat::run(args),
        Command::Annotate(args) => annotate::run(args),
        Command::Latency(args) => latency::run(args),
        Command::Completions(args) => {
            generate::completions(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => generate::man(args, <Cli as clap::CommandFactory>::command()),
        Command::Timeline(args) => timeline::run(args),
    };
    std::process::exit(exit::finish(result));
}

/// A usage error of clap as one line, like every other failure: clap's first line without its
/// `error: ` prefix, the possible values or a similar name if clap has them, then where to
/// look, e.g. `unexpected argument '--bogus' (see rprof record --help)`.
fn usage_line(err: &clap::Error) -> String {
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    let cli = Cli::command();
    // The subcommand is the first argument (rprof itself has no options but --help/--version).
    let sub = std::env::args_os().nth(1).and_then(|arg| {
        cli.get_subcommands()
            .find(|c| arg == c.get_name())
            .map(|c| c.get_name().to_string())
    });
    let help = match sub {
        Some(sub) => format!("see rprof {sub} --help"),
        None => "see rprof --help".to_string(),
    };
    if matches!(
        err.kind(),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        return format!("no command given: use one of {} ({help})", names.join(", "));
    }
    let rendered = err.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let what = first.strip_prefix("error:").unwrap_or(first).trim();
    let what = what.strip_suffix(" found").unwrap_or(what);
    let mut hints: Vec<&str> = lines
        .filter_map(|l| {
            if l.starts_with("[possible values:") {
                Some(l.trim_start_matches('[').trim_end_matches(']'))
            } else {
                l.strip_prefix("tip: ").filter(|t| t.contains("similar"))
            }
        })
        .collect();
    hints.push(&help);
    format!("{what} ({})", hints.join("; "))
}
