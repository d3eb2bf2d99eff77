//! Counter values as the kernel returns them, and the group read format
//! (`PERF_FORMAT_GROUP | TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING | ID`). The bytes are parsed by
//! `rprof-perf` (the one parser of perf layouts), which trusts nothing; this module turns them
//! into readings.

use perf_event_open_sys::bindings::{
    PERF_FORMAT_GROUP, PERF_FORMAT_ID, PERF_FORMAT_TOTAL_TIME_ENABLED,
    PERF_FORMAT_TOTAL_TIME_RUNNING,
};
use rprof_perf::parse::{parse_read_values, ReadValues};

/// The read format of every counter: grouped values with ids and both times, for scaling.
pub const READ_FORMAT: u64 = (PERF_FORMAT_GROUP
    | PERF_FORMAT_TOTAL_TIME_ENABLED
    | PERF_FORMAT_TOTAL_TIME_RUNNING
    | PERF_FORMAT_ID) as u64;

/// What one counter gave for one run (or one thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// The kernel cannot count this event on this machine.
    NotSupported,
    /// Opened and read: the raw count and the times the counter was enabled and running (ns).
    Counted {
        /// Raw count (not scaled).
        value: u64,
        /// Time the counter was enabled (ns).
        enabled: u64,
        /// Time the counter was actually on the PMU (ns); less than `enabled` when multiplexed.
        running: u64,
    },
}

impl Reading {
    /// The count scaled for multiplexing (`value * enabled / running`), or `None` when the
    /// counter never ran (`<not counted>`) or is not supported.
    pub fn scaled(&self) -> Option<f64> {
        match *self {
            Reading::NotSupported => None,
            Reading::Counted {
                value,
                enabled,
                running,
            } => {
                if running == 0 || enabled == 0 {
                    None
                } else if running >= enabled {
                    Some(value as f64)
                } else {
                    Some(value as f64 * enabled as f64 / running as f64)
                }
            }
        }
    }

    /// `self - other` for counted readings (saturating), used to take children's counts out of
    /// an inherited total. `NotSupported` stays so.
    pub fn minus(&self, other: &Reading) -> Reading {
        match (*self, *other) {
            (
                Reading::Counted {
                    value,
                    enabled,
                    running,
                },
                Reading::Counted {
                    value: v2,
                    enabled: e2,
                    running: r2,
                },
            ) => Reading::Counted {
                value: value.saturating_sub(v2),
                enabled: enabled.saturating_sub(e2),
                running: running.saturating_sub(r2),
            },
            (a, _) => a,
        }
    }

    /// Combines the readings of one task's counter opened on two different CPUs: counts and
    /// running times add up; the enabled time is the task's, the same on every CPU (the
    /// counter is enabled while the task runs anywhere, running only on its own CPU), so the
    /// larger one is kept. Scaling then only corrects for real multiplexing.
    pub fn merge_cpu(&self, other: &Reading) -> Reading {
        self.combine(other, u64::max)
    }

    /// `self + other` for counted readings (saturating).
    pub fn plus(&self, other: &Reading) -> Reading {
        self.combine(other, u64::saturating_add)
    }

    /// Adds counts and running times; `enabled` combines the enabled times. A reading that is
    /// not supported leaves the other as it is.
    fn combine(&self, other: &Reading, enabled: fn(u64, u64) -> u64) -> Reading {
        match (*self, *other) {
            (
                Reading::Counted {
                    value,
                    enabled: e1,
                    running,
                },
                Reading::Counted {
                    value: v2,
                    enabled: e2,
                    running: r2,
                },
            ) => Reading::Counted {
                value: value.saturating_add(v2),
                enabled: enabled(e1, e2),
                running: running.saturating_add(r2),
            },
            (Reading::NotSupported, b) => b,
            (a, Reading::NotSupported) => a,
        }
    }
}

/// A parsed group read: shared times and `(id, value)` for each member, leader first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRead {
    /// `time_enabled` of the group (ns).
    pub enabled: u64,
    /// `time_running` of the group (ns).
    pub running: u64,
    /// `(id, value)` per member.
    pub values: Vec<(u64, u64)>,
}

impl GroupRead {
    /// The reading of the member with kernel id `id`, if present.
    pub fn reading(&self, id: u64) -> Option<Reading> {
        self.values
            .iter()
            .find(|(i, _)| *i == id)
            .map(|&(_, value)| Reading::Counted {
                value,
                enabled: self.enabled,
                running: self.running,
            })
    }
}

/// The group read format was shorter or stranger than it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed group read: {0}")]
pub struct ReadFormatError(pub String);

impl GroupRead {
    /// The group's values as `rprof-perf` parsed them (members without an id are dropped:
    /// [`READ_FORMAT`] always asks for ids).
    pub fn from_values(values: &ReadValues<'_>) -> GroupRead {
        GroupRead {
            enabled: values.enabled.unwrap_or(0),
            running: values.running.unwrap_or(0),
            values: values
                .iter()
                .filter_map(|c| Some((c.id?, c.value)))
                .collect(),
        }
    }
}

/// Parses `{ nr, time_enabled, time_running, { value, id } * nr }` ([`READ_FORMAT`], with
/// `rprof-perf`'s parser). Returns the read and the number of bytes it used.
pub fn parse_group_read(bytes: &[u8]) -> Result<(GroupRead, usize), ReadFormatError> {
    let (values, used) =
        parse_read_values(READ_FORMAT, bytes).map_err(|e| ReadFormatError(e.to_string()))?;
    Ok((GroupRead::from_values(&values), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn parses_a_group() {
        let b = bytes(&[2, 1000, 500, 77, 11, 88, 12]);
        let (g, used) = parse_group_read(&b).unwrap();
        assert_eq!(used, b.len());
        assert_eq!(g.enabled, 1000);
        assert_eq!(g.running, 500);
        assert_eq!(g.values, [(11, 77), (12, 88)]);
        assert_eq!(
            g.reading(12),
            Some(Reading::Counted {
                value: 88,
                enabled: 1000,
                running: 500
            })
        );
        assert_eq!(g.reading(13), None);
    }

    #[test]
    fn truncated_and_absurd_inputs_are_errors() {
        let full = bytes(&[2, 1000, 500, 77, 11, 88, 12]);
        for len in 0..full.len() {
            assert!(parse_group_read(&full[..len]).is_err(), "len {len}");
        }
        assert!(parse_group_read(&bytes(&[u64::MAX, 1, 1])).is_err());
        // Trailing bytes are not consumed.
        let mut more = full.clone();
        more.extend_from_slice(&[0; 5]);
        assert_eq!(parse_group_read(&more).unwrap().1, full.len());
    }

    #[test]
    fn scaling() {
        let r = |value, enabled, running| Reading::Counted {
            value,
            enabled,
            running,
        };
        assert_eq!(r(100, 10, 10).scaled(), Some(100.0));
        assert_eq!(r(100, 10, 5).scaled(), Some(200.0));
        assert_eq!(r(300, 1000, 250).scaled(), Some(1200.0));
        assert_eq!(r(100, 10, 0).scaled(), None);
        assert_eq!(r(0, 0, 0).scaled(), None);
        assert_eq!(Reading::NotSupported.scaled(), None);
        // running > enabled cannot happen, but must not scale down.
        assert_eq!(r(100, 5, 10).scaled(), Some(100.0));
        assert_eq!(r(10, 100, 50).minus(&r(4, 30, 20)), r(6, 70, 30));
        assert_eq!(r(1, 1, 1).minus(&r(4, 30, 20)), r(0, 0, 0));
        assert_eq!(r(1, 2, 3).plus(&r(4, 5, 6)), r(5, 7, 9));
        assert_eq!(Reading::NotSupported.plus(&r(4, 5, 6)), r(4, 5, 6));
        // A task that ran 60 ns on CPU 0 and 40 ns on CPU 1: not multiplexed.
        let both = r(6, 100, 60).merge_cpu(&r(4, 100, 40));
        assert_eq!(both, r(10, 100, 100));
        assert_eq!(both.scaled(), Some(10.0));
        // Multiplexed to half on each CPU: scaled by 2.
        assert_eq!(r(3, 100, 30).merge_cpu(&r(2, 100, 20)).scaled(), Some(10.0));
    }
}
