//! An rprof profile as timeline [`Input`]: one lane per thread of the profile, grouped by
//! process, each with its lifetime and its on-CPU samples and their named stacks.
//!
//! Lifetimes: a thread starts at its `Fork` record, else at its first name (`Comm`), else at
//! its first sample, else at the start of the recording; a sample before the start found so
//! far moves it (the thread existed before it was named); it ends at its
//! `Exit` record, else at the end of the recording (it was still running when recording
//! stopped). The recording spans the earliest to the latest time of any record read.
//!
//! Off-CPU intervals (a profile recorded with `rprof record --off-cpu`): each becomes a
//! [`Span`](crate::Span) of its thread in `add_off_cpu`, with
//! [`State::from_reason`](crate::State::from_reason) and its stack interned like the samples'
//! ones, and the stretches between them `Running` spans.

use rprof_profile::{FrameKind, Profile, StackId};
use rustc_hash::FxHashMap as HashMap;

use crate::{Input, Process, Sample, Span, StackRef, Stacks, State, Thread};

/// How [`from_profile`] builds the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromProfileOptions {
    /// Merge inlined functions into their callers (default: an inlined function is a frame of
    /// its own, marked `[inlined]`).
    pub merge_inline: bool,
}

/// The timeline input of `profile`: its threads, their lifetimes, their samples' stacks.
pub fn from_profile(profile: &Profile, options: &FromProfileOptions) -> Input {
    let (start, end) = recording_span(profile);
    let mut stacks = Stacks::default();
    // Each stack of the profile is interned once, the first time a sample uses it.
    let mut interned: Vec<Option<Option<StackRef>>> = vec![None; profile.stacks().len()];
    let frame_names: Vec<String> = profile
        .frames()
        .iter()
        .map(|f| match f.kind {
            FrameKind::Kernel => format!("{} [kernel]", f.function),
            _ if f.inlined => format!("{} [inlined]", f.function),
            _ => f.function.clone(),
        })
        .collect();
    let mut stack_of = |stacks: &mut Stacks, id: StackId| -> Option<StackRef> {
        let slot = interned.get_mut(id.0 as usize)?;
        *slot.get_or_insert_with(|| {
            let frames = profile.stack(id);
            let names = frames
                .iter()
                .rev()
                .filter(|f| !(options.merge_inline && profile.frame(**f).inlined))
                .map(|f| frame_names[f.0 as usize].as_str());
            stacks.intern(names)
        })
    };

    let mut processes: Vec<Process> = Vec::new();
    for thread in profile.threads.values() {
        let first_name = thread.names.iter().map(|n| n.since).find(|&t| t > 0);
        let lane = Thread {
            tid: thread.tid,
            name: if thread.name.is_empty() {
                format!("[tid {}]", thread.tid)
            } else {
                thread.name.clone()
            },
            // Until the samples are seen: u64::MAX for no known start.
            start: thread.created.or(first_name).unwrap_or(u64::MAX),
            end: thread.exited.unwrap_or(end),
            spans: Vec::new(),
            samples: Vec::new(),
        };
        match processes.iter_mut().find(|p| p.pid == thread.pid) {
            Some(process) => process.threads.push(lane),
            None => processes.push(Process {
                pid: thread.pid,
                name: profile
                    .processes
                    .get(&thread.pid)
                    .map(|p| p.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("[pid {}]", thread.pid)),
                threads: vec![lane],
            }),
        }
    }
    processes.sort_by_key(|p| p.pid);
    for process in &mut processes {
        // The main thread first, then by thread id.
        let pid = process.pid;
        process.threads.sort_by_key(|t| (t.tid != pid, t.tid));
    }

    let mut lanes: HashMap<u32, (usize, usize)> = HashMap::default();
    for (p, process) in processes.iter().enumerate() {
        for (t, thread) in process.threads.iter().enumerate() {
            lanes.insert(thread.tid, (p, t));
        }
    }
    for (index, sample) in profile.samples.iter().enumerate() {
        let stack = stack_of(&mut stacks, profile.sample_stack(index));
        let lane = lanes
            .get(&sample.tid)
            .and_then(|&(p, t)| processes.get_mut(p)?.threads.get_mut(t));
        if let Some(lane) = lane {
            // A sample before the thread's known start (its first name came later) moves the
            // start.
            lane.start = lane.start.min(sample.time);
            lane.samples.push(Sample {
                time: sample.time,
                stack,
            });
        }
    }

    for lane in processes.iter_mut().flat_map(|p| p.threads.iter_mut()) {
        if lane.start == u64::MAX {
            lane.start = start;
        }
    }

    let mut notes = Vec::new();
    if profile.lost > 0 {
        notes.push(format!(
            "The kernel lost {} samples (its ring buffer was full): gaps in running lanes may \
             be lost samples.",
            profile.lost
        ));
    }
    notes.extend(profile.warnings.iter().cloned());

    let title = if profile.header.command.is_empty() {
        match profile.header.target_pid {
            Some(pid) => format!("rprof timeline: process {pid}"),
            None => "rprof timeline".to_string(),
        }
    } else {
        format!("rprof timeline: {}", profile.header.command.join(" "))
    };
    let mut input = Input {
        title,
        start,
        end,
        sample_ns: sample_ns(profile),
        off_cpu: false,
        notes,
        processes,
        stacks,
    };
    if profile.has_off_cpu() {
        add_off_cpu(profile, &mut input, &mut stack_of);
    }
    input
}

/// Adds what the switch records of an `--off-cpu` profile say about each thread
/// ([`Profile::thread_activity`]): its lifetime, one [`Span`] per off-CPU interval with the
/// state of its reason and the stack it left the CPU in (the reason's frame on top), and a
/// `Running` span for each stretch between them, so that running time is exact rather than
/// sampled. Sets [`Input::off_cpu`].
fn add_off_cpu(
    profile: &Profile,
    input: &mut Input,
    stack_of: &mut dyn FnMut(&mut Stacks, StackId) -> Option<StackRef>,
) {
    input.off_cpu = true;
    let Input {
        processes, stacks, ..
    } = input;
    let mut lanes: HashMap<u32, &mut Thread> = processes
        .iter_mut()
        .flat_map(|p| p.threads.iter_mut())
        .map(|t| (t.tid, t))
        .collect();
    for activity in profile.thread_activity() {
        let Some(lane) = lanes.get_mut(&activity.tid) else {
            continue;
        };
        lane.start = lane.start.min(activity.start);
        lane.end = lane.end.max(activity.end);
        let mut running_from = activity.start;
        for interval in &activity.off_cpu {
            if interval.start > running_from {
                lane.spans.push(Span {
                    start: running_from,
                    end: interval.start,
                    state: State::Running,
                    stack: None,
                });
            }
            lane.spans.push(Span {
                start: interval.start,
                end: interval.end.max(interval.start),
                state: State::from_reason(interval.reason.name()),
                stack: stack_of(stacks, interval.stack),
            });
            running_from = running_from.max(interval.end);
        }
        if activity.end > running_from {
            lane.spans.push(Span {
                start: running_from,
                end: activity.end,
                state: State::Running,
                stack: None,
            });
        }
    }
}

/// The earliest and latest time of the recording (perf clock): thread creations, exits and
/// names, and samples.
fn recording_span(profile: &Profile) -> (u64, u64) {
    let mut start = u64::MAX;
    let mut end = 0;
    let mut see = |t: u64| {
        start = start.min(t);
        end = end.max(t);
    };
    for thread in profile.threads.values() {
        thread.created.into_iter().for_each(&mut see);
        thread.exited.into_iter().for_each(&mut see);
        thread
            .names
            .iter()
            .filter(|n| n.since > 0)
            .for_each(|n| see(n.since));
    }
    for sample in &profile.samples {
        see(sample.time);
    }
    if start > end {
        (0, 0)
    } else {
        (start, end)
    }
}

/// How long one sample stands for: the sampling interval at the recorded frequency, or the
/// period of a clock event sampled by period; 1 ms when neither says.
fn sample_ns(profile: &Profile) -> u64 {
    const DEFAULT: u64 = 1_000_000;
    let header = &profile.header;
    if let Some(hz) = header.frequency.filter(|&hz| hz > 0) {
        return (1_000_000_000 / hz).max(1);
    }
    match header.period {
        Some(period) if matches!(header.event.as_str(), "cpu-clock" | "task-clock") => {
            period.max(1)
        }
        _ => DEFAULT,
    }
}
