//! From the readings of N runs to what is printed: means, the spread perf shows with `-r`, the
//! share of time multiplexed counters ran, per-thread rows.

use rprof_events::Event;

use crate::read::Reading;

/// A thread as shown: (comm, tid).
pub type ThreadKey = (String, u32);

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// One reading per event (same order as the session's events), all threads included.
    pub readings: Vec<Reading>,
    /// Per-thread readings (only with `--per-thread`); they add up to `readings`.
    pub threads: Vec<ThreadResult>,
    /// Wall-clock time the counters covered (ns).
    pub elapsed_ns: u64,
    /// User CPU time of COMMAND and its waited-for children (ns), when known.
    pub user_ns: Option<u64>,
    /// System CPU time of COMMAND and its waited-for children (ns), when known.
    pub sys_ns: Option<u64>,
}

/// One thread's readings.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadResult {
    /// Thread id.
    pub tid: u32,
    /// Thread name (comm).
    pub comm: String,
    /// One reading per event.
    pub readings: Vec<Reading>,
}

/// The value shown for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `<not supported>`: this machine cannot count the event.
    NotSupported,
    /// `<not counted>`: opened, but never got on the PMU (or the program ended first).
    NotCounted,
    /// Counted.
    Counted {
        /// Mean over the runs of the scaled count.
        mean: f64,
        /// Standard deviation of the mean over the runs (0 for one run).
        stddev_of_mean: f64,
        /// Mean time the counter was running (ns).
        running: f64,
        /// Mean time the counter was enabled (ns).
        enabled: f64,
    },
}

impl Value {
    /// The mean count, if counted.
    pub fn count(&self) -> Option<f64> {
        match self {
            Value::Counted { mean, .. } => Some(*mean),
            _ => None,
        }
    }

    /// The relative spread shown by `-r` (`( +- x% )`): 100 × stddev of the mean / mean.
    pub fn noise_pct(&self) -> f64 {
        match self {
            Value::Counted {
                mean,
                stddev_of_mean,
                ..
            } => relative_pct(*stddev_of_mean, *mean),
            _ => 0.0,
        }
    }

    /// Percentage of the enabled time the counter ran (100 unless multiplexed).
    pub fn running_pct(&self) -> f64 {
        match self {
            Value::Counted {
                running, enabled, ..
            } if *enabled > 0.0 && running < enabled => 100.0 * running / enabled,
            _ => 100.0,
        }
    }

    /// True when the counter was multiplexed (ran less than it was enabled).
    pub fn multiplexed(&self) -> bool {
        matches!(self, Value::Counted { running, enabled, .. } if running < enabled)
    }
}

/// One printed line per event (or per thread and event).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Index of the event in [`Summary::events`].
    pub event: usize,
    /// The thread, for `--per-thread` rows: (comm, tid).
    pub thread: Option<ThreadKey>,
    /// The value.
    pub value: Value,
}

/// What `rprof stat` measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A command line.
    Command(Vec<String>),
    /// An existing process.
    Pid(u32),
}

/// Everything the formatters need.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// What was measured.
    pub target: Target,
    /// The events, in the order given.
    pub events: Vec<Event>,
    /// How many runs the numbers are over.
    pub runs: usize,
    /// Rows: one per event, or with `--per-thread` one per thread and event.
    pub rows: Vec<Row>,
    /// Mean wall-clock time (s).
    pub elapsed_s: f64,
    /// Standard deviation of the mean wall-clock time (s); 0 for one run.
    pub elapsed_stddev_s: f64,
    /// With `--per-thread`: each thread's counts for every event (same order as `events`),
    /// so that a thread row's metric divides by the same thread's counts.
    pub thread_counts: Vec<(ThreadKey, Vec<Option<f64>>)>,
    /// User CPU time (s), single runs of a command only.
    pub user_s: Option<f64>,
    /// System CPU time (s), single runs of a command only.
    pub sys_s: Option<f64>,
}

/// Running mean and variance (Welford), as perf's `update_stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Stats {
    /// Adds one observation.
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Number of observations.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The mean (0 with no observations).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Standard deviation of the mean: sqrt(sample variance / n); 0 below two observations.
    pub fn stddev_of_mean(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let variance = self.m2 / (self.n - 1) as f64;
        (variance / self.n as f64).sqrt()
    }
}

/// 100 × stddev / mean, 0 when the mean is 0 (perf's `rel_stddev_stats`).
pub fn relative_pct(stddev: f64, mean: f64) -> f64 {
    if mean != 0.0 {
        100.0 * stddev / mean
    } else {
        0.0
    }
}

fn value_of<'a>(readings: impl Iterator<Item = &'a Reading>) -> Value {
    let mut stats = Stats::default();
    let mut running = Stats::default();
    let mut enabled = Stats::default();
    let mut supported = false;
    for r in readings {
        if let Reading::Counted {
            enabled: e,
            running: ru,
            ..
        } = r
        {
            supported = true;
            if let Some(scaled) = r.scaled() {
                stats.push(scaled);
                running.push(*ru as f64);
                enabled.push(*e as f64);
            }
        }
    }
    if !supported {
        Value::NotSupported
    } else if stats.n() == 0 {
        Value::NotCounted
    } else {
        Value::Counted {
            mean: stats.mean(),
            stddev_of_mean: stats.stddev_of_mean(),
            running: running.mean(),
            enabled: enabled.mean(),
        }
    }
}

/// Summarizes runs of the same events. With per-thread results (one run), rows are grouped by
/// event, threads by descending count; threads that counted nothing for an event are left out.
pub fn summarize(target: Target, events: Vec<Event>, runs: &[RunResult]) -> Summary {
    let per_thread = runs.len() == 1 && runs.iter().any(|r| !r.threads.is_empty());
    let mut rows = Vec::new();
    for index in 0..events.len() {
        if per_thread {
            let mut thread_rows: Vec<Row> = runs
                .iter()
                .flat_map(|r| &r.threads)
                .map(|t| Row {
                    event: index,
                    thread: Some((t.comm.clone(), t.tid)),
                    value: value_of(t.readings.get(index).into_iter()),
                })
                .filter(|row| match &row.value {
                    Value::Counted { mean, .. } => *mean != 0.0,
                    Value::NotSupported => false,
                    Value::NotCounted => false,
                })
                .collect();
            thread_rows.sort_by(|a, b| {
                let (x, y) = (
                    a.value.count().unwrap_or(0.0),
                    b.value.count().unwrap_or(0.0),
                );
                y.total_cmp(&x).then_with(|| a.thread.cmp(&b.thread))
            });
            if thread_rows.is_empty() {
                // Keep the event visible: its total (not supported, not counted, or 0).
                rows.push(Row {
                    event: index,
                    thread: None,
                    value: value_of(runs.iter().filter_map(|r| r.readings.get(index))),
                });
            }
            rows.extend(thread_rows);
        } else {
            rows.push(Row {
                event: index,
                thread: None,
                value: value_of(runs.iter().filter_map(|r| r.readings.get(index))),
            });
        }
    }
    let mut elapsed = Stats::default();
    for r in runs {
        elapsed.push(r.elapsed_ns as f64 / 1e9);
    }
    let single = |f: fn(&RunResult) -> Option<u64>| match runs {
        [one] => f(one).map(|ns| ns as f64 / 1e9),
        _ => None,
    };
    let thread_counts = if per_thread {
        runs.iter()
            .flat_map(|r| &r.threads)
            .map(|t| {
                (
                    (t.comm.clone(), t.tid),
                    t.readings.iter().map(Reading::scaled).collect(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Summary {
        target,
        thread_counts,
        events,
        runs: runs.len(),
        rows,
        elapsed_s: elapsed.mean(),
        elapsed_stddev_s: elapsed.stddev_of_mean(),
        user_s: single(|r| r.user_ns),
        sys_s: single(|r| r.sys_ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(value: u64) -> Reading {
        Reading::Counted {
            value,
            enabled: 100,
            running: 100,
        }
    }

    fn run(readings: Vec<Reading>, elapsed_ns: u64) -> RunResult {
        RunResult {
            readings,
            threads: vec![],
            elapsed_ns,
            user_ns: Some(1_000_000),
            sys_ns: Some(2_000_000),
        }
    }

    #[test]
    fn welford_matches_the_textbook() {
        let mut s = Stats::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.push(x);
        }
        assert_eq!(s.mean(), 5.0);
        // Sample variance 32/7; of the mean: /8.
        assert!((s.stddev_of_mean() - (32.0f64 / 7.0 / 8.0).sqrt()).abs() < 1e-12);
        let mut one = Stats::default();
        one.push(3.0);
        assert_eq!(one.stddev_of_mean(), 0.0);
    }

    #[test]
    fn repeated_runs_give_mean_and_relative_stddev_of_the_mean() {
        let events = rprof_events::parse_list("page-faults,cycles").unwrap();
        let runs = vec![
            run(vec![counted(100), Reading::NotSupported], 1_000_000_000),
            run(vec![counted(110), Reading::NotSupported], 1_100_000_000),
            run(vec![counted(120), Reading::NotSupported], 1_200_000_000),
        ];
        let s = summarize(Target::Command(vec!["x".into()]), events, &runs);
        assert_eq!(s.runs, 3);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].value.count(), Some(110.0));
        // stddev 10, of the mean 10/sqrt(3), relative to 110.
        let expected = 100.0 * (10.0 / 3f64.sqrt()) / 110.0;
        assert!((s.rows[0].value.noise_pct() - expected).abs() < 1e-9);
        assert_eq!(s.rows[1].value, Value::NotSupported);
        assert!((s.elapsed_s - 1.1).abs() < 1e-12);
        assert!((s.elapsed_stddev_s - 0.1 / 3f64.sqrt()).abs() < 1e-12);
        // user/sys only for a single run, as perf.
        assert_eq!(s.user_s, None);
    }

    #[test]
    fn multiplexed_counts_are_scaled_and_show_their_share() {
        let events = rprof_events::parse_list("cycles").unwrap();
        let r = Reading::Counted {
            value: 1000,
            enabled: 400,
            running: 100,
        };
        let s = summarize(Target::Pid(1), events, &[run(vec![r], 1)]);
        let v = &s.rows[0].value;
        assert_eq!(v.count(), Some(4000.0));
        assert!(v.multiplexed());
        assert_eq!(v.running_pct(), 25.0);
        assert_eq!(s.user_s, Some(0.001));
        assert_eq!(s.sys_s, Some(0.002));
        let never = Reading::Counted {
            value: 0,
            enabled: 400,
            running: 0,
        };
        let events = rprof_events::parse_list("cycles").unwrap();
        let s = summarize(Target::Pid(1), events, &[run(vec![never], 1)]);
        assert_eq!(s.rows[0].value, Value::NotCounted);
    }

    #[test]
    fn per_thread_rows() {
        let events = rprof_events::parse_list("task-clock,cycles").unwrap();
        let mut r = run(vec![counted(30), Reading::NotSupported], 1);
        r.threads = vec![
            ThreadResult {
                tid: 10,
                comm: "main".into(),
                readings: vec![counted(10), Reading::NotSupported],
            },
            ThreadResult {
                tid: 11,
                comm: "worker".into(),
                readings: vec![counted(20), Reading::NotSupported],
            },
            ThreadResult {
                tid: 12,
                comm: "idle".into(),
                readings: vec![counted(0), Reading::NotSupported],
            },
        ];
        let s = summarize(Target::Command(vec!["x".into()]), events, &[r]);
        let rows: Vec<(Option<ThreadKey>, Option<f64>)> = s
            .rows
            .iter()
            .map(|r| (r.thread.clone(), r.value.count()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (Some(("worker".into(), 11)), Some(20.0)),
                (Some(("main".into(), 10)), Some(10.0)),
                (None, None),
            ]
        );
        assert_eq!(s.rows[2].value, Value::NotSupported);
    }
}
