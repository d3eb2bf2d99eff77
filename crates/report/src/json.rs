//! `rprof report --json`: the report's numbers with stable field names (see `docs/report.md`).
//!
//! Strings are exact: a name decodes to the very characters the profile holds. serde_json
//! escapes C0 controls, `"` and `\`; the other characters [`visible`](crate::visible) escapes in
//! text outputs (DEL, C1 and bidi controls, ...) are written as `\uXXXX` escapes too, so that the
//! JSON printed on a terminal cannot drive it either.

use std::collections::BTreeMap;
use std::io::{self, Write};

use rprof_profile::{FrameKind, Profile, WaitReason};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

use crate::aggregate::{Table, TableKind};
use crate::format::percent2;
use crate::overview::Overview;
use crate::select::{selected_names, Selection, StackCounts, Weight};
use crate::visible::needs_escape;
use crate::SortBy;

/// What the JSON report holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Which samples count. Default: all of them, inline frames kept apart.
    pub selection: Selection,
    /// Functions (the `functions` array) or source lines (the `lines` array). Default: functions.
    pub kind: TableKind,
    /// Ranking of the array. Default: by self samples.
    pub sort: SortBy,
    /// At most this many entries in the array. Default `None`: all.
    pub limit: Option<usize>,
}

/// The document `--json` prints. Field names are a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of this document's layout.
    pub schema: u32,
    /// The recorded command line (empty for `record -p`).
    pub command: Vec<String>,
    /// The attached process, for `record -p`.
    pub target_pid: Option<u32>,
    /// The sampled event.
    pub event: String,
    /// Sampling frequency in Hz, when sampling by frequency.
    pub frequency: Option<u64>,
    /// Sampling period in events, when sampling by period.
    pub period: Option<u64>,
    /// How stacks were captured.
    pub call_graph: String,
    /// Recording start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Length of the recording in nanoseconds.
    pub duration_ns: u64,
    /// The recording finished (false: it was interrupted).
    pub complete: bool,
    /// Samples counted (after thread/process filters): the 100% of every percentage.
    pub samples: u64,
    /// Samples in the whole profile.
    pub total_samples: u64,
    /// Samples the kernel reported lost.
    pub lost: u64,
    /// `lost` as a percentage of samples written plus lost.
    pub lost_percent: f64,
    /// Counted samples whose stack was truncated.
    pub truncated: u64,
    /// `truncated` as a percentage of `samples`.
    pub truncated_percent: f64,
    /// Times the kernel throttled sampling.
    pub throttled: u64,
    /// `self` or `total`: how the array is ranked.
    pub sort: &'static str,
    /// Inlined frames were merged into their callers.
    pub inline_merged: bool,
    /// With `--off-cpu` / `--wall` only: `self_samples` and `total_samples` then count
    /// nanoseconds of off-CPU (`off_cpu_ns`) or wall-clock time (`wall_ns`), not samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<&'static str>,
    /// Off-CPU profiles only: what most blocks' reasons were found from (`kernel` stacks,
    /// `user` leaf functions, `preempted` flags, or `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons_from: Option<&'static str>,
    /// Counted threads, most samples first.
    pub threads: Vec<ThreadEntry>,
    /// Hottest functions (absent with `--lines`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<Entry>>,
    /// Hottest source lines (only with `--lines`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<Entry>>,
}

/// One thread.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadEntry {
    /// Thread id.
    pub tid: u32,
    /// Process id.
    pub pid: u32,
    /// Thread name (its last name).
    pub name: String,
    /// Samples of the thread.
    pub samples: u64,
    /// `samples` as a percentage of all counted samples.
    pub percent: f64,
    /// Sum of the samples' periods (nanoseconds of CPU time for cpu-clock and task-clock).
    pub period: u64,
    /// Off-CPU profiles only: nanoseconds on the CPU (from the context switches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ns: Option<u64>,
    /// Off-CPU profiles only: nanoseconds off the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_cpu_ns: Option<u64>,
    /// Off-CPU profiles only: nanoseconds off the CPU by reason (`cpu`, `lock`, `sleep`, `io`,
    /// `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ns: Option<BTreeMap<&'static str, u64>>,
    /// Off-CPU profiles only: nanoseconds alive in the recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ns: Option<u64>,
}

/// One function or source line.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Function name, in full.
    pub name: String,
    /// Module (binary or library file name), null when unknown.
    pub module: Option<String>,
    /// Source file with its path, null when unknown.
    pub file: Option<String>,
    /// Source line, null when unknown.
    pub line: Option<u32>,
    /// `user` or `kernel`.
    pub kind: &'static str,
    /// Every sampled frame of it was inlined.
    pub inlined: bool,
    /// Samples in it (leaf of the stack).
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// `self` as a percentage of `samples`.
    pub self_percent: f64,
    /// Samples in it or its callees, each sample once.
    #[serde(rename = "total")]
    pub total_samples: u64,
    /// `total` as a percentage of `samples`.
    pub total_percent: f64,
    /// With `--off-cpu` / `--wall`: of `total_samples`, the off-CPU nanoseconds by reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ns: Option<BTreeMap<&'static str, u64>>,
}

/// Builds the JSON document for `profile`.
pub fn report(profile: &Profile, options: &JsonOptions) -> Report {
    let counts = StackCounts::new(profile, &options.selection);
    let samples_only = Selection {
        weight: Weight::Samples,
        ..options.selection.clone()
    };
    let sample_counts = StackCounts::new(profile, &samples_only);
    let o = Overview::new(profile, &samples_only, &sample_counts);
    let weighted = options.selection.weight.is_time();
    let table = Table::new(
        profile,
        &counts,
        &options.selection,
        options.kind,
        options.sort,
    );
    let limit = options.limit.unwrap_or(usize::MAX);
    let entries: Vec<Entry> = table
        .rows
        .iter()
        .take(limit)
        .map(|r| Entry {
            name: r.name.clone(),
            module: r.module.clone(),
            file: r.file.clone(),
            line: r.line,
            kind: if r.kind == FrameKind::Kernel {
                "kernel"
            } else {
                "user"
            },
            inlined: r.inlined,
            self_samples: r.self_samples,
            self_percent: percent2(r.self_samples, counts.samples),
            total_samples: r.total_samples,
            total_percent: percent2(r.total_samples, counts.samples),
            wait_ns: weighted.then(|| {
                WaitReason::ALL
                    .iter()
                    .zip(r.wait)
                    .map(|(reason, ns)| (reason.name(), ns))
                    .collect()
            }),
        })
        .collect();
    // One entry per name a thread had (issue 9.11), as in the text table.
    let threads: Vec<ThreadEntry> = selected_names(profile, &options.selection)
        .into_iter()
        .map(|(t, n)| ThreadEntry {
            tid: t.tid,
            pid: t.pid,
            name: n.name.clone(),
            samples: n.samples,
            percent: percent2(n.samples, sample_counts.samples),
            period: n.period,
            cpu_ns: None,
            off_cpu_ns: None,
            wait_ns: None,
            wall_ns: None,
        })
        .collect();
    let mut threads = threads;
    if profile.has_off_cpu() {
        add_activity(profile, &options.selection, &mut threads);
    }
    let h = &profile.header;
    let (functions, lines) = match options.kind {
        TableKind::Functions => (Some(entries), None),
        TableKind::Lines => (None, Some(entries)),
    };
    Report {
        schema: 1,
        command: h.command.clone(),
        target_pid: h.target_pid,
        event: h.event.clone(),
        frequency: h.frequency,
        period: h.period,
        call_graph: h.call_graph.clone(),
        start_unix_ns: h.start_unix_ns,
        duration_ns: o.duration_ns,
        complete: o.complete,
        samples: o.selected,
        total_samples: o.samples,
        lost: o.lost,
        lost_percent: percent2(o.lost, o.samples.saturating_add(o.lost)),
        truncated: o.truncated,
        truncated_percent: percent2(o.truncated, o.selected),
        throttled: o.throttled,
        sort: match options.sort {
            SortBy::SelfSamples => "self",
            SortBy::Total => "total",
        },
        inline_merged: options.selection.merge_inline,
        weight: match options.selection.weight {
            Weight::Samples => None,
            Weight::OffCpu => Some("off_cpu_ns"),
            Weight::Wall => Some("wall_ns"),
        },
        reasons_from: profile
            .has_off_cpu()
            .then(|| crate::wait::main_reason_source(profile)),
        threads,
        functions,
        lines,
    }
}

/// Adds each thread's on-CPU, off-CPU and wait times (an off-CPU profile), and an entry for
/// each thread that took no sample but was off the CPU. A thread with several names gets its
/// times on its first entry.
fn add_activity(profile: &Profile, selection: &Selection, threads: &mut Vec<ThreadEntry>) {
    for activity in crate::wait::selected_activity(profile, selection) {
        let wait: BTreeMap<&'static str, u64> = WaitReason::ALL
            .iter()
            .zip(activity.wait_ns())
            .map(|(r, ns)| (r.name(), ns))
            .collect();
        let entry = match threads.iter_mut().find(|t| t.tid == activity.tid) {
            Some(entry) => entry,
            None => {
                threads.push(ThreadEntry {
                    tid: activity.tid,
                    pid: activity.pid,
                    name: profile
                        .threads
                        .get(&activity.tid)
                        .map_or_else(String::new, |t| t.name.clone()),
                    samples: 0,
                    percent: 0.0,
                    period: 0,
                    cpu_ns: None,
                    off_cpu_ns: None,
                    wait_ns: None,
                    wall_ns: None,
                });
                let last = threads.len() - 1;
                &mut threads[last]
            }
        };
        entry.cpu_ns = Some(activity.on_cpu_ns());
        entry.off_cpu_ns = Some(activity.off_cpu_ns());
        entry.wall_ns = Some(activity.alive_ns());
        entry.wait_ns = Some(wait);
    }
}

/// Writes the JSON document for `profile`, pretty-printed, with a final newline.
pub fn render(profile: &Profile, options: &JsonOptions, out: impl Write) -> io::Result<()> {
    write_pretty(&report(profile, options), out)
}

/// Writes `doc` pretty-printed through [`SafeFormatter`], with a final newline: the one way
/// every JSON output of this crate is written.
pub(crate) fn write_pretty(doc: &impl Serialize, mut out: impl Write) -> io::Result<()> {
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, SafeFormatter(PrettyFormatter::new()));
    doc.serialize(&mut serializer).map_err(io::Error::from)?;
    writeln!(out)
}

/// serde_json's pretty printer, except that inside strings the characters of [`needs_escape`]
/// are written as `\uXXXX` escapes (all of them are in the Basic Multilingual Plane).
struct SafeFormatter<'a>(PrettyFormatter<'a>);

impl Formatter for SafeFormatter<'_> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // The layout is PrettyFormatter's.
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}
