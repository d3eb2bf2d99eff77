//! Small text helpers shared by the renderers (and `rprof-diff`): thousands separators,
//! percentages, durations, dates, command lines.

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // The first group has 1 to 3 digits, every later one 3.
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(&digits[..head]);
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A percentage rounded to two decimals, for JSON.
pub(crate) fn percent2(part: u64, whole: u64) -> f64 {
    (percent(part, whole) * 100.0).round() / 100.0
}

/// Nanoseconds as a human duration: `850 us`, `12.3 ms`, `4.56 s`, `2 min 3.4 s`.
pub(crate) fn duration(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if ns < 1_000_000 {
        format!("{:.0} us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if s < 60.0 {
        format!("{s:.2} s")
    } else {
        let minutes = (s / 60.0).floor();
        format!("{minutes:.0} min {:.1} s", s - minutes * 60.0)
    }
}

/// Nanoseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A command line as a shell would show it: arguments with spaces or quotes are quoted.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars().all(|c| {
                    c.is_alphanumeric()
                        || matches!(c, '-' | '_' | '.' | '/' | '=' | ',' | ':' | '+')
                });
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(duration(850_000), "850 us");
        assert_eq!(duration(12_340_000), "12.3 ms");
        assert_eq!(duration(4_560_000_000), "4.56 s");
        assert_eq!(duration(123_400_000_000), "2 min 3.4 s");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_834_213_000_000_000), "2026-11-28 02:50:13 UTC");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(percent2(1, 3), 33.33);
    }

    #[test]
    fn command_lines_are_quoted() {
        let argv = vec!["./app".to_string(), "a b".into(), "it's".into()];
        assert_eq!(command_line(&argv), "./app 'a b' 'it'\\''s'");
    }
}
