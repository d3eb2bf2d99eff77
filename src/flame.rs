//! `rprof flame`: (being written).

/// Arguments of `rprof flame`.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = false)]
pub struct Args {}

/// Runs `rprof flame`.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    Err(crate::exit::usage("rprof flame is not built yet"))
}
