//! Entry and return probe hits → calls with a duration, per thread.
//!
//! Each thread has a stack of open entries (function, time). The rules:
//! - an entry is pushed;
//! - a return of function F pairs with the nearest open entry of F on its thread's stack
//!   (recursion nests: the innermost call returns first). Entries above it on the stack are
//!   calls that will never return through their return probe (left by `longjmp`, an exception
//!   or a lost record): they are dropped and counted as *unfinished*;
//! - a return with no open entry of F on its thread is dropped and counted as *unmatched*
//!   (only a lost entry record causes it: a call already running when the probes were placed
//!   returns without a return probe, since the kernel arms the return probe at the entry);
//! - a thread that exits leaves its open entries *unfinished*; so do calls still open when the
//!   measurement ends.
//!
//! Unfinished calls and unmatched returns are counted per function and reported; they never
//! enter the histograms. Input must be in time order per thread (the runner sorts).

use std::collections::HashMap;

/// A probe hit or a thread exit, in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Function `func` was entered on thread `tid` at `time` (ns).
    Entry {
        /// Index of the function.
        func: usize,
        /// Thread.
        tid: u32,
        /// Time, ns.
        time: u64,
    },
    /// Function `func` returned on thread `tid` at `time` (ns).
    Return {
        /// Index of the function.
        func: usize,
        /// Thread.
        tid: u32,
        /// Time, ns.
        time: u64,
    },
    /// Thread `tid` exited.
    ThreadExit {
        /// Thread.
        tid: u32,
    },
}

/// One completed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Index of the function.
    pub func: usize,
    /// Thread.
    pub tid: u32,
    /// Entry time, ns.
    pub start: u64,
    /// Return time − entry time, ns.
    pub duration: u64,
}

/// Counts of what did not pair, per function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpaired {
    /// Entries that never returned through the return probe (longjmp, exception, thread exit,
    /// lost return record).
    pub unfinished: u64,
    /// Entries still open when the measurement ended.
    pub in_progress: u64,
    /// Returns without an entry (their entry record was lost).
    pub unmatched_returns: u64,
}

/// The per-thread stacks.
#[derive(Debug, Default)]
pub struct Pairer {
    stacks: HashMap<u32, Vec<(usize, u64)>>,
    unpaired: Vec<Unpaired>,
}

/// Deepest stack kept per thread; deeper (runaway recursion, lost returns) drops the oldest.
const MAX_DEPTH: usize = 1 << 16;

impl Pairer {
    /// A pairer for `functions` functions.
    pub fn new(functions: usize) -> Pairer {
        Pairer {
            stacks: HashMap::new(),
            unpaired: vec![Unpaired::default(); functions],
        }
    }

    fn slot(&mut self, func: usize) -> &mut Unpaired {
        if func >= self.unpaired.len() {
            self.unpaired.resize(func + 1, Unpaired::default());
        }
        &mut self.unpaired[func]
    }

    /// Applies one event; returns the call it completes, if any.
    pub fn apply(&mut self, event: Event) -> Option<Call> {
        match event {
            Event::Entry { func, tid, time } => {
                let stack = self.stacks.entry(tid).or_default();
                if stack.len() >= MAX_DEPTH {
                    let (old, _) = stack.remove(0);
                    self.slot(old).unfinished += 1;
                }
                self.stacks.entry(tid).or_default().push((func, time));
                None
            }
            Event::Return { func, tid, time } => {
                let stack = self.stacks.entry(tid).or_default();
                let Some(pos) = stack.iter().rposition(|&(f, _)| f == func) else {
                    self.slot(func).unmatched_returns += 1;
                    return None;
                };
                let skipped: Vec<usize> = stack.drain(pos + 1..).map(|(f, _)| f).collect();
                let (_, start) = stack.pop()?;
                for f in skipped {
                    self.slot(f).unfinished += 1;
                }
                Some(Call {
                    func,
                    tid,
                    start,
                    duration: time.saturating_sub(start),
                })
            }
            Event::ThreadExit { tid } => {
                for (f, _) in self.stacks.remove(&tid).unwrap_or_default() {
                    self.slot(f).unfinished += 1;
                }
                None
            }
        }
    }

    /// Counts the entries still open as in progress (the measurement ends) and returns the
    /// counts per function.
    pub fn finish(&mut self) -> Vec<Unpaired> {
        for (_, stack) in std::mem::take(&mut self.stacks) {
            for (f, _) in stack {
                self.slot(f).in_progress += 1;
            }
        }
        self.unpaired.clone()
    }

    /// The counts so far (open entries not included).
    pub fn unpaired(&self) -> &[Unpaired] {
        &self.unpaired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(func: usize, tid: u32, time: u64) -> Event {
        Event::Entry { func, tid, time }
    }
    fn ret(func: usize, tid: u32, time: u64) -> Event {
        Event::Return { func, tid, time }
    }

    fn run(events: &[Event]) -> (Vec<Call>, Vec<Unpaired>) {
        let mut p = Pairer::new(2);
        let calls = events.iter().filter_map(|&e| p.apply(e)).collect();
        (calls, p.finish())
    }

    #[test]
    fn recursion_nests() {
        let (calls, unpaired) = run(&[
            entry(0, 1, 10),
            entry(0, 1, 20),
            ret(0, 1, 25),
            ret(0, 1, 40),
        ]);
        let d: Vec<u64> = calls.iter().map(|c| c.duration).collect();
        assert_eq!(d, vec![5, 30]);
        assert_eq!(unpaired[0], Unpaired::default());
    }

    #[test]
    fn threads_do_not_mix() {
        let (calls, _) = run(&[
            entry(0, 1, 10),
            entry(0, 2, 12),
            ret(0, 1, 15),
            ret(0, 2, 30),
        ]);
        let d: Vec<(u32, u64)> = calls.iter().map(|c| (c.tid, c.duration)).collect();
        assert_eq!(d, vec![(1, 5), (2, 18)]);
    }

    #[test]
    fn longjmp_leaves_inner_entries_unfinished() {
        // f(0) calls g(1), g longjmps out to f, f returns.
        let (calls, unpaired) = run(&[entry(0, 1, 10), entry(1, 1, 12), ret(0, 1, 50)]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].duration, 40);
        assert_eq!(unpaired[1].unfinished, 1);
    }

    #[test]
    fn returns_without_entry_and_exits() {
        let (calls, unpaired) = run(&[
            ret(0, 1, 5),
            entry(0, 2, 10),
            Event::ThreadExit { tid: 2 },
            ret(0, 2, 20),
            entry(1, 3, 30),
        ]);
        assert!(calls.is_empty());
        assert_eq!(unpaired[0].unmatched_returns, 2);
        assert_eq!(unpaired[0].unfinished, 1);
        assert_eq!(unpaired[1].in_progress, 1);
    }
}
