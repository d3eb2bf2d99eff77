//! Derived metrics printed after a count, computed the way perf stat computes them:
//! `CPUs utilized`, `GHz`, `insn per cycle`, `% of all branches`, `% of all cache refs`, the
//! hardware cache miss ratios, idle cycles, and `/sec` rates.
//!
//! Pure functions over counts: no syscalls, so the hardware paths' arithmetic is tested on
//! recorded numbers even on a machine without a PMU.

use perf_event_open_sys::bindings::*;
use rprof_events::Event;

/// How a metric's number is printed (printf formats perf uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricFormat {
    /// `%8.3f`: CPUs utilized, GHz, rates.
    Fixed3,
    /// `%7.2f ` (trailing space): insn per cycle.
    Fixed2,
    /// `%7.2f%%`: percentages.
    Percent,
}

impl MetricFormat {
    /// The number as perf prints it in the standard output (padded).
    pub fn render(self, value: f64) -> String {
        match self {
            MetricFormat::Fixed3 => format!("{value:8.3}"),
            MetricFormat::Fixed2 => format!("{value:7.2} "),
            MetricFormat::Percent => format!("{value:7.2}%"),
        }
    }

    /// Just the number (for `-x` output): what perf keeps of the formatted text.
    pub fn render_bare(self, value: f64) -> String {
        match self {
            MetricFormat::Fixed3 => format!("{value:.3}"),
            MetricFormat::Fixed2 | MetricFormat::Percent => format!("{value:.2}"),
        }
    }
}

/// One derived metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The number.
    pub value: f64,
    /// How it is printed.
    pub format: MetricFormat,
    /// What it is (`insn per cycle`, `of all branches`, `K/sec`, ...).
    pub unit: String,
}

/// The inputs of a metric for one row: the events and their (scaled, averaged) counts, `None`
/// when not counted.
pub struct MetricInputs<'a> {
    /// All events of the session.
    pub events: &'a [Event],
    /// Their counts, same order.
    pub counts: &'a [Option<f64>],
    /// Wall-clock time the counts cover (ns).
    pub wall_ns: f64,
}

/// True when `event` counts time in nanoseconds (task-clock, cpu-clock): shown in msec.
pub fn is_clock(event: &Event) -> bool {
    event.type_ == PERF_TYPE_SOFTWARE
        && (event.config == u64::from(PERF_COUNT_SW_TASK_CLOCK)
            || event.config == u64::from(PERF_COUNT_SW_CPU_CLOCK))
}

fn is(event: &Event, type_: u32, config: u32) -> bool {
    event.type_ == type_ && event.config == u64::from(config)
}

fn cache(id: u32, op: u32, result: u32) -> u64 {
    u64::from(id) | (u64::from(op) << 8) | (u64::from(result) << 16)
}

/// True when two events count the same privilege levels.
pub fn same_modifiers(a: &Event, b: &Event) -> bool {
    (a.exclude_user, a.exclude_kernel, a.exclude_hv)
        == (b.exclude_user, b.exclude_kernel, b.exclude_hv)
}

/// The hardware cache ratios perf prints: (cache id, text after "of all ").
const CACHE_RATIOS: &[(u32, &str)] = &[
    (PERF_COUNT_HW_CACHE_L1D, "L1-dcache accesses"),
    (PERF_COUNT_HW_CACHE_L1I, "L1-icache accesses"),
    (PERF_COUNT_HW_CACHE_LL, "LL-cache accesses"),
    (PERF_COUNT_HW_CACHE_DTLB, "dTLB cache accesses"),
    (PERF_COUNT_HW_CACHE_ITLB, "iTLB cache accesses"),
];

/// What a ratio metric divides by: (type, config) of the denominator event.
pub fn denominator_of(event: &Event) -> Option<(u32, u64)> {
    let hw = |c: u32| Some((PERF_TYPE_HARDWARE, u64::from(c)));
    if event.type_ == PERF_TYPE_HARDWARE {
        return match event.config as u32 {
            c if u64::from(c) != event.config => None,
            PERF_COUNT_HW_INSTRUCTIONS => hw(PERF_COUNT_HW_CPU_CYCLES),
            PERF_COUNT_HW_BRANCH_MISSES => hw(PERF_COUNT_HW_BRANCH_INSTRUCTIONS),
            PERF_COUNT_HW_CACHE_MISSES => hw(PERF_COUNT_HW_CACHE_REFERENCES),
            PERF_COUNT_HW_STALLED_CYCLES_FRONTEND | PERF_COUNT_HW_STALLED_CYCLES_BACKEND => {
                hw(PERF_COUNT_HW_CPU_CYCLES)
            }
            _ => None,
        };
    }
    if event.type_ == PERF_TYPE_HW_CACHE {
        for (id, _) in CACHE_RATIOS {
            if event.config
                == cache(
                    *id,
                    PERF_COUNT_HW_CACHE_OP_READ,
                    PERF_COUNT_HW_CACHE_RESULT_MISS,
                )
            {
                return Some((
                    PERF_TYPE_HW_CACHE,
                    cache(
                        *id,
                        PERF_COUNT_HW_CACHE_OP_READ,
                        PERF_COUNT_HW_CACHE_RESULT_ACCESS,
                    ),
                ));
            }
        }
    }
    None
}

impl MetricInputs<'_> {
    /// The count of the event with this type/config, preferring one with the same modifiers
    /// as `like`. `None` when there is no such event or it was not counted.
    fn find(&self, type_: u32, config: u64, like: &Event) -> Option<f64> {
        let candidates = || {
            self.events
                .iter()
                .zip(self.counts)
                .filter(move |(e, _)| e.type_ == type_ && e.config == config)
        };
        candidates()
            .find(|(e, _)| same_modifiers(e, like))
            .or_else(|| candidates().next())
            .and_then(|(_, c)| *c)
    }

    /// Task time in ns: task-clock, else cpu-clock.
    fn task_ns(&self, like: &Event) -> Option<f64> {
        self.find(
            PERF_TYPE_SOFTWARE,
            u64::from(PERF_COUNT_SW_TASK_CLOCK),
            like,
        )
        .or_else(|| self.find(PERF_TYPE_SOFTWARE, u64::from(PERF_COUNT_SW_CPU_CLOCK), like))
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den != 0.0 {
        num / den
    } else {
        0.0
    }
}

/// The derived metric shown beside event `index` whose count is `value`; `None` leaves the
/// metric column empty (perf's rules: a ratio needs its partner counted).
pub fn metric_for(inputs: &MetricInputs<'_>, index: usize, value: f64) -> Option<Metric> {
    let event = inputs.events.get(index)?;
    let metric = |value: f64, format, unit: &str| {
        Some(Metric {
            value,
            format,
            unit: unit.to_string(),
        })
    };
    if is_clock(event) {
        if inputs.wall_ns > 0.0 {
            return metric(
                value / inputs.wall_ns,
                MetricFormat::Fixed3,
                "CPUs utilized",
            );
        }
        return None;
    }
    if is(event, PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES) {
        let ns = inputs.task_ns(event)?;
        if ns == 0.0 {
            return None;
        }
        return metric(value / ns, MetricFormat::Fixed3, "GHz");
    }
    if let Some((type_, config)) = denominator_of(event) {
        let den = inputs.find(type_, config, event)?;
        let (format, unit, factor) = match (event.type_, event.config as u32) {
            (PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS) => {
                (MetricFormat::Fixed2, "insn per cycle".to_string(), 1.0)
            }
            (PERF_TYPE_HARDWARE, PERF_COUNT_HW_BRANCH_MISSES) => {
                (MetricFormat::Percent, "of all branches".to_string(), 100.0)
            }
            (PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES) => (
                MetricFormat::Percent,
                "of all cache refs".to_string(),
                100.0,
            ),
            (PERF_TYPE_HARDWARE, PERF_COUNT_HW_STALLED_CYCLES_FRONTEND) => (
                MetricFormat::Percent,
                "frontend cycles idle".to_string(),
                100.0,
            ),
            (PERF_TYPE_HARDWARE, PERF_COUNT_HW_STALLED_CYCLES_BACKEND) => (
                MetricFormat::Percent,
                "backend cycles idle".to_string(),
                100.0,
            ),
            _ => {
                let text = CACHE_RATIOS
                    .iter()
                    .find(|(id, _)| (event.config & 0xff) == u64::from(*id))
                    .map_or("accesses", |(_, t)| t);
                (MetricFormat::Percent, format!("of all {text}"), 100.0)
            }
        };
        return Some(Metric {
            value: factor * ratio(value, den),
            format,
            unit,
        });
    }
    // Everything else: a rate per second of task time.
    let ns = inputs.task_ns(event)?;
    let per_sec = ratio(1e9 * value, ns);
    let (scaled, prefix) = si_prefix(per_sec);
    metric(scaled, MetricFormat::Fixed3, &format!("{prefix}/sec"))
}

/// perf's unit conversion for rates: G, M, K above 1e9, 1e6, 1e3.
fn si_prefix(value: f64) -> (f64, &'static str) {
    if value > 1e9 {
        (value / 1e9, "G")
    } else if value > 1e6 {
        (value / 1e6, "M")
    } else if value > 1e3 {
        (value / 1e3, "K")
    } else {
        (value, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(spec: &str) -> Vec<Event> {
        rprof_events::parse_list(spec).unwrap()
    }

    fn m(events: &[Event], counts: &[Option<f64>], wall_ns: f64, index: usize) -> Option<Metric> {
        let value = counts[index].unwrap();
        metric_for(
            &MetricInputs {
                events,
                counts,
                wall_ns,
            },
            index,
            value,
        )
    }

    fn text(metric: Option<Metric>) -> String {
        metric.map_or(String::new(), |m| {
            format!("{} {}", m.format.render(m.value), m.unit)
        })
    }

    #[test]
    fn ipc_ghz_branch_and_cache_ratios_from_recorded_counts() {
        // Numbers recorded from `perf stat` on a machine with a PMU (a 2.0 s run of a loop).
        let events = inputs(
            "task-clock,cycles,instructions,branches,branch-misses,cache-references,cache-misses",
        );
        let counts = [
            Some(1_998_000_000.0),
            Some(6_012_000_000.0),
            Some(11_723_400_000.0),
            Some(2_310_000_000.0),
            Some(23_100_000.0),
            Some(50_000_000.0),
            Some(12_500_000.0),
        ];
        let wall = 2_000_000_000.0;
        assert_eq!(text(m(&events, &counts, wall, 0)), "   0.999 CPUs utilized");
        assert_eq!(text(m(&events, &counts, wall, 1)), "   3.009 GHz");
        assert_eq!(
            text(m(&events, &counts, wall, 2)),
            "   1.95  insn per cycle"
        );
        assert_eq!(text(m(&events, &counts, wall, 3)), "   1.156 G/sec");
        assert_eq!(
            text(m(&events, &counts, wall, 4)),
            "   1.00% of all branches"
        );
        assert_eq!(text(m(&events, &counts, wall, 5)), "  25.025 M/sec");
        assert_eq!(
            text(m(&events, &counts, wall, 6)),
            "  25.00% of all cache refs"
        );
    }

    #[test]
    fn ratios_need_their_partner() {
        let events = inputs("instructions,branch-misses,cycles");
        let counts = [Some(100.0), Some(5.0), None];
        // cycles not counted: no IPC; no branches event: no branch-miss ratio; no task-clock:
        // no rate either.
        assert_eq!(m(&events, &counts, 1e9, 0), None);
        assert_eq!(m(&events, &counts, 1e9, 1), None);
        // Partner counted but zero: perf prints 0.
        let events = inputs("branches,branch-misses");
        assert_eq!(
            text(m(&events, &[Some(0.0), Some(0.0)], 1e9, 1)),
            "   0.00% of all branches"
        );
    }

    #[test]
    fn software_rates_and_units() {
        let events = inputs("task-clock,context-switches,cpu-migrations,page-faults");
        let counts = [Some(630_000.0), Some(1.0), Some(0.0), Some(73.0)];
        assert_eq!(
            text(m(&events, &counts, 101_376_044.0, 0)),
            "   0.006 CPUs utilized"
        );
        assert_eq!(text(m(&events, &counts, 1e8, 1)), "   1.587 K/sec");
        assert_eq!(text(m(&events, &counts, 1e8, 2)), "   0.000 /sec");
        assert_eq!(text(m(&events, &counts, 1e8, 3)), " 115.873 K/sec");
        // cpu-clock stands in for task-clock.
        let events = inputs("cpu-clock,page-faults");
        assert_eq!(
            text(m(&events, &[Some(2e9), Some(4e6)], 1e9, 1)),
            "   2.000 M/sec"
        );
    }

    #[test]
    fn cache_event_ratios_use_perf_wording() {
        let events = inputs("L1-dcache-loads,L1-dcache-load-misses,LLC-loads,LLC-load-misses,dTLB-loads,dTLB-load-misses");
        let counts = [
            Some(1000.0),
            Some(50.0),
            Some(200.0),
            Some(20.0),
            Some(400.0),
            Some(1.0),
        ];
        assert_eq!(
            text(m(&events, &counts, 1e9, 1)),
            "   5.00% of all L1-dcache accesses"
        );
        assert_eq!(
            text(m(&events, &counts, 1e9, 3)),
            "  10.00% of all LL-cache accesses"
        );
        assert_eq!(
            text(m(&events, &counts, 1e9, 5)),
            "   0.25% of all dTLB cache accesses"
        );
        // Loads have no ratio and no task-clock here: nothing.
        assert_eq!(m(&events, &counts, 1e9, 0), None);
    }

    #[test]
    fn stalled_cycles_and_modifiers() {
        let events = inputs("cycles:u,stalled-cycles-frontend:u,cycles,instructions:u");
        let counts = [Some(1000.0), Some(250.0), Some(4000.0), Some(3000.0)];
        assert_eq!(
            text(m(&events, &counts, 1e9, 1)),
            "  25.00% frontend cycles idle"
        );
        // instructions:u pairs with cycles:u, not with cycles.
        assert_eq!(text(m(&events, &counts, 1e9, 3)), "   3.00  insn per cycle");
    }

    #[test]
    fn bare_rendering_for_csv() {
        assert_eq!(MetricFormat::Percent.render_bare(1.0), "1.00");
        assert_eq!(MetricFormat::Fixed3.render_bare(0.41066), "0.411");
        assert_eq!(MetricFormat::Fixed2.render_bare(1.949), "1.95");
        assert_eq!(si_prefix(999.0), (999.0, ""));
        assert_eq!(si_prefix(2e9).1, "G");
    }
}
