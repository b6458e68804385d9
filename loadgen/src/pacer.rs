//! Pacing: when each request may be sent. The closed model sends back to back (or
//! at hey's per-worker `-q` rate); the open model follows a `Schedule` of stages
//! whose k-th arrival time is computed exactly, so lateness is measurable.

use std::time::Duration;

use crate::plan::Stage;

/// The open model's arrival schedule: piecewise-linear rate over stages.
/// Arrival k (0-based) is at the time t where the expected count ∫rate = k.
#[derive(Debug, Clone)]
pub struct Schedule {
    stages: Vec<Stage>,
    /// Start time (s) and arrivals before each stage.
    starts: Vec<(f64, f64)>,
    /// End of the schedule, seconds (the stop duration may cut it short).
    end_s: f64,
}

impl Schedule {
    /// `limit` cuts the schedule short (`-z` with stages).
    pub fn new(stages: &[Stage], limit: Option<Duration>) -> Self {
        let mut starts = Vec::with_capacity(stages.len());
        let (mut t, mut n) = (0.0f64, 0.0f64);
        for s in stages {
            starts.push((t, n));
            let d = s.duration.as_secs_f64();
            t += d;
            n += (s.start_rate + s.end_rate) / 2.0 * d;
        }
        let end_s = match limit {
            Some(l) => l.as_secs_f64().min(t),
            None => t,
        };
        Self {
            stages: stages.to_vec(),
            starts,
            end_s,
        }
    }

    pub fn end(&self) -> Duration {
        Duration::from_secs_f64(self.end_s)
    }

    /// Expected arrivals in `[0, t)`.
    pub fn arrivals_before(&self, t: f64) -> f64 {
        let t = t.min(self.end_s);
        if t <= 0.0 {
            return 0.0;
        }
        for (i, s) in self.stages.iter().enumerate() {
            let (t0, n0) = self.starts[i];
            let d = s.duration.as_secs_f64();
            if t <= t0 + d || i == self.stages.len() - 1 {
                let x = (t - t0).min(d);
                let slope = if d > 0.0 {
                    (s.end_rate - s.start_rate) / d
                } else {
                    0.0
                };
                return n0 + s.start_rate * x + slope * x * x / 2.0;
            }
        }
        0.0
    }

    /// Requests the schedule calls for up to `t` seconds: arrivals k with time < t.
    pub fn scheduled_by(&self, t: f64) -> u64 {
        // Arrivals exactly at `t` are not before it; the epsilon absorbs float noise.
        (self.arrivals_before(t) - 1e-9).ceil().max(0.0) as u64
    }

    /// Seconds from the start at which arrival `k` is due, or `None` past the end.
    pub fn at(&self, k: u64) -> Option<f64> {
        let k = k as f64;
        for (i, s) in self.stages.iter().enumerate() {
            let (t0, n0) = self.starts[i];
            let d = s.duration.as_secs_f64();
            let in_stage = (s.start_rate + s.end_rate) / 2.0 * d;
            if k >= n0 + in_stage {
                continue;
            }
            let m = k - n0;
            let (a, b) = (s.start_rate, s.end_rate);
            let x = if (b - a).abs() < 1e-12 {
                m / a
            } else {
                // Solve a·x + (b−a)/(2d)·x² = m for the root in [0, d].
                let c = (b - a) / d;
                (-a + (a * a + 2.0 * c * m).max(0.0).sqrt()) / c
            };
            let t = t0 + x.clamp(0.0, d);
            return (t < self.end_s).then_some(t);
        }
        None
    }

    /// Index of the stage running at `t` seconds (the last one after the end).
    pub fn stage_at(&self, t: f64) -> usize {
        self.starts
            .iter()
            .rposition(|(t0, _)| *t0 <= t)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn steady_rate_is_evenly_spaced() {
        let s = Schedule::new(&[Stage::steady(secs(2), 100.0)], None);
        assert_eq!(s.at(0), Some(0.0));
        assert!((s.at(50).unwrap() - 0.5).abs() < 1e-9);
        assert!((s.at(199).unwrap() - 1.99).abs() < 1e-9);
        assert_eq!(s.at(200), None);
        assert_eq!(s.scheduled_by(2.0), 200);
        assert_eq!(s.scheduled_by(0.5), 50);
        assert_eq!(s.scheduled_by(0.505), 51);
    }

    #[test]
    fn ramp_and_spike_follow_the_integral() {
        let stages = [
            Stage {
                duration: secs(10),
                start_rate: 0.0,
                end_rate: 100.0,
            },
            Stage::steady(secs(1), 1000.0),
        ];
        let s = Schedule::new(&stages, None);
        // The ramp carries 500 arrivals; arrival k is at sqrt(2k/10).
        assert!((s.at(125).unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(s.scheduled_by(10.0), 500);
        assert!((s.at(500).unwrap() - 10.0).abs() < 1e-9);
        assert!((s.at(1000).unwrap() - 10.5).abs() < 1e-9);
        assert_eq!(s.scheduled_by(11.0), 1500);
        assert_eq!(s.at(1500), None);
        assert_eq!(s.stage_at(3.0), 0);
        assert_eq!(s.stage_at(10.2), 1);
        // Times are monotonic across the whole schedule.
        let mut last = -1.0;
        for k in 0..1500 {
            let t = s.at(k).unwrap();
            assert!(t >= last, "arrival {k} at {t} before {last}");
            last = t;
        }
    }

    #[test]
    fn a_limit_cuts_the_schedule() {
        let s = Schedule::new(&[Stage::steady(secs(10), 10.0)], Some(secs(1)));
        assert_eq!(s.end(), secs(1));
        assert_eq!(s.scheduled_by(5.0), 10);
        assert_eq!(s.at(10), None);
        assert!(s.at(9).is_some());
    }

    #[test]
    fn zero_rate_stage_schedules_nothing() {
        let s = Schedule::new(
            &[Stage::steady(secs(1), 0.0), Stage::steady(secs(1), 10.0)],
            None,
        );
        assert!((s.at(0).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(s.scheduled_by(1.0), 0);
        assert_eq!(s.scheduled_by(2.0), 10);
    }
}
