//! The values of `rprof record`'s flags, checked and turned into [`rprof_record::session::Options`]:
//! the event and its rate (clamped to the kernel's maximum), `--call-graph`, `--duration`,
//! `-p`/COMMAND and `-m`. A value that cannot be used is a usage error (exit code 2); one that
//! is adjusted says so in a note.
//!
//! It leaves the ring buffers' default size to `rprof-record` (it depends on the privileges the
//! recording runs with).

use std::time::Duration;

use rprof_events::EventKind;
use rprof_perf::{CallGraph, Rate};
use rprof_record::session::{Options, Target};

use super::{note, Args};
use crate::exit::{event_error, usage};

/// Default sampling frequency (Hz): near 1 kHz, but not a multiple of common timer ticks.
const DEFAULT_FREQUENCY: u64 = 999;
/// Default user-stack copy for `--call-graph dwarf`: the largest the kernel takes. A 300-deep
/// recursion of ~100-byte frames needs ~30 KB, so this leaves room for bigger frames too.
const DEFAULT_STACK_COPY: u32 = rprof_perf::MAX_STACK_COPY;

/// The longest `--duration` (seconds): about 31 years, far beyond any recording, and small
/// enough for every clock rprof uses.
pub const MAX_DURATION_SECS: f64 = 1e9;

/// Checks `--duration SECS`: a positive number of seconds, at most [`MAX_DURATION_SECS`].
pub fn parse_duration(secs: f64) -> anyhow::Result<Duration> {
    if secs.is_nan() || secs <= 0.0 {
        return Err(usage(format!(
            "--duration must be a positive number of seconds, not {secs}"
        )));
    }
    if secs >= MAX_DURATION_SECS {
        return Err(usage(format!(
            "--duration {secs} is too large: at most {MAX_DURATION_SECS:.0} seconds (about 31 years); leave it out to record until the target exits or Ctrl-C"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--call-graph`.
fn parse_call_graph(spec: &str) -> anyhow::Result<CallGraph> {
    let (mode, size) = match spec.split_once(',') {
        Some((mode, size)) => (mode, Some(size)),
        None => (spec, None),
    };
    match (mode, size) {
        ("dwarf", None) => Ok(CallGraph::Dwarf {
            stack_size: DEFAULT_STACK_COPY,
        }),
        ("dwarf", Some(size)) => {
            let bytes = parse_size(size).filter(|&b| b > 0).ok_or_else(|| {
                usage(format!(
                    "invalid stack size '{size}' in --call-graph {spec} (expected bytes, e.g. dwarf,32768)"
                ))
            })?;
            let max = u64::from(rprof_perf::MAX_STACK_COPY);
            let mut rounded = bytes.div_ceil(8) * 8;
            if rounded > max {
                note(format!(
                    "a stack copy of {bytes} bytes is over the kernel's limit; using {max}"
                ));
                rounded = max;
            }
            Ok(CallGraph::Dwarf {
                stack_size: rounded as u32,
            })
        }
        ("fp", None) => Ok(CallGraph::FramePointer),
        ("none", None) => Ok(CallGraph::None),
        _ => Err(usage(format!(
            "invalid --call-graph '{spec}' (expected dwarf, dwarf,SIZE, fp or none)"
        ))),
    }
}

/// A byte count with an optional K/M/G suffix (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Parses `-m`: pages, or a size with a unit; rounded up to a power of two.
fn parse_pages(text: &str) -> anyhow::Result<usize> {
    let page = rprof_perf::ring::page_size() as u64;
    let bad = || {
        usage(format!(
            "invalid --mmap-pages '{text}' (expected a number of pages such as 256, or a size such as 512K or 16M)"
        ))
    };
    let pages = if text.trim().chars().all(|c| c.is_ascii_digit()) {
        text.trim().parse::<u64>().map_err(|_| bad())?
    } else {
        parse_size(text).ok_or_else(bad)?.div_ceil(page)
    };
    if pages == 0 {
        return Err(usage("--mmap-pages must be at least 1 page"));
    }
    let rounded = pages
        .checked_next_power_of_two()
        .filter(|&p| p <= 1 << 30)
        .ok_or_else(bad)?;
    if rounded != pages {
        note(format!(
            "ring buffers hold a power of two of pages: using {rounded} instead of {pages}"
        ));
    }
    Ok(rounded as usize)
}

/// The stack copy of a dwarf call graph (0 otherwise).
fn call_graph_stack(call_graph: CallGraph) -> u32 {
    match call_graph {
        CallGraph::Dwarf { stack_size } => stack_size,
        _ => 0,
    }
}

/// `bytes` as `-m` takes it: `16M`, `512K`, or bytes.
fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}K", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// Checks every flag and gives the recording's options.
pub fn validate(args: Args) -> anyhow::Result<Options> {
    let event = rprof_events::parse(&args.event).map_err(event_error)?;
    let rate = match (args.freq, args.period) {
        (Some(0), _) => return Err(usage("the sampling frequency (-F) must be at least 1 Hz")),
        (_, Some(0)) => return Err(usage("the sampling period (-c) must be at least 1")),
        (_, Some(period)) => Rate::Period(period),
        (Some(hz), None) => Rate::Frequency(hz),
        (None, None) if event.kind == EventKind::Tracepoint => Rate::Period(1),
        (None, None) => Rate::Frequency(DEFAULT_FREQUENCY),
    };
    let rate = match rate {
        Rate::Frequency(hz) => match rprof_events::max_sample_rate() {
            Some(max) if hz > max => {
                note(format!(
                    "-F {hz} is above kernel.perf_event_max_sample_rate ({max}): sampling at {max} Hz"
                ));
                Rate::Frequency(max)
            }
            _ => Rate::Frequency(hz),
        },
        other => other,
    };
    let call_graph = parse_call_graph(&args.call_graph)?;
    let duration = args.duration.map(parse_duration).transpose()?;
    let target = match (args.pid, args.command.is_empty()) {
        (Some(_), false) => return Err(usage("give either -p PID or a COMMAND to run, not both")),
        (None, true) => {
            return Err(usage(
                "nothing to record: give a COMMAND (rprof record -- COMMAND ARGS...) or -p PID",
            ))
        }
        (Some(pid), true) => match pid.trim().parse::<u32>() {
            Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Target::Attach(pid),
            _ => return Err(usage(format!("invalid process id '{pid}' for -p"))),
        },
        (None, false) => Target::Command(args.command),
    };
    let pages = args.mmap_pages.as_deref().map(parse_pages).transpose()?;
    if let Some(needed) =
        pages.and_then(|p| rprof_record::open::explicit_ring_too_small(p, call_graph))
    {
        return Err(usage(format!(
            "-m {} is too small for {}-byte stack copies (--call-graph dwarf): a ring buffer must hold at least {} samples, or they are lost; use -m {} or more, or copy less stack (--call-graph dwarf,SIZE)",
            args.mmap_pages.as_deref().unwrap_or_default(),
            call_graph_stack(call_graph),
            rprof_record::open::MIN_SAMPLES_PER_EXPLICIT_RING,
            size_text(needed),
        )));
    }
    Ok(Options {
        output: args.output,
        event,
        rate,
        call_graph,
        duration,
        target,
        pages,
        no_kernel: args.no_kernel,
        off_cpu: args.off_cpu,
    })
}

/// Validates `rprof record --alloc` (issue 14): the target, `--duration` with `-p`,
/// `--alloc-sample`.
pub fn validate_alloc(args: Args) -> anyhow::Result<rprof_alloc::Options> {
    let duration = args.duration.map(parse_duration).transpose()?;
    let what = match (args.pid, args.command.is_empty()) {
        (Some(_), false) => return Err(usage("give either -p PID or a COMMAND to run, not both")),
        (None, true) => return Err(usage(
            "nothing to record: give a COMMAND (rprof record --alloc -- COMMAND ARGS...) or -p PID",
        )),
        (Some(pid), true) => match pid.trim().parse::<u32>() {
            Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => {
                rprof_alloc::What::Pid { pid, duration }
            }
            _ => return Err(usage(format!("invalid process id '{pid}' for -p"))),
        },
        (None, false) => {
            if duration.is_some() {
                return Err(usage("--duration with --alloc: only with -p PID"));
            }
            rprof_alloc::What::Command(args.command)
        }
    };
    let sample_bytes = match args.alloc_sample.as_deref() {
        Some(text) => crate::alloc::parse_sample(text)?,
        None => rprof_alloc::DEFAULT_SAMPLE_BYTES,
    };
    Ok(rprof_alloc::Options {
        what,
        output: args.output,
        sample_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_graph_specs() {
        assert_eq!(
            parse_call_graph("dwarf").unwrap(),
            CallGraph::Dwarf {
                stack_size: DEFAULT_STACK_COPY
            }
        );
        assert_eq!(
            parse_call_graph("dwarf,1000").unwrap(),
            CallGraph::Dwarf { stack_size: 1000 }
        );
        assert_eq!(
            parse_call_graph("dwarf,1001").unwrap(),
            CallGraph::Dwarf { stack_size: 1008 }
        );
        assert_eq!(
            parse_call_graph("dwarf,16K").unwrap(),
            CallGraph::Dwarf { stack_size: 16384 }
        );
        assert_eq!(
            parse_call_graph("dwarf,1M").unwrap(),
            CallGraph::Dwarf {
                stack_size: rprof_perf::MAX_STACK_COPY
            }
        );
        assert_eq!(parse_call_graph("fp").unwrap(), CallGraph::FramePointer);
        assert_eq!(parse_call_graph("none").unwrap(), CallGraph::None);
        for bad in [
            "", "lbr", "dwarf,", "dwarf,0", "dwarf,x", "fp,8", "dwarf,-8",
        ] {
            assert!(parse_call_graph(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_pages() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_pages("256").unwrap(), 256);
        assert_eq!(parse_pages("100").unwrap(), 128);
        let page = rprof_perf::ring::page_size();
        assert_eq!(parse_pages("1M").unwrap(), (1 << 20) / page);
        assert!(parse_pages("0").is_err());
        assert!(parse_pages("lots").is_err());
        assert!(parse_pages("99999999999999999999").is_err());
    }
}
