//! Numbers as the diff shows them: thousands separators, signed durations and percentages,
//! spelled as `rprof report` spells its own (thousands and command lines are report's).

pub(crate) use rprof_report::format::{command_line, thousands};

/// Nanoseconds as a human duration: `850 us`, `12.3 ms`, `4.56 s`, `2 min 3.4 s`.
pub(crate) fn duration(ns: f64) -> String {
    let ns = ns.abs();
    if ns < 1e6 {
        format!("{:.0} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns < 60e9 {
        format!("{:.2} s", ns / 1e9)
    } else {
        let minutes = (ns / 60e9).floor();
        format!("{minutes:.0} min {:.1} s", ns / 1e9 - minutes * 60.0)
    }
}

/// `+` or `-` (a change that rounds to nothing has no sign).
fn sign(v: f64, zero: bool) -> &'static str {
    if zero {
        ""
    } else if v < 0.0 {
        "-"
    } else {
        "+"
    }
}

/// A change of estimated time, `+12.3 ms`, or of events, `+1,234 page-faults` (`unit`).
pub(crate) fn signed_weight(v: f64, time: bool, unit: &str) -> String {
    if time {
        let zero = v.abs() < 0.5e3;
        format!("{}{}", sign(v, zero), duration(v))
    } else {
        let rounded = v.abs().round() as u64;
        format!("{}{} {unit}", sign(v, rounded == 0), thousands(rounded))
    }
}

/// Estimated time, or events with their unit.
pub(crate) fn weight(v: f64, time: bool, unit: &str) -> String {
    if time {
        duration(v)
    } else {
        format!("{} {unit}", thousands(v.abs().round() as u64))
    }
}

/// A change of share in percentage points, `+16.67pp`.
pub(crate) fn signed_points(v: f64) -> String {
    let zero = v.abs() < 0.005;
    format!("{}{:.2}pp", sign(v, zero), v.abs())
}

/// A p-value in few characters: `0.31`, `0.0042`, `3e-12`, `<1e-300`.
pub(crate) fn p_value(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else if p >= 1e-4 {
        format!("{p:.4}")
    } else if p > 0.0 {
        format!("{p:.0e}")
    } else {
        "<1e-300".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(signed_weight(493_000_000.0, true, ""), "+493.0 ms");
        assert_eq!(signed_weight(-1_500_000_000.0, true, ""), "-1.50 s");
        assert_eq!(signed_weight(100.0, true, ""), "0 us");
        assert_eq!(
            signed_weight(-1234.0, false, "page-faults"),
            "-1,234 page-faults"
        );
        assert_eq!(signed_points(16.666), "+16.67pp");
        assert_eq!(signed_points(-0.001), "0.00pp");
        assert_eq!(p_value(0.5), "0.50");
        assert_eq!(p_value(0.00042), "0.0004");
        assert_eq!(p_value(3.2e-12), "3e-12");
        assert_eq!(p_value(0.0), "<1e-300");
    }
}
