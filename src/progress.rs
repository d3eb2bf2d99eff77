//! A progress line on stderr for long post-processing (naming addresses at the end of
//! `record` or for an interrupted profile, reading a profile), drawn by indicatif.
//!
//! Nothing is drawn unless stderr is a terminal, and nothing before the work has taken
//! [`DELAY`]: short runs and every pipe, file or test harness see no progress output at all.
//! The line is cleared when the work ends, so the lines printed after it stay as they were.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its progress line appears.
const DELAY: Duration = Duration::from_secs(1);

/// How often a shown line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// A progress line that appears after [`DELAY`] when stderr is a terminal. Ends (and is
/// cleared) when dropped.
pub struct Progress {
    bar: ProgressBar,
    /// Dropped to tell the waiting thread that the work has ended.
    done: Option<mpsc::Sender<()>>,
    waiter: Option<JoinHandle<()>>,
}

impl Progress {
    /// A progress line counting `len` items (a spinner when `None`), titled `what`.
    pub fn new(what: &str, len: Option<u64>) -> Progress {
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
        let template = if len.is_some() {
            "rprof: {prefix} [{bar:30}] {pos}/{len} {msg}"
        } else {
            "rprof: {prefix} {spinner} {elapsed} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(rprof_report::visible(what).into_owned());
        let mut progress = Progress {
            bar,
            done: None,
            waiter: None,
        };
        let delay = delay();
        if std::io::stderr().is_terminal() && delay.is_zero() {
            // Shown at once, however short the work (tests): a waiting thread might not even
            // have started before the work ended.
            progress.bar.set_draw_target(ProgressDrawTarget::stderr());
            progress.bar.enable_steady_tick(TICK);
            progress.bar.tick();
        } else if std::io::stderr().is_terminal() {
            let (done, wait) = mpsc::channel::<()>();
            let bar = progress.bar.clone();
            progress.done = Some(done);
            progress.waiter = Some(std::thread::spawn(move || {
                // Only a timeout shows the line: the sender dropped means the work ended.
                if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(delay) {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(TICK);
                }
            }));
        }
        progress
    }

    /// `n` more items are done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Runs `f` (which prints to stderr) with the line out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// What is being worked on now (shown through `visible`: it may be a path of the target).
    pub fn set_message(&self, message: &str) {
        self.bar
            .set_message(rprof_report::visible(message).into_owned());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done = None;
        if let Some(waiter) = self.waiter.take() {
            // The thread only waits and switches the draw target; it cannot panic.
            let _ = waiter.join();
        }
        self.bar.finish_and_clear();
    }
}

/// [`DELAY`], or `RPROF_PROGRESS_DELAY_MS` milliseconds (for tests; 0 draws the line as soon
/// as the work starts).
fn delay() -> Duration {
    std::env::var("RPROF_PROGRESS_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(DELAY, Duration::from_millis)
}
