//! Self and total sample counts per function (or per source line), from the stacks of a profile.

use std::collections::HashMap;

use rprof_profile::{FrameKind, ModuleId, Profile, WaitReason};

use crate::select::{Selection, StackCounts};
use crate::SortBy;

/// What the rows of a [`Table`] stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableKind {
    /// One row per function (name and module). The default.
    #[default]
    Functions,
    /// One row per source line (file, line and module); frames without a source location get a
    /// row per function.
    Lines,
}

/// One function or source line with its sample counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Function name, in full (for a line: the function most samples of the line were in).
    pub name: String,
    /// Module name (file name of the binary or library), when known.
    pub module: Option<String>,
    /// Source file, when known (for a function: the file of its hottest line).
    pub file: Option<String>,
    /// Source line, when known (for a function: its hottest line).
    pub line: Option<u32>,
    /// User or kernel code.
    pub kind: FrameKind,
    /// Every sampled frame of this row was inlined into a caller.
    pub inlined: bool,
    /// Samples whose leaf frame is this row.
    pub self_samples: u64,
    /// Samples with this row anywhere in the stack, each sample counted once even when the
    /// function recurses.
    pub total_samples: u64,
    /// Of `total_samples`, the off-CPU time by reason (indexed as `WaitReason::ALL`); zero
    /// when the counts are on-CPU samples.
    pub wait: [u64; 5],
}

/// Rows ranked by self or total samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// What rows stand for.
    pub kind: TableKind,
    /// All rows with at least one sample, ranked.
    pub rows: Vec<Row>,
    /// Selected samples (the 100% of the percentages).
    pub samples: u64,
}

#[derive(Hash, PartialEq, Eq)]
enum Key<'a> {
    Function(&'a str, Option<ModuleId>, FrameKind),
    Line(&'a str, u32, Option<ModuleId>, FrameKind),
}

impl Table {
    /// Counts `counts` (made with `selection`) into rows of `kind`, ranked by `sort`.
    pub fn new(
        profile: &Profile,
        counts: &StackCounts,
        selection: &Selection,
        kind: TableKind,
        sort: SortBy,
    ) -> Table {
        let frames = profile.frames();
        let mut groups: HashMap<Key<'_>, u32> = HashMap::new();
        let group_of: Vec<u32> = frames
            .iter()
            .map(|f| {
                let key = match (kind, &f.file) {
                    (TableKind::Lines, Some(file)) => {
                        Key::Line(file, f.line.unwrap_or(0), f.module, f.kind)
                    }
                    _ => Key::Function(&f.function, f.module, f.kind),
                };
                let next = groups.len() as u32;
                *groups.entry(key).or_insert(next)
            })
            .collect();
        let group_count = groups.len();
        let mut frame_self = vec![0u64; frames.len()];
        let mut frame_total = vec![0u64; frames.len()];
        let mut frame_seen = vec![usize::MAX; frames.len()];
        let mut group_self = vec![0u64; group_count];
        let mut group_total = vec![0u64; group_count];
        let mut group_seen = vec![usize::MAX; group_count];
        let mut group_wait = vec![[0u64; 5]; group_count];
        for (index, (stack, n)) in counts.by_stack().into_iter().enumerate() {
            let mut leaf = true;
            // An off-CPU stack starts with its reason: a synthetic frame, never a row.
            let reason = profile
                .stack(stack)
                .first()
                .map(|&f| profile.frame(f))
                .filter(|f| f.kind == FrameKind::Wait)
                .and_then(|f| {
                    WaitReason::ALL
                        .iter()
                        .position(|r| f.function == format!("[{}]", r.name()))
                });
            for frame in selection.frames(profile, stack) {
                let f = frame.0 as usize;
                if frames[f].kind == FrameKind::Wait {
                    continue;
                }
                let g = group_of[f] as usize;
                if leaf {
                    frame_self[f] += n;
                    group_self[g] += n;
                    leaf = false;
                }
                if frame_seen[f] != index {
                    frame_seen[f] = index;
                    frame_total[f] += n;
                }
                if group_seen[g] != index {
                    group_seen[g] = index;
                    group_total[g] += n;
                    if let Some(r) = reason {
                        group_wait[g][r] += n;
                    }
                }
            }
        }
        // The frame that stands for each group: the one with the most samples.
        let mut representative: Vec<Option<usize>> = vec![None; group_count];
        let mut all_inlined = vec![true; group_count];
        for (f, info) in frames.iter().enumerate() {
            if frame_total[f] == 0 {
                continue;
            }
            let g = group_of[f] as usize;
            all_inlined[g] &= info.inlined;
            let better = match representative[g] {
                None => true,
                Some(r) => (frame_self[f], frame_total[f]) > (frame_self[r], frame_total[r]),
            };
            if better {
                representative[g] = Some(f);
            }
        }
        let mut rows: Vec<Row> = representative
            .iter()
            .enumerate()
            .filter_map(|(g, r)| {
                let info = &frames[(*r)?];
                if matches!(info.kind, FrameKind::Truncated | FrameKind::Wait) {
                    return None;
                }
                Some(Row {
                    name: info.function.clone(),
                    module: info.module.map(|m| profile.module_name(m).to_string()),
                    file: info.file.clone(),
                    line: info.line,
                    kind: info.kind,
                    inlined: all_inlined[g],
                    self_samples: group_self[g],
                    total_samples: group_total[g],
                    wait: group_wait[g],
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            let (ka, kb) = match sort {
                SortBy::SelfSamples => (
                    (a.self_samples, a.total_samples),
                    (b.self_samples, b.total_samples),
                ),
                SortBy::Total => (
                    (a.total_samples, a.self_samples),
                    (b.total_samples, b.self_samples),
                ),
            };
            kb.cmp(&ka)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.module.cmp(&b.module))
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
        });
        Table {
            kind,
            rows,
            samples: counts.samples,
        }
    }
}
