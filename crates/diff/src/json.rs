//! `rprof diff --json`: the comparison with stable field names (see `docs/diff.md`).
//!
//! Strings are exact. serde_json escapes C0 controls, `"` and `\`; the other characters
//! [`visible`](rprof_report::visible) escapes in text outputs (DEL, C1 and bidi controls, ...)
//! are written as `\uXXXX` escapes too, as `rprof report --json` does, so that JSON printed on
//! a terminal cannot drive it.

use std::io::{self, Write};

use rprof_report::{needs_escape, SortBy, Weight};
use serde::Serialize;

use crate::compare::{Diff, Measure, Side};

/// What the JSON document holds besides the diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// At most this many functions. Default `None`: all.
    pub limit: Option<usize>,
    /// BASE's file name. Default: empty.
    pub base_label: String,
    /// NEW's file name. Default: empty.
    pub new_label: String,
}

/// The document `--json` prints. Field names are a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Document<'a> {
    /// Version of this document's layout.
    pub schema: u32,
    /// The baseline.
    pub base: Profile<'a>,
    /// The profile compared with it.
    pub new: Profile<'a>,
    /// `time` (estimated time, the default) or `share` (`--normalize`).
    pub compared: &'static str,
    /// `self` or `total`: which samples of each function are compared and ranked.
    pub counts: &'static str,
    /// What a function's cost is: `samples` (the default), `off_cpu_ns` (`--off-cpu`) or
    /// `wall_ns` (`--wall`), as `rprof report --json` names it. With the last two, the counts
    /// (`base_self`, ..., and the profiles' `samples` and `weight`) are nanoseconds.
    pub weight: &'static str,
    /// With `off_cpu_ns`/`wall_ns`: the least change of a function's off-CPU time that is
    /// significant (see `docs/diff.md`); `null` otherwise.
    pub off_cpu_threshold_ns: Option<u64>,
    /// The event's period is nanoseconds (or the weight is a time): `delta_ns` is time.
    pub time: bool,
    /// Significance level of the test.
    pub alpha: f64,
    /// Change of the whole estimated time in nanoseconds, NEW minus BASE (`null` when the
    /// event is not a time).
    pub total_delta_ns: Option<i64>,
    /// The same change in the event's unit (nanoseconds for cpu-clock and task-clock).
    pub total_delta_events: i64,
    /// The same change as a percentage of BASE's.
    pub total_delta_percent: f64,
    /// Functions, the largest change first.
    pub functions: Vec<Function<'a>>,
}

/// One profile in the document.
#[derive(Debug, Clone, Serialize)]
pub struct Profile<'a> {
    /// File name, as given on the command line.
    pub path: &'a str,
    /// The recorded command line.
    pub command: &'a [String],
    /// The sampled event.
    pub event: &'a str,
    /// Sampling frequency in Hz, when sampling by frequency.
    pub frequency: Option<u64>,
    /// Sampling period, when sampling by period.
    pub period: Option<u64>,
    /// Wall-clock length of the recording in nanoseconds.
    pub duration_ns: u64,
    /// Samples in the profile.
    pub total_samples: u64,
    /// Samples compared (after `--thread`).
    pub samples: u64,
    /// Sum of their periods: estimated time in nanoseconds for a time event.
    pub weight: u64,
}

/// One function in the document.
#[derive(Debug, Clone, Serialize)]
pub struct Function<'a> {
    /// Function name, exact.
    pub name: &'a str,
    /// Module name, when known (NEW's for a function in both).
    pub module: Option<&'a str>,
    /// BASE's module name, only when it differs from NEW's (the binary was renamed, the
    /// function matched by name alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_module: Option<&'a str>,
    /// `both`, `new` (only in NEW) or `gone` (only in BASE).
    pub status: &'static str,
    /// Self samples in BASE.
    pub base_self: u64,
    /// Self samples in NEW.
    pub new_self: u64,
    /// Total samples in BASE.
    pub base_total: u64,
    /// Total samples in NEW.
    pub new_total: u64,
    /// Change of estimated time of the compared count in nanoseconds (`null` when the event
    /// is not a time).
    pub delta_ns: Option<i64>,
    /// The same change in the event's unit.
    pub delta_events: i64,
    /// Change of share of the compared count, in percentage points.
    pub delta_share: f64,
    /// p-value of the test (of the on-CPU samples, with `wall_ns`); `null` with `off_cpu_ns`,
    /// whose times are measured, not sampled.
    pub p_value: Option<f64>,
    /// `p_value <= alpha`: more than sampling noise.
    pub significant: bool,
}

fn profile<'a>(side: &'a Side, path: &'a str) -> Profile<'a> {
    Profile {
        path,
        command: &side.command,
        event: &side.event,
        frequency: side.frequency,
        period: side.period,
        duration_ns: side.duration_ns,
        total_samples: side.samples,
        samples: side.selected,
        weight: side.weight,
    }
}

/// The document for `diff`.
pub fn document<'a>(diff: &'a Diff, options: &'a JsonOptions) -> Document<'a> {
    let c = &diff.comparison;
    let limit = options.limit.unwrap_or(usize::MAX);
    let total = c.new.weight as i64 - c.base.weight as i64;
    Document {
        schema: 1,
        base: profile(&c.base, &options.base_label),
        new: profile(&c.new, &options.new_label),
        compared: match c.measure {
            Measure::Time => "time",
            Measure::Share => "share",
        },
        counts: match diff.rank_by {
            SortBy::SelfSamples => "self",
            SortBy::Total => "total",
        },
        weight: match c.weight {
            Weight::Samples => "samples",
            Weight::OffCpu => "off_cpu_ns",
            Weight::Wall => "wall_ns",
        },
        off_cpu_threshold_ns: c.weight.is_time().then_some(c.off_cpu_threshold_ns),
        time: c.time,
        alpha: c.alpha,
        total_delta_ns: c.time.then_some(total),
        total_delta_events: total,
        total_delta_percent: round2(c.total_change_percent()),
        functions: diff
            .rows
            .iter()
            .take(limit)
            .map(|r| Function {
                name: &r.name,
                module: r.module.as_deref(),
                base_module: r.base_module.as_deref(),
                status: r.status.as_str(),
                base_self: r.base_self,
                new_self: r.new_self,
                base_total: r.base_total,
                new_total: r.new_total,
                delta_ns: c.time.then_some(r.delta.round() as i64),
                delta_events: r.delta.round() as i64,
                delta_share: round2(r.delta_share),
                p_value: (c.weight != Weight::OffCpu).then_some(r.p_value),
                significant: r.significant,
            })
            .collect(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Writes the JSON document of `diff`, pretty-printed, with a final newline.
pub fn render(diff: &Diff, options: &JsonOptions, mut out: impl Write) -> io::Result<()> {
    let text = serde_json::to_string_pretty(&document(diff, options)).map_err(io::Error::other)?;
    // serde_json escaped C0 controls already; outside strings the text is ASCII, so every
    // other character to escape is inside a string.
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) && c >= '\u{7f}' {
            safe.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    out.write_all(safe.as_bytes())?;
    out.write_all(b"\n")
}
