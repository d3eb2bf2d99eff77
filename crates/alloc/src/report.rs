//! Reports of an allocation profile (`rprof report` / `rprof flame --alloc` on a profile of
//! `rprof record --alloc`): the summary line, allocation sites ranked by calls, bytes, leaked
//! bytes and bytes at the peak, `--json`, and folded stacks for flame graphs.
//!
//! A **site** is the function that called the allocator: the first frame of an exact call
//! site's stack (innermost inlined frame first) that is neither an allocator function
//! (`malloc`, ...) nor allocation plumbing (Rust's `__rust_alloc`, `alloc::…`, `std::alloc`,
//! ...). Sites of one name are added up. Their numbers are exact (every call). The flame
//! graphs draw the sampled full stacks, whose numbers are estimates (docs/alloc.md).

use std::collections::BTreeMap;
use std::io::{self, Write};

use rprof_profile::{AllocSummary, FrameKind, Profile};
use rprof_report::format::thousands;
use rprof_report::visible;
use serde::Serialize;

/// Names of the allocator's own functions.
const ALLOCATOR: [&str; 14] = [
    "malloc",
    "calloc",
    "realloc",
    "free",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "posix_memalign",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "reallocarray",
];

/// Prefixes of allocation plumbing between a program and `malloc` (Rust's global allocator).
const PLUMBING: [&str; 10] = [
    "__rust_",
    "__rdl_",
    "__rg_",
    "alloc::",
    "<alloc::",
    "std::alloc",
    "<std::alloc",
    "std::sys::alloc",
    "<std::sys::alloc",
    "core::alloc",
];

/// True for a frame that is the allocator or plumbing on the way to it.
pub fn is_allocator_frame(name: &str) -> bool {
    ALLOCATOR.contains(&name) || PLUMBING.iter().any(|p| name.starts_with(p))
}

/// One site's numbers (exact).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Site {
    /// The function that called the allocator.
    pub name: String,
    /// Its module's file name.
    pub module: String,
    /// Bytes asked for.
    pub bytes: u64,
    /// Allocation calls.
    pub count: u64,
    /// Bytes never freed.
    pub leaked_bytes: u64,
    /// Blocks never freed.
    pub leaked_count: u64,
    /// Calls whose block was temporary.
    pub temporary_count: u64,
    /// Bytes live at the peak.
    pub peak_bytes: u64,
    /// Blocks live at the peak.
    pub peak_count: u64,
}

/// The exact sites of `profile`, largest `bytes` first (ties by name).
pub fn sites(profile: &Profile) -> Vec<Site> {
    let mut by_name: BTreeMap<(String, String), Site> = BTreeMap::new();
    for (i, a) in profile.alloc.iter().enumerate() {
        if !a.exact {
            continue;
        }
        let frames = profile.stack(profile.alloc_stack(i));
        let user: Vec<_> = frames
            .iter()
            .map(|&f| profile.frame(f))
            .filter(|f| f.kind != FrameKind::Truncated)
            .collect();
        let site = user
            .iter()
            .find(|f| !is_allocator_frame(&f.function))
            .or(user.last());
        let (name, module) = match site {
            Some(f) => (
                f.function.clone(),
                f.module
                    .map(|m| profile.module_name(m).to_string())
                    .unwrap_or_default(),
            ),
            None => ("[unknown]".to_string(), String::new()),
        };
        let s = by_name
            .entry((name.clone(), module.clone()))
            .or_insert_with(|| Site {
                name,
                module,
                ..Site::default()
            });
        s.bytes += a.bytes;
        s.count += a.calls;
        s.leaked_bytes += a.leaked_bytes;
        s.leaked_count += a.leaked_calls;
        s.temporary_count += a.temporary_calls;
        s.peak_bytes += a.peak_bytes;
        s.peak_count += a.peak_calls;
    }
    let mut list: Vec<Site> = by_name.into_values().collect();
    list.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    list
}

/// What a flame graph of allocations weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Bytes allocated.
    Bytes,
    /// Allocation calls.
    Count,
    /// Bytes never freed.
    Leaked,
    /// Bytes live at the peak.
    Peak,
}

impl Metric {
    /// `bytes`, `count`, `leaked`, `peak`.
    pub fn parse(text: &str) -> Option<Metric> {
        Some(match text {
            "bytes" => Metric::Bytes,
            "count" => Metric::Count,
            "leaked" => Metric::Leaked,
            "peak" => Metric::Peak,
            _ => return None,
        })
    }

    /// What the counts of a flame graph are.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Count => "calls",
            _ => "bytes",
        }
    }

    /// The word in titles.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Bytes => "bytes allocated",
            Metric::Count => "allocation calls",
            Metric::Leaked => "bytes leaked",
            Metric::Peak => "bytes at the peak",
        }
    }
}

/// Folded stacks (`root;…;leaf COUNT`) of the sampled stacks weighed by `metric` (estimates),
/// sorted, stacks of zero weight left out. The allocator's own frames are left out of each
/// stack's leaf end, so that the top frames are the allocating code.
pub fn folded(profile: &Profile, metric: Metric) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (i, a) in profile.alloc.iter().enumerate() {
        if a.exact {
            continue;
        }
        let weight = match metric {
            Metric::Bytes => a.bytes,
            Metric::Count => a.calls,
            Metric::Leaked => a.leaked_bytes,
            Metric::Peak => a.peak_bytes,
        };
        if weight == 0 {
            continue;
        }
        let frames = profile.stack(profile.alloc_stack(i));
        let names: Vec<String> = frames
            .iter()
            .map(|&f| &profile.frame(f).function)
            .skip_while(|name| ALLOCATOR.contains(&name.as_str()))
            .map(|name| visible(name).replace(';', ":"))
            .collect();
        let line = names.into_iter().rev().collect::<Vec<_>>().join(";");
        if line.is_empty() {
            continue;
        }
        *counts.entry(line).or_default() += weight;
    }
    counts
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect()
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// The heaptrack-like summary line.
pub fn summary_line(s: &AllocSummary) -> String {
    format!(
        "allocations: {} calls ({} temporary), {} allocated, peak {} at {}, leaked {} in {} blocks",
        thousands(s.alloc_calls),
        thousands(s.temporary_calls),
        bytes(s.alloc_bytes),
        bytes(s.peak_bytes),
        seconds(s.peak_time_ns),
        bytes(s.leaked_bytes),
        thousands(s.leaked_calls),
    )
}

/// How many sites each table shows.
pub const DEFAULT_LIMIT: usize = 10;

/// The text report: the summary line, the notes, then the sites by calls, bytes, peak and
/// leaks (`limit` rows each).
pub fn render_text(profile: &Profile, limit: usize, mut out: impl Write) -> io::Result<()> {
    let Some(s) = &profile.alloc_summary else {
        return writeln!(out, "no allocation data in this profile");
    };
    writeln!(out, "{}", summary_line(s))?;
    let sampling = if s.sample_bytes == 0 {
        "a stack for every call".to_string()
    } else {
        format!("a stack per about {} allocated", bytes(s.sample_bytes))
    };
    writeln!(
        out,
        "probed {}; {} frees, {} of unknown blocks; {}, {} taken; over {}",
        visible(&s.allocator),
        thousands(s.free_calls),
        thousands(s.unknown_frees),
        sampling,
        thousands(s.stacks),
        seconds(s.duration_ns),
    )?;
    let calls: Vec<String> = s
        .calls_by_function
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{f} {}", thousands(*n)))
        .collect();
    writeln!(out, "calls: {}", calls.join(", "))?;
    if s.lost > 0 {
        writeln!(
            out,
            "warning: the kernel dropped {} records (a full ring): the totals are short",
            thousands(s.lost)
        )?;
    }
    let sites = sites(profile);
    let table = |out: &mut dyn Write,
                 title: &str,
                 key: fn(&Site) -> u64,
                 sites: &[Site]|
     -> io::Result<()> {
        let mut rows: Vec<&Site> = sites.iter().filter(|s| key(s) > 0).collect();
        rows.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        if rows.is_empty() {
            return Ok(());
        }
        writeln!(out)?;
        writeln!(out, "{title}")?;
        writeln!(
            out,
            "{:>12} {:>11} {:>11} {:>11} {:>11}  site",
            "calls", "bytes", "temporary", "leaked", "at peak"
        )?;
        for site in rows.into_iter().take(limit) {
            let module = if site.module.is_empty() {
                String::new()
            } else {
                format!(" ({})", visible(&site.module))
            };
            writeln!(
                out,
                "{:>12} {:>11} {:>11} {:>11} {:>11}  {}{}",
                thousands(site.count),
                bytes(site.bytes),
                thousands(site.temporary_count),
                bytes(site.leaked_bytes),
                bytes(site.peak_bytes),
                visible(&site.name),
                module
            )?;
        }
        Ok(())
    };
    table(
        &mut out,
        "most calls to allocation functions",
        |s| s.count,
        &sites,
    )?;
    table(&mut out, "most bytes allocated", |s| s.bytes, &sites)?;
    table(
        &mut out,
        &format!(
            "peak: {} at {}, held by",
            bytes(s.peak_bytes),
            seconds(s.peak_time_ns)
        ),
        |s| s.peak_bytes,
        &sites,
    )?;
    table(&mut out, "most bytes leaked", |s| s.leaked_bytes, &sites)?;
    table(
        &mut out,
        "most temporary allocations",
        |s| s.temporary_count,
        &sites,
    )?;
    Ok(())
}

/// `--json`: the summary and the sites.
#[derive(Debug, Serialize)]
pub struct Json<'a> {
    /// The totals.
    pub summary: JsonSummary<'a>,
    /// Every site, largest `bytes` first.
    pub sites: Vec<Site>,
    /// The sampled stacks (estimates), root last.
    pub stacks: Vec<JsonStack>,
}

/// The `summary` object.
#[derive(Debug, Serialize)]
pub struct JsonSummary<'a> {
    /// Calls of allocation functions.
    pub alloc_calls: u64,
    /// Bytes they asked for.
    pub alloc_bytes: u64,
    /// Frees of known blocks.
    pub free_calls: u64,
    /// Frees of unknown blocks or NULL.
    pub unknown_frees: u64,
    /// Temporary allocations.
    pub temporary_calls: u64,
    /// Blocks never freed.
    pub leaked_calls: u64,
    /// Their bytes.
    pub leaked_bytes: u64,
    /// The peak of live bytes.
    pub peak_bytes: u64,
    /// When, ns after the first call.
    pub peak_time_ns: u64,
    /// First call to the end, ns.
    pub duration_ns: u64,
    /// Stack sampling rate in bytes (0: every call).
    pub sample_bytes: u64,
    /// Stacks taken.
    pub stacks: u64,
    /// Records dropped by the kernel.
    pub lost: u64,
    /// The probed library.
    pub allocator: &'a str,
    /// Calls per allocator function.
    pub calls_by_function: BTreeMap<&'a str, u64>,
}

/// One sampled stack.
#[derive(Debug, Serialize)]
pub struct JsonStack {
    /// Frames from the allocating code to the root (the allocator left out).
    pub frames: Vec<String>,
    /// Estimated bytes.
    pub bytes: u64,
    /// Estimated calls.
    pub count: u64,
    /// Estimated leaked bytes.
    pub leaked_bytes: u64,
    /// Estimated bytes at the peak.
    pub peak_bytes: u64,
}

/// Writes `--json`.
pub fn render_json(profile: &Profile, mut out: impl Write) -> io::Result<()> {
    let Some(s) = &profile.alloc_summary else {
        return writeln!(out, "{{}}");
    };
    let stacks = profile
        .alloc
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.exact)
        .map(|(i, a)| JsonStack {
            frames: profile
                .stack(profile.alloc_stack(i))
                .iter()
                .map(|&f| profile.frame(f).function.clone())
                .skip_while(|n| ALLOCATOR.contains(&n.as_str()))
                .collect(),
            bytes: a.bytes,
            count: a.calls,
            leaked_bytes: a.leaked_bytes,
            peak_bytes: a.peak_bytes,
        })
        .collect();
    let json = Json {
        summary: JsonSummary {
            alloc_calls: s.alloc_calls,
            alloc_bytes: s.alloc_bytes,
            free_calls: s.free_calls,
            unknown_frees: s.unknown_frees,
            temporary_calls: s.temporary_calls,
            leaked_calls: s.leaked_calls,
            leaked_bytes: s.leaked_bytes,
            peak_bytes: s.peak_bytes,
            peak_time_ns: s.peak_time_ns,
            duration_ns: s.duration_ns,
            sample_bytes: s.sample_bytes,
            stacks: s.stacks,
            lost: s.lost,
            allocator: &s.allocator,
            calls_by_function: s
                .calls_by_function
                .iter()
                .map(|(f, n)| (f.as_str(), *n))
                .collect(),
        },
        sites: sites(profile),
        stacks,
    };
    serde_json::to_writer_pretty(&mut out, &json)?;
    writeln!(out)
}

/// Draws the flame graph of `metric` (the sampled stacks' estimates) as SVG; `Ok(false)` when
/// there is nothing to draw.
pub fn render_flame(
    profile: &Profile,
    metric: Metric,
    title: Option<String>,
    out: impl Write,
) -> io::Result<bool> {
    let lines = folded(profile, metric);
    if lines.is_empty() {
        return Ok(false);
    }
    let h = &profile.header;
    let what = if h.command.is_empty() {
        h.target_pid
            .map_or("profile".to_string(), |p| format!("process {p}"))
    } else {
        rprof_report::format::command_line(&h.command)
    };
    let mut options = inferno::flamegraph::Options::default();
    options.title =
        visible(&title.unwrap_or_else(|| format!("rprof: {what} ({})", metric.title())))
            .into_owned();
    options.subtitle = profile.alloc_summary.as_ref().map(|s| {
        let rate = if s.sample_bytes == 0 {
            "every call has a stack".to_string()
        } else {
            format!(
                "estimated from stacks sampled every ~{}",
                bytes(s.sample_bytes)
            )
        };
        format!("{}; {rate}", summary_line(s))
    });
    options.count_name = metric.unit().to_string();
    options.deterministic = true;
    options.no_sort = true;
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(io::Error::other)?;
    Ok(true)
}
