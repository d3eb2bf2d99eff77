//! `cargo rprof`: build a cargo target with debug information, record it with rprof, write
//! `flame.svg` and print the top of the report.
//!
//! Glue only: the command line (clap) becomes `rprof_cargo::Options`, `rprof_cargo::run` does
//! the work, and a failure is one line on stderr with an exit code (cargo's own when the build
//! failed, 2 for a command line that names no single executable, 1 otherwise; or the recorded
//! program's exit code).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser};
use rprof_cargo::{Options, Target, TargetKind};

/// `cargo` runs `cargo-rprof rprof ARGS...`.
#[derive(Parser, Debug)]
#[command(name = "cargo", bin_name = "cargo", version = env!("RPROF_VERSION"))]
enum Cargo {
    /// Profile a cargo target with rprof: build it with debug info, record, flame graph, report.
    Rprof(Args),
}

/// Arguments of `cargo rprof`.
#[derive(ClapArgs, Debug)]
#[command(
    version = env!("RPROF_VERSION"),
    after_help = "Debug info is turned on with CARGO_PROFILE_<PROFILE>_DEBUG=true (and symbols \
    kept with CARGO_PROFILE_<PROFILE>_STRIP=false) for this build only; Cargo.toml is not \
    changed. The profile stays in --data FILE for rprof report, flame and annotate -i FILE."
)]
struct Args {
    /// Profile this binary target.
    #[arg(long, value_name = "NAME", group = "target")]
    bin: Option<String>,
    /// Profile this example.
    #[arg(long, value_name = "NAME", group = "target")]
    example: Option<String>,
    /// Profile this integration test.
    #[arg(long, value_name = "NAME", group = "target")]
    test: Option<String>,
    /// Profile this benchmark (run with --bench, as cargo bench does).
    #[arg(long, value_name = "NAME", group = "target")]
    bench: Option<String>,
    /// The package of the workspace to build.
    #[arg(short, long, value_name = "SPEC")]
    package: Option<String>,
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// The cargo profile to build.
    #[arg(long, value_name = "PROFILE", default_value = "release")]
    profile: String,
    /// Build with the release profile (the default; as cargo's --release).
    #[arg(long, conflicts_with_all = ["profile", "dev"])]
    release: bool,
    /// Build with the dev profile (--profile dev).
    #[arg(long, conflicts_with = "profile")]
    dev: bool,
    /// Features to activate (comma- or space-separated; may be repeated).
    #[arg(long, value_name = "FEATURES", value_delimiter = ',')]
    features: Vec<String>,
    /// Activate all features.
    #[arg(long)]
    all_features: bool,
    /// Do not activate the default feature.
    #[arg(long)]
    no_default_features: bool,

    /// rprof record: samples per second per thread.
    #[arg(short = 'F', long, value_name = "HZ")]
    freq: Option<String>,
    /// rprof record: sample every N events instead.
    #[arg(short = 'c', long, value_name = "N")]
    period: Option<String>,
    /// rprof record: what to sample.
    #[arg(short, long, value_name = "EVENT")]
    event: Option<String>,
    /// rprof record: dwarf[,SIZE], fp or none.
    #[arg(long, value_name = "MODE")]
    call_graph: Option<String>,
    /// rprof record: ring-buffer size per CPU.
    #[arg(short, long, value_name = "N")]
    mmap_pages: Option<String>,
    /// rprof record: stop after this long.
    #[arg(long, value_name = "SECS")]
    duration: Option<String>,
    /// rprof record: sample user space only.
    #[arg(long)]
    no_kernel: bool,

    /// Where the profile goes.
    #[arg(long, value_name = "FILE", default_value = "rprof.data")]
    data: PathBuf,
    /// Where the flame graph goes.
    #[arg(short, long, value_name = "FILE", default_value = "flame.svg")]
    output: PathBuf,
    /// Rows of the report printed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Open the flame graph with xdg-open.
    #[arg(long)]
    open: bool,
    /// Arguments of the profiled program.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

fn options(args: Args) -> Options {
    let named = [
        (TargetKind::Bin, args.bin),
        (TargetKind::Example, args.example),
        (TargetKind::Test, args.test),
        (TargetKind::Bench, args.bench),
    ];
    let target = named
        .into_iter()
        .find_map(|(kind, name)| name.map(|name| Target { kind, name }));
    let mut record_args: Vec<OsString> = Vec::new();
    for (flag, value) in [
        ("--freq", args.freq),
        ("--period", args.period),
        ("--event", args.event),
        ("--call-graph", args.call_graph),
        ("--mmap-pages", args.mmap_pages),
        ("--duration", args.duration),
    ] {
        if let Some(value) = value {
            record_args.push(flag.into());
            record_args.push(value.into());
        }
    }
    if args.no_kernel {
        record_args.push("--no-kernel".into());
    }
    Options {
        target,
        package: args.package,
        manifest_path: args.manifest_path,
        profile: if args.dev {
            "dev".to_string()
        } else {
            args.profile
        },
        features: args
            .features
            .iter()
            .flat_map(|f| f.split_whitespace())
            .map(str::to_string)
            .collect(),
        all_features: args.all_features,
        no_default_features: args.no_default_features,
        record_args,
        data: args.data,
        flame: args.output,
        top: args.top,
        open: args.open,
        args: args.args,
        ..Options::default()
    }
}

fn main() {
    // cargo runs `cargo-rprof rprof ...`; run directly, `cargo-rprof ...` means the same.
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_none_or(|a| a != "rprof") {
        argv.insert(1, "rprof".into());
    }
    let Cargo::Rprof(args) = match Cargo::try_parse_from(argv) {
        Ok(cli) => cli,
        // --help and --version: clap's text on stdout, exit 0.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            std::process::exit(0);
        }
        // A usage error: clap's first line, as one line (exit 2).
        Err(err) => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid command line");
            let what = first.strip_prefix("error:").unwrap_or(first).trim();
            eprintln!("cargo rprof: {what} (see cargo rprof --help)");
            std::process::exit(2);
        }
    };
    let code = match rprof_cargo::run(&options(args), &mut |note| eprintln!("cargo rprof: {note}"))
    {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cargo rprof: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
