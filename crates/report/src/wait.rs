//! The off-CPU parts of `rprof report` (profiles recorded with `rprof record --off-cpu`): the
//! per-thread table of wall, on-CPU and off-CPU time by reason, and the functions ranked by
//! off-CPU or wall-clock time (self and total, in time units, with the reason breakdown).
//!
//! Times come from [`Profile::thread_activity`] and the blocks' stacks ([`Weight`]); this
//! module only lays them out. Names go through [`visible`].

use std::io::{self, Write};

use rprof_profile::{FrameKind, Profile, ReasonSource, ThreadActivity, WaitReason};

use crate::aggregate::{Row, Table};
use crate::format::duration;
use crate::select::{Selection, StackCounts, ThreadSpan, Weight};
use crate::top::TopOptions;
use crate::visible::visible;

/// True when any name `thread` had is accepted by `selection`.
fn accepts_thread(profile: &Profile, selection: &Selection, activity: &ThreadActivity) -> bool {
    let names = profile
        .threads
        .get(&activity.tid)
        .map_or(1, |t| t.names.len().max(1));
    (0..names).any(|name_index| {
        selection.accepts(ThreadSpan {
            pid: activity.pid,
            tid: activity.tid,
            name_index,
        })
    })
}

/// The threads of an off-CPU profile that `selection` keeps, most wall time first.
pub fn selected_activity(profile: &Profile, selection: &Selection) -> Vec<ThreadActivity> {
    let mut threads: Vec<ThreadActivity> = profile
        .thread_activity()
        .into_iter()
        .filter(|a| accepts_thread(profile, selection, a))
        .collect();
    threads.sort_by(|a, b| b.alive_ns().cmp(&a.alive_ns()).then(a.tid.cmp(&b.tid)));
    threads
}

/// One line saying how the reasons were found: from kernel stacks, user-space leaf functions
/// (no kernel stacks recorded), or the preemption flag alone.
pub fn reasons_line(profile: &Profile) -> String {
    let [preempted, kernel, user, nothing] = profile.reason_sources();
    let mut parts = Vec::new();
    if kernel > 0 {
        parts.push(format!("kernel stacks ({kernel} blocks)"));
    }
    if user > 0 {
        parts.push(format!(
            "user-space leaf functions, no kernel stack ({user} blocks)"
        ));
    }
    if preempted > 0 {
        parts.push(format!("the preemption flag ({preempted} blocks)"));
    }
    let mut line = format!(
        "off-CPU reasons found from {}",
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        }
    );
    if nothing > 0 {
        line.push_str(&format!("; {nothing} blocks not recognised (other)"));
    }
    line
}

/// The thread table of an off-CPU profile: per thread its time alive in the recording, on
/// the CPU, off it, and off it by reason.
pub(crate) fn render_activity(
    profile: &Profile,
    options: &TopOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let threads = selected_activity(profile, &options.selection);
    let mut titles = vec!["Tid", "Pid", "Wall", "On-CPU", "Off-CPU"];
    titles.extend(WaitReason::ALL.iter().map(|r| r.name()));
    let rows: Vec<Vec<String>> = threads
        .iter()
        .map(|t| {
            let mut row = vec![
                t.tid.to_string(),
                t.pid.to_string(),
                duration(t.alive_ns()),
                duration(t.on_cpu_ns()),
                duration(t.off_cpu_ns()),
            ];
            row.extend(t.wait_ns().iter().map(|&ns| {
                if ns == 0 {
                    "-".to_string()
                } else {
                    duration(ns)
                }
            }));
            row
        })
        .collect();
    let mut widths: Vec<usize> = titles.iter().map(|t| t.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut title = String::new();
    for (w, t) in widths.iter().zip(&titles) {
        title.push_str(&format!("{t:>w$}  "));
    }
    title.push_str("Thread");
    writeln!(out, "{}", crate::top::bold(options.color, &title))?;
    for (row, t) in rows.iter().zip(&threads) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line.push_str(&format!("{cell:>w$}  "));
        }
        let name = profile
            .threads
            .get(&t.tid)
            .map_or("", |th| th.name.as_str());
        line.push_str(&visible(if name.is_empty() { "[unnamed]" } else { name }));
        writeln!(out, "{line}")?;
    }
    writeln!(out, "# {}", reasons_line(profile))?;
    writeln!(out)
}

/// The functions ranked by off-CPU or wall-clock time ([`Selection::weight`]), with self and
/// total time and, per row, its off-CPU time by reason.
pub(crate) fn render_table(
    profile: &Profile,
    options: &TopOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let counts = StackCounts::new(profile, &options.selection);
    let what = match options.selection.weight {
        Weight::Wall => "wall-clock time (on-CPU + off-CPU)",
        _ => "off-CPU time",
    };
    writeln!(
        out,
        "# ranked by {what}: {} in all",
        duration(counts.samples)
    )?;
    if options.selection.weight == Weight::OffCpu {
        writeln!(out, "# {}", reasons_line(profile))?;
    }
    writeln!(out)?;
    if counts.samples == 0 {
        return writeln!(out, "nothing off the CPU matches the selection");
    }
    let table = Table::new(
        profile,
        &counts,
        &options.selection,
        options.kind,
        options.sort,
    );
    let shown = options
        .limit
        .map_or(table.rows.len(), |l| l.min(table.rows.len()));
    let rows: &[Row] = &table.rows[..shown];
    let mut titles = vec!["Self", "Total"];
    titles.extend(WaitReason::ALL.iter().map(|r| r.name()));
    titles.push("Module");
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![duration(r.self_samples), duration(r.total_samples)];
            row.extend(r.wait.iter().map(|&ns| {
                if ns == 0 {
                    "-".to_string()
                } else {
                    duration(ns)
                }
            }));
            row.push(match (&r.module, r.kind) {
                (_, FrameKind::Kernel) => "[kernel]".to_string(),
                (Some(m), _) => visible(m).into_owned(),
                (None, _) => "[unknown]".to_string(),
            });
            row
        })
        .collect();
    let mut widths: Vec<usize> = titles.iter().map(|t| t.len()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = titles.len() - 1;
    let mut title = String::new();
    for (i, (w, t)) in widths.iter().zip(&titles).enumerate() {
        if i == last {
            title.push_str(&format!("{t:<w$}  "));
        } else {
            title.push_str(&format!("{t:>w$}  "));
        }
    }
    title.push_str("Function");
    writeln!(out, "{}", crate::top::bold(options.color, &title))?;
    for (row, r) in cells.iter().zip(rows) {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i == last {
                line.push_str(&format!("{cell:<w$}  "));
            } else {
                line.push_str(&format!("{cell:>w$}  "));
            }
        }
        line.push_str(&visible(&r.name));
        if let Some(width) = options.width {
            line = line.chars().take(width.max(40)).collect();
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// How the reasons of a profile's blocks that waited for something (not preempted) were
/// found, for JSON: `kernel` (from kernel stacks, when any block had one), `user` (user-space
/// leaf functions: no kernel stacks), `preempted` (only preempted blocks), or `none`.
pub fn main_reason_source(profile: &Profile) -> &'static str {
    let counts = profile.reason_sources();
    if counts[ReasonSource::Kernel as usize] > 0 {
        "kernel"
    } else if counts[ReasonSource::User as usize] > 0 {
        "user"
    } else if counts[ReasonSource::Preempted as usize] > 0 {
        "preempted"
    } else {
        "none"
    }
}
