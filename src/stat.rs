//! `rprof stat`: (being written).

/// Arguments of `rprof stat`.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = false)]
pub struct Args {}

/// Runs `rprof stat`.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    Err(crate::exit::usage("rprof stat is not built yet"))
}
