//! The profile's file during a recording: written through a [`Sink`] that keeps the first
//! write error (a full disk, a quota) and drops every later write, so that the recording keeps
//! following the target and draining the ring buffers; the file keeps what was written before,
//! which `rprof report` reads up to the last complete block.
//!
//! The file is created by `rprof-fs` beside its destination and moved into place
//! ([`Recording::place`]) only when recording begins, so that a recording that fails to start
//! leaves an existing profile alone and no file behind.
//!
//! It leaves to others what is written ([`crate::Recorder`]) and when ([`crate::session`]).

use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rprof_fs::{Access, NewFile};
use rprof_perf::CallGraph;
use rprof_profile::{Header, LookupSet, Module, Record};

use crate::error::{with_causes, RecordError};
use crate::note::Note;
use crate::session::Summary;
use crate::Recorder;

/// The message of every write error while recording.
pub(crate) const CANNOT_WRITE: &str = "cannot write to the profile";

/// Creates the profile's file beside `path` (`rprof-fs`): private (0600), handed to the
/// invoking user under sudo (if that fails, `tell` hears why).
pub(crate) fn create(path: &Path, tell: &mut dyn FnMut(Note)) -> Result<NewFile, RecordError> {
    let file = NewFile::create(path, Access::Private)?;
    if let Some(problem) = file.handover_problem() {
        tell(Note::Handover(problem));
    }
    Ok(file)
}

/// Where the recorder's bytes go: the file, until the first write that fails.
pub(crate) struct Sink {
    file: File,
    failure: Rc<OnceCell<io::Error>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failure.get().is_some() {
            return Ok(buf.len());
        }
        match self.file.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let _ = self.failure.set(e);
                Ok(buf.len())
            }
            written => written,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A recorder that writes a profile; `failure` says whether (and why) its writes stopped.
pub(crate) struct Recording {
    pub recorder: Recorder<BufWriter<Sink>>,
    failure: Rc<OnceCell<io::Error>>,
    /// When (after the start) the failure was noticed and told to the user.
    failed_after: Option<Duration>,
    /// The file is at its destination.
    placed: bool,
}

impl Recording {
    /// Starts the profile in `file` with `header`; the header reaches the file now, or this
    /// fails (and the caller does not start the target).
    pub fn start(
        file: &NewFile,
        header: &Header,
        call_graph: CallGraph,
    ) -> Result<Recording, RecordError> {
        let cannot = format!("cannot write the profile to '{}'", file.path().display());
        let failure = Rc::new(OnceCell::new());
        let sink = Sink {
            file: file
                .file()
                .try_clone()
                .map_err(|e| RecordError::io(&cannot, e))?,
            failure: Rc::clone(&failure),
        };
        let recorder = Recorder::new(BufWriter::with_capacity(1 << 20, sink), header, call_graph)
            .map_err(|e| RecordError::io(&cannot, e))?;
        if let Some(e) = failure.get() {
            return Err(RecordError::io(&cannot, io::Error::other(e.to_string())));
        }
        Ok(Recording {
            recorder,
            failure,
            failed_after: None,
            placed: false,
        })
    }

    /// Recording has begun: moves the file to its destination. If that fails, the recording
    /// goes on without writing, like after a full disk.
    pub fn place(&mut self, file: NewFile) {
        match file.commit() {
            Ok(_) => self.placed = true,
            Err(e) => {
                let _ = self.failure.set(io::Error::other(with_causes(&e)));
            }
        }
    }

    /// Says once, when it happens, that the profile can no longer be written.
    pub fn tell_failure(
        &mut self,
        path: &Path,
        target: &str,
        started: Instant,
        tell: &mut dyn FnMut(Note),
    ) {
        if self.failed_after.is_some() {
            return;
        }
        if let Some(e) = self.failure.get() {
            self.failed_after = Some(started.elapsed());
            tell(Note::WriteStopped {
                path: path.to_path_buf(),
                error: e.to_string(),
                target: target.to_string(),
            });
        }
    }

    /// Names every address the samples used (with `name`, so that the profile is
    /// self-contained) and writes the summary. If the profile could not be written to its
    /// end, that is the error, with `outcome` (how the target ended).
    pub fn finish(
        self,
        name: impl FnOnce(&[Module], &LookupSet) -> Vec<Record>,
        elapsed: Duration,
        path: &Path,
        outcome: &str,
    ) -> Result<Summary, RecordError> {
        let Recording {
            recorder,
            failure,
            mut failed_after,
            placed,
        } = self;
        if failure.get().is_some() && failed_after.is_none() {
            // It failed in the last round, after the target had ended.
            failed_after = Some(elapsed);
        }
        if failure.get().is_none() {
            let (out, stats) = recorder
                .finish(name)
                .map_err(|e| RecordError::io(CANNOT_WRITE, e))?;
            if failure.get().is_none() {
                let size = out
                    .get_ref()
                    .file
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or_default();
                return Ok(Summary {
                    stats,
                    elapsed,
                    size,
                });
            }
        }
        let held = match (placed, failed_after) {
            (false, _) => "no profile was written".to_string(),
            (true, Some(at)) => format!(
                "writing stopped after {:.1} s and rprof report reads what was written",
                at.as_secs_f64()
            ),
            (true, None) => {
                "it holds every sample but not all their names, and rprof report reads it"
                    .to_string()
            }
        };
        let why = failure
            .get()
            .map_or_else(|| "write failed".to_string(), ToString::to_string);
        Err(RecordError::Unfinished {
            path: path.to_path_buf(),
            why,
            held,
            outcome: outcome.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: the sink moved out of the binary keeps the first write error (a full disk)
    /// and drops every later write, so the recording goes on following the target.
    #[test]
    fn a_full_disk_is_kept_and_later_writes_are_dropped() {
        let full = File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full is part of every Linux system rprof runs on");
        let failure = Rc::new(OnceCell::new());
        let mut sink = Sink {
            file: full,
            failure: Rc::clone(&failure),
        };
        assert_eq!(sink.write(b"header").unwrap(), 6);
        let first = failure.get().map(io::Error::raw_os_error);
        assert_eq!(first, Some(Some(libc::ENOSPC)));
        assert_eq!(sink.write(b"more").unwrap(), 4);
        sink.flush().unwrap();
        assert_eq!(
            failure.get().map(io::Error::raw_os_error),
            Some(Some(libc::ENOSPC))
        );
    }
}
