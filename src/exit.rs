//! Exit codes and the one place where errors become a line on stderr.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (or, for `record`/`stat`/`latency` with a COMMAND: the COMMAND's own exit code) |
//! | 1 | `diff --fail-if-slower PCT`: NEW is more than PCT % slower than BASE |
//! | 1 | rprof failed: unreadable profile, I/O error, the kernel refused (a tracepoint tracefs will not show included; uprobes without root or CAP_PERFMON), `-p` of a process that is gone, ... |
//! | 2 | usage: bad option value, unknown event, nothing to do, `diff` of profiles of different events, `--off-cpu`/`--wall`/`timeline` on a profile without off-CPU data, a function `annotate` does not find or `latency` cannot probe; also every error of the argument parser (clap), printed as one `rprof:` line |
//! | 126 | COMMAND exists but cannot be executed |
//! | 127 | COMMAND not found |
//! | 128+N | COMMAND was killed by signal N |
//!
//! `record` whose profile could not be written to its end (a full disk, mid-run) follows
//! COMMAND to its end anyway and exits 1; its last line says how COMMAND ended (its exit code
//! or signal), and what was written before the failure stays readable by `rprof report`. If
//! even the header cannot be written, COMMAND is never started (exit 1).

use std::fmt;

/// rprof itself failed.
pub const FAILURE: i32 = 1;
/// The command line asked for something that cannot be done.
pub const USAGE: i32 = 2;
/// COMMAND was found but is not executable.
pub const NOT_EXECUTABLE: i32 = 126;
/// COMMAND was not found.
pub const NOT_FOUND: i32 = 127;

/// An error that knows which exit code it ends rprof with.
#[derive(Debug)]
pub struct Coded {
    /// The exit code.
    pub code: i32,
    /// What went wrong, printed as one line.
    pub error: anyhow::Error,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", one_line(&self.error))
    }
}

impl std::error::Error for Coded {}

/// Wraps `error` so that rprof exits with `code` after printing it.
pub fn with_code(code: i32, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        error: error.into(),
    })
}

/// A usage error (exit code 2) with the given message.
pub fn usage(message: impl fmt::Display) -> anyhow::Error {
    with_code(USAGE, anyhow::anyhow!("{message}"))
}

/// An event specification that did not parse: an unknown or malformed name is a usage error
/// (2); a tracepoint that tracefs cannot show (not mounted, readable by root only) is the
/// system refusing (1).
pub fn event_error(e: rprof_events::EventError) -> anyhow::Error {
    match e {
        rprof_events::EventError::Tracefs { .. } => with_code(FAILURE, e),
        e => with_code(USAGE, e),
    }
}

/// `err` and its causes as one line, `what: why: why`, leaving out a cause whose text is
/// already in the line (an error that prints its source and also returns it as its source
/// would otherwise say "Permission denied: Permission denied").
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// True when `err` (or anything it wraps) is a broken pipe: `rprof report | head` is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Turns a command's outcome into the process exit code, printing a failure as one line.
pub fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) => {
            let code = err
                .chain()
                .find_map(|cause| cause.downcast_ref::<Coded>().map(|c| c.code))
                .unwrap_or(FAILURE);
            eprintln!("rprof: {}", one_line(&err));
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot read p.data: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Issue 9.10: a cause that its error already prints is not printed a second time.
    #[test]
    fn causes_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let err = anyhow::Error::new(Repeats(io));
        assert_eq!(
            one_line(&err),
            "cannot read p.data: Permission denied (os error 13)"
        );
        let coded = with_code(FAILURE, err);
        assert_eq!(
            one_line(&coded),
            "cannot read p.data: Permission denied (os error 13)"
        );
        let plain = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOSPC))
            .context("cannot write to standard output");
        assert_eq!(
            one_line(&plain),
            "cannot write to standard output: No space left on device (os error 28)"
        );
    }
}
