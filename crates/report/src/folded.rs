//! Folded stacks (Brendan Gregg's format): one line per distinct stack, root first, frames
//! separated by `;`, then a space and the number of samples. The thread's name is the root
//! frame, as perf's stack collapsing does. Lines are sorted, so the output is deterministic.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rprof_profile::{FrameKind, Profile};

use crate::select::{Selection, StackCounts};

/// How folded stacks are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedOptions {
    /// Which samples count. Default: all of them, inline frames kept apart.
    pub selection: Selection,
    /// Mark frames the way FlameGraph's palettes understand: `_[k]` after kernel functions,
    /// `_[i]` after inlined ones. Default `false`: plain names.
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

/// A frame name made safe for the format: `;` separates frames and a line ends a stack.
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The name a thread has as a root frame.
pub fn thread_label(profile: &Profile, tid: u32) -> String {
    match profile.threads.get(&tid) {
        Some(t) if !t.name.is_empty() => clean(&t.name),
        _ => format!("[tid {tid}]"),
    }
}

/// The distinct stacks with their sample counts, sorted by stack.
pub fn stacks(profile: &Profile, options: &FoldedOptions) -> Vec<(String, u64)> {
    let names: Vec<String> = profile
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
            name
        })
        .collect();
    let counts = StackCounts::new(profile, &options.selection);
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let mut frames = Vec::new();
    let mut line = String::new();
    for &(stack, tid, n) in &counts.entries {
        frames.clear();
        frames.extend(options.selection.frames(profile, stack));
        line.clear();
        if options.thread_root {
            line.push_str(&thread_label(profile, tid));
        }
        for frame in frames.iter().rev() {
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(&names[frame.0 as usize]);
        }
        if line.is_empty() {
            continue;
        }
        match folded.get_mut(line.as_str()) {
            Some(count) => *count += n,
            None => {
                folded.insert(line.clone(), n);
            }
        }
    }
    folded.into_iter().collect()
}

/// Writes the folded stacks of `profile`.
pub fn render(profile: &Profile, options: &FoldedOptions, mut out: impl Write) -> io::Result<()> {
    for (stack, count) in stacks(profile, options) {
        writeln!(out, "{stack} {count}")?;
    }
    Ok(())
}
