//! Which events are opened together as one group.
//!
//! A derived metric divides one counter by another (instructions / cycles, branch-misses /
//! branches, ...). When the PMU has to multiplex, two counters opened separately run at
//! different times, and the ratio mixes two different stretches of the program. Opening the
//! pair as one group makes the kernel schedule them together, so the ratio is over the same
//! time. Events that feed no ratio are opened alone, so that one unsupported or unschedulable
//! event cannot take others down with it. Software events never multiplex and stay alone.

use rprof_events::{Event, EventKind};

use crate::metrics::{denominator_of, same_modifiers};

/// Groups of indices into `events`; each group's first index is its leader. Every index
/// appears in exactly one group; groups keep the order in which their first event was given.
pub fn plan_groups(events: &[Event]) -> Vec<Vec<usize>> {
    // Union-find over "feeds a ratio with" edges between PMU events.
    let mut parent: Vec<usize> = (0..events.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, event) in events.iter().enumerate() {
        if !event.kind.needs_pmu() {
            continue;
        }
        let Some(den) = denominator_of(event) else {
            continue;
        };
        let partner = events
            .iter()
            .enumerate()
            .find(|(j, e)| {
                *j != i
                    && e.type_ == den.0
                    && e.config == den.1
                    && same_modifiers(e, event)
                    && e.kind.needs_pmu()
            })
            .map(|(j, _)| j);
        if let Some(j) = partner {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                // The earlier event becomes the root, so it leads the group.
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                parent[hi] = lo;
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: Vec<Option<usize>> = vec![None; events.len()];
    for i in 0..events.len() {
        let root = find(&mut parent, i);
        match group_of_root[root] {
            Some(g) => groups[g].push(i),
            None => {
                group_of_root[root] = Some(groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// True when `kind` is one that is opened alone regardless of ratios.
pub fn is_software(kind: EventKind) -> bool {
    !kind.needs_pmu()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(spec: &str) -> Vec<Vec<usize>> {
        plan_groups(&rprof_events::parse_list(spec).unwrap())
    }

    #[test]
    fn ratio_partners_share_a_group() {
        // The default set of perf stat.
        assert_eq!(
            plan("task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,branches,branch-misses"),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4, 5], vec![6, 7]]
        );
        assert_eq!(
            plan("cache-misses,cycles,cache-references"),
            vec![vec![0, 2], vec![1]]
        );
        assert_eq!(
            plan("instructions,stalled-cycles-frontend,cycles,stalled-cycles-backend"),
            vec![vec![0, 1, 2, 3]]
        );
        assert_eq!(
            plan("L1-dcache-load-misses,L1-dcache-loads,LLC-loads"),
            vec![vec![0, 1], vec![2]]
        );
    }

    #[test]
    fn modifiers_must_match() {
        assert_eq!(plan("cycles:u,instructions"), vec![vec![0], vec![1]]);
        assert_eq!(plan("cycles:u,instructions:u"), vec![vec![0, 1]]);
    }

    #[test]
    fn software_events_stay_alone() {
        assert_eq!(
            plan("task-clock,cpu-clock,page-faults"),
            vec![vec![0], vec![1], vec![2]]
        );
        assert!(is_software(rprof_events::EventKind::Tracepoint));
        assert_eq!(plan_groups(&[]), Vec::<Vec<usize>>::new());
    }
}
