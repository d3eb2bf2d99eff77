//! Kernel settings that decide what perf_event_open may do, and the online CPUs: the one place
//! rprof reads `kernel.perf_event_*` sysctls.

use std::io;

/// `kernel.perf_event_paranoid` (from `/proc/sys/kernel/perf_event_paranoid`), if readable.
pub fn paranoid() -> Option<i32> {
    read_number("/proc/sys/kernel/perf_event_paranoid")
}

/// `kernel.perf_event_max_sample_rate` (from `/proc/sys/kernel/perf_event_max_sample_rate`),
/// if readable.
pub fn max_sample_rate() -> Option<u64> {
    read_number("/proc/sys/kernel/perf_event_max_sample_rate")
}

/// `kernel.perf_event_max_stack`: the most entries a sampled callchain holds, if readable.
pub fn max_stack() -> Option<u64> {
    read_number("/proc/sys/kernel/perf_event_max_stack")
}

/// `kernel.perf_event_mlock_kb`: KiB of ring buffer an unprivileged user may lock, if readable.
pub fn mlock_kb() -> Option<u64> {
    read_number("/proc/sys/kernel/perf_event_mlock_kb")
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (a list such as `0-3,6`).
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "cannot parse /sys/devices/system/cpu/online: {:?}",
                text.trim()
            ),
        )
    })
}

fn read_number<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parses a kernel CPU list (`0-3,6,8-9`); `None` if malformed.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().ok()?;
                let b: u32 = b.trim().parse().ok()?;
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,6,8-9\n"),
            Some(vec![0, 1, 2, 3, 6, 8, 9])
        );
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
        assert_eq!(parse_cpu_list("0-"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }

    #[test]
    fn this_machine() {
        let cpus = online_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(paranoid().is_some());
        assert!(max_sample_rate().is_some_and(|r| r > 0));
        assert!(max_stack().is_some_and(|n| n > 0));
        assert!(mlock_kb().is_some());
    }
}
