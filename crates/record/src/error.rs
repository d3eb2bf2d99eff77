//! Why a recording failed: [`RecordError`], whose text is the one line the user sees.
//!
//! It leaves exit codes to the binary: [`RecordError::Launch`] carries COMMAND's (127, 126),
//! the others are rprof failing.

use std::path::PathBuf;

use rprof_fs::WriteError;
use rprof_launch::LaunchError;
use rprof_perf::SamplerError;

/// Why `rprof record` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The target has no command line.
    #[error("no command given")]
    NoCommand,
    /// COMMAND could not be started, or waiting for it failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The profile's file could not be created; nothing was started.
    #[error(transparent)]
    Create(#[from] WriteError),
    /// The profile's header could not be written: COMMAND was not started.
    #[error("{error}; {command} was not started")]
    NotStarted {
        /// Why the header could not be written, with its causes.
        error: String,
        /// COMMAND as given.
        command: String,
    },
    /// The profile could not be written to its end (a full disk); the target was followed to
    /// its end anyway.
    #[error("cannot write the profile to '{}': {why}; {held}; {outcome}", path.display())]
    Unfinished {
        /// The profile's destination.
        path: PathBuf,
        /// Why writing stopped.
        why: String,
        /// What the destination holds now.
        held: String,
        /// How the target ended.
        outcome: String,
    },
    /// `-p` of a process that is gone (it exited, perhaps a moment ago, or never existed).
    #[error("no process with id {0} (it exited before rprof could attach)")]
    Gone(u32),
    /// The kernel refused the samplers; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The samplers could not be opened.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// Another step failed.
    #[error("{what}")]
    Io {
        /// What rprof was doing, e.g. "cannot write to the profile".
        what: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
}

impl RecordError {
    /// `what` failed with `error`.
    pub(crate) fn io(what: &str, error: std::io::Error) -> RecordError {
        RecordError::Io {
            what: what.to_string(),
            error,
        }
    }
}

/// `error` and its causes, `what: why: why` (as anyhow's `{:#}` prints them).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: an error keeps its causes in the one line (`what: why`), as anyhow's `{:#}`
    /// printed them when this was the binary's code.
    #[test]
    fn causes_follow_the_error() {
        let e = RecordError::io(
            "cannot write the profile to 'p.data'",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(
            with_causes(&e),
            "cannot write the profile to 'p.data': No space left on device (os error 28)"
        );
        let not_started = RecordError::NotStarted {
            error: with_causes(&e),
            command: "./prog".to_string(),
        };
        assert_eq!(
            not_started.to_string(),
            "cannot write the profile to 'p.data': No space left on device (os error 28); ./prog was not started"
        );
        assert_eq!(
            RecordError::Gone(9).to_string(),
            "no process with id 9 (it exited before rprof could attach)"
        );
    }
}
