//! Exit codes and the one place where errors become a line on stderr.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (or, for `record`/`stat` with a COMMAND: the COMMAND's own exit code) |
//! | 1 | rprof failed: unreadable profile, I/O error, the kernel refused, ... |
//! | 2 | usage: bad option value, unknown event, nothing to do |
//! | 126 | COMMAND exists but cannot be executed |
//! | 127 | COMMAND not found |
//! | 128+N | COMMAND was killed by signal N |

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
        write!(f, "{:#}", self.error)
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
            eprintln!("rprof: {err:#}");
            code
        }
    }
}

/// Restores the default SIGPIPE action so that writing into a closed pipe ends rprof quietly
/// instead of turning every `println!` into a panic.
pub fn reset_sigpipe() {
    // SAFETY: setting a signal's disposition to its default is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
