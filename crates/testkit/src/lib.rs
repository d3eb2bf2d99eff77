//! Test helpers shared by rprof's crates and its integration tests (a dev-dependency only).
//!
//! [`skip`]: a test that cannot run on this machine says so visibly instead of returning as a
//! pass. It leaves everything else (fixtures, temporary directories, golden files) to each test
//! suite's own helpers.

use std::io::Write;

/// Ends a test that cannot run here, visibly: "SKIP test: reason" goes to stderr and, when
/// scripts/test.sh set `RPROF_SKIP_LOG`, to that file, which the script counts and prints after
/// the run. Only for what the machine really lacks (root, a PMU, a limit), never for a slow run.
/// The caller returns right after.
pub fn skip(reason: &str) {
    let line = format!(
        "SKIP {}: {reason}\n",
        std::thread::current().name().unwrap_or("?")
    );
    eprint!("{line}");
    if let Some(log) = std::env::var_os("RPROF_SKIP_LOG") {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log);
        if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
            panic!("cannot append to RPROF_SKIP_LOG: {e}");
        }
    }
}
