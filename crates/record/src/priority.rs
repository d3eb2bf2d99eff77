//! Keeping the recorder ahead of the target (issue 13).
//!
//! The recorder's one thread drains the ring buffers; it needs little CPU (about 5 µs a
//! sample) but must run soon after a ring's wake-up. Measured on a loaded 2-core machine, a
//! recorder at nice 0 spent 1-4 s waiting on the run queue per 3-15 s recording of 4 busy
//! threads at 10 kHz, found rings up to 86 % full, and, next to 1,000 busy threads, once
//! waited 1.36 s with both rings full (270 samples lost). So:
//!
//! - When it may (root, CAP_SYS_NICE, `ulimit -e`), the recorder raises its own thread to
//!   [`RECORDER_NICE`] from the start of the recording ([`raise`]) and returns to its earlier
//!   nice value before naming addresses ([`restore`]). The target keeps its priority: the
//!   recorder takes no more CPU than before, it only takes it when it wakes.
//! - Otherwise, when the target has more than [`THREADS_PER_CPU`] live threads per CPU, or a
//!   round finds a ring buffer more than half full, or records were lost, it moves a launched
//!   target's threads to `SCHED_IDLE` ([`keep_up`]), which a user may always do to its own
//!   processes: their weight is the smallest (3, nice 19 is 15) and a waking recorder
//!   preempts them at once. The target then yields to the rest of the machine too; its
//!   samples per CPU second, what the profile shows, do not change. Where `SCHED_IDLE` is
//!   refused, nice [`TARGET_NICE`]. Done once; said in a [`Note::KeepUp`].
//!
//! It leaves to others when a round is behind ([`crate::session`]) and the threads' list
//! (`rprof-perf`).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::note::Note;

/// Live threads of the target per CPU beyond which the recorder acts before it falls behind:
/// at nice 0 it then gets less than 1/16 of a CPU when they are all busy.
pub const THREADS_PER_CPU: usize = 16;

/// The nice value the recorder's thread takes from the start when it may raise its priority:
/// weighs as 87 threads at nice 0.
pub const RECORDER_NICE: i32 = -20;

/// The nice value of the target's threads when the recorder may not raise its own and the
/// kernel refuses `SCHED_IDLE`: each weighs 1/68 of a thread at nice 0.
pub const TARGET_NICE: i32 = 19;

/// True when a ring buffer with `pending` of `size` bytes unread is falling behind.
pub(crate) fn behind(pending: u64, size: usize) -> bool {
    pending > size as u64 / 2
}

/// The calling thread's id (to raise the recorder's priority from another thread).
pub(crate) fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// The nice value of thread `tid`.
fn nice_of(tid: u32) -> std::io::Result<i32> {
    nix::errno::Errno::clear();
    // SAFETY: getpriority takes plain integers; -1 is a valid nice value, told apart by errno.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if nice == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(nice)
}

/// Raises the recorder's thread `tid` to [`RECORDER_NICE`] if it may, for the whole
/// recording. Returns its nice value before (for [`restore`]; a recorder started at
/// [`RECORDER_NICE`] already keeps it), or None if it may not. Threads it starts afterwards
/// inherit the raised priority.
pub(crate) fn raise(tid: u32) -> Option<i32> {
    let before = nice_of(tid).ok()?;
    if before > RECORDER_NICE {
        set_nice(tid, RECORDER_NICE).ok()?;
    }
    Some(before)
}

/// Puts the recorder's thread `tid` back at its nice value `before` [`raise`] (lowering a
/// priority is always allowed).
pub(crate) fn restore(tid: u32, before: i32) {
    let _ = set_nice(tid, before);
}

/// Moves thread `tid` to `SCHED_IDLE`; else (refused) lowers it to [`TARGET_NICE`]. Returns
/// whether it is `SCHED_IDLE` now, or the error of the fallback.
fn lower(tid: u32) -> std::io::Result<bool> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` for the duration of the call.
    let rc = unsafe { libc::sched_setscheduler(tid as libc::pid_t, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        return Ok(true);
    }
    set_nice(tid, TARGET_NICE).map(|()| false)
}

fn set_nice(tid: u32, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers; `tid` 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the priority of the recorder's thread `recorder` to [`RECORDER_NICE`], or else
/// (`pids` not empty) moves every thread of `pids` to `SCHED_IDLE` (or nice [`TARGET_NICE`],
/// see [`lower`]). Returns the note that says which. An attached process, which outlives the
/// recording, is left alone (no `pids`).
pub(crate) fn keep_up(recorder: u32, pids: &[u32]) -> Note {
    if set_nice(recorder, RECORDER_NICE).is_ok() {
        return Note::KeepUp(format!(
            "the recorder fell behind the target's threads (a ring buffer half full): raised its priority to nice {RECORDER_NICE}"
        ));
    }
    if pids.is_empty() {
        return Note::KeepUp(
            "the recorder fell behind the process's threads (a ring buffer half full) and may not raise its own priority: samples may be lost (run as root, or allow `ulimit -e 40`)".to_string(),
        );
    }
    let (mut idle, mut niced) = (0usize, 0usize);
    for &pid in pids {
        for tid in rprof_perf::list_threads(pid).unwrap_or_default() {
            match lower(tid) {
                Ok(true) => idle += 1,
                Ok(false) => niced += 1,
                Err(_) => {}
            }
        }
    }
    let how = match (idle, niced) {
        (_, 0) => format!("moved {idle} threads of the target to SCHED_IDLE"),
        (0, _) => format!("lowered {niced} threads of the target to nice {TARGET_NICE}"),
        _ => format!(
            "moved {idle} threads of the target to SCHED_IDLE and lowered {niced} to nice {TARGET_NICE}"
        ),
    };
    Note::KeepUp(format!(
        "the recorder fell behind the target's threads (a ring buffer half full) and may not raise its own priority: {how} (run as root, or allow `ulimit -e 40`, to leave the target's priority alone)"
    ))
}

/// How often the [`Watch`] looks at the target's thread count.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// A thread that watches the launched target's thread count and calls [`keep_up`] as soon as
/// it passes [`THREADS_PER_CPU`] per CPU. The recorder itself cannot: once the target's
/// threads spin, it may not run again for seconds, and it learns of new threads only from
/// records it has not read yet. The watcher does almost nothing, so the scheduler lets it run
/// whenever it wakes.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    note: Arc<Mutex<Option<Note>>>,
    thread: Option<JoinHandle<()>>,
}

/// The `Threads:` count of `/proc/PID/status`.
fn thread_count(pid: u32) -> Option<usize> {
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .take(1 << 16)
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

impl Watch {
    /// Watches process `pid` on behalf of the recorder's thread `recorder` (see [`keep_up`]),
    /// with `cpus` ring buffers.
    pub(crate) fn start(pid: u32, recorder: u32, cpus: usize) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let note = Arc::new(Mutex::new(None));
        let limit = THREADS_PER_CPU * cpus.max(1);
        let thread = {
            let stop = Arc::clone(&stop);
            let note = Arc::clone(&note);
            std::thread::Builder::new()
                .name("rprof-watch".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match thread_count(pid) {
                            Some(n) if n > limit => {
                                let said = keep_up(recorder, &[pid]);
                                if let Ok(mut slot) = note.lock() {
                                    *slot = Some(said);
                                }
                                return;
                            }
                            Some(_) => std::thread::sleep(WATCH_INTERVAL),
                            None => return,
                        }
                    }
                })
                .ok()
        };
        Watch { stop, note, thread }
    }

    /// Whether the watcher has acted, and the note that says how (once).
    pub(crate) fn take_note(&self) -> Option<Note> {
        self.note.lock().ok().and_then(|mut slot| slot.take())
    }

    /// True once the watcher has finished (acted, or the target is gone).
    pub(crate) fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_full_is_behind() {
        assert!(!behind(0, 4096));
        assert!(!behind(2048, 4096));
        assert!(behind(2049, 4096));
    }

    /// Issue 13: the recorder drains the rings at nice -20 from the start when it may, and
    /// returns to its nice value afterwards.
    #[test]
    fn raises_and_restores_the_recorder() {
        // On a thread of its own: the test harness's threads keep their priority.
        std::thread::spawn(|| {
            let tid = current_tid();
            let before = nice_of(tid).unwrap();
            match raise(tid) {
                Some(was) => {
                    assert_eq!(was, before);
                    assert_eq!(nice_of(tid).unwrap(), RECORDER_NICE);
                    // Already raised: it stays there, and says so.
                    assert_eq!(raise(tid), Some(RECORDER_NICE));
                    assert_eq!(nice_of(tid).unwrap(), RECORDER_NICE);
                    restore(tid, was);
                    assert_eq!(nice_of(tid).unwrap(), before);
                }
                None => {
                    // Not allowed (no root, CAP_SYS_NICE or `ulimit -e`): left alone.
                    assert!(!nix::unistd::geteuid().is_root());
                    assert_eq!(nice_of(tid).unwrap(), before);
                }
            }
        })
        .join()
        .unwrap();
    }

    /// Issue 13: a target thread is moved to SCHED_IDLE, which an unprivileged user may do.
    #[test]
    fn lowers_a_thread_to_sched_idle() {
        std::thread::spawn(|| {
            let tid = current_tid();
            assert!(lower(tid).unwrap());
            // SAFETY: sched_getscheduler takes a plain integer.
            let policy = unsafe { libc::sched_getscheduler(tid as libc::pid_t) };
            assert_eq!(policy, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn counts_threads() {
        let n = thread_count(std::process::id()).unwrap();
        assert!(n >= 1);
        assert_eq!(thread_count(u32::MAX), None);
    }
}
