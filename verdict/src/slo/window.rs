//! Window maths: which intervals a window holds, and the merged counts and
//! histogram of a set of intervals judged against an objective.

use super::*;

#[derive(Debug, Clone)]
pub(crate) enum Objective {
    Availability(f64),
    Latency(LatencyTarget),
}

pub(crate) fn objectives(availability: Option<f64>, latency: &[LatencyTarget]) -> Vec<Objective> {
    availability
        .map(Objective::Availability)
        .into_iter()
        .chain(latency.iter().cloned().map(Objective::Latency))
        .collect()
}

/// Counts and merged histogram of a set of intervals.
pub(crate) struct WindowStats {
    intervals: usize,
    requests: u64,
    pub(crate) good: u64,
    pub(crate) bad: u64,
    /// The judged responses (good or all, per `latency-of`).
    latency: Histogram<u64>,
    latency_of: LatencyOf,
    /// The bad responses alone.
    bad_latency: Histogram<u64>,
}

/// Each interval's histograms, decoded once: the judged responses and the bad ones.
pub(crate) struct Histograms {
    judged: Vec<Histogram<u64>>,
    bad: Vec<Histogram<u64>>,
    of: LatencyOf,
}

impl Histograms {
    pub(crate) fn decode(timeline: &[Interval], of: LatencyOf) -> Result<Self, SloError> {
        let each = |of| {
            timeline
                .iter()
                .map(|iv| iv.latency_histogram(of))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            judged: each(of)?,
            bad: each(LatencyOf::Bad)?,
            of,
        })
    }
}

impl WindowStats {
    pub(crate) fn merge(timeline: &[Interval], hists: &Histograms, idx: &[usize]) -> Self {
        let mut s = WindowStats {
            intervals: idx.len(),
            requests: 0,
            good: 0,
            bad: 0,
            latency: new_histogram(),
            latency_of: hists.of,
            bad_latency: new_histogram(),
        };
        // Same bounds everywhere (new_histogram); an out-of-range value cannot
        // occur, and auto-resize covers foreign files.
        s.latency.auto(true);
        s.bad_latency.auto(true);
        for &i in idx {
            let iv = &timeline[i];
            s.requests += iv.requests;
            s.good += iv.good;
            s.bad += iv.bad;
            let _ = s.latency.add(&hists.judged[i]);
            let _ = s.bad_latency.add(&hists.bad[i]);
        }
        s
    }

    pub(crate) fn availability(&self) -> Option<f64> {
        let valid = self.good + self.bad;
        (valid > 0).then(|| self.good as f64 / valid as f64)
    }

    pub(crate) fn percentile_ms(&self, q: f64) -> Option<f64> {
        percentile_ms(&self.latency, q)
    }

    pub(crate) fn check(&self, o: &Objective, binding: bool) -> ObjectiveResult {
        match o {
            Objective::Availability(target) => {
                let measured = self.availability();
                ObjectiveResult {
                    objective: "availability".into(),
                    kind: ObjectiveKind::Availability,
                    target: *target,
                    measured,
                    met: measured.map(|m| m >= *target),
                    binding,
                    latency_of: None,
                    bad_ms: None,
                    measured_min: None,
                    resolution_s: None,
                }
            }
            Objective::Latency(t) => {
                let measured = self.percentile_ms(t.percentile);
                let target = t.max.as_secs_f64() * 1e3;
                ObjectiveResult {
                    objective: t.key.clone(),
                    kind: ObjectiveKind::Latency,
                    target,
                    measured,
                    met: measured.map(|m| m <= target),
                    binding,
                    latency_of: Some(self.latency_of),
                    bad_ms: percentile_ms(&self.bad_latency, t.percentile),
                    measured_min: None,
                    resolution_s: None,
                }
            }
        }
    }

    pub(crate) fn meets_all(&self, objectives: &[Objective]) -> bool {
        self.good + self.bad > 0
            && objectives
                .iter()
                .all(|o| self.check(o, false).met == Some(true))
    }

    pub(crate) fn budget(&self, target: Option<f64>) -> Option<BudgetUse> {
        let target = target?;
        let valid = self.good + self.bad;
        let allowed_bad = (1.0 - target) * valid as f64;
        let consumed_pct = (allowed_bad > 0.0).then(|| self.bad as f64 / allowed_bad * 100.0);
        Some(BudgetUse {
            allowed_bad,
            bad: self.bad,
            consumed_pct,
            remaining_pct: consumed_pct.map(|c| 100.0 - c),
            burn_rate: (valid > 0 && target < 1.0)
                .then(|| (self.bad as f64 / valid as f64) / (1.0 - target)),
        })
    }

    pub(crate) fn analysis(
        &self,
        label: &str,
        start_s: f64,
        end_s: f64,
        checks: Vec<ObjectiveResult>,
        availability_target: Option<f64>,
    ) -> WindowAnalysis {
        let met = if checks.iter().any(|c| c.met == Some(false)) {
            Some(false)
        } else if checks.is_empty() || checks.iter().any(|c| c.met.is_none()) {
            None
        } else {
            Some(true)
        };
        WindowAnalysis {
            label: label.to_string(),
            start_s,
            end_s,
            intervals: self.intervals,
            requests: self.requests,
            good: self.good,
            bad: self.bad,
            availability: self.availability(),
            p50_ms: self.percentile_ms(50.0),
            p95_ms: self.percentile_ms(95.0),
            p99_ms: self.percentile_ms(99.0),
            objectives: checks,
            budget: self.budget(availability_target),
            met,
        }
    }
}

pub(crate) fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q / 100.0) as f64 / 1e3)
}

/// Intervals of `[a, b)` by midpoint; the one containing `a` when none qualifies.
pub(crate) fn window_indices(timeline: &[Interval], a: f64, b: f64) -> Vec<usize> {
    let by_mid: Vec<usize> = timeline
        .iter()
        .enumerate()
        .filter(|(_, iv)| {
            let mid = iv.start_s + iv.duration_s / 2.0;
            mid >= a && mid < b
        })
        .map(|(i, _)| i)
        .collect();
    if !by_mid.is_empty() {
        return by_mid;
    }
    timeline
        .iter()
        .position(|iv| iv.start_s <= a && a < iv.start_s + iv.duration_s)
        .into_iter()
        .collect()
}
