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
    /// `--off-cpu`: the kernel refused the off-CPU sampler in kernel space, where the
    /// `context-switches` event fires: blocks are timed, but carry no stacks.
    OffCpuNoStacks {
        /// `kernel.perf_event_paranoid`, if readable.
        paranoid: Option<i32>,
    },
    /// `--off-cpu` with stacks, but without the lock wake-up sampler (`crate::locks`): why.
    NoWakers(String),
    /// The default ring buffers were over the locked-memory limit: smaller ones are used.
    SmallerBuffers {
        /// Data pages per CPU asked for.
        asked: usize,
        /// Data pages per CPU in use.
        pages: usize,
    },
    /// The ring buffers are capped (locked-memory limit): the user-stack copy was made smaller
    /// so that each holds enough samples; deeper stacks are marked truncated.
    SmallerStackCopy {
        /// Bytes asked for (`--call-graph dwarf,SIZE`, or the default).
        asked: u32,
        /// Bytes copied.
        used: u32,
        /// Data pages per CPU.
        pages: usize,
    },
    /// The recorder fell behind the target's busy threads (its ring buffers filled up): its
    /// priority was raised, or the target's lowered.
    KeepUp(String),
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
            Note::OffCpuNoStacks { paranoid } => {
                let level = paranoid.map_or("unreadable".to_string(), |p| p.to_string());
                write!(
                    f,
                    "the kernel refuses the off-CPU stack sampler (kernel.perf_event_paranoid is {level}): off-CPU time is recorded without stacks; run as root or `sudo sysctl kernel.perf_event_paranoid=1` for stacks"
                )
            }
            Note::NoWakers(why) => write!(
                f,
                "lock wake-ups (who held a lock, rprof report --locks) are not recorded: {why}"
            ),
            Note::SmallerBuffers { asked, pages } => write!(
                f,
                "the kernel refused ring buffers of {asked} pages per CPU (locked-memory limit); using {pages} pages, samples may be lost (see docs/permissions.md)"
            ),
            Note::SmallerStackCopy { asked, used, pages } => write!(
                f,
                "ring buffers of {pages} pages per CPU (locked-memory limit) hold few stack copies of {asked} bytes: copying {used} bytes of user stack per sample (deeper stacks show as truncated); raise `kernel.perf_event_mlock_kb` or `ulimit -l`, or run as root, for more (see docs/permissions.md)"
            ),
            Note::KeepUp(what) => write!(f, "{what}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: the notes moved out of the binary read as they did there (the integration
    /// tests match parts of them).
    #[test]
    fn notes_read_as_before() {
        assert_eq!(
            Note::UserOnly { paranoid: Some(2) }.to_string(),
            "the kernel refuses kernel-space sampling (kernel.perf_event_paranoid is 2); recording user space only"
        );
        assert_eq!(
            Note::UserOnly { paranoid: None }.to_string(),
            "the kernel refuses kernel-space sampling (kernel.perf_event_paranoid is unreadable); recording user space only"
        );
        assert_eq!(
            Note::SmallerBuffers { asked: 4096, pages: 512 }.to_string(),
            "the kernel refused ring buffers of 4096 pages per CPU (locked-memory limit); using 512 pages, samples may be lost (see docs/permissions.md)"
        );
        assert_eq!(
            Note::WriteStopped {
                path: PathBuf::from("p.data"),
                error: "No space left on device (os error 28)".to_string(),
                target: "process 42".to_string(),
            }
            .to_string(),
            "cannot write to 'p.data': No space left on device (os error 28); following process 42 to its end without recording"
        );
        let error = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            Note::NoMaps { pid: 7, error }.to_string(),
            "cannot read /proc/7/maps: Permission denied (os error 13)"
        );
    }
}
