//! Two capacity searches compared, so CI can gate on capacity and not only on
//! latency at a fixed rate. A capacity is worse only when it fell by more than
//! the search's resolution and the two intervals do not overlap: anything less
//! is inside what the search can tell apart.

use serde::Serialize;

use super::search::Outcome;
use super::{CapacityRecord, SearchRecord};

/// One instance count's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityChange {
    pub instances: Option<u32>,
    pub base: String,
    pub head: String,
    /// head capacity / base capacity − 1, when both found one.
    pub change: Option<f64>,
    /// `same`, `better`, `worse` or `not comparable`.
    pub verdict: &'static str,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityComparison {
    pub rows: Vec<CapacityChange>,
    /// Differences that make the comparison doubtful (host, settings).
    pub warnings: Vec<String>,
    pub regression: bool,
}

/// Compares `head` against `base`, instance count by instance count.
pub fn compare(base: &CapacityRecord, head: &CapacityRecord) -> CapacityComparison {
    let mut warnings = Vec::new();
    if base.host.hostname != head.host.hostname || base.host.cpus != head.host.cpus {
        warnings.push(format!(
            "different hosts: {} ({} cpus) → {} ({} cpus); capacities are comparable on one machine only",
            base.host.hostname, base.host.cpus, head.host.hostname, head.host.cpus
        ));
    }
    if base.objectives != head.objectives {
        warnings.push("the searches judged different objectives".into());
    }
    if base.interrupted || head.interrupted {
        warnings.push("an interrupted search is compared: its answer may be partial".into());
    }
    let resolution = base.settings.resolution.max(head.settings.resolution);
    let mut rows = Vec::new();
    for b in &base.searches {
        let Some(h) = head.searches.iter().find(|h| h.instances == b.instances) else {
            warnings.push(format!(
                "head has no search at {} instance(s)",
                b.instances.map_or("—".to_string(), |n| n.to_string())
            ));
            continue;
        };
        rows.push(row(b, h, resolution));
    }
    let regression = rows.iter().any(|r| r.verdict == "worse");
    CapacityComparison {
        rows,
        warnings,
        regression,
    }
}

fn interval(s: &SearchRecord) -> String {
    let a = &s.answer;
    let r = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
    match a.outcome {
        Outcome::Found => format!("[{}, {}] req/s", r(a.last_pass_rps), r(a.first_fail_rps)),
        Outcome::BelowStart => format!("below the start rate {} req/s", r(a.first_fail_rps)),
        Outcome::GeneratorBound => format!("≥ {} req/s (generator-bound)", r(a.last_pass_rps)),
        Outcome::AboveMax => format!("≥ {} req/s (the maximum)", r(a.last_pass_rps)),
        Outcome::Interrupted => "interrupted".into(),
        Outcome::Aborted => "aborted".into(),
    }
}

fn row(b: &SearchRecord, h: &SearchRecord, resolution: f64) -> CapacityChange {
    let (ba, ha) = (&b.answer, &h.answer);
    let mut out = CapacityChange {
        instances: b.instances,
        base: interval(b),
        head: interval(h),
        change: None,
        verdict: "not comparable",
        why: String::new(),
    };
    // The lower end each side proved, and the upper end it found (a lower bound
    // has none).
    let bounds = |s: &SearchRecord| -> Option<(f64, f64)> {
        let a = &s.answer;
        match a.outcome {
            Outcome::Found => Some((a.last_pass_rps?, a.first_fail_rps?)),
            Outcome::BelowStart => Some((0.0, a.first_fail_rps?)),
            Outcome::GeneratorBound | Outcome::AboveMax => Some((a.last_pass_rps?, f64::INFINITY)),
            Outcome::Interrupted | Outcome::Aborted => None,
        }
    };
    let (Some((blo, bhi)), Some((hlo, hhi))) = (bounds(b), bounds(h)) else {
        out.why = "an interrupted or aborted search has no answer".into();
        return out;
    };
    if let (Some(bc), Some(hc)) = (ba.capacity_rps(), ha.capacity_rps()) {
        out.change = Some(hc / bc - 1.0);
    }
    if hhi <= blo && blo > 0.0 && (blo - hlo) / blo > resolution {
        out.verdict = "worse";
        out.why = format!(
            "head's interval lies below base's and its capacity fell by more than the \
             resolution ({:.0} %)",
            resolution * 100.0
        );
    } else if bhi <= hlo && hlo > 0.0 && (hlo - blo) / hlo > resolution {
        out.verdict = "better";
        out.why = "head's interval lies above base's".into();
    } else if bhi.is_infinite() || hhi.is_infinite() {
        out.verdict = "not comparable";
        out.why = "a lower bound (generator-bound or the maximum) overlaps the other side".into();
    } else {
        out.verdict = "same";
        out.why = format!(
            "the intervals overlap or differ by less than the resolution ({:.0} %)",
            resolution * 100.0
        );
    }
    out
}

impl CapacityComparison {
    pub fn text(&self) -> String {
        let mut out = String::from("capacity: base → head\n");
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for r in &self.rows {
            out.push_str(&format!(
                "  {}: {} → {}{}: {} ({})\n",
                r.instances
                    .map_or("target".to_string(), |n| format!("{n} instance(s)")),
                r.base,
                r.head,
                r.change
                    .map(|c| format!(" ({:+.1} %)", c * 100.0))
                    .unwrap_or_default(),
                r.verdict,
                r.why
            ));
        }
        out.push_str(if self.regression {
            "REGRESSION: capacity fell\n"
        } else {
            "no capacity regression\n"
        });
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("## Capacity: base → head\n\n");
        for w in &self.warnings {
            out.push_str(&format!("> warning: {w}\n\n"));
        }
        out.push_str("| instances | base | head | change | verdict |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.instances.map_or("—".to_string(), |n| n.to_string()),
                r.base,
                r.head,
                r.change
                    .map(|c| format!("{:+.1} %", c * 100.0))
                    .unwrap_or_else(|| "—".into()),
                r.verdict
            ));
        }
        out.push_str(if self.regression {
            "\n**REGRESSION: capacity fell**\n"
        } else {
            "\nno capacity regression\n"
        });
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison serialises") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{Answer, SearchRecord};

    fn search(outcome: Outcome, lo: Option<f64>, hi: Option<f64>) -> SearchRecord {
        SearchRecord {
            instances: Some(2),
            writes: 0,
            answer: Answer {
                outcome,
                last_pass_rps: lo,
                first_fail_rps: hi,
                binding: None,
                knee_rps: None,
                confirmation_disagreed: false,
                summary: String::new(),
            },
            probes: Vec::new(),
        }
    }

    #[test]
    fn a_fall_beyond_the_resolution_with_disjoint_intervals_is_worse() {
        let b = search(Outcome::Found, Some(400.0), Some(420.0));
        let h = search(Outcome::Found, Some(300.0), Some(315.0));
        let r = row(&b, &h, 0.05);
        assert_eq!(r.verdict, "worse");
        assert!((r.change.unwrap() + 0.25).abs() < 1e-9);
    }

    #[test]
    fn overlapping_or_small_changes_are_the_same() {
        let b = search(Outcome::Found, Some(400.0), Some(420.0));
        assert_eq!(
            row(&b, &search(Outcome::Found, Some(390.0), Some(410.0)), 0.05).verdict,
            "same"
        );
        // Disjoint, but by less than the resolution.
        assert_eq!(
            row(&b, &search(Outcome::Found, Some(385.0), Some(400.0)), 0.05).verdict,
            "same"
        );
        assert_eq!(
            row(&b, &search(Outcome::Found, Some(500.0), Some(520.0)), 0.05).verdict,
            "better"
        );
    }

    #[test]
    fn failing_the_start_rate_below_base_is_worse_and_lower_bounds_do_not_judge() {
        let b = search(Outcome::Found, Some(400.0), Some(420.0));
        assert_eq!(
            row(&b, &search(Outcome::BelowStart, None, Some(100.0)), 0.05).verdict,
            "worse"
        );
        assert_eq!(
            row(
                &b,
                &search(Outcome::GeneratorBound, Some(300.0), None),
                0.05
            )
            .verdict,
            "not comparable"
        );
        assert_eq!(
            row(&b, &search(Outcome::Interrupted, None, None), 0.05).verdict,
            "not comparable"
        );
    }
}
