//! Which samples count, and how their stacks are seen: thread and process filters, inline frames
//! kept or merged into their callers, and which of its thread's names each sample is shown under
//! ([`ThreadSpan`]).

use std::collections::{BTreeSet, HashMap};

use rprof_profile::{FrameId, OffCpu, Profile, Sample, StackId, Thread, ThreadName};

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

/// Who took a sample, as every output shows it: a thread while it had one of its names.
///
/// A thread that runs `exec` (or renames itself) has several names; a sample belongs to the
/// name the thread had when the sample was taken, so that the folded stacks, the flame graph,
/// `--thread NAME` and the thread table all show samples taken before an `exec` under the old
/// program's name (issue 9.11). [`ThreadSpan::of`] is the one place that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadSpan {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Index of the name in the thread's [`Thread::names`].
    pub name_index: usize,
}

impl ThreadSpan {
    /// Who took `sample`: its thread, under the name the thread had at the sample's time
    /// ([`Thread::name_at`]).
    pub fn of(profile: &Profile, sample: &Sample) -> ThreadSpan {
        ThreadSpan {
            pid: sample.pid,
            tid: sample.tid,
            name_index: profile
                .threads
                .get(&sample.tid)
                .map_or(0, |t| t.name_at(sample.time)),
        }
    }

    /// Who was off the CPU in `block`: its thread, under the name it had when it left.
    pub fn of_block(profile: &Profile, block: &OffCpu) -> ThreadSpan {
        ThreadSpan {
            pid: block.pid,
            tid: block.tid,
            name_index: profile
                .threads
                .get(&block.tid)
                .map_or(0, |t| t.name_at(block.start)),
        }
    }

    /// `thread` while it had its name number `name_index`.
    pub fn named(thread: &Thread, name_index: usize) -> ThreadSpan {
        ThreadSpan {
            pid: thread.pid,
            tid: thread.tid,
            name_index,
        }
    }

    /// The name the thread had (empty when it had none).
    pub fn name<'p>(&self, profile: &'p Profile) -> &'p str {
        profile
            .threads
            .get(&self.tid)
            .and_then(|t| t.names.get(self.name_index))
            .map_or("", |n| n.name.as_str())
    }
}

/// The threads a `--thread` filter names: whole threads, or threads while they had a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    /// Thread ids whose every sample counts.
    pub tids: BTreeSet<u32>,
    /// `(thread id, index in its Thread::names)`: the samples a thread took while it had that
    /// name count.
    pub names: BTreeSet<(u32, usize)>,
}

impl ThreadFilter {
    /// True when the samples of `span` count.
    pub fn accepts(&self, span: ThreadSpan) -> bool {
        self.tids.contains(&span.tid) || self.names.contains(&(span.tid, span.name_index))
    }
}

/// What a stack weighs in the outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Weight {
    /// On-CPU samples, one each (the default: what the sampler saw).
    #[default]
    Samples,
    /// Off-CPU blocks (`record --off-cpu`), each by its length in nanoseconds; the stacks are
    /// the blocks' stacks, with the reason as their leaf frame.
    OffCpu,
    /// Wall-clock time: on-CPU samples by their period (nanoseconds for cpu-clock and
    /// task-clock) and off-CPU blocks by their length.
    Wall,
}

impl Weight {
    /// True when weights are nanoseconds rather than sample counts.
    pub fn is_time(self) -> bool {
        self != Weight::Samples
    }
}

/// Which samples a renderer counts and how it sees their stacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only samples of these threads (see [`parse_thread_filter`]). Default `None`: every thread.
    pub threads: Option<ThreadFilter>,
    /// Only samples of this process. Default `None`: every process.
    pub pid: Option<u32>,
    /// Merge inlined frames into the function they were inlined into. Default `false`: an inlined
    /// function is a frame of its own.
    pub merge_inline: bool,
    /// What each stack weighs. Default [`Weight::Samples`].
    pub weight: Weight,
}

impl Selection {
    /// True when the samples of `span` are counted.
    pub fn accepts(&self, span: ThreadSpan) -> bool {
        self.pid.is_none_or(|p| p == span.pid)
            && self.threads.as_ref().is_none_or(|t| t.accepts(span))
    }

    /// True when `sample` is counted.
    pub fn accepts_sample(&self, profile: &Profile, sample: &Sample) -> bool {
        self.accepts(ThreadSpan::of(profile, sample))
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

/// What `--thread SPEC` selects: a thread id seen in the profile selects all of that thread's
/// samples; otherwise a name selects, in every thread that had it, the samples taken while the
/// thread had it (so a name a process had before an `exec` selects its samples from before).
pub fn parse_thread_filter(profile: &Profile, spec: &str) -> Result<ThreadFilter, SelectError> {
    if let Ok(tid) = spec.parse::<u32>() {
        if profile.threads.contains_key(&tid) {
            return Ok(ThreadFilter {
                tids: BTreeSet::from([tid]),
                names: BTreeSet::new(),
            });
        }
    }
    let names: BTreeSet<(u32, usize)> = profile
        .threads
        .values()
        .flat_map(|t| {
            t.names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.name == spec)
                .map(|(i, _)| (t.tid, i))
        })
        .collect();
    if names.is_empty() {
        let mut known: Vec<String> = Vec::new();
        for t in profile.threads.values() {
            let mut seen: Vec<&str> = Vec::new();
            let all = t.names.iter().map(|n| n.name.as_str());
            for name in all.chain(t.names.is_empty().then_some(t.name.as_str())) {
                if !seen.contains(&name) {
                    seen.push(name);
                    known.push(format!("{name} ({})", t.tid));
                }
            }
        }
        return Err(SelectError::UnknownThread {
            spec: spec.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    Ok(ThreadFilter {
        tids: BTreeSet::new(),
        names,
    })
}

/// The names of threads that `selection` keeps samples of, each with the thread: one entry per
/// name a thread had and took samples under, most samples first (then by thread id, then in
/// time order). The rows of the thread tables.
pub(crate) fn selected_names<'p>(
    profile: &'p Profile,
    selection: &Selection,
) -> Vec<(&'p Thread, &'p ThreadName)> {
    let mut rows: Vec<(&Thread, &ThreadName)> = profile
        .threads
        .values()
        .flat_map(|t| {
            t.names
                .iter()
                .enumerate()
                .filter(|&(i, n)| n.samples > 0 && selection.accepts(ThreadSpan::named(t, i)))
                .map(move |(_, n)| (t, n))
        })
        .collect();
    rows.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.tid.cmp(&b.0.tid)));
    rows
}

/// How many selected samples each (stack, thread name) pair has: the input of every renderer.
/// With a time [`Weight`], the counts are nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct StackCounts {
    /// `(stack, who took them, samples)`, sorted by stack then thread.
    pub entries: Vec<(StackId, ThreadSpan, u64)>,
    /// Selected samples in all (nanoseconds in all, with a time weight).
    pub samples: u64,
}

impl StackCounts {
    /// Counts the samples (or blocks, see [`Selection::weight`]) of `profile` that
    /// `selection` accepts.
    pub fn new(profile: &Profile, selection: &Selection) -> StackCounts {
        let mut counts: HashMap<(StackId, ThreadSpan), u64> = HashMap::new();
        let mut samples: u64 = 0;
        if selection.weight != Weight::OffCpu {
            for (index, sample) in profile.samples.iter().enumerate() {
                let who = ThreadSpan::of(profile, sample);
                if !selection.accepts(who) {
                    continue;
                }
                let n = match selection.weight {
                    Weight::Samples => 1,
                    _ => sample.period,
                };
                samples = samples.saturating_add(n);
                let count = counts
                    .entry((profile.sample_stack(index), who))
                    .or_insert(0);
                *count = count.saturating_add(n);
            }
        }
        if selection.weight.is_time() {
            for (index, block) in profile.off_cpu.iter().enumerate() {
                let who = ThreadSpan::of_block(profile, block);
                if !selection.accepts(who) {
                    continue;
                }
                let n = block.end.saturating_sub(block.start);
                samples = samples.saturating_add(n);
                let count = counts
                    .entry((profile.off_cpu_stack(index), who))
                    .or_insert(0);
                *count = count.saturating_add(n);
            }
        }
        let mut entries: Vec<(StackId, ThreadSpan, u64)> = counts
            .into_iter()
            .map(|((stack, who), n)| (stack, who, n))
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
