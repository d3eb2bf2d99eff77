//! speedscope: its JSON file format (`https://www.speedscope.app/file-format-schema.json`).
//!
//! Frames are shared (`shared.frames`: name, file, line), one per function (name, file and
//! module), so that speedscope adds up a function's samples; its line is the first line of it
//! that samples hit (a profile does not store where a function starts). Each thread, under each name it had
//! (see [`ThreadSpan`]), is one `sampled` profile whose samples are stacks root first, in time
//! order, weighted by CPU time in nanoseconds for the clock events (unit `nanoseconds`) or by 1
//! (unit `none`) for the others. The profile with the most samples opens first. serde_json
//! escapes names; speedscope shows them as they are.

use std::collections::HashMap;
use std::io::Write;

use rprof_profile::{FrameId, ModuleId, Profile};
use rprof_report::ThreadSpan;
use serde::Serialize;

use crate::{period_is_time, selected_samples, title, ExportError, ExportOptions};

/// The schema URL every speedscope file names.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// A speedscope file.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    /// [`SCHEMA`].
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    /// Data shared by the profiles.
    pub shared: Shared,
    /// One profile per thread.
    pub profiles: Vec<SampledProfile>,
    /// The file's name, shown in speedscope's title bar.
    pub name: String,
    /// The profile shown first.
    #[serde(rename = "activeProfileIndex")]
    pub active_profile_index: usize,
    /// What wrote the file.
    pub exporter: String,
}

/// What the profiles share.
#[derive(Debug, Clone, Serialize)]
pub struct Shared {
    /// Every frame, referred to by index.
    pub frames: Vec<Frame>,
}

/// A frame.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// The function's name.
    pub name: String,
    /// Its source file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its source line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// A sampled profile: stacks and their weights.
#[derive(Debug, Clone, Serialize)]
pub struct SampledProfile {
    /// Always `sampled`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The thread: `NAME (tid TID, pid PID)`.
    pub name: String,
    /// Unit of the weights and values: `nanoseconds` or `none`.
    pub unit: &'static str,
    /// Start of the profile, in `unit`.
    #[serde(rename = "startValue")]
    pub start_value: u64,
    /// End of the profile, in `unit`.
    #[serde(rename = "endValue")]
    pub end_value: u64,
    /// Stacks, root first, as frame indexes.
    pub samples: Vec<Vec<usize>>,
    /// One weight per sample.
    pub weights: Vec<u64>,
}

/// Writes `profile` as a speedscope file into `out`.
pub fn render(
    profile: &Profile,
    options: &ExportOptions,
    mut out: impl Write,
) -> Result<(), ExportError> {
    let file = build(profile, options)?;
    serde_json::to_writer(&mut out, &file).map_err(std::io::Error::from)?;
    out.flush()?;
    Ok(())
}

/// The speedscope document for `profile`.
pub fn build(profile: &Profile, options: &ExportOptions) -> Result<File, ExportError> {
    let selected = selected_samples(profile, &options.selection);
    let Some(first) = selected.first().map(|&(_, s, _)| s.time) else {
        return Err(ExportError::NoSamples);
    };
    let timed = period_is_time(profile);
    let mut frames: Vec<Frame> = Vec::new();
    let mut frame_index: HashMap<FrameId, usize> = HashMap::new();
    let mut by_function: HashMap<(&str, Option<&str>, Option<ModuleId>), usize> = HashMap::new();
    let mut profiles: Vec<SampledProfile> = Vec::new();
    let mut by_thread: HashMap<ThreadSpan, usize> = HashMap::new();
    for &(index, sample, who) in &selected {
        let stack: Vec<usize> = profile
            .stack(profile.sample_stack(index))
            .iter()
            .rev()
            .map(|&id| {
                *frame_index.entry(id).or_insert_with(|| {
                    let info = profile.frame(id);
                    let key = (info.function.as_str(), info.file.as_deref(), info.module);
                    let at = *by_function.entry(key).or_insert_with(|| {
                        frames.push(Frame {
                            name: info.function.clone(),
                            file: info.file.clone(),
                            line: None,
                        });
                        frames.len() - 1
                    });
                    let line = &mut frames[at].line;
                    *line = match (*line, info.line) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    at
                })
            })
            .collect();
        let at = *by_thread.entry(who).or_insert_with(|| {
            let name = match who.name(profile) {
                "" => format!("tid {} (pid {})", who.tid, who.pid),
                name => format!("{name} (tid {}, pid {})", who.tid, who.pid),
            };
            let start = sample.time.saturating_sub(first);
            profiles.push(SampledProfile {
                kind: "sampled",
                name,
                unit: if timed { "nanoseconds" } else { "none" },
                start_value: if timed { start } else { 0 },
                end_value: if timed { start } else { 0 },
                samples: Vec::new(),
                weights: Vec::new(),
            });
            profiles.len() - 1
        });
        let thread = &mut profiles[at];
        let weight = if timed { sample.period } else { 1 };
        thread.samples.push(stack);
        thread.weights.push(weight);
        thread.end_value = if timed {
            thread.end_value.max(
                sample
                    .time
                    .saturating_sub(first)
                    .saturating_add(sample.period),
            )
        } else {
            thread.end_value + 1
        };
    }
    // Keep the file's order stable: threads by process, then thread id, then time.
    let mut keyed: Vec<(ThreadSpan, usize)> = by_thread.into_iter().collect();
    keyed.sort_unstable();
    let mut slots: Vec<Option<SampledProfile>> = profiles.into_iter().map(Some).collect();
    let profiles: Vec<SampledProfile> = keyed
        .iter()
        .filter_map(|&(_, at)| slots.get_mut(at).and_then(Option::take))
        .collect();
    let active_profile_index = profiles
        .iter()
        .enumerate()
        .max_by_key(|(i, p)| (p.samples.len(), std::cmp::Reverse(*i)))
        .map_or(0, |(i, _)| i);
    Ok(File {
        schema: SCHEMA,
        shared: Shared { frames },
        profiles,
        name: title(profile),
        active_profile_index,
        exporter: format!("rprof {}", env!("CARGO_PKG_VERSION")),
    })
}
