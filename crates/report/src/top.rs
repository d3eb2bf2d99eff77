//! The `rprof report` text: a header describing the recording, optionally a per-thread
//! breakdown, then the hottest functions (or source lines) with self and total shares.
//!
//! Every string of the profile (command, host, event, thread, function, module and file names)
//! is shown through [`visible`], so that a name cannot drive the terminal.

use std::borrow::Cow;
use std::io::{self, Write};

use rprof_profile::{FrameKind, Profile};

use crate::aggregate::{Row, Table, TableKind};
use crate::format::{command_line, duration, percent, thousands, utc};
use crate::overview::{period_is_time, Overview};
use crate::select::{selected_names, Selection, StackCounts, Weight};
use crate::shorten::shorten;
use crate::visible::visible;
use crate::SortBy;

/// How the text report looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopOptions {
    /// Which samples count. Default: all of them, inline frames kept apart.
    pub selection: Selection,
    /// Functions or source lines. Default: functions.
    pub kind: TableKind,
    /// Ranking. Default: by self samples.
    pub sort: SortBy,
    /// Show at most this many rows. Default `None`: all.
    pub limit: Option<usize>,
    /// Fit lines into this many columns, shortening names. Default `None`: never shorten.
    pub width: Option<usize>,
    /// Color with ANSI escapes. Default `false`.
    pub color: bool,
    /// Show the per-thread breakdown before the table. Default `false`.
    pub threads: bool,
    /// A description of the selection for the header (e.g. `thread worker`). Default `None`.
    pub selection_label: Option<String>,
}

impl Default for TopOptions {
    fn default() -> Self {
        TopOptions {
            selection: Selection::default(),
            kind: TableKind::Functions,
            sort: SortBy::SelfSamples,
            limit: None,
            width: None,
            color: false,
            threads: false,
            selection_label: None,
        }
    }
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Narrowest function column when shortening.
const MIN_NAME: usize = 24;

/// Writes the full text report of `profile`.
pub fn render(profile: &Profile, options: &TopOptions, mut out: impl Write) -> io::Result<()> {
    // The header counts samples whatever the table weighs.
    let samples_only = Selection {
        weight: Weight::Samples,
        ..options.selection.clone()
    };
    let counts = StackCounts::new(profile, &samples_only);
    let overview = Overview::new(profile, &samples_only, &counts);
    render_header(profile, &overview, options, &mut out)?;
    if options.threads && profile.has_off_cpu() {
        crate::wait::render_activity(profile, options, &mut out)?;
    }
    if options.selection.weight.is_time() {
        return crate::wait::render_table(profile, options, &mut out);
    }
    if counts.samples == 0 {
        let what = if overview.samples == 0 {
            "no samples in this profile"
        } else {
            "no samples match the selection"
        };
        return writeln!(out, "{}", paint(options.color, BOLD, what));
    }
    if options.threads && !profile.has_off_cpu() {
        render_threads(profile, &overview, options, &mut out)?;
    }
    let table = Table::new(
        profile,
        &counts,
        &options.selection,
        options.kind,
        options.sort,
    );
    render_table(&table, options, &mut out)
}

/// `text` in bold when `color`.
pub(crate) fn bold(color: bool, text: &str) -> String {
    paint(color, BOLD, text)
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn render_header(
    profile: &Profile,
    o: &Overview,
    options: &TopOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let h = &profile.header;
    let mut lines = Vec::new();
    let what = match (h.command.is_empty(), h.target_pid) {
        (false, _) => command_line(&h.command),
        (true, Some(pid)) => format!("process {pid}"),
        (true, None) => "an unknown command".to_string(),
    };
    lines.push(format!("rprof report of {what}"));
    let mut recorded = format!("recorded {}", utc(h.start_unix_ns));
    if !h.hostname.is_empty() {
        recorded.push_str(&format!(" on {}", h.hostname));
    }
    if !h.kernel_release.is_empty() {
        recorded.push_str(&format!(" (Linux {})", h.kernel_release));
    }
    if !h.rprof_version.is_empty() {
        recorded.push_str(&format!(" by rprof {}", h.rprof_version));
    }
    lines.push(recorded);
    let mut event = format!("event {}", if h.event.is_empty() { "?" } else { &h.event });
    if let Some(f) = h.frequency {
        event.push_str(&format!(" at {} Hz", thousands(f)));
    } else if let Some(p) = h.period {
        event.push_str(&format!(" every {} events", thousands(p)));
    }
    if !h.call_graph.is_empty() {
        event.push_str(&format!(", call graph {}", h.call_graph));
    }
    lines.push(event);
    lines.push(format!(
        "duration {}{}, {} samples, {} {} in {} {}",
        duration(o.duration_ns),
        if o.complete { "" } else { " (interrupted)" },
        thousands(o.samples),
        o.threads,
        plural(o.threads, "thread", "threads"),
        o.processes,
        plural(o.processes, "process", "processes"),
    ));
    let attempted = o.samples.saturating_add(o.lost);
    lines.push(format!(
        "lost {} samples ({:.2}%), {} truncated stacks ({:.2}%), throttled {} {}",
        thousands(o.lost),
        percent(o.lost, attempted),
        thousands(o.truncated),
        percent(o.truncated, o.selected),
        thousands(o.throttled),
        plural(o.throttled as usize, "time", "times"),
    ));
    if o.selected != o.samples || options.selection_label.is_some() {
        let label = options.selection_label.as_deref().unwrap_or("selection");
        lines.push(format!(
            "showing {label}: {} of {} samples ({:.2}%)",
            thousands(o.selected),
            thousands(o.samples),
            percent(o.selected, o.samples)
        ));
    }
    if options.selection.merge_inline {
        lines.push("inlined functions merged into their callers".to_string());
    }
    for line in lines {
        // Every line quotes the profile (command, host, event) or the selection's label.
        let line = format!("# {line}");
        writeln!(out, "{}", paint(options.color, DIM, &visible(&line)))?;
    }
    writeln!(out)
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// A row of the thread table: one name of one thread.
struct ThreadRow<'p> {
    tid: u32,
    pid: u32,
    name: &'p str,
    samples: u64,
    period: u64,
}

fn render_threads(
    profile: &Profile,
    o: &Overview,
    options: &TopOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    // One row per name a thread had: samples taken before an `exec` keep the old program's
    // name (issue 9.11).
    let threads: Vec<_> = selected_names(profile, &options.selection)
        .into_iter()
        .map(|(t, n)| ThreadRow {
            tid: t.tid,
            pid: t.pid,
            name: &n.name,
            samples: n.samples,
            period: n.period,
        })
        .collect();
    let time = period_is_time(&profile.header.event);
    let cost_title = if time { "CPU time" } else { "Events" };
    let cost = |period: u64| {
        if time {
            duration(period)
        } else {
            thousands(period)
        }
    };
    let rows: Vec<[String; 5]> = threads
        .iter()
        .map(|t| {
            [
                t.tid.to_string(),
                t.pid.to_string(),
                thousands(t.samples),
                format!("{:.2}%", percent(t.samples, o.selected)),
                cost(t.period),
            ]
        })
        .collect();
    let titles = ["Tid", "Pid", "Samples", "Share", cost_title];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut title = String::new();
    for (w, t) in widths.iter().zip(titles) {
        title.push_str(&format!("{t:>w$}  "));
    }
    title.push_str("Thread");
    writeln!(out, "{}", paint(options.color, BOLD, &title))?;
    for (row, t) in rows.iter().zip(&threads) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line.push_str(&format!("{cell:>w$}  "));
        }
        let name = if t.name.is_empty() {
            "[unnamed]"
        } else {
            t.name
        };
        line.push_str(&visible(name));
        writeln!(out, "{line}")?;
    }
    writeln!(out)
}

/// The source column of a row: `file:line` with the file's directories dropped.
fn source(row: &Row) -> String {
    match (&row.file, row.line) {
        (Some(file), line) => {
            let base = visible(file.rsplit('/').next().unwrap_or(file));
            match line {
                Some(l) => format!("{base}:{l}"),
                None => base.into_owned(),
            }
        }
        (None, _) => String::new(),
    }
}

fn render_table(table: &Table, options: &TopOptions, out: &mut impl Write) -> io::Result<()> {
    let shown = options
        .limit
        .map_or(table.rows.len(), |l| l.min(table.rows.len()));
    let rows = &table.rows[..shown];
    let total = table.samples;
    let count_w = rows
        .iter()
        .map(|r| thousands(r.self_samples.max(r.total_samples)).len())
        .max()
        .unwrap_or(0)
        .max("Samples".len());
    let module_of = |r: &Row| -> String {
        match (&r.module, r.kind) {
            (_, FrameKind::Kernel) => "[kernel]".to_string(),
            (Some(m), _) => visible(m).into_owned(),
            (None, _) => "[unknown]".to_string(),
        }
    };
    let sources: Vec<String> = rows.iter().map(source).collect();
    let modules: Vec<String> = rows.iter().map(module_of).collect();
    let names: Vec<Cow<'_, str>> = rows.iter().map(|r| visible(&r.name)).collect();
    let mut module_w = modules
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(0)
        .max("Module".len());
    let mut source_w = sources
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max("Source".len());
    let name_title = match table.kind {
        TableKind::Functions => "Function",
        TableKind::Lines => "Function (of the line)",
    };
    // "   Self% Samples   Total% Samples  Module  Source  Function": the function comes last,
    // so that long names push nothing out of line.
    let fixed = 8 + 1 + count_w + 1 + 8 + 1 + count_w;
    let mut name_w = usize::MAX;
    if let Some(width) = options.width {
        module_w = module_w.min(20);
        source_w = source_w.min(28);
        let room = |module_w: usize, source_w: usize| {
            width.saturating_sub(fixed + 2 + module_w + 2 + source_w + 2)
        };
        // Narrow terminals: when names need the room, cut source and module columns first.
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let wanted = longest.clamp(name_title.len(), MIN_NAME);
        while room(module_w, source_w) < wanted && source_w > 12 {
            source_w -= 1;
        }
        while room(module_w, source_w) < wanted && module_w > 8 {
            module_w -= 1;
        }
        name_w = room(module_w, source_w).max(8);
    }
    let (first, second) = match options.sort {
        SortBy::SelfSamples => ("Self%", "Total%"),
        SortBy::Total => ("Total%", "Self%"),
    };
    let heading = format!(
        "{first:>8} {:>count_w$} {second:>8} {:>count_w$}  {:<module_w$}  {:<source_w$}  {name_title}",
        "Samples", "Samples", "Module", "Source",
    );
    writeln!(out, "{}", paint(options.color, BOLD, &heading))?;
    for (((row, module), src), name) in rows.iter().zip(&modules).zip(&sources).zip(&names) {
        let (a, b) = match options.sort {
            SortBy::SelfSamples => (row.self_samples, row.total_samples),
            SortBy::Total => (row.total_samples, row.self_samples),
        };
        let name = shorten(name, name_w);
        let module = cut_end(module, module_w);
        let src = cut_file(src, source_w);
        let pct = |n: u64| {
            let p = percent(n, total);
            let text = format!("{p:>7.2}%");
            if !options.color {
                text
            } else if p >= 5.0 {
                paint(true, RED, &text)
            } else if p >= 0.5 {
                paint(true, GREEN, &text)
            } else {
                text
            }
        };
        let module_pad = " ".repeat(module_w.saturating_sub(module.chars().count()));
        let line = format!(
            "{} {:>count_w$} {} {:>count_w$}  {}{module_pad}  {src:<source_w$}  {}",
            pct(a),
            thousands(a),
            pct(b),
            thousands(b),
            paint(options.color, DIM, &module),
            paint(options.color, BOLD, &name),
        );
        writeln!(out, "{line}")?;
    }
    if shown < table.rows.len() {
        let rest = table.rows.len() - shown;
        let what = match table.kind {
            TableKind::Functions => plural(rest, "function", "functions"),
            TableKind::Lines => plural(rest, "line", "lines"),
        };
        writeln!(
            out,
            "{}",
            paint(
                options.color,
                DIM,
                &format!("# {rest} more {what} not shown (--top to see more)")
            )
        )?;
    }
    Ok(())
}

/// Keeps the start of `s` within `max` characters, marking a cut with `…`.
fn cut_end(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Fits `file:line` within `max` characters, keeping the line and the start of the file name.
fn cut_file(s: &str, max: usize) -> String {
    let len = s.chars().count();
    if len <= max {
        return s.to_string();
    }
    match s.rfind(':') {
        Some(colon) if s.len() - colon < max => {
            let line = &s[colon..];
            let keep = max - line.chars().count() - 1;
            let mut out: String = s[..colon].chars().take(keep).collect();
            out.push('…');
            out.push_str(line);
            out
        }
        _ => cut_end(s, max),
    }
}
