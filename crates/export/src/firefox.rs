//! The Firefox Profiler's processed profile format (open it at profiler.firefox.com, "Load a
//! profile from file"), built with `fxprof-processed-profile`, the crate samply writes it with.
//!
//! One process per pid (named after its main thread), one thread track per thread (its last
//! name), samples at their recorded times (relative to the first sample; the profile's
//! reference time is the recording's start), each with its CPU time for the clock events.
//! Frames are labels with their function names, in categories `User`, `Kernel` and
//! `Inlined` (a function inlined into its caller), `Truncated` for the `[truncated]` marker and
//! `Off-CPU wait` for the reason frame of an off-CPU stack.
//! File names and lines are not carried: the crate's label frames have no place for them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use fxprof_processed_profile::{
    CategoryColor, CategoryPairHandle, CpuDelta, Frame, FrameFlags, FrameInfo, ProcessHandle,
    Profile as FxProfile, ReferenceTimestamp, SamplingInterval, StackHandle, ThreadHandle,
    Timestamp,
};
use rprof_profile::{FrameId, FrameKind, Profile, StackId};

use crate::{interval_ns, period_is_time, selected_samples, title, ExportError, ExportOptions};

/// Writes `profile` in the Firefox Profiler's processed format into `out`.
pub fn render(
    profile: &Profile,
    options: &ExportOptions,
    mut out: impl Write,
) -> Result<(), ExportError> {
    let fx = build(profile, options)?;
    serde_json::to_writer(&mut out, &fx).map_err(std::io::Error::from)?;
    out.flush()?;
    Ok(())
}

/// The Firefox Profiler profile for `profile`.
pub fn build(profile: &Profile, options: &ExportOptions) -> Result<FxProfile, ExportError> {
    let selected = selected_samples(profile, &options.selection);
    let Some(first) = selected.first().map(|&(_, s, _)| s.time) else {
        return Err(ExportError::NoSamples);
    };
    let interval = SamplingInterval::from_nanos(interval_ns(profile).unwrap_or(1_000_000));
    let start =
        ReferenceTimestamp::from_millis_since_unix_epoch(profile.header.start_unix_ns as f64 / 1e6);
    let mut fx = FxProfile::new(&title(profile), start, interval);
    fx.set_os_name("Linux");
    // Frames are names already: nothing for the profiler to symbolicate.
    fx.set_symbolicated(true);
    let user = fx.add_category("User", CategoryColor::Yellow);
    let kernel = fx.add_category("Kernel", CategoryColor::Orange);
    let inlined = fx.add_category("Inlined", CategoryColor::LightBlue);
    let truncated = fx.add_category("Truncated", CategoryColor::DarkGray);
    let waiting = fx.add_category("Off-CPU wait", CategoryColor::Blue);
    let category = |kind: FrameKind, inline: bool| -> CategoryPairHandle {
        match (kind, inline) {
            (FrameKind::Kernel, _) => kernel.into(),
            (FrameKind::Truncated, _) => truncated.into(),
            // The reason frame (`[lock]`, ...) of an off-CPU stack.
            (FrameKind::Wait, _) => waiting.into(),
            (FrameKind::User, true) => inlined.into(),
            (FrameKind::User, false) => user.into(),
        }
    };
    let at = |time: u64| Timestamp::from_nanos_since_reference(time.saturating_sub(first));

    // Processes and threads, each created at its first sample, in pid/tid order.
    let mut firsts: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for &(_, sample, _) in &selected {
        firsts
            .entry((sample.pid, sample.tid))
            .or_insert(sample.time);
    }
    let mut processes: HashMap<u32, ProcessHandle> = HashMap::new();
    let mut threads: HashMap<u32, ThreadHandle> = HashMap::new();
    for (&(pid, tid), &time) in &firsts {
        let process = *processes.entry(pid).or_insert_with(|| {
            let name = profile
                .processes
                .get(&pid)
                .map(|p| p.name.as_str())
                .filter(|n| !n.is_empty())
                .map_or_else(|| format!("pid {pid}"), str::to_string);
            let process_first = firsts
                .range((pid, 0)..=(pid, u32::MAX))
                .map(|(_, &t)| t)
                .min()
                .unwrap_or(time);
            fx.add_process(&name, pid, at(process_first))
        });
        let thread = fx.add_thread(process, tid, at(time), tid == pid);
        let name = profile
            .threads
            .get(&tid)
            .map(|t| t.name.as_str())
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("tid {tid}"), str::to_string);
        fx.set_thread_name(thread, &name);
        threads.insert(tid, thread);
    }

    let timed = period_is_time(profile);
    let mut labels: HashMap<FrameId, FrameInfo> = HashMap::new();
    let mut stacks: HashMap<(u32, StackId), Option<StackHandle>> = HashMap::new();
    for &(index, sample, _) in &selected {
        let Some(&thread) = threads.get(&sample.tid) else {
            continue;
        };
        // A stack is built once per thread and reused by every sample that has it.
        let stack_id = profile.sample_stack(index);
        let stack = match stacks.get(&(sample.tid, stack_id)) {
            Some(&stack) => stack,
            None => {
                let frames: Vec<FrameInfo> = profile
                    .stack(stack_id)
                    .iter()
                    .rev()
                    .map(|&id| {
                        labels
                            .entry(id)
                            .or_insert_with(|| {
                                let info = profile.frame(id);
                                FrameInfo {
                                    frame: Frame::Label(fx.intern_string(&info.function)),
                                    category_pair: category(info.kind, info.inlined),
                                    flags: FrameFlags::empty(),
                                }
                            })
                            .clone()
                    })
                    .collect();
                let stack = fx.intern_stack_frames(thread, frames.into_iter());
                stacks.insert((sample.tid, stack_id), stack);
                stack
            }
        };
        let cpu = if timed {
            CpuDelta::from_nanos(sample.period)
        } else {
            CpuDelta::ZERO
        };
        fx.add_sample(thread, at(sample.time), stack, cpu, 1);
    }
    Ok(fx)
}
