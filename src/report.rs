//! `rprof report`: (being written).

/// Arguments of `rprof report`.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = false)]
pub struct Args {}

/// Runs `rprof report`.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    Err(crate::exit::usage("rprof report is not built yet"))
}
