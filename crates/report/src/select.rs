//! Which samples count, and how their stacks are seen: thread and process filters, inline frames
//! kept or merged into their callers.

use std::collections::{BTreeSet, HashMap};

use rprof_profile::{FrameId, Profile, StackId};

use crate::visible::visible;

/// Why a thread or process filter cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No thread has that name or id. The message shows both fields through [`visible`].
    #[error(
        "no thread named or numbered '{}' in the profile (threads: {})",
        visible(.spec),
        visible(.known)
    )]
    UnknownThread {
        /// What the user asked for.
        spec: String,
        /// The threads there are, as `name (tid)`, comma-separated.
        known: String,
    },
}

/// Which samples a renderer counts and how it sees their stacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only samples of these thread ids. Default `None`: every thread.
    pub tids: Option<BTreeSet<u32>>,
    /// Only samples of this process. Default `None`: every process.
    pub pid: Option<u32>,
    /// Merge inlined frames into the function they were inlined into. Default `false`: an inlined
    /// function is a frame of its own.
    pub merge_inline: bool,
}

impl Selection {
    /// True when a sample of `pid`/`tid` is counted.
    pub fn accepts(&self, pid: u32, tid: u32) -> bool {
        self.pid.is_none_or(|p| p == pid) && self.tids.as_ref().is_none_or(|t| t.contains(&tid))
    }

    /// The frames of `stack` as this selection sees them, leaf first.
    pub fn frames<'p>(
        &self,
        profile: &'p Profile,
        stack: StackId,
    ) -> impl Iterator<Item = FrameId> + 'p {
        let merge = self.merge_inline;
        profile
            .stack(stack)
            .iter()
            .copied()
            .filter(move |&f| !(merge && profile.frame(f).inlined))
    }
}

/// The thread ids `spec` names: a thread id seen in the profile, or else every thread with that
/// name.
pub fn resolve_thread(profile: &Profile, spec: &str) -> Result<BTreeSet<u32>, SelectError> {
    if let Ok(tid) = spec.parse::<u32>() {
        if profile.threads.contains_key(&tid) {
            return Ok(BTreeSet::from([tid]));
        }
    }
    let named: BTreeSet<u32> = profile
        .threads
        .values()
        .filter(|t| t.name == spec)
        .map(|t| t.tid)
        .collect();
    if named.is_empty() {
        let known = profile
            .threads
            .values()
            .map(|t| format!("{} ({})", t.name, t.tid))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SelectError::UnknownThread {
            spec: spec.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known
            },
        });
    }
    Ok(named)
}

/// How many selected samples each (stack, thread) pair has: the input of every renderer.
#[derive(Debug, Clone, Default)]
pub struct StackCounts {
    /// `(stack, tid, samples)`, sorted by stack then thread.
    pub entries: Vec<(StackId, u32, u64)>,
    /// Selected samples in all.
    pub samples: u64,
}

impl StackCounts {
    /// Counts the samples of `profile` that `selection` accepts.
    pub fn new(profile: &Profile, selection: &Selection) -> StackCounts {
        let mut counts: HashMap<(StackId, u32), u64> = HashMap::new();
        let mut samples = 0;
        for (index, sample) in profile.samples.iter().enumerate() {
            if !selection.accepts(sample.pid, sample.tid) {
                continue;
            }
            samples += 1;
            *counts
                .entry((profile.sample_stack(index), sample.tid))
                .or_insert(0) += 1;
        }
        let mut entries: Vec<(StackId, u32, u64)> = counts
            .into_iter()
            .map(|((stack, tid), n)| (stack, tid, n))
            .collect();
        entries.sort_unstable();
        StackCounts { entries, samples }
    }

    /// Samples per stack, threads added together, sorted by stack.
    pub fn by_stack(&self) -> Vec<(StackId, u64)> {
        let mut out: Vec<(StackId, u64)> = Vec::new();
        for &(stack, _, n) in &self.entries {
            match out.last_mut() {
                Some((last, total)) if *last == stack => *total += n,
                _ => out.push((stack, n)),
            }
        }
        out
    }
}
