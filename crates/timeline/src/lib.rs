//! rprof-timeline: a thread timeline as one self-contained HTML file.
//!
//! The page has one lane per thread, named and grouped by process, over the recording's time
//! axis. A lane shows when its thread was alive, its on-CPU samples, and the states it was in
//! (running, runnable, blocked on a lock, sleeping, waiting for I/O) coloured by reason, with a
//! legend; hovering or clicking a block or sample shows its stack; the wheel zooms the time axis
//! and dragging pans it. `docs/timeline.md` is the user's guide.
//!
//! The input is this crate's own plain data ([`Input`]: processes → threads → states and
//! samples), so that any source can draw a timeline: [`from_profile`] builds it from an rprof
//! profile. The output is built to open quickly on large recordings (100 threads × 10 s,
//! 10⁵–10⁶ states and samples): stack frames are interned once in a string table, stacks are
//! stored as a prefix tree of (parent, frame) nodes ([`Stacks`]), times are integers relative
//! to the previous entry, all of it embedded as one JSON document that the page decodes into
//! typed arrays and draws on a `<canvas>`, merging what is narrower than a pixel.
//!
//! Every string is untrusted (thread, process and function names come from the profiled
//! program): the HTML parts are escaped for HTML, the embedded JSON escapes `<`, `>`, `&`,
//! control characters and U+2028/U+2029 so that nothing in it can end the `<script>` element,
//! and the page shows control characters as `\xNN`. The page loads nothing: no network, no
//! external scripts, styles or fonts.
//!
//! This crate does not read files or decide where the output goes (the binary does, through
//! `rprof-fs`), and does not find off-CPU intervals (the recording does).

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

mod html;
mod json;
mod profile;
#[doc(hidden)]
pub mod synth;

use std::io::{self, Write};

use rustc_hash::FxHashMap as HashMap;

pub use profile::{from_profile, FromProfileOptions};

/// What a thread was doing during a [`Span`]. Off-CPU reasons are the ones rprof's off-CPU
/// recording classifies waits into (`cpu`, `lock`, `sleep`, `io`, `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// On a CPU.
    Running,
    /// Off the CPU but ready to run: preempted, waiting for a CPU (reason `cpu`).
    Runnable,
    /// Blocked on a lock (futex wait; reason `lock`).
    Lock,
    /// Sleeping (nanosleep, timers; reason `sleep`).
    Sleep,
    /// Waiting for I/O (read, write, poll, pipes, sockets, disk; reason `io`).
    Io,
    /// Off the CPU for another reason (reason `other`).
    Other,
}

impl State {
    /// Every state, in the order of the legend (and of the codes in the embedded data).
    pub const ALL: [State; 6] = [
        State::Running,
        State::Runnable,
        State::Lock,
        State::Sleep,
        State::Io,
        State::Other,
    ];

    /// The state of an off-CPU interval with this wait reason (`cpu`, `lock`, `sleep`, `io`,
    /// `other`); an unknown reason is [`State::Other`].
    pub fn from_reason(reason: &str) -> State {
        match reason {
            "cpu" => State::Runnable,
            "lock" => State::Lock,
            "sleep" => State::Sleep,
            "io" => State::Io,
            _ => State::Other,
        }
    }

    /// The code of this state in the embedded data (its index in [`State::ALL`]).
    fn code(self) -> u8 {
        match self {
            State::Running => 0,
            State::Runnable => 1,
            State::Lock => 2,
            State::Sleep => 3,
            State::Io => 4,
            State::Other => 5,
        }
    }
}

/// A stack interned in [`Stacks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackRef(u32);

/// Interned stacks: every distinct frame string once, every stack a node of a prefix tree
/// (its leaf frame and the node of its caller), so that a million samples of a thousand stacks
/// hold a thousand stacks, and stacks that share callers share their nodes.
#[derive(Debug, Clone, Default)]
pub struct Stacks {
    frames: Vec<Box<str>>,
    frame_index: HashMap<Box<str>, u32>,
    /// (parent node or `NONE`, frame).
    nodes: Vec<(u32, u32)>,
    node_index: HashMap<(u32, u32), u32>,
}

/// No parent node: a root frame.
const NONE: u32 = u32::MAX;

impl Stacks {
    /// Interns the stack of these frames, root (outermost caller) first; `None` for an empty
    /// stack.
    pub fn intern<'a>(
        &mut self,
        root_first: impl IntoIterator<Item = &'a str>,
    ) -> Option<StackRef> {
        let mut node = NONE;
        for frame in root_first {
            let frame = self.frame(frame);
            node = match self.node_index.get(&(node, frame)) {
                Some(&n) => n,
                None => {
                    let n = self.nodes.len() as u32;
                    self.nodes.push((node, frame));
                    self.node_index.insert((node, frame), n);
                    n
                }
            };
        }
        (node != NONE).then_some(StackRef(node))
    }

    /// The frames of `stack`, root first.
    pub fn frames(&self, stack: StackRef) -> Vec<&str> {
        let mut out = Vec::new();
        let mut node = stack.0;
        while let Some(&(parent, frame)) = self.nodes.get(node as usize) {
            out.push(&*self.frames[frame as usize]);
            node = parent;
        }
        out.reverse();
        out
    }

    /// How many distinct frame strings and stack nodes are held.
    pub fn sizes(&self) -> (usize, usize) {
        (self.frames.len(), self.nodes.len())
    }

    fn frame(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.frame_index.get(name) {
            return i;
        }
        let i = self.frames.len() as u32;
        self.frames.push(name.into());
        self.frame_index.insert(name.into(), i);
        i
    }
}

/// A stretch of time a thread spent in one [`State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Start, in nanoseconds on the input's clock.
    pub start: u64,
    /// End (not before `start`).
    pub end: u64,
    /// What the thread was doing.
    pub state: State,
    /// The stack it was in (for an off-CPU span: where it left the CPU), if known.
    pub stack: Option<StackRef>,
}

/// One on-CPU sample: the thread was running at `time`, in `stack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When the sample was taken, in nanoseconds on the input's clock.
    pub time: u64,
    /// Its stack, if any.
    pub stack: Option<StackRef>,
}

/// One lane: a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Thread id.
    pub tid: u32,
    /// Its name (untrusted).
    pub name: String,
    /// When it started (or the recording did), in nanoseconds.
    pub start: u64,
    /// When it ended (or the recording did).
    pub end: u64,
    /// Its states over time (any order; drawn sorted by start).
    pub spans: Vec<Span>,
    /// Its on-CPU samples (any order; drawn sorted by time).
    pub samples: Vec<Sample>,
}

/// A group of lanes: a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Its name (untrusted).
    pub name: String,
    /// Its threads, in the order the lanes are drawn.
    pub threads: Vec<Thread>,
}

/// Everything a timeline page shows.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The page's title (untrusted: it may quote a command line).
    pub title: String,
    /// Start of the time axis, in nanoseconds; earlier times are drawn at the start.
    pub start: u64,
    /// End of the time axis; later times are drawn at the end.
    pub end: u64,
    /// How long one sample stands for (drawn as running for this long before its time), in
    /// nanoseconds; at least 1 is used.
    pub sample_ns: u64,
    /// The input has off-CPU states. Without them only running samples can be drawn, and the
    /// page says how to record the rest.
    pub off_cpu: bool,
    /// Lines shown above the timeline (lost samples, a damaged profile...; untrusted).
    pub notes: Vec<String>,
    /// The processes, in the order they are drawn.
    pub processes: Vec<Process>,
    /// The stacks spans and samples refer to.
    pub stacks: Stacks,
}

/// What the page says about an input without off-CPU states.
pub const NO_OFF_CPU_NOTE: &str = "This profile holds on-CPU samples only: lanes show when each \
     thread ran. Off-CPU states (runnable, lock, sleep, io) need a recording made with \
     `rprof record --off-cpu`.";

/// Writes the timeline page of `input` to `out`. The same input gives the same bytes.
/// Errors of the writer are passed up untouched.
pub fn render(input: &Input, out: impl Write) -> io::Result<()> {
    let data = json::encode(input);
    html::page(input, &data, out)
}

#[cfg(test)]
mod tests;
