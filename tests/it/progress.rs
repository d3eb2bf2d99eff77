//! Integration tests of the progress line of long post-processing (naming addresses at the end
//! of `record`, reading a profile): drawn on a terminal only. `RPROF_PROGRESS_DELAY_MS=0`
//! makes it appear at once instead of after a second.

use std::path::Path;
use std::process::Command;

use crate::util::{build_c, rprof_bin, run_rprof, stderr, tempdir};

/// Issue 16: with stderr a pipe, no progress output appears, even with no delay at all: only
/// rprof's own lines are on stderr.
#[test]
fn no_progress_when_stderr_is_not_a_terminal() {
    let exe = build_c("hot_line.c", "hot_line", &["-O1", "-g"]);
    let dir = tempdir();
    let out = crate::util::rprof(
        dir.path(),
        &["record", "-o", "p.data", "--", exe.to_str().unwrap(), "2"],
    )
    .env("RPROF_PROGRESS_DELAY_MS", "0")
    .output()
    .expect("rprof runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("naming addresses"), "{err:?}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    assert!(
        err.lines().all(|l| l.starts_with("rprof: ")),
        "only rprof's lines: {err:?}"
    );
    let out = crate::util::rprof(dir.path(), &["report", "-i", "p.data"])
        .env("RPROF_PROGRESS_DELAY_MS", "0")
        .output()
        .expect("rprof runs");
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
}

/// Issue 16: on a terminal (a pseudo-terminal made by `script`), the progress line is drawn
/// and cleared; the same recording as above, so the test above is not vacuous.
#[test]
fn progress_on_a_terminal() {
    let exe = build_c("hot_line.c", "hot_line", &["-O1", "-g"]);
    let dir = tempdir();
    let command = format!(
        "{} record -o {} -- {} 2",
        rprof_bin().display(),
        dir.path().join("p.data").display(),
        exe.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("RPROF_PROGRESS_DELAY_MS", "0")
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("rprof: naming addresses ["), "{shown:?}");
    // Cleared before the summary line.
    assert!(shown.contains("\x1b[2K"), "{shown:?}");
    assert!(Path::new(&dir.path().join("p.data")).is_file());
    let out = run_rprof(dir.path(), &["report", "-i", "p.data", "--top", "3"]);
    assert!(crate::util::stdout(&out).contains("hot_line_work"));
}
