//! The terminal table of `rprof diff`: a header that says what was compared and how long each
//! profile is, then one row per function, the largest change first.
//!
//! Every string from the profiles (command lines, function and module names, labels) is shown
//! through [`visible`].

use std::io::{self, Write};

use rprof_report::{visible, SortBy, Weight};

use crate::compare::{Diff, Measure, Side, Status};
use crate::text::{command_line, p_value, signed_points, signed_weight, thousands, weight};

/// How the table looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// At most this many rows. Default `None`: all.
    pub limit: Option<usize>,
    /// What BASE is called in the header (its file name). Default: empty, left out.
    pub base_label: String,
    /// What NEW is called in the header. Default: empty, left out.
    pub new_label: String,
    /// A note on the selection (`thread worker`) for the header. Default `None`.
    pub selection_label: Option<String>,
}

/// Writes the table of `diff`.
pub fn render(diff: &Diff, options: &TableOptions, mut out: impl Write) -> io::Result<()> {
    let c = &diff.comparison;
    let unit = visible(&c.base.event).into_owned();
    writeln!(
        out,
        "# rprof diff: BASE {} against NEW {}",
        label(&options.base_label),
        label(&options.new_label)
    )?;
    for (name, side) in [("BASE", &c.base), ("NEW ", &c.new)] {
        writeln!(out, "# {name} {}", describe(side, c, &unit))?;
    }
    if let Some(selection) = &options.selection_label {
        writeln!(out, "# showing {}", visible(selection))?;
    }
    let count = match diff.rank_by {
        SortBy::SelfSamples => "self",
        SortBy::Total => "total",
    };
    let whole = match c.weight {
        Weight::Samples if c.time => "estimated time",
        Weight::Samples => "events",
        Weight::OffCpu => "off-CPU time",
        Weight::Wall => "wall-clock time",
    };
    let compared = match (c.weight, c.measure) {
        (Weight::OffCpu, Measure::Time) => format!("{count} off-CPU time (--off-cpu)"),
        (Weight::Wall, Measure::Time) => {
            format!("{count} wall-clock time, on-CPU (estimated) + off-CPU (--wall)")
        }
        (Weight::OffCpu | Weight::Wall, Measure::Share) => {
            format!("share of {count} {whole} in each profile (--normalize)")
        }
        (Weight::Samples, measure) => match measure {
            Measure::Time if c.time => {
                format!("estimated time of {count} samples (samples × mean sample period)")
            }
            Measure::Time => format!("{unit} of {count} samples (samples × mean sample period)"),
            Measure::Share => format!("share of {count} samples in each profile (--normalize)"),
        },
    };
    writeln!(
        out,
        "# compared: {compared}; NEW's whole {whole} {} ({:+.1}%)",
        signed_weight(c.new.weight as f64 - c.base.weight as f64, c.time, &unit),
        c.total_change_percent()
    )?;
    match c.weight {
        Weight::Samples => writeln!(
            out,
            "# significant: two-sided binomial test of the two sample counts, p <= {} \
             (docs/diff.md)",
            c.alpha
        )?,
        Weight::OffCpu => writeln!(
            out,
            "# significant: off-CPU time (measured, not sampled) changed by {} or more \
             (1% of the longer recording, at least 1 ms; docs/diff.md)",
            crate::text::duration(c.off_cpu_threshold_ns as f64)
        )?,
        Weight::Wall => writeln!(
            out,
            "# significant: binomial test of the on-CPU sample counts, p <= {}, or off-CPU \
             time changed by {} or more (docs/diff.md)",
            c.alpha,
            crate::text::duration(c.off_cpu_threshold_ns as f64)
        )?,
    }
    writeln!(out)?;

    let delta_time = if c.time { "Δ time" } else { "Δ events" };
    let mut header: Vec<&str> = match c.measure {
        Measure::Time => vec![delta_time, "Δ share"],
        Measure::Share => vec!["Δ share", delta_time],
    };
    header.extend([
        "Base self",
        "New self",
        "Base total",
        "New total",
        "p",
        "Signif.",
        "Module",
        "Function",
    ]);
    let shown = options
        .limit
        .map_or(diff.rows.len(), |n| n.min(diff.rows.len()));
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in &diff.rows[..shown] {
        let time = signed_weight(row.delta, c.time, &unit);
        let share = signed_points(row.delta_share);
        let mut line = match c.measure {
            Measure::Time => vec![time, share],
            Measure::Share => vec![share, time],
        };
        let mut function = visible(&row.name).into_owned();
        match row.status {
            Status::New => function.push_str("  [new]"),
            Status::Gone => function.push_str("  [gone]"),
            Status::Both => {}
        }
        let count = |n: u64| {
            if c.weight.is_time() {
                crate::text::duration(n as f64)
            } else {
                thousands(n)
            }
        };
        line.extend([
            count(row.base_self),
            count(row.new_self),
            count(row.base_total),
            count(row.new_total),
            if c.weight == Weight::OffCpu {
                // Off-CPU time is measured, not sampled: no test, no p-value.
                "-".to_string()
            } else {
                p_value(row.p_value)
            },
            if row.significant { "yes" } else { "no" }.to_string(),
            match &row.base_module {
                Some(base) => format!(
                    "{} -> {}",
                    visible(base),
                    visible(row.module.as_deref().unwrap_or(""))
                ),
                None => visible(row.module.as_deref().unwrap_or("")).into_owned(),
            },
            function,
        ]);
        cells.push(line);
    }
    let columns = header.len();
    let mut widths = vec![0usize; columns];
    for line in &cells {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in &cells {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            text.push_str("  ");
            if i + 2 >= columns {
                // Module and function: left-aligned.
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    if shown < diff.rows.len() {
        let more = (diff.rows.len() - shown) as u64;
        writeln!(
            out,
            "# {} more {} (--top 0 shows all)",
            thousands(more),
            if more == 1 { "function" } else { "functions" }
        )?;
    }
    Ok(())
}

/// The line `--fail-if-slower PCT` prints when NEW's whole estimated time (or events) grew by
/// more than `pct` percent of BASE's, naming the functions whose self cost accounts for the
/// growth (at most 5, see [`Diff::growth`]); `None` when it did not.
pub fn slower_than(diff: &Diff, pct: f64) -> Option<String> {
    let c = &diff.comparison;
    let change = c.total_change_percent();
    if change <= pct {
        return None;
    }
    let unit = visible(&c.base.event).into_owned();
    let what = match c.weight {
        Weight::OffCpu => "off-CPU time",
        Weight::Wall => "wall-clock time",
        Weight::Samples if c.time => "estimated time",
        Weight::Samples => "events",
    };
    let functions: Vec<String> = diff
        .growth(5)
        .into_iter()
        .map(|(row, delta)| {
            format!(
                "{} {}",
                visible(&row.name),
                signed_weight(delta, c.time, &unit)
            )
        })
        .collect();
    Some(format!(
        "NEW's {what} is {change:.1}% above BASE's ({} against {}; --fail-if-slower {pct}); \
         most of it: {}",
        weight(c.new.weight as f64, c.time, &unit),
        weight(c.base.weight as f64, c.time, &unit),
        if functions.is_empty() {
            "no single function".to_string()
        } else {
            functions.join(", ")
        }
    ))
}

fn label(s: &str) -> String {
    if s.is_empty() {
        "(unnamed)".into()
    } else {
        visible(s).into_owned()
    }
}

/// `./app: cpu-clock at 999 Hz, 1.29 s, 1,001 samples (1.00 s estimated)`.
fn describe(side: &Side, c: &crate::Comparison, unit: &str) -> String {
    let time = c.time;
    let what = match (side.command.is_empty(), side.target_pid) {
        (false, _) => command_line(&side.command),
        (true, Some(pid)) => format!("process {pid}"),
        (true, None) => "profile".into(),
    };
    let mut s = format!("{}: {}", visible(&what), visible(&side.event));
    if let Some(f) = side.frequency {
        s.push_str(&format!(" at {} Hz", thousands(f)));
    } else if let Some(p) = side.period {
        s.push_str(&format!(" every {}", thousands(p)));
    }
    if c.weight.is_time() {
        let what = match c.weight {
            Weight::Wall => "wall-clock",
            _ => "off-CPU",
        };
        s.push_str(&format!(
            ", {} long, {} samples, {} {what} time in all",
            crate::text::duration(side.duration_ns as f64),
            thousands(side.samples),
            crate::text::duration(side.weight as f64)
        ));
        return s;
    }
    s.push_str(&format!(
        ", {} long, {} samples",
        crate::text::duration(side.duration_ns as f64),
        thousands(side.selected)
    ));
    if side.selected != side.samples {
        s.push_str(&format!(" of {}", thousands(side.samples)));
    }
    let estimated = weight(side.weight as f64, time, unit);
    if time {
        s.push_str(&format!(" ({estimated} estimated)"));
    } else {
        s.push_str(&format!(" ({estimated})"));
    }
    s
}
