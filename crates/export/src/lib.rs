//! rprof-export: writes a [`Profile`] in the formats of the tools teams already use.
//!
//! - [`pprof`]: gzipped `profile.proto`, read by `go tool pprof`, Grafana Pyroscope and Parca;
//! - [`speedscope`]: speedscope's JSON file format, one sampled profile per thread;
//! - [`firefox`]: the Firefox Profiler's processed format, written by `fxprof-processed-profile`
//!   (the crate samply uses), one track per thread grouped by process.
//!
//! Every exporter takes an [`ExportOptions`] (which samples, chosen by the same
//! [`Selection`] as the reports) and writes into any [`std::io::Write`]. What a sample weighs is
//! decided in one place, [`measures`]: a count of samples, the sample's period as CPU time
//! (for the clock events) or as events, and, for a profile recorded with `--off-cpu`, the
//! off-CPU blocks' lengths (`off_cpu/nanoseconds`). pprof carries every measure; speedscope and
//! the Firefox Profiler carry the on-CPU samples only.
//!
//! This crate does not read files, name addresses or print anything: the binary opens the
//! profile (with its warnings) and the output file, and reports errors.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod firefox;
pub mod pprof;
pub mod speedscope;

use std::io;

use rprof_profile::{OffCpu, Profile, Sample};
use rprof_report::{Selection, ThreadSpan};

/// What every exporter is given besides the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Which samples are exported. Default: all of them. Inline frames are always exported as
    /// what they are (`merge_inline` is ignored): each format has its own way to show them.
    pub selection: Selection,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// No sample is selected: there is nothing to export.
    #[error("no samples to export")]
    NoSamples,
    /// The writer failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One number every exported sample carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    /// What is measured, as pprof names a sample type (`samples`, `cpu`, `page-faults`).
    pub name: String,
    /// Its unit, as pprof spells units (`count`, `nanoseconds`, `events`).
    pub unit: &'static str,
    /// How the value of one sample is found.
    pub source: MeasureSource,
}

/// Where a [`Measure`]'s value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureSource {
    /// 1 per sample.
    Count,
    /// The sample's period: nanoseconds for the clock events, events otherwise.
    Period,
    /// The length of an off-CPU block in nanoseconds (0 for an on-CPU sample).
    OffCpu,
}

impl Measure {
    /// The value of `sample` in this measure.
    pub fn value(&self, sample: &Sample) -> u64 {
        match self.source {
            MeasureSource::Count => 1,
            MeasureSource::Period => sample.period,
            MeasureSource::OffCpu => 0,
        }
    }

    /// The value of the off-CPU `block` in this measure: its length for
    /// [`MeasureSource::OffCpu`], 0 in the others (a block is not a sample, nor CPU time).
    pub fn block_value(&self, block: &OffCpu) -> u64 {
        match self.source {
            MeasureSource::OffCpu => block.end.saturating_sub(block.start),
            MeasureSource::Count | MeasureSource::Period => 0,
        }
    }
}

/// True when the profile's event counts nanoseconds of CPU time (`cpu-clock`, `task-clock`), so
/// that a sample's period is a duration.
pub fn period_is_time(profile: &Profile) -> bool {
    matches!(profile.header.event.as_str(), "cpu-clock" | "task-clock")
}

/// The measures of `profile`'s samples, in the order the exports list them: the count of
/// samples first, then what the periods add up to (`cpu/nanoseconds` for the clock events,
/// `EVENT/events` for the others), then, when the profile was recorded with `--off-cpu`,
/// `off_cpu/nanoseconds`. The on-CPU weight is the main one (pprof's default).
pub fn measures(profile: &Profile) -> Vec<Measure> {
    let weight = if period_is_time(profile) {
        Measure {
            name: "cpu".into(),
            unit: "nanoseconds",
            source: MeasureSource::Period,
        }
    } else {
        Measure {
            name: if profile.header.event.is_empty() {
                "events".into()
            } else {
                profile.header.event.clone()
            },
            unit: "events",
            source: MeasureSource::Period,
        }
    };
    let mut out = vec![
        Measure {
            name: "samples".into(),
            unit: "count",
            source: MeasureSource::Count,
        },
        weight,
    ];
    if profile.has_off_cpu() {
        out.push(Measure {
            name: "off_cpu".into(),
            unit: "nanoseconds",
            source: MeasureSource::OffCpu,
        });
    }
    out
}

/// Index in [`measures`] of the main measure: the on-CPU weight (the second).
pub const MAIN_MEASURE: usize = 1;

/// The selected off-CPU blocks: index in [`Profile::off_cpu`], the block, and whose it was, in
/// time order.
pub fn selected_blocks<'p>(
    profile: &'p Profile,
    selection: &Selection,
) -> Vec<(usize, &'p OffCpu, ThreadSpan)> {
    let mut out: Vec<(usize, &OffCpu, ThreadSpan)> = profile
        .off_cpu
        .iter()
        .enumerate()
        .map(|(i, b)| (i, b, ThreadSpan::of_block(profile, b)))
        .filter(|&(_, _, who)| selection.accepts(who))
        .collect();
    out.sort_by_key(|&(i, b, _)| (b.start, i));
    out
}

/// The selected samples: index in [`Profile::samples`], the sample, and who took it, in time
/// order (file order for equal times).
pub fn selected_samples<'p>(
    profile: &'p Profile,
    selection: &Selection,
) -> Vec<(usize, &'p Sample, ThreadSpan)> {
    let mut out: Vec<(usize, &Sample, ThreadSpan)> = profile
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s, ThreadSpan::of(profile, s)))
        .filter(|&(_, _, who)| selection.accepts(who))
        .collect();
    out.sort_by_key(|&(i, s, _)| (s.time, i));
    out
}

/// A title for the export: `rprof: COMMAND`, or `rprof: process PID` for an attached process.
pub fn title(profile: &Profile) -> String {
    if !profile.header.command.is_empty() {
        format!("rprof: {}", profile.header.command.join(" "))
    } else if let Some(pid) = profile.header.target_pid {
        format!("rprof: process {pid}")
    } else {
        "rprof".to_string()
    }
}

/// Length of the recording in nanoseconds: from its start to its summary's end when it
/// finished, else the span of its samples.
pub fn duration_ns(profile: &Profile) -> u64 {
    if let Some(summary) = &profile.summary {
        if summary.end_unix_ns > profile.header.start_unix_ns {
            return summary.end_unix_ns - profile.header.start_unix_ns;
        }
    }
    let first = profile.samples.iter().map(|s| s.time).min().unwrap_or(0);
    let last = profile
        .samples
        .iter()
        .map(|s| s.time.saturating_add(s.period))
        .max()
        .unwrap_or(0);
    last.saturating_sub(first)
}

/// The interval between samples the recording asked for, in nanoseconds: `1e9 / frequency`, or
/// the period for a clock event sampled by period. `None` when not known.
pub fn interval_ns(profile: &Profile) -> Option<u64> {
    match (profile.header.frequency, profile.header.period) {
        (Some(hz), _) if hz > 0 => Some(1_000_000_000 / hz),
        (_, Some(period)) if period > 0 && period_is_time(profile) => Some(period),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
