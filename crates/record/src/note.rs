//! What a recording tells the user while it runs: [`Note`]s, each one line that the binary
//! prints as `rprof: note: ...` when the session hands it over.
//!
//! Notes are handed over as they arise rather than at the end (as `rprof stat` does), because
//! a recording can run for hours: that the profile stopped being written (a full disk) must be
//! said when it happens. The counts at the end are in the [`crate::session::Summary`].
//!
//! It leaves printing to the caller.

use std::fmt;
use std::path::PathBuf;

/// Something the user should know about a recording that goes on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Note {
    /// The new profile could not be handed to the invoking user under sudo (`rprof-fs` says
    /// why).
    Handover(String),
    /// The kernel refused kernel-space sampling: only user space is recorded.
    UserOnly {
        /// `kernel.perf_event_paranoid`, if readable.
        paranoid: Option<i32>,
    },
    /// The default ring buffers were over the locked-memory limit: smaller ones are used.
    SmallerBuffers {
        /// Data pages per CPU asked for.
        asked: usize,
        /// Data pages per CPU in use.
        pages: usize,
    },
    /// The mappings of the attached process could not be read (its samples from code mapped
    /// before the recording cannot be unwound).
    NoMaps {
        /// The attached process.
        pid: u32,
        /// Why.
        error: std::io::Error,
    },
    /// The profile can no longer be written (a full disk): the target is followed to its end
    /// without recording.
    WriteStopped {
        /// The profile's destination.
        path: PathBuf,
        /// Why.
        error: String,
        /// What is followed: the command as given, or `process PID`.
        target: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Handover(problem) => write!(f, "{problem}"),
            Note::UserOnly { paranoid } => {
                let level = paranoid.map_or("unreadable".to_string(), |p| p.to_string());
                write!(
                    f,
                    "the kernel refuses kernel-space sampling (kernel.perf_event_paranoid is {level}); recording user space only"
                )
            }
            Note::SmallerBuffers { asked, pages } => write!(
                f,
                "the kernel refused ring buffers of {asked} pages per CPU (locked-memory limit); using {pages} pages, samples may be lost (see docs/permissions.md)"
            ),
            Note::NoMaps { pid, error } => write!(f, "cannot read /proc/{pid}/maps: {error}"),
            Note::WriteStopped {
                path,
                error,
                target,
            } => write!(
                f,
                "cannot write to '{}': {error}; following {target} to its end without recording",
                path.display()
            ),
        }
    }
}
