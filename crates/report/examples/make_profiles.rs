//! Writes the saved profiles of `fixtures/profiles/` from the designed workloads in
//! `rprof_report::synth`: `cargo run -p rprof-report --example make_profiles -- DIR`.
//! `scripts/make-golden-profiles.sh` runs it.

use std::path::PathBuf;

use rprof_report::synth;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "fixtures/profiles".into()),
    );
    std::fs::create_dir_all(&dir)?;
    // A finished recording: symbols and summary, several blocks.
    std::fs::write(dir.join("basic.rprof"), synth::basic(true, 100)?)?;
    // A recording killed mid-write: no symbols, no summary, the last block cut short.
    let killed = synth::basic(false, 100)?;
    std::fs::write(
        dir.join("interrupted.rprof"),
        &killed[..killed.len().saturating_sub(10)],
    )?;
    // A finished recording without samples.
    std::fs::write(dir.join("empty.rprof"), synth::empty()?)?;
    // A process that runs `exec` part way (issue 9.11).
    std::fs::write(dir.join("exec.rprof"), synth::exec_rename()?)?;
    for name in [
        "basic.rprof",
        "interrupted.rprof",
        "empty.rprof",
        "exec.rprof",
    ] {
        println!("wrote {}", dir.join(name).display());
    }
    Ok(())
}
