//! The facts about a recording that head every report: what, when, how many samples, what was
//! lost.

use rprof_profile::Profile;

use crate::select::{Selection, StackCounts};

/// What a report says about the recording as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Samples in the profile.
    pub samples: u64,
    /// Samples the selection keeps.
    pub selected: u64,
    /// Samples the kernel reported lost.
    pub lost: u64,
    /// Selected samples whose stack was truncated.
    pub truncated: u64,
    /// Times the kernel throttled sampling.
    pub throttled: u64,
    /// Wall-clock length of the recording in nanoseconds: from the summary of a finished
    /// recording, else the span of the sample times.
    pub duration_ns: u64,
    /// The recording finished (the profile has its summary).
    pub complete: bool,
    /// Threads with at least one selected sample.
    pub threads: usize,
    /// Processes with at least one selected sample.
    pub processes: usize,
}

impl Overview {
    /// Gathers the overview of `profile` for `selection`; `counts` are its selected samples.
    pub fn new(profile: &Profile, selection: &Selection, counts: &StackCounts) -> Overview {
        let truncated = crate::truncated_samples(profile, selection);
        let duration_ns = match &profile.summary {
            Some(s) if s.end_unix_ns > profile.header.start_unix_ns => {
                s.end_unix_ns - profile.header.start_unix_ns
            }
            _ => {
                let min = profile.samples.iter().map(|s| s.time).min().unwrap_or(0);
                let max = profile.samples.iter().map(|s| s.time).max().unwrap_or(0);
                max - min
            }
        };
        let mut tids: Vec<u32> = counts.entries.iter().map(|(_, who, _)| who.tid).collect();
        tids.sort_unstable();
        tids.dedup();
        let mut pids: Vec<u32> = counts.entries.iter().map(|(_, who, _)| who.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        Overview {
            samples: profile.samples.len() as u64,
            selected: counts.samples,
            // Counted from the records: rprof-profile checks the summary against them and
            // warns when they differ (issue 9.4).
            lost: profile.lost,
            truncated,
            throttled: profile.throttled,
            duration_ns,
            complete: profile.summary.is_some(),
            threads: tids.len(),
            processes: pids.len(),
        }
    }
}

/// True when the event's period is nanoseconds of CPU time.
pub(crate) fn period_is_time(event: &str) -> bool {
    let base = event.split(':').next().unwrap_or(event);
    matches!(base, "cpu-clock" | "task-clock")
}
