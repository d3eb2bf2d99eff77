//! Folded stacks (Brendan Gregg's format): one line per distinct stack, root first, frames
//! separated by `;`, then a space and the number of samples. The thread's name is the root
//! frame, as perf's stack collapsing does: the name the thread had when the sample was taken
//! (samples before an `exec` keep the old program's name). Lines are sorted, so the output is
//! deterministic.
//!
//! With a time weight (`--off-cpu`, `--wall`: [`Selection::weight`]) the numbers are
//! microseconds (rounded; a stack under half a microsecond in all is left out), and the frames
//! of off-CPU stacks end with the reason they waited (`[lock]`, `[sleep]`, ...).
//!
//! Names are cleaned for the format: `;` in a name becomes `:`, control and bidi characters are
//! escaped by [`visible`] (so a newline cannot end a stack early), surrounding whitespace is
//! trimmed and an empty name becomes `[unknown]`.

use std::collections::HashMap;
use std::io::{self, Write};

use rprof_profile::{FrameKind, Profile};

use crate::select::{Selection, StackCounts, ThreadSpan};
use crate::visible::visible;

/// How folded stacks are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedOptions {
    /// Which samples count. Default: all of them, inline frames kept apart.
    pub selection: Selection,
    /// Mark frames the way FlameGraph's palettes understand: `_[k]` after kernel functions,
    /// `_[i]` after inlined ones, `_[w]` after every frame of an off-CPU stack (FlameGraph's
    /// mark for waits, which inferno strips from the names it shows). Default `false`: plain
    /// names.
    pub annotate: bool,
    /// Start each stack with the thread's name. Default `true`.
    pub thread_root: bool,
}

impl Default for FoldedOptions {
    fn default() -> Self {
        FoldedOptions {
            selection: Selection::default(),
            annotate: false,
            thread_root: true,
        }
    }
}

/// A frame name made safe for the format: `;` separates frames (it becomes `:`), a line ends a
/// stack, and tools trim the ends of lines; an empty name would vanish. Control characters
/// (newlines included) and the others [`visible`] escapes are shown as its escapes, as in every
/// text output: the folded stacks are read by people and drawn by flame graph tools.
fn clean(name: &str) -> String {
    let cleaned = visible(&name.replace(';', ":")).into_owned();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "[unknown]".to_string()
    } else if trimmed.len() == cleaned.len() {
        cleaned
    } else {
        trimmed.to_string()
    }
}

/// The root frame of the samples `who` took: the name the thread had then, or `[tid N]` when
/// it had none.
pub fn thread_label(profile: &Profile, who: ThreadSpan) -> String {
    match who.name(profile) {
        "" => format!("[tid {}]", who.tid),
        name => clean(name),
    }
}

/// The folded lines (`stack count`), one per distinct stack, sorted as strings (the order
/// FlameGraph's and inferno's tools expect).
pub fn lines(profile: &Profile, options: &FoldedOptions) -> Vec<String> {
    // Every distinct name (frame or thread) gets an id; stacks are counted as id sequences and
    // spelled out once each.
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut intern = |name: String| -> u32 {
        if let Some(&id) = ids.get(&name) {
            return id;
        }
        let id = names.len() as u32;
        ids.insert(name.clone(), id);
        names.push(name);
        id
    };
    let frame_names: Vec<u32> = profile
        .frames()
        .iter()
        .map(|f| {
            let mut name = clean(&f.function);
            if options.annotate {
                if f.kind == FrameKind::Kernel {
                    name.push_str("_[k]");
                } else if f.inlined {
                    name.push_str("_[i]");
                }
            }
            intern(name)
        })
        .collect();
    // The frames of off-CPU stacks, marked apart (annotated output only).
    let mut wait_names: HashMap<u32, u32> = HashMap::new();
    let mut thread_names: HashMap<(u32, usize), u32> = HashMap::new();
    let counts = StackCounts::new(profile, &options.selection);
    let mut folded: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut key = Vec::new();
    for &(stack, who, n) in &counts.entries {
        key.clear();
        if options.thread_root {
            let id = *thread_names
                .entry((who.tid, who.name_index))
                .or_insert_with(|| intern(thread_label(profile, who)));
            key.push(id);
        }
        let start = key.len();
        let off_cpu = profile
            .stack(stack)
            .first()
            .is_some_and(|&f| profile.frame(f).kind == FrameKind::Wait);
        for f in options.selection.frames(profile, stack) {
            let info = profile.frame(f);
            let marked = !matches!(info.kind, FrameKind::Wait | FrameKind::Truncated);
            if off_cpu && options.annotate && marked {
                let id = match wait_names.get(&f.0) {
                    Some(&id) => id,
                    None => {
                        let id = intern(format!("{}_[w]", clean(&info.function)));
                        wait_names.insert(f.0, id);
                        id
                    }
                };
                key.push(id);
            } else {
                key.push(frame_names[f.0 as usize]);
            }
        }
        key[start..].reverse();
        if key.is_empty() {
            continue;
        }
        match folded.get_mut(key.as_slice()) {
            Some(count) => *count += n,
            None => {
                folded.insert(key.clone(), n);
            }
        }
    }
    let micros = options.selection.weight.is_time();
    let mut lines: Vec<String> = folded
        .into_iter()
        .filter_map(|(key, n)| {
            // Nanoseconds become microseconds, rounded.
            let n = if micros {
                n.saturating_add(500) / 1000
            } else {
                n
            };
            (n > 0).then_some((key, n))
        })
        .map(|(key, n)| {
            let len: usize = key.iter().map(|&id| names[id as usize].len() + 1).sum();
            let mut line = String::with_capacity(len + 20);
            for (i, &id) in key.iter().enumerate() {
                if i > 0 {
                    line.push(';');
                }
                line.push_str(&names[id as usize]);
            }
            line.push(' ');
            line.push_str(&n.to_string());
            line
        })
        .collect();
    lines.sort_unstable();
    lines
}

/// The distinct stacks with their sample counts, in the order of [`lines`].
pub fn stacks(profile: &Profile, options: &FoldedOptions) -> Vec<(String, u64)> {
    lines(profile, options)
        .into_iter()
        .filter_map(|mut line| {
            let space = line.rfind(' ')?;
            let count = line[space + 1..].parse().ok()?;
            line.truncate(space);
            Some((line, count))
        })
        .collect()
}

/// Writes the folded stacks of `profile`.
pub fn render(profile: &Profile, options: &FoldedOptions, mut out: impl Write) -> io::Result<()> {
    for line in lines(profile, options) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
