//! Keeping the recorder ahead of a target with many busy threads (issue 13).
//!
//! The scheduler shares a CPU fairly between runnable threads: next to 1,000 busy threads of
//! the target, the recorder's one thread gets about a thousandth of the CPUs, far less than
//! unwinding 2,000 samples a second takes, so its ring buffers overflow whatever their size
//! (as root too: 66% of the samples were lost with 16 MiB rings). A recorder that is starved
//! cannot notice it in time (its next round may come seconds later), so it acts ahead: when
//! the target has more than [`THREADS_PER_CPU`] live threads per CPU, or a round finds a ring
//! buffer more than half full, or records lost, the recorder raises its own priority
//! ([`RECORDER_NICE`]) if it may (root, CAP_SYS_NICE, `ulimit -e`); otherwise it lowers the
//! target's threads to [`TARGET_NICE`], which a user may always do to its own processes (the
//! target then yields to the rest of the machine too; its samples per CPU second, what the
//! profile shows, do not change). Done once; said in a [`Note::KeepUp`].
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

/// The nice value the recorder's thread takes when it falls behind and may raise its priority:
/// weighs as 87 threads at nice 0.
pub const RECORDER_NICE: i32 = -20;

/// The nice value of the target's threads when the recorder may not raise its own: each weighs
/// 1/68 of a thread at nice 0.
pub const TARGET_NICE: i32 = 19;

/// True when a ring buffer with `pending` of `size` bytes unread is falling behind.
pub(crate) fn behind(pending: u64, size: usize) -> bool {
    pending > size as u64 / 2
}

/// The calling thread's id (to raise the recorder's priority from another thread).
pub(crate) fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
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
/// (`pids` not empty) lowers every thread of `pids` to [`TARGET_NICE`]. Returns the note that
/// says which. An attached process, which outlives the recording, is left alone (no `pids`).
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
    let mut lowered = 0usize;
    for &pid in pids {
        for tid in rprof_perf::list_threads(pid).unwrap_or_default() {
            if set_nice(tid, TARGET_NICE).is_ok() {
                lowered += 1;
            }
        }
    }
    Note::KeepUp(format!(
        "the recorder fell behind the target's threads (a ring buffer half full) and may not raise its own priority: lowered {lowered} threads of the target to nice {TARGET_NICE} (run as root, or allow `ulimit -e 40`, to leave the target's priority alone)"
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

    #[test]
    fn counts_threads() {
        let n = thread_count(std::process::id()).unwrap();
        assert!(n >= 1);
        assert_eq!(thread_count(u32::MAX), None);
    }
}
