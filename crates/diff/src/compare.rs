//! The comparison itself: each profile's exposure ([`Side`]), what a change is measured in
//! ([`Measure`]), and the rows of functions matched by name and module ([`Diff`]).

use std::collections::HashMap;

use rprof_profile::Profile;
use rprof_report::{Selection, SortBy, StackCounts, Table, TableKind, Weight};

use crate::stats::{binomial_two_sided, ALPHA};

/// BASE or NEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The baseline, the first profile.
    Base,
    /// The profile compared with it.
    New,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::Base => "BASE",
            Which::New => "NEW",
        })
    }
}

/// Why two profiles cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The profiles sampled different events: their samples weigh different things.
    #[error(
        "the profiles sampled different events (BASE {}, NEW {}): their samples cannot be \
         compared; record both with the same -e EVENT",
        rprof_report::visible(.base),
        rprof_report::visible(.new)
    )]
    DifferentEvents {
        /// BASE's event.
        base: String,
        /// NEW's event.
        new: String,
    },
    /// A profile has no samples (or none the selection keeps): there is nothing to compare.
    #[error("{which} has no samples{}: nothing to compare", if *.filtered { " of the selected threads" } else { "" })]
    NoSamples {
        /// Which profile.
        which: Which,
        /// The profile has samples, but the selection keeps none.
        filtered: bool,
    },
    /// `--off-cpu`/`--wall` on a profile recorded without `--off-cpu`.
    #[error("{which} has no off-CPU data; record both profiles with `rprof record --off-cpu`")]
    NoOffCpu {
        /// Which profile.
        which: Which,
    },
}

/// The least change of a function's off-CPU time that counts as significant: 1 % of the
/// longer recording, and at least [`OFF_CPU_MIN_NS`]. Off-CPU time is measured from the
/// switch records, not sampled, so there is no sampling noise to test; the threshold keeps
/// run-to-run jitter of scheduling out (see `docs/diff.md`).
pub const OFF_CPU_PERCENT: f64 = 1.0;

/// The floor of the off-CPU threshold: 1 ms.
pub const OFF_CPU_MIN_NS: u64 = 1_000_000;

/// What a change is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Measure {
    /// Estimated time (or events): samples × the profile's mean sample period. The right
    /// measure when both runs did the same job; a function that takes longer in NEW has grown.
    /// The default.
    #[default]
    Time,
    /// Share of each profile's samples (`--normalize`): for runs of different lengths, a
    /// function whose part of the whole grew has grown.
    Share,
}

/// How two profiles are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffOptions {
    /// Which samples of BASE count. Default: all, inline frames kept as frames of their own.
    /// Its [`Selection::weight`] says what is compared: samples (the default), off-CPU time
    /// or wall-clock time (both profiles then need off-CPU data); NEW's must be the same.
    pub base: Selection,
    /// Which samples of NEW count. Default: all.
    pub new: Selection,
    /// Estimated time or share. Default: time.
    pub measure: Measure,
    /// Whether a function's self or total samples are compared and ranked. Default: self.
    pub rank_by: SortBy,
    /// Significance level of the test. Default [`ALPHA`] (0.001).
    pub alpha: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            base: Selection::default(),
            new: Selection::default(),
            measure: Measure::Time,
            rank_by: SortBy::SelfSamples,
            alpha: ALPHA,
        }
    }
}

/// One profile as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// The recorded command line (empty for `record -p`).
    pub command: Vec<String>,
    /// The attached process, for `record -p`.
    pub target_pid: Option<u32>,
    /// The sampled event.
    pub event: String,
    /// Sampling frequency in Hz, when sampling by frequency.
    pub frequency: Option<u64>,
    /// Sampling period, when sampling by period.
    pub period: Option<u64>,
    /// Wall-clock length of the recording in nanoseconds (as `rprof report` gives it).
    pub duration_ns: u64,
    /// Samples in the profile.
    pub samples: u64,
    /// Samples the selection keeps: the 100% of shares.
    pub selected: u64,
    /// Sum of the selected samples' periods: estimated time in nanoseconds for cpu-clock and
    /// task-clock, events otherwise.
    pub weight: u64,
}

impl Side {
    fn new(profile: &Profile, selection: &Selection, counts: &StackCounts) -> Side {
        let o = rprof_report::Overview::new(profile, selection, counts);
        let weight = profile
            .samples
            .iter()
            .filter(|s| selection.accepts_sample(profile, s))
            .fold(0u64, |acc, s| acc.saturating_add(s.period));
        let h = &profile.header;
        Side {
            command: h.command.clone(),
            target_pid: h.target_pid,
            event: h.event.clone(),
            frequency: h.frequency,
            period: h.period,
            duration_ns: o.duration_ns,
            samples: o.samples,
            selected: counts.samples,
            weight,
        }
    }

    /// The mean period of a selected sample: what one sample stands for (nanoseconds for a
    /// time event).
    pub fn weight_per_sample(&self) -> f64 {
        if self.selected == 0 {
            0.0
        } else {
            self.weight as f64 / self.selected as f64
        }
    }

    /// `samples` of this profile as estimated time (or events).
    pub fn weight_of(&self, samples: u64) -> f64 {
        samples as f64 * self.weight_per_sample()
    }

    /// `samples` as a percentage of the selected samples.
    pub fn share_of(&self, samples: u64) -> f64 {
        if self.selected == 0 {
            0.0
        } else {
            samples as f64 * 100.0 / self.selected as f64
        }
    }
}

/// True when the event's period is nanoseconds (of CPU time).
pub fn event_is_time(event: &str) -> bool {
    let base = event.split(':').next().unwrap_or(event);
    matches!(base, "cpu-clock" | "task-clock")
}

/// The two profiles' exposures and the rules a change is judged by: shared by the table, the
/// JSON and the flame graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The baseline.
    pub base: Side,
    /// The profile compared with it.
    pub new: Side,
    /// Estimated time or share.
    pub measure: Measure,
    /// Significance level.
    pub alpha: f64,
    /// The event's period is nanoseconds: weights are estimated time. Always true with a
    /// time [`Weight`].
    pub time: bool,
    /// What a function's cost is: samples, off-CPU time or wall-clock time. With a time
    /// weight, the sides' `selected` and `weight` and the rows' counts are nanoseconds.
    pub weight: Weight,
    /// With [`Weight::Wall`]: the probability of [`null_probability`](Self::null_probability)
    /// for the on-CPU samples alone, which the binomial test is run on. `NaN` otherwise.
    pub on_cpu_null: f64,
    /// With a time weight: the least change of off-CPU nanoseconds that is significant
    /// ([`OFF_CPU_PERCENT`] of the longer recording, at least [`OFF_CPU_MIN_NS`]).
    pub off_cpu_threshold_ns: u64,
}

impl Comparison {
    /// The sides of `base` and `new` under `options`; refuses profiles of different events or
    /// without samples.
    pub fn new(
        base: &Profile,
        new: &Profile,
        options: &DiffOptions,
    ) -> Result<(Comparison, StackCounts, StackCounts), DiffError> {
        if base.header.event != new.header.event {
            return Err(DiffError::DifferentEvents {
                base: base.header.event.clone(),
                new: new.header.event.clone(),
            });
        }
        let weight = options.base.weight;
        if weight.is_time() {
            for (which, profile) in [(Which::Base, base), (Which::New, new)] {
                if !profile.has_off_cpu() {
                    return Err(DiffError::NoOffCpu { which });
                }
            }
        }
        let base_counts = StackCounts::new(base, &options.base);
        let new_counts = StackCounts::new(new, &options.new);
        for (which, profile, counts) in [
            (Which::Base, base, &base_counts),
            (Which::New, new, &new_counts),
        ] {
            if counts.samples == 0 {
                return Err(DiffError::NoSamples {
                    which,
                    filtered: !profile.samples.is_empty(),
                });
            }
        }
        let mut comparison = Comparison {
            base: Side::new(base, &options.base, &base_counts),
            new: Side::new(new, &options.new, &new_counts),
            measure: options.measure,
            alpha: options.alpha,
            time: weight.is_time() || event_is_time(&base.header.event),
            weight,
            on_cpu_null: f64::NAN,
            off_cpu_threshold_ns: 0,
        };
        if weight.is_time() {
            // Time weights count nanoseconds: one unit stands for one nanosecond.
            comparison.base.weight = base_counts.samples;
            comparison.new.weight = new_counts.samples;
            let longest = comparison.base.duration_ns.max(comparison.new.duration_ns);
            comparison.off_cpu_threshold_ns =
                ((longest as f64 * OFF_CPU_PERCENT / 100.0) as u64).max(OFF_CPU_MIN_NS);
        }
        if weight == Weight::Wall {
            let on = |s: &Selection| Selection {
                weight: Weight::Samples,
                ..s.clone()
            };
            let (base_on, new_on) = (on(&options.base), on(&options.new));
            let base_side = Side::new(base, &base_on, &StackCounts::new(base, &base_on));
            let new_side = Side::new(new, &new_on, &StackCounts::new(new, &new_on));
            comparison.on_cpu_null = null_probability(&base_side, &new_side, options.measure);
        }
        Ok((comparison, base_counts, new_counts))
    }

    /// Change of estimated time (or events) from `base` samples in BASE to `new` in NEW.
    pub fn delta(&self, base: u64, new: u64) -> f64 {
        self.new.weight_of(new) - self.base.weight_of(base)
    }

    /// Change of share, in percentage points.
    pub fn delta_share(&self, base: u64, new: u64) -> f64 {
        self.new.share_of(new) - self.base.share_of(base)
    }

    /// The change in the compared measure: [`delta`](Self::delta) or
    /// [`delta_share`](Self::delta_share).
    pub fn change(&self, base: u64, new: u64) -> f64 {
        match self.measure {
            Measure::Time => self.delta(base, new),
            Measure::Share => self.delta_share(base, new),
        }
    }

    /// The probability that a NEW sample of a function whose cost did not change is in NEW,
    /// given it is in one of the two: the exposure of NEW over both (see [`crate::stats`]).
    /// Time: a sample of NEW stands for `w_new` nanoseconds, so for equal time
    /// `k_new / k_base = w_base / w_new`. Share: `k_new / k_base = N_new / N_base`.
    pub fn null_probability(&self) -> f64 {
        null_probability(&self.base, &self.new, self.measure)
    }

    /// The p-value of a function with `base` samples in BASE and `new` in NEW.
    pub fn p_value(&self, base: u64, new: u64) -> f64 {
        binomial_two_sided(new, base.saturating_add(new), self.null_probability())
    }

    /// True when a function's off-CPU time changed from `base` to `new` nanoseconds by at
    /// least [`off_cpu_threshold_ns`](Self::off_cpu_threshold_ns).
    pub fn off_cpu_significant(&self, base: u64, new: u64) -> bool {
        self.weight.is_time() && base.abs_diff(new) >= self.off_cpu_threshold_ns
    }

    /// True when the counts differ by more than sampling noise at [`alpha`](Self::alpha).
    pub fn significant(&self, base: u64, new: u64) -> bool {
        self.p_value(base, new) <= self.alpha
    }

    /// Change of the selected samples' whole estimated time (or events), NEW against BASE, as
    /// a percentage of BASE's.
    pub fn total_change_percent(&self) -> f64 {
        if self.base.weight == 0 {
            0.0
        } else {
            (self.new.weight as f64 - self.base.weight as f64) * 100.0 / self.base.weight as f64
        }
    }
}

/// The probability that a sample of a function whose cost did not change is in NEW, given it
/// is in one of the two (see [`Comparison::null_probability`]).
fn null_probability(base: &Side, new: &Side, measure: Measure) -> f64 {
    // Expected samples per unit of the function's cost, in each profile.
    let (e_base, e_new) = match measure {
        Measure::Time => (
            1.0 / base.weight_per_sample(),
            1.0 / new.weight_per_sample(),
        ),
        Measure::Share => (base.selected as f64, new.selected as f64),
    };
    // NaN (0/0, ∞/∞) when a profile's samples weigh nothing: the test then says "not
    // significant".
    e_new / (e_base + e_new)
}

/// `(name, module) → [self, total]` of `profile`'s functions under `selection`. Table rows are
/// one per (name, module, user/kernel); a name in both kinds of one module is merged: selves
/// add up, the larger total is kept (a sample can hold both, so totals cannot be added).
fn function_counts(
    profile: &Profile,
    counts: &StackCounts,
    selection: &Selection,
    rank_by: SortBy,
) -> HashMap<Key, [u64; 2]> {
    let table = Table::new(profile, counts, selection, TableKind::Functions, rank_by);
    let mut out: HashMap<Key, [u64; 2]> = HashMap::new();
    for row in &table.rows {
        let c = out
            .entry((row.name.clone(), row.module.clone()))
            .or_default();
        c[0] += row.self_samples;
        c[1] = c[1].max(row.total_samples);
    }
    out
}

/// A function's counts `[base self, base total, new self, new total]`.
type Counts = [u64; 4];

/// A function: its name and module name.
type Key = (String, Option<String>);

/// `(name, module, BASE's module when it differs, counts)` for every function of `by_key`,
/// functions in one profile only joined by name where that is unambiguous.
fn match_renamed_modules(
    by_key: HashMap<Key, Counts>,
) -> Vec<(String, Option<String>, Option<String>, Counts)> {
    let only_base = |c: &Counts| c[2] == 0 && c[3] == 0;
    let only_new = |c: &Counts| c[0] == 0 && c[1] == 0;
    // Name → (functions of it only in BASE, only in NEW).
    let mut lone: HashMap<&str, (Vec<&Key>, Vec<&Key>)> = HashMap::new();
    for (key, counts) in &by_key {
        if only_base(counts) {
            lone.entry(key.0.as_str()).or_default().0.push(key);
        } else if only_new(counts) {
            lone.entry(key.0.as_str()).or_default().1.push(key);
        }
    }
    // BASE key → NEW key, for names with exactly one of each.
    let pairs: HashMap<Key, Key> = lone
        .into_values()
        .filter_map(|(b, n)| match (b.as_slice(), n.as_slice()) {
            ([b], [n]) => Some(((*b).clone(), (*n).clone())),
            _ => None,
        })
        .collect();
    let paired_new: std::collections::HashSet<Key> = pairs.values().cloned().collect();
    let mut out = Vec::with_capacity(by_key.len());
    let mut joined: HashMap<Key, (Option<String>, Counts)> = HashMap::new();
    for (key, counts) in by_key {
        if let Some(new_key) = pairs.get(&key) {
            let entry = joined.entry(new_key.clone()).or_default();
            entry.0 = key.1;
            entry.1[0] = counts[0];
            entry.1[1] = counts[1];
        } else if paired_new.contains(&key) {
            let entry = joined.entry(key).or_default();
            entry.1[2] = counts[2];
            entry.1[3] = counts[3];
        } else {
            out.push((key.0, key.1, None, counts));
        }
    }
    for ((name, module), (base_module, counts)) in joined {
        out.push((name, module, base_module, counts));
    }
    out
}

/// Whether a function is in both profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// In both.
    Both,
    /// Only in NEW.
    New,
    /// Only in BASE.
    Gone,
}

impl Status {
    /// `both`, `new` or `gone`, as the JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Both => "both",
            Status::New => "new",
            Status::Gone => "gone",
        }
    }
}

/// One function in both profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Function name, in full.
    pub name: String,
    /// Module name, when known (NEW's, for a function in both).
    pub module: Option<String>,
    /// BASE's module name, when it differs from NEW's: the function was matched by its name
    /// alone, its binary having been renamed (see [`Diff::new`]).
    pub base_module: Option<String>,
    /// In both profiles, or in only one.
    pub status: Status,
    /// Samples whose leaf is this function, in BASE (nanoseconds with a time weight, as the
    /// other three counts).
    pub base_self: u64,
    /// Samples whose leaf is this function, in NEW.
    pub new_self: u64,
    /// Samples with this function anywhere in the stack, in BASE.
    pub base_total: u64,
    /// Samples with this function anywhere in the stack, in NEW.
    pub new_total: u64,
    /// Change of estimated time (nanoseconds for a time event, else events) of the compared
    /// count (self or total).
    pub delta: f64,
    /// Change of share of the compared count, in percentage points.
    pub delta_share: f64,
    /// p-value of the compared counts (with [`Weight::Wall`], of the on-CPU samples; 1 with
    /// [`Weight::OffCpu`], which has no samples to test).
    pub p_value: f64,
    /// `p_value <= alpha`; with a time weight, also when the off-CPU time changed by the
    /// threshold ([`Comparison::off_cpu_significant`]).
    pub significant: bool,
}

/// Two profiles compared function by function.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    /// Exposures and rules.
    pub comparison: Comparison,
    /// Whether self or total samples are compared.
    pub rank_by: SortBy,
    /// Every function with samples in either profile, the largest change (in the compared
    /// measure, either direction) first.
    pub rows: Vec<Row>,
}

impl Diff {
    /// Compares `base` with `new`. Functions are matched by name and module name; a function
    /// left with samples in only one profile is then matched by its name alone when exactly one
    /// such function of that name is left on each side (two builds of a program whose file
    /// names differ, `app-v1` and `app-v2`).
    pub fn new(base: &Profile, new: &Profile, options: &DiffOptions) -> Result<Diff, DiffError> {
        let (comparison, base_counts, new_counts) = Comparison::new(base, new, options)?;
        let rank_by = options.rank_by;
        let mut by_key: HashMap<Key, Counts> = HashMap::new();
        for (profile, counts, selection, offset) in [
            (base, &base_counts, &options.base, 0),
            (new, &new_counts, &options.new, 2),
        ] {
            for (key, [own, total]) in function_counts(profile, counts, selection, rank_by) {
                let c = by_key.entry(key).or_default();
                c[offset] = own;
                c[offset + 1] = total;
            }
        }
        // With a time weight, the parts each test is run on: the on-CPU samples (wall only) and
        // the off-CPU nanoseconds, per function and side.
        let part = |weight: Weight| -> [HashMap<Key, [u64; 2]>; 2] {
            [(base, &options.base), (new, &options.new)].map(|(profile, selection)| {
                let selection = Selection {
                    weight,
                    ..selection.clone()
                };
                let counts = StackCounts::new(profile, &selection);
                function_counts(profile, &counts, &selection, rank_by)
            })
        };
        let (on_cpu, off_cpu) = match comparison.weight {
            Weight::Samples => (None, None),
            Weight::OffCpu => (None, Some(part(Weight::OffCpu))),
            Weight::Wall => (Some(part(Weight::Samples)), Some(part(Weight::OffCpu))),
        };
        let which = match rank_by {
            SortBy::SelfSamples => 0,
            SortBy::Total => 1,
        };
        let lookup = |maps: &[HashMap<Key, [u64; 2]>; 2], base_key: &Key, new_key: &Key| {
            (
                maps[0].get(base_key).map_or(0, |c| c[which]),
                maps[1].get(new_key).map_or(0, |c| c[which]),
            )
        };
        let mut merged = match_renamed_modules(by_key);
        merged.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let c = &comparison;
        let mut rows: Vec<Row> = merged
            .into_iter()
            .map(
                |(name, module, base_module, [base_self, base_total, new_self, new_total])| {
                    let (b, n) = match options.rank_by {
                        SortBy::SelfSamples => (base_self, new_self),
                        SortBy::Total => (base_total, new_total),
                    };
                    let base_key = (name.clone(), base_module.clone().or(module.clone()));
                    let new_key = (name.clone(), module.clone());
                    let (p_value, significant) = match (&on_cpu, &off_cpu) {
                        (None, None) => {
                            let p = c.p_value(b, n);
                            (p, p <= c.alpha)
                        }
                        (on, Some(off)) => {
                            // The on-CPU part by the binomial test (wall only), the off-CPU
                            // part by the threshold.
                            let p = match on {
                                Some(on) => {
                                    let (kb, kn) = lookup(on, &base_key, &new_key);
                                    binomial_two_sided(kn, kb.saturating_add(kn), c.on_cpu_null)
                                }
                                None => 1.0,
                            };
                            let (ob, on) = lookup(off, &base_key, &new_key);
                            (p, p <= c.alpha || c.off_cpu_significant(ob, on))
                        }
                        (Some(_), None) => (1.0, false),
                    };
                    Row {
                        name,
                        module,
                        base_module,
                        status: match (base_total, new_total) {
                            (0, _) => Status::New,
                            (_, 0) => Status::Gone,
                            _ => Status::Both,
                        },
                        base_self,
                        new_self,
                        base_total,
                        new_total,
                        delta: c.delta(b, n),
                        delta_share: c.delta_share(b, n),
                        p_value,
                        significant,
                    }
                },
            )
            .collect();
        let key = |r: &Row| match c.measure {
            Measure::Time => r.delta.abs(),
            Measure::Share => r.delta_share.abs(),
        };
        rows.sort_by(|a, b| {
            key(b)
                .total_cmp(&key(a))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.module.cmp(&b.module))
        });
        Ok(Diff {
            comparison,
            rank_by: options.rank_by,
            rows,
        })
    }

    /// The functions that account for NEW's growth, each with the growth of its self time (or
    /// events): those whose self cost grew, largest first, until they add up to the whole
    /// growth (at most `limit`). Self costs add up to the whole, totals would count callers
    /// twice. Empty when NEW did not grow.
    pub fn growth(&self, limit: usize) -> Vec<(&Row, f64)> {
        let c = &self.comparison;
        let whole = c.new.weight as f64 - c.base.weight as f64;
        if whole <= 0.0 {
            return Vec::new();
        }
        let mut grown: Vec<(&Row, f64)> = self
            .rows
            .iter()
            .map(|r| (r, c.delta(r.base_self, r.new_self)))
            .filter(|&(_, d)| d > 0.0)
            .collect();
        grown.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
        let mut sum = 0.0;
        let mut out = Vec::new();
        for (row, delta) in grown {
            if sum >= whole || out.len() == limit {
                break;
            }
            sum += delta;
            out.push((row, delta));
        }
        out
    }
}
