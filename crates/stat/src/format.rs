//! The three output formats of `rprof stat`, as pure functions of a [`Summary`]:
//! perf's human table, `-x SEP` (perf's CSV field order) and `--json` (one JSON object per
//! line, perf's keys).

use std::fmt::Write as _;

use crate::metrics::{is_clock, metric_for, Metric, MetricInputs};
use crate::summary::{relative_pct, Row, Summary, Target, Value};

/// Output style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Style {
    /// perf's table with thousands separators and `#` metrics.
    Table,
    /// `-x SEP`: value, unit, event, [noise,] run time, % running, metric value, metric unit.
    Separated(String),
    /// One JSON object per line.
    Json,
}

const COUNTS_LEN: usize = 18;
const EVNAME_LEN: usize = 32;
const UNSUPPORTED_NAME_LEN: usize = 25;
const METRIC_LEN: usize = 35;
const UNIT_WIDTH: usize = 4;

/// Renders `summary` in `style`. The table includes perf's header and footer (elapsed, user,
/// sys); the CSV and JSON forms are only the counter lines, as with perf.
pub fn render(summary: &Summary, style: &Style) -> String {
    let mut out = String::new();
    if *style == Style::Table {
        let what = match &summary.target {
            Target::Command(argv) => format!("'{}'", argv.join(" ")),
            Target::Pid(pid) => format!("process id '{pid}'"),
        };
        let runs = if summary.runs > 1 {
            format!(" ({} runs)", summary.runs)
        } else {
            String::new()
        };
        let _ = write!(out, "\n Performance counter stats for {what}{runs}:\n\n");
    }
    let totals: Vec<Option<f64>> = (0..summary.events.len())
        .map(|i| {
            summary
                .rows
                .iter()
                .find(|r| r.event == i && r.thread.is_none())
                .and_then(|r| r.value.count())
        })
        .collect();
    for row in &summary.rows {
        let counts = match &row.thread {
            None => &totals,
            Some(t) => summary
                .thread_counts
                .iter()
                .find(|(key, _)| key == t)
                .map_or(&totals, |(_, c)| c),
        };
        let line = match style {
            Style::Table => table_line(summary, row, counts),
            Style::Separated(sep) => separated_line(summary, row, counts, sep),
            Style::Json => json_line(summary, row, counts),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if *style == Style::Table {
        out.push('\n');
        if summary.runs > 1 {
            let sd = summary.elapsed_stddev_s;
            let precision = precision_for(sd) + 2;
            let _ = write!(
                out,
                " {:>17.p$} +- {:.p$} seconds time elapsed",
                summary.elapsed_s,
                sd,
                p = precision
            );
            let pct = relative_pct(sd, summary.elapsed_s);
            if pct != 0.0 {
                let _ = write!(out, "  ( +-{pct:6.2}% )");
            }
            out.push_str("\n\n");
        } else {
            let _ = writeln!(out, "{:>18.9} seconds time elapsed", summary.elapsed_s);
            out.push('\n');
            if let (Some(user), Some(sys)) = (summary.user_s, summary.sys_s) {
                let _ = writeln!(out, "{user:>18.9} seconds user");
                let _ = writeln!(out, "{sys:>18.9} seconds sys");
                out.push('\n');
            }
        }
    }
    out
}

/// perf's `get_precision`: decimals needed to show the first significant digit of `num`.
fn precision_for(num: f64) -> usize {
    if num > 1.0 {
        return 0;
    }
    if num.is_nan() || num <= 0.0 {
        return 7;
    }
    let digits = (-num.log10()).ceil();
    digits.clamp(0.0, 9.0) as usize
}

fn metric_of(summary: &Summary, row: &Row, counts: &[Option<f64>]) -> Option<Metric> {
    let value = row.value.count()?;
    let inputs = MetricInputs {
        events: &summary.events,
        counts,
        wall_ns: summary.elapsed_s * 1e9,
    };
    metric_for(&inputs, row.event, value)
}

fn unit_of(summary: &Summary, row: &Row) -> &'static str {
    match summary.events.get(row.event) {
        Some(e) if is_clock(e) => "msec",
        _ => "",
    }
}

fn name_of<'a>(summary: &'a Summary, row: &Row) -> &'a str {
    summary
        .events
        .get(row.event)
        .map_or("?", |e| e.name.as_str())
}

/// "1234567.89" -> "1,234,567.89".
pub fn group_thousands(number: &str) -> String {
    let (int, frac) = match number.find('.') {
        Some(i) => number.split_at(i),
        None => (number, ""),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

fn shown_value(summary: &Summary, row: &Row, mean: f64) -> (String, String) {
    let clock = summary.events.get(row.event).is_some_and(is_clock);
    let plain = if clock {
        format!("{:.2}", mean / 1e6)
    } else {
        format!("{mean:.0}")
    };
    (group_thousands(&plain), plain)
}

fn table_line(summary: &Summary, row: &Row, counts: &[Option<f64>]) -> String {
    let mut line = String::new();
    if let Some((comm, tid)) = &row.thread {
        let _ = write!(line, "{comm:>16}-{tid:<8} ");
    }
    let unit = unit_of(summary, row);
    let name = name_of(summary, row);
    match &row.value {
        Value::Counted { mean, .. } => {
            let (grouped, _) = shown_value(summary, row, *mean);
            let _ = write!(
                line,
                "{grouped:>COUNTS_LEN$} {unit:<UNIT_WIDTH$} {name:<EVNAME_LEN$}"
            );
            match metric_of(summary, row, counts) {
                Some(m) => {
                    let number = m.format.render(m.value);
                    let used = 3 + number.chars().count();
                    let pad = METRIC_LEN.saturating_sub(used + 1);
                    let _ = write!(line, " # {number} {:<pad$}", m.unit);
                }
                None => line.push_str(&" ".repeat(METRIC_LEN)),
            }
            let noise = row.value.noise_pct();
            if summary.runs > 1 && noise != 0.0 {
                let _ = write!(line, "  ( +-{noise:6.2}% )");
            }
            if row.value.multiplexed() {
                let _ = write!(line, "  ({:.2}%)", row.value.running_pct());
            }
        }
        Value::NotSupported | Value::NotCounted => {
            let text = if row.value == Value::NotSupported {
                "<not supported>"
            } else {
                "<not counted>"
            };
            let _ = write!(
                line,
                "{text:>COUNTS_LEN$} {unit:<UNIT_WIDTH$} {name:<UNSUPPORTED_NAME_LEN$}"
            );
        }
    }
    line
}

fn separated_line(summary: &Summary, row: &Row, counts: &[Option<f64>], sep: &str) -> String {
    let mut fields: Vec<String> = Vec::new();
    if let Some((comm, tid)) = &row.thread {
        fields.push(format!("{comm}-{tid}"));
    }
    let unit = unit_of(summary, row).to_string();
    let name = name_of(summary, row).to_string();
    let (value, running, pct) = match &row.value {
        Value::Counted { mean, running, .. } => (
            shown_value(summary, row, *mean).1,
            format!("{running:.0}"),
            format!("{:.2}", row.value.running_pct()),
        ),
        Value::NotSupported => ("<not supported>".into(), "0".into(), "100.00".into()),
        Value::NotCounted => ("<not counted>".into(), "0".into(), "100.00".into()),
    };
    fields.extend([value, unit, name]);
    if summary.runs > 1 {
        fields.push(format!("{:.2}%", row.value.noise_pct()));
    }
    fields.extend([running, pct]);
    match metric_of(summary, row, counts) {
        Some(m) => fields.extend([m.format.render_bare(m.value), m.unit]),
        None => fields.extend([String::new(), String::new()]),
    }
    fields.join(sep)
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_line(summary: &Summary, row: &Row, counts: &[Option<f64>]) -> String {
    let mut line = String::from("{");
    if let Some((comm, tid)) = &row.thread {
        let _ = write!(
            line,
            "\"thread\" : {}, ",
            json_string(&format!("{comm}-{tid}"))
        );
    }
    let clock = summary.events.get(row.event).is_some_and(is_clock);
    let (value, running) = match &row.value {
        Value::Counted { mean, running, .. } => (
            format!("{:.6}", if clock { mean / 1e6 } else { *mean }),
            *running,
        ),
        Value::NotSupported => ("<not supported>".to_string(), 0.0),
        Value::NotCounted => ("<not counted>".to_string(), 0.0),
    };
    let _ = write!(
        line,
        "\"counter-value\" : {}, \"unit\" : {}, \"event\" : {}, ",
        json_string(&value),
        json_string(unit_of(summary, row)),
        json_string(name_of(summary, row))
    );
    if summary.runs > 1 {
        let _ = write!(line, "\"variance\" : {:.2}, ", row.value.noise_pct());
    }
    let _ = write!(
        line,
        "\"event-runtime\" : {running:.0}, \"pcnt-running\" : {:.2}, ",
        row.value.running_pct()
    );
    let (mv, mu) = match metric_of(summary, row, counts) {
        Some(m) => (m.value, m.unit),
        None => (0.0, String::new()),
    };
    let mv = if mv.is_finite() { mv } else { 0.0 };
    let _ = write!(
        line,
        "\"metric-value\" : {mv:.6}, \"metric-unit\" : {}}}",
        json_string(&mu)
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Reading;
    use crate::summary::{summarize, RunResult, ThreadResult};

    fn counted(value: u64) -> Reading {
        Reading::Counted {
            value,
            enabled: 1000,
            running: 1000,
        }
    }

    fn sleep_run() -> Summary {
        // `perf stat -- sleep 0.1` on this VM: software events counted, hardware not.
        let events = rprof_events::parse_list(
            "task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,branches,branch-misses",
        )
        .unwrap();
        let readings = vec![
            Reading::Counted {
                value: 630_000,
                enabled: 630_000,
                running: 630_000,
            },
            counted(1),
            counted(0),
            counted(73),
            Reading::NotSupported,
            Reading::NotSupported,
            Reading::NotSupported,
            Reading::NotSupported,
        ];
        let run = RunResult {
            readings,
            threads: vec![],
            elapsed_ns: 101_376_044,
            user_ns: Some(1_319_000),
            sys_ns: Some(0),
        };
        summarize(
            Target::Command(vec!["sleep".into(), "0.1".into()]),
            events,
            &[run],
        )
    }

    #[test]
    fn table_matches_perf_layout() {
        let text = render(&sleep_run(), &Style::Table);
        let expected = "
 Performance counter stats for 'sleep 0.1':

              0.63 msec task-clock                       #    0.006 CPUs utilized
                 1      context-switches                 #    1.587 K/sec
                 0      cpu-migrations                   #    0.000 /sec
                73      page-faults                      #  115.873 K/sec
   <not supported>      cycles
   <not supported>      instructions
   <not supported>      branches
   <not supported>      branch-misses

       0.101376044 seconds time elapsed

       0.001319000 seconds user
       0.000000000 seconds sys

";
        assert_eq!(text, expected);
    }

    #[test]
    fn hardware_lines_with_multiplexing_and_grouping() {
        let events =
            rprof_events::parse_list("task-clock,cycles,instructions,branches,branch-misses")
                .unwrap();
        // cycles/instructions ran 50% of the time (one group), branches 100%.
        let half = |value| Reading::Counted {
            value,
            enabled: 2_000_000_000,
            running: 1_000_000_000,
        };
        let full = |value| Reading::Counted {
            value,
            enabled: 2_000_000_000,
            running: 2_000_000_000,
        };
        let run = RunResult {
            readings: vec![
                full(1_998_000_000),
                half(3_006_000_000),
                half(5_861_700_000),
                full(2_310_000_000),
                full(23_100_000),
            ],
            threads: vec![],
            elapsed_ns: 2_000_000_000,
            user_ns: Some(1_990_000_000),
            sys_ns: Some(8_000_000),
        };
        let s = summarize(Target::Command(vec!["./loop".into()]), events, &[run]);
        let text = render(&s, &Style::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "          1,998.00 msec task-clock                       #    0.999 CPUs utilized"
        );
        assert_eq!(
            lines[4],
            "     6,012,000,000      cycles                           #    3.009 GHz                      (50.00%)"
        );
        assert_eq!(
            lines[5],
            "    11,723,400,000      instructions                     #    1.95  insn per cycle           (50.00%)"
        );
        assert_eq!(
            lines[6],
            "     2,310,000,000      branches                         #    1.156 G/sec"
        );
        assert_eq!(
            lines[7],
            "        23,100,000      branch-misses                    #    1.00% of all branches"
        );
    }

    #[test]
    fn repeated_runs_show_noise_and_precision() {
        let events = rprof_events::parse_list("task-clock,page-faults").unwrap();
        let mk = |tc: u64, pf: u64, el: u64| RunResult {
            readings: vec![
                Reading::Counted {
                    value: tc,
                    enabled: tc,
                    running: tc,
                },
                counted(pf),
            ],
            threads: vec![],
            elapsed_ns: el,
            user_ns: Some(1),
            sys_ns: Some(1),
        };
        let runs = [
            mk(550_000, 75, 11_000_000),
            mk(560_000, 76, 11_600_000),
            mk(570_000, 77, 12_200_000),
        ];
        let s = summarize(
            Target::Command(vec!["sleep".into(), "0.01".into()]),
            events,
            &runs,
        );
        let text = render(&s, &Style::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            " Performance counter stats for 'sleep 0.01' (3 runs):"
        );
        // stddev of the mean of 550,560,570 = 10/sqrt(3) = 5.77; / 560 = 1.03%
        assert_eq!(
            lines[3],
            "              0.56 msec task-clock                       #    0.048 CPUs utilized            ( +-  1.03% )"
        );
        assert_eq!(
            lines[4],
            "                76      page-faults                      #  135.714 K/sec                    ( +-  0.76% )"
        );
        // elapsed 11.6 ms +- 0.346 ms (of the mean): precision = 4 + 2.
        assert_eq!(
            lines[6],
            "          0.011600 +- 0.000346 seconds time elapsed  ( +-  2.99% )"
        );
        assert!(!text.contains("seconds user"));
    }

    #[test]
    fn csv_fields_like_perf() {
        let text = render(&sleep_run(), &Style::Separated(",".into()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "0.63,msec,task-clock,630000,100.00,0.006,CPUs utilized"
        );
        assert_eq!(lines[1], "1,,context-switches,1000,100.00,1.587,K/sec");
        assert_eq!(lines[4], "<not supported>,,cycles,0,100.00,,");
        assert_eq!(lines.len(), 8);
        let text = render(&sleep_run(), &Style::Separated(";".into()));
        assert!(text.starts_with("0.63;msec;task-clock;"));
    }

    #[test]
    fn json_lines_are_valid_json_with_perf_keys() {
        let text = render(&sleep_run(), &Style::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("counter-value").is_some());
            assert!(v.get("metric-unit").is_some());
        }
        assert_eq!(
            lines[0],
            "{\"counter-value\" : \"0.630000\", \"unit\" : \"msec\", \"event\" : \"task-clock\", \"event-runtime\" : 630000, \"pcnt-running\" : 100.00, \"metric-value\" : 0.006214, \"metric-unit\" : \"CPUs utilized\"}"
        );
        assert_eq!(
            lines[4],
            "{\"counter-value\" : \"<not supported>\", \"unit\" : \"\", \"event\" : \"cycles\", \"event-runtime\" : 0, \"pcnt-running\" : 100.00, \"metric-value\" : 0.000000, \"metric-unit\" : \"\"}"
        );
    }

    #[test]
    fn per_thread_rows_use_their_own_thread_for_metrics() {
        let events = rprof_events::parse_list("task-clock,page-faults").unwrap();
        let t = |tid, comm: &str, tc: u64, pf: u64| ThreadResult {
            tid,
            comm: comm.into(),
            readings: vec![
                Reading::Counted {
                    value: tc,
                    enabled: tc,
                    running: tc,
                },
                counted(pf),
            ],
        };
        let run = RunResult {
            readings: vec![counted(3_000_000), counted(30)],
            threads: vec![
                t(100, "main", 1_000_000, 20),
                t(101, "worker \"x\"", 2_000_000, 10),
            ],
            elapsed_ns: 4_000_000,
            user_ns: None,
            sys_ns: None,
        };
        let s = summarize(Target::Pid(100), events, &[run]);
        let text = render(&s, &Style::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], " Performance counter stats for process id '100':");
        assert_eq!(
            lines[3],
            "      worker \"x\"-101                    2.00 msec task-clock                       #    0.500 CPUs utilized"
        );
        assert_eq!(
            lines[4],
            "            main-100                    1.00 msec task-clock                       #    0.250 CPUs utilized"
        );
        // main: 20 faults in 1 ms of its own task-clock = 20 K/sec.
        assert_eq!(
            lines[5],
            "            main-100                      20      page-faults                      #   20.000 K/sec"
        );
        let json = render(&s, &Style::Json);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["thread"], "worker \"x\"-101");
        let csv = render(&s, &Style::Separated(",".into()));
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("main-100,20,,page-faults,"));
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands("0"), "0");
        assert_eq!(group_thousands("999"), "999");
        assert_eq!(group_thousands("1000"), "1,000");
        assert_eq!(group_thousands("1234567.89"), "1,234,567.89");
        assert_eq!(group_thousands("-1234"), "-1,234");
        assert_eq!(precision_for(0.000346), 4);
        assert_eq!(precision_for(2.0), 0);
        assert_eq!(precision_for(0.0), 7);
    }
}
