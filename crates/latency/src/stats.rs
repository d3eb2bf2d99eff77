//! Durations → HDR histograms → the summary: text (percentile line and a log2 histogram),
//! JSON, and the histogram file of `-o`.
//!
//! Each function's durations go into an `hdrhistogram` of 3 significant digits (every
//! percentile is within 0.1 % of the recorded value, from 1 ns to one hour) beside the exact
//! count, sum, min and max.
//!
//! The `-o` file (`"format": "rprof-latency-histograms"`, `"version": 1`) holds, per function
//! (and per thread with `--per-thread`), the summary fields of `--json` and `"histogram"`:
//! `"significant_digits"` and `"buckets"`, a list of `[value_ns, count]` where `value_ns` is the
//! highest value HDR treats as equal to the recorded ones (within 0.1 %), ascending, empty
//! buckets left out. Two runs are compared by loading both (every percentile can be
//! recomputed from the buckets).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::pairing::Unpaired;

/// Precision of the histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Largest duration recorded exactly (one hour); longer ones are clamped to it.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// The durations of one function (or one function on one thread).
#[derive(Clone, Debug)]
pub struct Stats {
    hist: Histogram<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// The numbers of a [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    /// Calls.
    pub count: u64,
    /// Shortest, ns (exact).
    pub min: u64,
    /// Mean, ns (exact, rounded).
    pub mean: u64,
    /// Median, ns (HDR, within 0.1 %).
    pub p50: u64,
    /// 90th percentile, ns.
    pub p90: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// 99.9th percentile, ns.
    pub p999: u64,
    /// Longest, ns (exact).
    pub max: u64,
}

impl Stats {
    /// No calls yet.
    pub fn new() -> Stats {
        // The bounds are constants that the crate accepts (low ≥ 1, high ≥ 2 low, 3 digits).
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("valid histogram bounds");
        Stats {
            hist,
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Adds one call of `ns` nanoseconds.
    pub fn record(&mut self, ns: u64) {
        let clamped = ns.clamp(1, HIGHEST_NS);
        self.hist.saturating_record(clamped);
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Calls recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary numbers (all 0 without calls).
    pub fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        let q = |q: f64| self.hist.value_at_quantile(q).clamp(self.min, self.max);
        Summary {
            count: self.count,
            min: self.min,
            mean: (self.sum / u128::from(self.count)) as u64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: self.max,
        }
    }

    /// Counts per power-of-two bucket: `(k, n)` = n calls in `[2^k, 2^(k+1))` ns, from the
    /// lowest to the highest non-empty bucket (empty ones between included).
    pub fn log2_buckets(&self) -> Vec<(u32, u64)> {
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for v in self.hist.iter_recorded() {
            let value = self.hist.lowest_equivalent(v.value_iterated_to()).max(1);
            *counts.entry(63 - value.leading_zeros()).or_default() += v.count_at_value();
        }
        let (Some(&lo), Some(&hi)) = (counts.keys().next(), counts.keys().next_back()) else {
            return Vec::new();
        };
        (lo..=hi)
            .map(|k| (k, counts.get(&k).copied().unwrap_or(0)))
            .collect()
    }

    /// `[value_ns, count]` of every non-empty HDR bucket.
    fn buckets(&self) -> Vec<[u64; 2]> {
        self.hist
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect()
    }
}

/// A duration for people: `850ns`, `201.3us`, `2.01ms`, `1.20s`.
pub fn human(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}us", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// A power of two of ns as a bucket bound: `1us`, `512us`, `2ms`, `1s` (powers of two, so
/// `1us` is 1024 ns: bounds are rounded for reading).
fn bound(k: u32) -> String {
    let ns = 1u128 << k;
    if ns < 1024 {
        format!("{ns}ns")
    } else if ns < 1 << 20 {
        format!("{}us", ns >> 10)
    } else if ns < 1 << 30 {
        format!("{}ms", ns >> 20)
    } else {
        format!("{}s", ns >> 30)
    }
}

/// One measured function.
#[derive(Clone, Debug)]
pub struct FunctionReport {
    /// The FUNCTION as given.
    pub name: String,
    /// The file probed.
    pub path: String,
    /// The symbol probed.
    pub symbol: String,
    /// Its file offset.
    pub offset: u64,
    /// All calls.
    pub stats: Stats,
    /// Per thread (`--per-thread`).
    pub threads: BTreeMap<u32, Stats>,
    /// What did not pair.
    pub unpaired: Unpaired,
    /// `--stacks`: the slowest calls with their callers, slowest first.
    pub slowest: Vec<crate::stacks::SlowCall>,
}

/// A summary (at the end, or of one `--interval`).
#[derive(Clone, Debug)]
pub struct Report {
    /// Functions, in command-line order.
    pub functions: Vec<FunctionReport>,
    /// Wall time covered, ns.
    pub elapsed_ns: u64,
    /// Probe hits the kernel could not write (ring buffer full).
    pub lost: u64,
    /// Added time of one probed call (entry + return), ns, if measured.
    pub probe_cost_ns: Option<f64>,
    /// Why the probe cost is missing.
    pub probe_cost_problem: Option<String>,
    /// Thread names.
    pub thread_names: BTreeMap<u32, String>,
    /// An interval summary (not the final one).
    pub interval: bool,
}

const BAR: usize = 40;

fn histogram_text(out: &mut String, stats: &Stats, indent: &str) {
    let buckets = stats.log2_buckets();
    let top = buckets.iter().map(|&(_, n)| n).max().unwrap_or(0).max(1);
    let labels: Vec<String> = buckets
        .iter()
        .map(|&(k, _)| format!("[{}, {})", bound(k), bound(k + 1)))
        .collect();
    let width = labels.iter().map(String::len).max().unwrap_or(0);
    let count_width = buckets
        .iter()
        .map(|&(_, n)| n.to_string().len())
        .max()
        .unwrap_or(1);
    for (label, &(_, n)) in labels.iter().zip(&buckets) {
        let len = ((n as u128 * BAR as u128).div_ceil(u128::from(top))) as usize;
        let _ = writeln!(
            out,
            "{indent}{label:>width$} {n:>count_width$} |{:<BAR$}|",
            "@".repeat(len)
        );
    }
}

fn summary_line(out: &mut String, s: &Summary, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "min", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    let _ = writeln!(
        out,
        "{indent}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        human(s.min),
        human(s.mean),
        human(s.p50),
        human(s.p90),
        human(s.p99),
        human(s.p999),
        human(s.max)
    );
}

/// The text summary.
pub fn render_text(report: &Report, per_thread: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rprof latency: {} {:.3} s",
        if report.interval {
            "interval of"
        } else {
            "over"
        },
        report.elapsed_ns as f64 / 1e9
    );
    for f in &report.functions {
        let s = f.stats.summary();
        let _ = writeln!(
            out,
            "\n{} ({}, {} at file offset {:#x}): {} call{}",
            f.name,
            f.path,
            f.symbol,
            f.offset,
            s.count,
            if s.count == 1 { "" } else { "s" }
        );
        if s.count > 0 {
            summary_line(&mut out, &s, "  ");
            out.push('\n');
            histogram_text(&mut out, &f.stats, "  ");
        }
        let u = f.unpaired;
        if u.unfinished + u.in_progress + u.unmatched_returns > 0 {
            let _ = writeln!(
                out,
                "  not timed: {} unfinished (never returned: longjmp, exception, thread exit), \
                 {} still running at the end, {} returns without an entry",
                u.unfinished, u.in_progress, u.unmatched_returns
            );
        }
        if !f.slowest.is_empty() {
            let _ = writeln!(out, "\n  slowest calls and their callers:");
            for call in &f.slowest {
                let _ = writeln!(
                    out,
                    "    {} on thread {}: {}{}",
                    human(call.duration_ns),
                    call.tid,
                    call.stack.join(" <- "),
                    if call.truncated { " <- ..." } else { "" }
                );
            }
        }
        if per_thread {
            for (tid, stats) in &f.threads {
                let ts = stats.summary();
                let name = report.thread_names.get(tid).map_or("?", String::as_str);
                let _ = writeln!(out, "\n  thread {tid} ({name}): {} calls", ts.count);
                summary_line(&mut out, &ts, "    ");
            }
        }
    }
    if report.lost > 0 {
        let _ = writeln!(
            out,
            "\n{} probe hits were lost (ring buffer full): some calls are missing or not timed",
            report.lost
        );
    }
    match (report.probe_cost_ns, &report.probe_cost_problem) {
        (Some(ns), _) => {
            let _ = writeln!(
                out,
                "\nprobe cost: about {} per call (entry + return probe, measured at startup); \
                 each duration above includes part of it",
                human(ns.round() as u64)
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "\nprobe cost: not measured ({why})");
        }
        (None, None) => {}
    }
    out
}

fn summary_json(s: &Summary) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("count", s.count),
        ("min_ns", s.min),
        ("mean_ns", s.mean),
        ("p50_ns", s.p50),
        ("p90_ns", s.p90),
        ("p99_ns", s.p99),
        ("p999_ns", s.p999),
        ("max_ns", s.max),
    ] {
        m.insert(k.into(), json!(v));
    }
    m
}

fn function_json(report: &Report, f: &FunctionReport, per_thread: bool, buckets: bool) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(f.name));
    m.extend(summary_json(&f.stats.summary()));
    m.insert("path".into(), json!(f.path));
    m.insert("symbol".into(), json!(f.symbol));
    m.insert("file_offset".into(), json!(f.offset));
    m.insert("unfinished".into(), json!(f.unpaired.unfinished));
    m.insert("in_progress".into(), json!(f.unpaired.in_progress));
    m.insert(
        "unmatched_returns".into(),
        json!(f.unpaired.unmatched_returns),
    );
    let hist =
        |s: &Stats| json!({"significant_digits": SIGNIFICANT_DIGITS, "buckets": s.buckets()});
    if buckets {
        m.insert("histogram".into(), hist(&f.stats));
    } else {
        let log2: Vec<Value> = f
            .stats
            .log2_buckets()
            .iter()
            .map(|&(k, n)| json!({"from_ns": 1u64 << k, "to_ns": 1u128 << (k + 1), "count": n}))
            .collect();
        m.insert("log2_histogram".into(), Value::Array(log2));
    }
    if !f.slowest.is_empty() {
        let slowest: Vec<Value> = f
            .slowest
            .iter()
            .map(|c| {
                json!({"duration_ns": c.duration_ns, "tid": c.tid, "stack": c.stack,
                       "truncated": c.truncated})
            })
            .collect();
        m.insert("slowest".into(), Value::Array(slowest));
    }
    if per_thread {
        let threads: Vec<Value> = f
            .threads
            .iter()
            .map(|(tid, s)| {
                let mut t = serde_json::Map::new();
                t.insert("tid".into(), json!(tid));
                t.insert("comm".into(), json!(report.thread_names.get(tid)));
                t.extend(summary_json(&s.summary()));
                if buckets {
                    t.insert("histogram".into(), hist(s));
                }
                Value::Object(t)
            })
            .collect();
        m.insert("threads".into(), Value::Array(threads));
    }
    Value::Object(m)
}

/// The `--json` document.
pub fn render_json(report: &Report, per_thread: bool) -> Value {
    json!({
        "interval": report.interval,
        "elapsed_ns": report.elapsed_ns,
        "lost": report.lost,
        "probe_cost_ns": report.probe_cost_ns.map(|c| c.round() as u64),
        "functions": report
            .functions
            .iter()
            .map(|f| function_json(report, f, per_thread, false))
            .collect::<Vec<_>>(),
    })
}

/// The `-o` histogram file (format in the module docs).
pub fn render_histograms(report: &Report, per_thread: bool) -> Value {
    json!({
        "format": "rprof-latency-histograms",
        "version": 1,
        "elapsed_ns": report.elapsed_ns,
        "lost": report.lost,
        "probe_cost_ns": report.probe_cost_ns.map(|c| c.round() as u64),
        "functions": report
            .functions
            .iter()
            .map(|f| function_json(report, f, per_thread, true))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn designed() -> Stats {
        let mut s = Stats::new();
        for _ in 0..900 {
            s.record(200_000);
        }
        for _ in 0..90 {
            s.record(2_000_000);
        }
        for _ in 0..10 {
            s.record(10_000_000);
        }
        s
    }

    #[test]
    fn percentiles_of_the_designed_distribution() {
        let s = designed().summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 200_000);
        assert_eq!(s.max, 10_000_000);
        assert_eq!(
            s.mean,
            (900 * 200_000 + 90 * 2_000_000 + 10 * 10_000_000) / 1000
        );
        let near = |v: u64, want: u64| v.abs_diff(want) * 1000 <= want;
        assert!(near(s.p50, 200_000), "{s:?}");
        assert!(near(s.p90, 200_000), "{s:?}");
        assert!(near(s.p99, 2_000_000), "{s:?}");
        assert!(near(s.p999, 10_000_000), "{s:?}");
    }

    #[test]
    fn log2_buckets_cover_the_range() {
        let b = designed().log2_buckets();
        // 200 us is in [2^17, 2^18) ns, 10 ms in [2^23, 2^24).
        assert_eq!(b.first(), Some(&(17, 900)));
        assert_eq!(b.last(), Some(&(23, 10)));
        assert_eq!(b.iter().map(|&(_, n)| n).sum::<u64>(), 1000);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(850), "850ns");
        assert_eq!(human(201_300), "201.3us");
        assert_eq!(human(2_010_000), "2.01ms");
        assert_eq!(human(1_200_000_000), "1.20s");
        assert_eq!(bound(10), "1us");
        assert_eq!(bound(17), "128us");
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Stats::new().summary(), Summary::default());
        assert!(Stats::new().log2_buckets().is_empty());
    }
}
