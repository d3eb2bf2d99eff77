//! `rprof annotate FUNCTION`: the source lines of one function with the samples on each.
//!
//! [`Annotation::new`] finds the function ([`find_function`]: an exact name, or a unique
//! short name such as `hot` for `app::hot`) and counts, for every source line of it:
//!
//! - **self**: samples executing the function's own machine code at that line. Code inlined
//!   at the line counts there (the function executes it), and also on the inlined function's
//!   own lines when that function is annotated: an inline frame is attributed both to the line
//!   that inlined it and to its own. The inlined functions are named per line.
//! - **total**: samples with the line anywhere on the stack (the line or what it called), each
//!   sample once per line even when the function recurses.
//!
//! Percentages are of the function's total samples (every sample with the function on the
//! stack), so the lines of a function add up to its own 100%. Lines are grouped in sections,
//! one per (module, source file).
//!
//! The text is not read here: the caller reads each [`Annotation::files`] (bounded, as untrusted
//! input) and passes it in as a [`Source`]. [`render`] prints the lines around the sampled ones
//! (every string through [`visible`]), [`render_json`] the sampled lines with their exact text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

use rprof_profile::{FrameKind, ModuleId, Profile};
use serde::Serialize;

use crate::format::{percent, percent2, thousands};
use crate::select::{Selection, StackCounts};
use crate::visible::visible;

/// Why a function cannot be annotated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotateError {
    /// No function of the profile has that name. The message shows the names through
    /// [`visible`].
    #[error("no function '{}' in the profile{}", visible(.function), close_list(.close))]
    NotFound {
        /// What the user asked for.
        function: String,
        /// Names of the profile close to it (by substring or edit distance), hottest first.
        close: Vec<String>,
    },
    /// Several functions have that short name.
    #[error(
        "'{}' names {} functions in the profile: {} (give the full name)",
        visible(.function),
        .matches.len(),
        visible(&.matches.join(", "))
    )]
    Ambiguous {
        /// What the user asked for.
        function: String,
        /// The full names it matches.
        matches: Vec<String>,
    },
    /// The function is in the profile but no selected sample has it on its stack.
    #[error("no sample of the selection has '{}' on its stack", visible(.function))]
    NoSamples {
        /// The function.
        function: String,
    },
    /// The function's frames have no source file (its module had no DWARF line information).
    #[error(
        "'{}' has no source lines in the profile: its module had no line information \
         (build it with -g, or debug = true in Cargo.toml)",
        visible(.function)
    )]
    NoLines {
        /// The function.
        function: String,
    },
}

fn close_list(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (close matches: {})", visible(&close.join(", ")))
    }
}

/// Samples of one source line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Samples in the function's own code at this line (code inlined here included).
    pub self_samples: u64,
    /// Samples with this line on the stack, each sample once.
    pub total_samples: u64,
    /// Functions inlined at this line that samples were in, with their samples.
    pub inlined: BTreeMap<String, u64>,
}

/// The lines of the function in one source file of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Module name (file name of the binary or library), when known.
    pub module: Option<String>,
    /// Source file, as the debug information names it.
    pub file: String,
    /// Samples with a line of this section on the stack, each sample once.
    pub total_samples: u64,
    /// Sampled lines by number (0: code the compiler gave no line).
    pub lines: BTreeMap<u32, LineCounts>,
}

/// The samples of one function, line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The function's full name.
    pub function: String,
    /// Selected samples (of the whole profile).
    pub samples: u64,
    /// Samples with the function on the stack: the 100% of the line percentages.
    pub total_samples: u64,
    /// Samples in the function's own code (code inlined into it included).
    pub self_samples: u64,
    /// Sections, most samples first.
    pub sections: Vec<Section>,
    /// Samples in frames of the function without a source file.
    pub unlocated: LineCounts,
}

/// The text of a source file, as the caller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file's lines (line 1 first), read from disk.
    Text {
        /// The lines, without line ends.
        lines: Vec<String>,
        /// Something the reader should know, e.g. that the file changed after the recording.
        note: Option<String>,
    },
    /// Not available: why (shown in place of the text).
    Missing(String),
}

/// How the annotation looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotateOptions {
    /// Unsampled lines shown around each sampled line; longer stretches are folded into one
    /// `⋮` line. Default 5.
    pub context: usize,
    /// Color with ANSI escapes. Default `false`.
    pub color: bool,
}

impl Default for AnnotateOptions {
    fn default() -> Self {
        AnnotateOptions {
            context: 5,
            color: false,
        }
    }
}

/// Shares at least this are red; a line's text is highlighted when it is the hottest line or
/// has this share and at least half the hottest line's samples.
const HOT_PERCENT: f64 = 10.0;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The full name of the function `query` names: a function of the profile with exactly that
/// name, else the one function whose short name (without its path, e.g. `app::hot` →
/// `hot`, and without a C++ argument list) is `query`.
pub fn find_function(profile: &Profile, query: &str) -> Result<String, AnnotateError> {
    let mut names: HashMap<&str, u64> = HashMap::new();
    for frame in profile.frames() {
        if frame.kind != FrameKind::Truncated {
            names.entry(frame.function.as_str()).or_insert(0);
        }
    }
    if names.contains_key(query) {
        return Ok(query.to_string());
    }
    // Samples per name, to list close matches hottest first.
    for (index, _) in profile.samples.iter().enumerate() {
        let stack = profile.stack(profile.sample_stack(index));
        if let Some(&leaf) = stack.first() {
            if let Some(n) = names.get_mut(profile.frame(leaf).function.as_str()) {
                *n += 1;
            }
        }
    }
    let mut short: Vec<&str> = names
        .keys()
        .copied()
        .filter(|name| short_name(name) == query)
        .collect();
    short.sort_unstable();
    match short.len() {
        1 => return Ok(short[0].to_string()),
        0 => {}
        _ => {
            return Err(AnnotateError::Ambiguous {
                function: query.to_string(),
                matches: short.iter().map(|s| s.to_string()).collect(),
            })
        }
    }
    let lower = query.to_lowercase();
    let mut close: Vec<(usize, u64, &str)> = names
        .iter()
        .filter_map(|(&name, &samples)| {
            let s = short_name(name);
            let distance = edit_distance(&s.to_lowercase(), &lower);
            let similar = !lower.is_empty()
                && (name.to_lowercase().contains(&lower)
                    || (s.len() >= 3 && lower.contains(&s.to_lowercase())));
            let near = distance <= (query.chars().count() / 3).max(1);
            (similar || near).then_some((distance, samples, name))
        })
        .collect();
    close.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    Err(AnnotateError::NotFound {
        function: query.to_string(),
        close: close
            .into_iter()
            .take(5)
            .map(|(_, _, n)| n.to_string())
            .collect(),
    })
}

/// The function with the most self samples among those with source lines, not inlined
/// everywhere (else inlined), for `rprof annotate` without a FUNCTION (as `perf annotate`
/// starts with the hottest).
pub fn hottest_function(profile: &Profile, selection: &Selection) -> Option<String> {
    let counts = StackCounts::new(profile, selection);
    let table = crate::aggregate::Table::new(
        profile,
        &counts,
        selection,
        crate::aggregate::TableKind::Functions,
        crate::SortBy::SelfSamples,
    );
    // A function of its own first: its listing shows what was inlined into it as well.
    let candidates = || {
        table
            .rows
            .iter()
            .filter(|r| r.file.is_some() && r.self_samples > 0 && r.kind == FrameKind::User)
    };
    candidates()
        .find(|r| !r.inlined)
        .or_else(|| candidates().next())
        .map(|r| r.name.clone())
}

/// `name` without a C++ argument list and without its path: `ns::Type::f(int) const` → `f`,
/// `app::hot` → `hot`.
fn short_name(name: &str) -> &str {
    let mut depth = 0usize;
    let mut end = name.len();
    for (i, c) in name.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            '(' if depth == 0 && i > 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let name = &name[..end];
    // The last `::` outside generic arguments.
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => start = i + 2,
            _ => {}
        }
    }
    name.get(start..).filter(|s| !s.is_empty()).unwrap_or(name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Annotation {
    /// Counts the samples of `selection` line by line for the function `query` names (see
    /// [`find_function`]).
    pub fn new(
        profile: &Profile,
        selection: &Selection,
        query: &str,
    ) -> Result<Annotation, AnnotateError> {
        let function = find_function(profile, query)?;
        let counts = StackCounts::new(profile, selection);
        let mut sections: BTreeMap<(Option<ModuleId>, &str), BTreeMap<u32, LineCounts>> =
            BTreeMap::new();
        let mut section_totals: BTreeMap<(Option<ModuleId>, &str), u64> = BTreeMap::new();
        let mut unlocated = LineCounts::default();
        let (mut total, mut own) = (0u64, 0u64);
        let mut seen_lines: HashSet<(Option<ModuleId>, &str, u32)> = HashSet::new();
        let mut seen_sections: HashSet<(Option<ModuleId>, &str)> = HashSet::new();
        for (stack, n) in counts.by_stack() {
            let frames: Vec<_> = selection.frames(profile, stack).collect();
            let mut found = false;
            let mut self_done = false;
            let mut unlocated_seen = false;
            seen_lines.clear();
            seen_sections.clear();
            for (i, &id) in frames.iter().enumerate() {
                let frame = profile.frame(id);
                if frame.function != function || frame.kind == FrameKind::Truncated {
                    continue;
                }
                found = true;
                // The sampled instruction is in this frame's machine code when every frame
                // below it was inlined into the next one up.
                let own_code = !self_done && frames[..i].iter().all(|&f| profile.frame(f).inlined);
                let inlined_here =
                    (own_code && i > 0).then(|| profile.frame(frames[i - 1]).function.clone());
                self_done |= own_code;
                let counts = match &frame.file {
                    Some(file) => {
                        let key = (frame.module, file.as_str());
                        let line = frame.line.unwrap_or(0);
                        let entry = sections.entry(key).or_default().entry(line).or_default();
                        if seen_sections.insert(key) {
                            *section_totals.entry(key).or_insert(0) += n;
                        }
                        if seen_lines.insert((frame.module, file.as_str(), line)) {
                            entry.total_samples += n;
                        }
                        entry
                    }
                    None => {
                        if !unlocated_seen {
                            unlocated_seen = true;
                            unlocated.total_samples += n;
                        }
                        &mut unlocated
                    }
                };
                if own_code {
                    counts.self_samples += n;
                    own += n;
                    if let Some(callee) = inlined_here {
                        *counts.inlined.entry(callee).or_insert(0) += n;
                    }
                }
            }
            if found {
                total += n;
            }
        }
        if total == 0 {
            return Err(AnnotateError::NoSamples { function });
        }
        if sections.is_empty() {
            return Err(AnnotateError::NoLines { function });
        }
        let mut sections: Vec<Section> = sections
            .into_iter()
            .map(|((module, file), lines)| Section {
                module: module.map(|m| profile.module_name(m).to_string()),
                file: file.to_string(),
                total_samples: section_totals.get(&(module, file)).copied().unwrap_or(0),
                lines,
            })
            .collect();
        sections.sort_by(|a, b| {
            b.total_samples
                .cmp(&a.total_samples)
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.module.cmp(&b.module))
        });
        Ok(Annotation {
            function,
            samples: counts.samples,
            total_samples: total,
            self_samples: own,
            sections,
            unlocated,
        })
    }

    /// The source files of the sections, to be read by the caller.
    pub fn files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.sections.iter().map(|s| s.file.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    fn share(&self, n: u64) -> f64 {
        percent(n, self.total_samples)
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color && !text.trim().is_empty() {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// One line of source text as a terminal shows it: tabs expanded to 8-column stops, a
/// carriage return at the end dropped, every other control character escaped ([`visible`]).
fn display_text(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut column = 0;
    for c in line.chars() {
        if c == '\t' {
            let spaces = 8 - column % 8;
            out.extend(std::iter::repeat_n(' ', spaces));
            column += spaces;
        } else {
            out.push(c);
            column += 1;
        }
    }
    visible(&out).into_owned()
}

/// Writes the annotation as text: a heading, then each section's lines with self and total
/// shares. `sources` holds the text of the files of [`Annotation::files`]; a file missing from
/// it is shown as line numbers alone.
pub fn render(
    annotation: &Annotation,
    sources: &HashMap<String, Source>,
    options: &AnnotateOptions,
    mut out: impl Write,
) -> io::Result<()> {
    let a = annotation;
    let color = options.color;
    writeln!(
        out,
        "{}",
        paint(
            color,
            BOLD,
            &format!(
                "{}: {} samples ({:.2}% of {}) with it on the stack, {} ({:.2}%) in its own code",
                visible(&a.function),
                thousands(a.total_samples),
                percent(a.total_samples, a.samples),
                thousands(a.samples),
                thousands(a.self_samples),
                percent(a.self_samples, a.samples),
            )
        )
    )?;
    writeln!(
        out,
        "{}",
        paint(
            color,
            DIM,
            "Self% and Total% are shares of the function's samples; Total includes callees"
        )
    )?;
    let hottest = a
        .sections
        .iter()
        .flat_map(|s| s.lines.values())
        .map(|l| l.self_samples)
        .max()
        .unwrap_or(0);
    for section in &a.sections {
        writeln!(out)?;
        let module = section
            .module
            .as_deref()
            .map(|m| format!(" ({})", visible(m)))
            .unwrap_or_default();
        writeln!(
            out,
            "{}",
            paint(
                color,
                BOLD,
                &format!(
                    "{}{module}: {} samples ({:.2}%)",
                    visible(&section.file),
                    thousands(section.total_samples),
                    a.share(section.total_samples)
                )
            )
        )?;
        let source = sources.get(&section.file);
        match source {
            Some(Source::Text {
                note: Some(note), ..
            }) => writeln!(
                out,
                "{}",
                paint(color, DIM, &format!("# {}", visible(note)))
            )?,
            Some(Source::Missing(why)) => writeln!(
                out,
                "{}",
                paint(
                    color,
                    DIM,
                    &format!("# source not shown: {}; line numbers only", visible(why))
                )
            )?,
            None => writeln!(
                out,
                "{}",
                paint(color, DIM, "# source not read; line numbers only")
            )?,
            _ => {}
        }
        let last_line = section.lines.keys().next_back().copied().unwrap_or(0);
        let line_w = last_line.to_string().len().max(4);
        writeln!(
            out,
            "{}",
            paint(
                color,
                BOLD,
                &format!(
                    "{:>7} {:>7}  {:>line_w$}  Source",
                    "Self%", "Total%", "Line"
                )
            )
        )?;
        let text: Option<&[String]> = match source {
            Some(Source::Text { lines, .. }) => Some(lines),
            _ => None,
        };
        for row in rows(section, text, options.context) {
            match row {
                Row::Fold(n) => writeln!(
                    out,
                    "{}",
                    paint(
                        color,
                        DIM,
                        &format!(
                            "{:>7} {:>7}  {:>line_w$}  ({n} {})",
                            "",
                            "",
                            "⋮",
                            if n == 1 { "line" } else { "lines" }
                        )
                    )
                )?,
                Row::Line(number) => {
                    let counts = section.lines.get(&number);
                    let (own, total) = counts.map_or((0, 0), |c| (c.self_samples, c.total_samples));
                    let pct = |n: u64| {
                        if n == 0 {
                            return format!("{:>7}", "");
                        }
                        let p = a.share(n);
                        let cell = format!("{p:>6.2}%");
                        if p >= HOT_PERCENT {
                            paint(color, RED, &cell)
                        } else if p >= 1.0 {
                            paint(color, GREEN, &cell)
                        } else {
                            cell
                        }
                    };
                    let body = match (number, text) {
                        (0, _) => "(no line: code the compiler gave no line number)".to_string(),
                        (n, Some(lines)) => match lines.get(n as usize - 1) {
                            Some(line) => display_text(line),
                            None => "(past the end of the file)".to_string(),
                        },
                        (_, None) => String::new(),
                    };
                    // The hottest line, and lines close to it (at least half its samples).
                    let hot = own > 0
                        && (own == hottest || (a.share(own) >= HOT_PERCENT && own * 2 >= hottest));
                    let body = if hot {
                        paint(color, &format!("{BOLD}{RED}"), &body)
                    } else {
                        body
                    };
                    let inlined = counts
                        .filter(|c| !c.inlined.is_empty())
                        .map(|c| {
                            let names: Vec<String> =
                                c.inlined.keys().map(|n| visible(n).into_owned()).collect();
                            paint(color, DIM, &format!("  # inlined: {}", names.join(", ")))
                        })
                        .unwrap_or_default();
                    let number_text = if number == 0 {
                        "-".to_string()
                    } else {
                        number.to_string()
                    };
                    let line = format!(
                        "{} {}  {number_text:>line_w$}  {body}{inlined}",
                        pct(own),
                        pct(total)
                    );
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
        }
    }
    if a.unlocated.total_samples > 0 {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            paint(
                color,
                DIM,
                &format!(
                    "# {} samples ({:.2}%) with no source line ({:.2}% in its own code)",
                    thousands(a.unlocated.total_samples),
                    a.share(a.unlocated.total_samples),
                    a.share(a.unlocated.self_samples)
                )
            )
        )?;
    }
    Ok(())
}

/// A row of the text: a line, or a fold of unsampled lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    Line(u32),
    Fold(u32),
}

/// The rows of a section: with the text, every line from `context` before the first sampled
/// line to `context` after the last, unsampled stretches longer than that folded; without
/// it, the sampled lines alone.
fn rows(section: &Section, text: Option<&[String]>, context: usize) -> Vec<Row> {
    let sampled: Vec<u32> = section.lines.keys().copied().collect();
    let Some(text) = text else {
        return sampled.into_iter().map(Row::Line).collect();
    };
    let context = u32::try_from(context).unwrap_or(u32::MAX);
    let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    if sampled.first() == Some(&0) {
        out.push(Row::Line(0));
    }
    let numbered: Vec<u32> = sampled.into_iter().filter(|&n| n > 0).collect();
    let (Some(&first), Some(&last)) = (numbered.first(), numbered.last()) else {
        return out;
    };
    let start = first.saturating_sub(context).max(1);
    let end = last.saturating_add(context).min(length).max(last);
    let mut next = 0; // index into `numbered` of the next sampled line at or after `line`
    let mut line = start;
    while line <= end {
        while next < numbered.len() && numbered[next] < line {
            next += 1;
        }
        let before = next.checked_sub(1).map(|i| numbered[i]);
        let after = numbered.get(next).copied();
        let near = after == Some(line)
            || before.is_some_and(|b| line - b <= context)
            || after.is_some_and(|a| a - line <= context);
        if near {
            out.push(Row::Line(line));
            line += 1;
            continue;
        }
        // A stretch far from every sampled line: up to `context` before the next one.
        let resume = after.map_or(end + 1, |a| a.saturating_sub(context));
        let skipped = resume - line;
        if skipped == 1 {
            out.push(Row::Line(line));
        } else {
            out.push(Row::Fold(skipped));
        }
        line = resume;
    }
    out
}

/// The JSON document of `rprof annotate --json`. Field names are a stable interface.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotationJson {
    /// Version of this document's layout.
    pub schema: u32,
    /// The function's full name.
    pub function: String,
    /// Selected samples of the profile.
    pub samples: u64,
    /// Samples with the function on the stack (the 100% of every `*_percent` below).
    pub total: u64,
    /// `total` as a percentage of `samples`.
    pub total_percent: f64,
    /// Samples in the function's own code, inlined code included.
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// `self` as a percentage of `samples`.
    pub self_percent: f64,
    /// One entry per (module, source file).
    pub sections: Vec<SectionJson>,
    /// Samples in frames without a source file: `{self, total}`.
    pub unlocated: CountsJson,
}

/// A section of [`AnnotationJson`].
#[derive(Debug, Clone, Serialize)]
pub struct SectionJson {
    /// Module name, null when unknown.
    pub module: Option<String>,
    /// Source file as the debug information names it.
    pub file: String,
    /// The source was read (false: the lines have no `text`).
    pub source_found: bool,
    /// Why the source is not shown, or a note about it (e.g. changed after the recording).
    pub source_note: Option<String>,
    /// Samples with a line of this section on the stack.
    pub total: u64,
    /// Sampled lines in line order.
    pub lines: Vec<LineJson>,
}

/// Samples of a line, or of the unlocated frames.
#[derive(Debug, Clone, Serialize)]
pub struct CountsJson {
    /// Samples in the function's own code.
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// Samples with it on the stack.
    pub total: u64,
}

/// A sampled line of [`SectionJson`].
#[derive(Debug, Clone, Serialize)]
pub struct LineJson {
    /// Line number (0: code without a line number).
    pub line: u32,
    /// Samples in the function's own code at this line.
    #[serde(rename = "self")]
    pub self_samples: u64,
    /// `self` as a percentage of the function's `total`.
    pub self_percent: f64,
    /// Samples with this line on the stack.
    pub total: u64,
    /// `total` as a percentage of the function's `total`.
    pub total_percent: f64,
    /// Functions inlined at this line that samples were in.
    pub inlined: Vec<InlinedJson>,
    /// The line's text, exact, when the source was read and has the line.
    pub text: Option<String>,
}

/// A function inlined at a line.
#[derive(Debug, Clone, Serialize)]
pub struct InlinedJson {
    /// Its name.
    pub function: String,
    /// Samples in it at this line.
    pub samples: u64,
}

/// Builds the JSON document of `annotation` with the texts of `sources`.
pub fn json(annotation: &Annotation, sources: &HashMap<String, Source>) -> AnnotationJson {
    let a = annotation;
    let sections = a
        .sections
        .iter()
        .map(|s| {
            let source = sources.get(&s.file);
            let (text, note) = match source {
                Some(Source::Text { lines, note }) => (Some(lines), note.clone()),
                Some(Source::Missing(why)) => (None, Some(why.clone())),
                None => (None, None),
            };
            SectionJson {
                module: s.module.clone(),
                file: s.file.clone(),
                source_found: text.is_some(),
                source_note: note,
                total: s.total_samples,
                lines: s
                    .lines
                    .iter()
                    .map(|(&line, c)| LineJson {
                        line,
                        self_samples: c.self_samples,
                        self_percent: percent2(c.self_samples, a.total_samples),
                        total: c.total_samples,
                        total_percent: percent2(c.total_samples, a.total_samples),
                        inlined: c
                            .inlined
                            .iter()
                            .map(|(f, &n)| InlinedJson {
                                function: f.clone(),
                                samples: n,
                            })
                            .collect(),
                        text: text.and_then(|t| {
                            let line = usize::try_from(line).ok()?.checked_sub(1)?;
                            t.get(line)
                                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                        }),
                    })
                    .collect(),
            }
        })
        .collect();
    AnnotationJson {
        schema: 1,
        function: a.function.clone(),
        samples: a.samples,
        total: a.total_samples,
        total_percent: percent2(a.total_samples, a.samples),
        self_samples: a.self_samples,
        self_percent: percent2(a.self_samples, a.samples),
        sections,
        unlocated: CountsJson {
            self_samples: a.unlocated.self_samples,
            total: a.unlocated.total_samples,
        },
    }
}

/// Writes the JSON document of `annotation`, pretty-printed, with a final newline. Strings are
/// exact; the characters a terminal would act on are `\u` escapes (as in `report --json`).
pub fn render_json(
    annotation: &Annotation,
    sources: &HashMap<String, Source>,
    out: impl Write,
) -> io::Result<()> {
    crate::json::write_pretty(&json(annotation, sources), out)
}

#[cfg(test)]
#[path = "annotate_tests.rs"]
mod tests;
