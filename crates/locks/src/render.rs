//! The outputs of a lock [`Analysis`]: the table of `rprof report --locks`, its JSON, and the
//! folded stacks and flame graph of `rprof flame --locks` (the lock as the root frame, then the
//! waiting stack from its root to the leaf).

use std::io::{self, Write};

use inferno::flamegraph::{self, color::Color, color::PaletteMap};
use rprof_profile::{FrameKind, Profile};
use rprof_report::format::thousands;
use rprof_report::visible;
use serde_json::{json, Value};

use crate::{Analysis, Lock, Site, Wakers};

/// What the report says when no futex wait was recorded.
pub const NO_LOCK_WAITS: &str = "no lock waits recorded";

/// Nanoseconds as `850 us`, `12.3 ms`, `4.56 s`.
fn duration(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.0} us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn site_label(site: &Site) -> String {
    let function = visible(&site.function).into_owned();
    match (&site.file, site.line) {
        (Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{function} ({}:{line})", visible(file))
        }
        (Some(file), None) => format!("{function} ({})", visible(file)),
        _ => function,
    }
}

/// The table of `rprof report --locks`: contention first, then the other futex waits.
pub fn table(analysis: &Analysis, mut out: impl Write) -> io::Result<()> {
    if analysis.locks.is_empty() && analysis.other.is_empty() {
        if analysis.with_registers == 0 {
            writeln!(
                out,
                "{NO_LOCK_WAITS}: the off-CPU blocks carry no stacks or registers (kernel-space \
                 sampling was refused: record as root, or with kernel.perf_event_paranoid <= 1)"
            )?;
        } else {
            writeln!(out, "{NO_LOCK_WAITS}")?;
        }
        return unaddressed(analysis, &mut out);
    }
    let contended: u64 = analysis.locks.iter().map(|l| l.contended).sum();
    let waited: u64 = analysis.locks.iter().map(|l| l.wait_ns).sum();
    if analysis.locks.is_empty() {
        writeln!(
            out,
            "{NO_LOCK_WAITS} (no thread blocked on a mutex or read-write lock); other futex \
             waits below"
        )?;
    } else {
        writeln!(
            out,
            "Lock contention: {} lock{}, {} contended acquisitions, {} blocked (recording {})",
            analysis.locks.len(),
            if analysis.locks.len() == 1 { "" } else { "s" },
            thousands(contended),
            duration(waited),
            duration(analysis.wall_ns),
        )?;
    }
    match &analysis.wakers {
        Wakers::Recorded => writeln!(
            out,
            "Wakers: the sites whose futex wake call released each lock (the code that held it)"
        )?,
        Wakers::NotRecorded(why) => writeln!(out, "Wakers: not recorded: {}", visible(why))?,
        Wakers::Unknown => writeln!(
            out,
            "Wakers: not recorded (the profile predates wake-up recording; record it again \
             with `rprof record --off-cpu` as root)"
        )?,
    }
    if !analysis.locks.is_empty() {
        writeln!(out)?;
        rows(analysis, &analysis.locks, true, &mut out)?;
    }
    if !analysis.other.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Condition variables and other futex waits (waiting for an event, not for a lock):"
        )?;
        writeln!(out)?;
        rows(analysis, &analysis.other, false, &mut out)?;
    }
    unaddressed(analysis, &mut out)
}

fn unaddressed(analysis: &Analysis, out: &mut impl Write) -> io::Result<()> {
    if analysis.unaddressed > 0 {
        writeln!(
            out,
            "\n{} futex waits without a known address (no registers captured, or futex_waitv) \
             are not in any row",
            thousands(analysis.unaddressed)
        )?;
    }
    Ok(())
}

fn rows(
    analysis: &Analysis,
    locks: &[Lock],
    contention: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    writeln!(
        out,
        "{:>10} {:>7} {:>9} {:>7} {:>9} {:>9} {:>7}  {:<9} Lock",
        "Wait", "Wall%", "Contended", "Waits", "Mean", "Max", "Threads", "Kind"
    )?;
    for lock in locks {
        writeln!(
            out,
            "{:>10} {:>6.1}% {:>9} {:>7} {:>9} {:>9} {:>7}  {:<9} {}  [{:#x}, pid {}]",
            duration(lock.wait_ns),
            share(lock.wait_ns, analysis.wall_ns),
            thousands(lock.contended),
            thousands(lock.waits),
            duration(lock.mean_wait_ns()),
            duration(lock.max_wait_ns),
            lock.threads.len(),
            lock.kind.name(),
            visible(&lock.name),
            lock.address,
            lock.pid,
        )?;
        for site in &lock.sites {
            writeln!(
                out,
                "{:>12} {} waits, {}  {}",
                "waited at:",
                thousands(site.count),
                duration(site.wait_ns),
                site_label(site)
            )?;
        }
        if contention {
            match &analysis.wakers {
                Wakers::Recorded if lock.wakers.is_empty() => {
                    writeln!(out, "{:>12} no wake call recorded on it", "woken by:")?
                }
                Wakers::Recorded => {
                    for site in &lock.wakers {
                        writeln!(
                            out,
                            "{:>12} {} wake calls  {}",
                            "woken by:",
                            thousands(site.count),
                            site_label(site)
                        )?;
                    }
                }
                _ => writeln!(out, "{:>12} not recorded (see above)", "woken by:")?,
            }
        }
    }
    Ok(())
}

fn site_json(site: &Site, waits: bool) -> Value {
    let mut v = json!({
        "function": site.function,
        "file": site.file,
        "line": site.line,
    });
    if waits {
        v["waits"] = json!(site.count);
        v["wait_ns"] = json!(site.wait_ns);
    } else {
        v["calls"] = json!(site.count);
    }
    v
}

fn lock_json(analysis: &Analysis, lock: &Lock) -> Value {
    let recorded = analysis.wakers == Wakers::Recorded;
    json!({
        "name": lock.name,
        "named_by": match lock.named_by {
            crate::NamedBy::Symbol => "symbol",
            crate::NamedBy::Module => "module",
            crate::NamedBy::Waiter => "waiter",
        },
        "address": format!("{:#x}", lock.address),
        "pid": lock.pid,
        "kind": lock.kind.name(),
        "contended": lock.contended,
        "waits": lock.waits,
        "wait_ns": lock.wait_ns,
        "mean_wait_ns": lock.mean_wait_ns(),
        "max_wait_ns": lock.max_wait_ns,
        "threads": lock.threads.len(),
        "thread_ids": lock.threads,
        "wall_share": (share(lock.wait_ns, analysis.wall_ns) * 100.0).round() / 100.0,
        "sites": lock.sites.iter().map(|s| site_json(s, true)).collect::<Vec<_>>(),
        "wakes": if recorded { json!(lock.wakes) } else { Value::Null },
        "wakers": if recorded {
            json!(lock.wakers.iter().map(|s| site_json(s, false)).collect::<Vec<_>>())
        } else {
            Value::Null
        },
    })
}

/// The JSON of `rprof report --locks --json` (schema in `docs/off-cpu.md`).
pub fn json(analysis: &Analysis, mut out: impl Write) -> io::Result<()> {
    let (recorded, note) = match &analysis.wakers {
        Wakers::Recorded => (true, None),
        Wakers::NotRecorded(why) => (false, Some(why.clone())),
        Wakers::Unknown => (
            false,
            Some("the profile predates wake-up recording".to_string()),
        ),
    };
    let value = json!({
        "wall_ns": analysis.wall_ns,
        "wakers_recorded": recorded,
        "wakers_note": note,
        "unaddressed_waits": analysis.unaddressed,
        "blocks_with_registers": analysis.with_registers,
        "locks": analysis.locks.iter().map(|l| lock_json(analysis, l)).collect::<Vec<_>>(),
        "other_waits": analysis.other.iter().map(|l| lock_json(analysis, l)).collect::<Vec<_>>(),
    });
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)
}

/// Frame names made safe for folded lines (no `;`, no newline).
fn clean(name: &str) -> String {
    visible(name).replace([';', '\n'], ":")
}

/// Folded stacks of the contended locks' waits: `LOCK;root;...;leaf MICROSECONDS`, kernel
/// frames marked `_[k]`, sorted.
pub fn folded_lines(profile: &Profile, analysis: &Analysis) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for lock in &analysis.locks {
        let root = format!("{} [{}]", clean(&lock.name), lock.kind.name());
        for &index in &lock.blocks {
            let Some(block) = profile.off_cpu.get(index) else {
                continue;
            };
            let mut line = root.clone();
            let stack = profile.stack(profile.off_cpu_stack(index));
            for &f in stack.iter().rev() {
                let frame = profile.frame(f);
                match frame.kind {
                    FrameKind::Wait => continue,
                    FrameKind::Kernel => {
                        line.push(';');
                        line.push_str(&clean(&frame.function));
                        line.push_str("_[k]");
                    }
                    _ => {
                        line.push(';');
                        line.push_str(&clean(&frame.function));
                    }
                }
            }
            let ns = block.end.saturating_sub(block.start);
            *counts.entry(line).or_default() += ns;
        }
    }
    counts
        .into_iter()
        .filter_map(|(line, ns)| {
            let us = ns.saturating_add(500) / 1000;
            (us > 0).then(|| format!("{line} {us}"))
        })
        .collect()
}

/// The flame graph of the contended locks' waits, each lock a root frame (`title` on top).
pub fn flame(lines: &[String], title: &str, out: impl Write) -> io::Result<()> {
    let mut palette = PaletteMap::default();
    let mut roots = std::collections::BTreeSet::new();
    for line in lines {
        if let Some(root) = line.split(';').next() {
            roots.insert(root.to_string());
        }
    }
    for root in &roots {
        palette.insert(
            root,
            Color {
                r: 160,
                g: 60,
                b: 200,
            },
        );
    }
    let mut options = flamegraph::Options::default();
    options.title = visible(title).into_owned();
    options.count_name = "µs".to_string();
    options.deterministic = true;
    options.palette_map = Some(&mut palette);
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(io::Error::other)
}
