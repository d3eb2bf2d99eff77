//! `rprof record`: (being written).

/// Arguments of `rprof record`.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = false)]
pub struct Args {}

/// Runs `rprof record`.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    Err(crate::exit::usage("rprof record is not built yet"))
}
