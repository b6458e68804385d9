//! How SLO numbers are written for people: targets, measured values, units.

use super::*;

/// How reports print a target or a measurement of this kind.
pub fn format_value(kind: ObjectiveKind, v: f64) -> String {
    match kind {
        ObjectiveKind::Availability => format_availability(v),
        ObjectiveKind::Latency => format_ms(v),
        ObjectiveKind::Recovery => format!("{v:.1} s"),
    }
}

/// 0.99991 → "99.991%": enough digits to tell 99.99 % from 99.9 %, no more.
pub fn format_availability(a: f64) -> String {
    let pct = a * 100.0;
    if pct >= 100.0 {
        "100%".into()
    } else if pct >= 99.0 {
        format!("{:.3}%", ((pct * 1000.0) + 1e-6).floor() / 1000.0)
    } else {
        format!("{:.2}%", ((pct * 100.0) + 1e-6).floor() / 100.0)
    }
}

pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

impl fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectiveKind::Availability => "availability",
            ObjectiveKind::Latency => "latency",
            ObjectiveKind::Recovery => "recovery",
        })
    }
}
