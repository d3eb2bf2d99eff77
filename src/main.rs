//! rprof: a sampling profiler for Linux.
//!
//! The binary is glue: it parses the command line with clap, hands each command's validated
//! arguments to the library crates under `crates/`, and maps every failure to one line on stderr
//! and an exit code (see [`exit`]).

mod exit;
mod flame;
mod record;
mod report;
mod resolve;
mod stat;

use clap::{Parser, Subcommand};

/// A sampling profiler for Linux: record, report, flame graphs and counters.
#[derive(Parser, Debug)]
#[command(name = "rprof", version, about, propagate_version = true)]
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
    /// Count events of a command, like `perf stat`.
    Stat(stat::Args),
}

fn main() {
    exit::reset_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { exit::USAGE } else { 0 };
            // Printing clap's own message can only fail on a closed stream; nothing to add then.
            let _ = err.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Report(args) => report::run(args),
        Command::Flame(args) => flame::run(args),
        Command::Stat(args) => stat::run(args),
    };
    std::process::exit(exit::finish(result));
}
