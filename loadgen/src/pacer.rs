//! Pacing: when each request may be sent. The closed model sends back to back (or
//! at hey's per-worker `-q` rate); the open model follows a `Schedule` of stages
//! whose k-th arrival time is computed exactly, so lateness is measurable.

mod poisson;

use std::time::Duration;

use crate::plan::{Arrivals, Stage};

/// The open model's arrival schedule: piecewise-linear rate over stages, with
/// arrivals spaced evenly or as a Poisson process. Either way arrival k (0-based)
/// is at the time t where the expected count ∫rate reaches a level `n_k`: `n_k = k`
/// (uniform), or the (k+1)-th arrival of a unit-rate Poisson process (poisson).
#[derive(Debug)]
pub struct Schedule {
    curve: Curve,
    poisson: Option<poisson::Levels>,
}

/// The expected-arrivals curve Λ(t) = ∫₀ᵗ rate and its inverse.
#[derive(Debug, Clone)]
struct Curve {
    stages: Vec<Stage>,
    /// Start time (s) and arrivals before each stage.
    starts: Vec<(f64, f64)>,
    /// End of the schedule, seconds (the stop duration may cut it short).
    end_s: f64,
}

impl Schedule {
    /// `limit` cuts the schedule short (`-z` with stages); `seed` draws the
    /// Poisson arrivals (the same seed, the same times).
    pub fn new(stages: &[Stage], limit: Option<Duration>, arrivals: Arrivals, seed: u64) -> Self {
        let curve = Curve::new(stages, limit);
        let poisson = match arrivals {
            Arrivals::Uniform => None,
            Arrivals::Poisson => Some(poisson::Levels::new(seed, &curve)),
        };
        Self { curve, poisson }
    }

    pub fn end(&self) -> Duration {
        Duration::from_secs_f64(self.curve.end_s)
    }

    /// Expected arrivals in `[0, t)` (uniform: exactly the arrivals there, up to rounding).
    pub fn arrivals_before(&self, t: f64) -> f64 {
        self.curve.before(t)
    }

    /// Requests the schedule calls for up to `t` seconds: arrivals k with time < t.
    pub fn scheduled_by(&self, t: f64) -> u64 {
        match &self.poisson {
            // Arrivals exactly at `t` are not before it; the epsilon absorbs float noise.
            None => (self.curve.before(t) - 1e-9).ceil().max(0.0) as u64,
            Some(p) => p.count_before(t, &self.curve),
        }
    }

    /// Seconds from the start at which arrival `k` is due, or `None` past the end.
    pub fn at(&self, k: u64) -> Option<f64> {
        match &self.poisson {
            None => self.curve.time_of(k as f64),
            Some(p) => p.time(k, &self.curve),
        }
    }

    /// Index of the stage running at `t` seconds (the last one after the end).
    pub fn stage_at(&self, t: f64) -> usize {
        self.curve
            .starts
            .iter()
            .rposition(|(t0, _)| *t0 <= t)
            .unwrap_or(0)
    }
}

impl Curve {
    fn new(stages: &[Stage], limit: Option<Duration>) -> Self {
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

    /// Λ(t): expected arrivals in `[0, t)`, up to the end.
    fn before(&self, t: f64) -> f64 {
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

    /// Λ⁻¹(n): the time at which the expected count reaches `n`, or `None`
    /// when that is not before the end.
    fn time_of(&self, n: f64) -> Option<f64> {
        for (i, s) in self.stages.iter().enumerate() {
            let (t0, n0) = self.starts[i];
            let d = s.duration.as_secs_f64();
            let in_stage = (s.start_rate + s.end_rate) / 2.0 * d;
            if n >= n0 + in_stage {
                continue;
            }
            let m = n - n0;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn uniform(stages: &[Stage], limit: Option<Duration>) -> Schedule {
        Schedule::new(stages, limit, Arrivals::Uniform, 0)
    }

    fn poisson(stages: &[Stage], limit: Option<Duration>, seed: u64) -> Schedule {
        Schedule::new(stages, limit, Arrivals::Poisson, seed)
    }

    /// Every arrival time, in order, until the schedule ends.
    fn times(s: &Schedule) -> Vec<f64> {
        (0..).map_while(|k| s.at(k)).collect()
    }

    /// Coefficient of variation of the gaps between arrivals.
    fn gap_cv(times: &[f64]) -> f64 {
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        var.sqrt() / mean
    }

    fn ramp(duration: Duration, from: f64, to: f64) -> Stage {
        Stage {
            duration,
            start_rate: from,
            end_rate: to,
        }
    }

    #[test]
    fn steady_rate_is_evenly_spaced() {
        let s = uniform(&[Stage::steady(secs(2), 100.0)], None);
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
        let s = uniform(&stages, None);
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
        let s = uniform(&[Stage::steady(secs(10), 10.0)], Some(secs(1)));
        assert_eq!(s.end(), secs(1));
        assert_eq!(s.scheduled_by(5.0), 10);
        assert_eq!(s.at(10), None);
        assert!(s.at(9).is_some());
    }

    #[test]
    fn zero_rate_stage_schedules_nothing() {
        let s = uniform(
            &[Stage::steady(secs(1), 0.0), Stage::steady(secs(1), 10.0)],
            None,
        );
        assert!((s.at(0).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(s.scheduled_by(1.0), 0);
        assert_eq!(s.scheduled_by(2.0), 10);
    }

    #[test]
    fn poisson_times_are_the_seeds() {
        let stages = [Stage::steady(secs(10), 1000.0)];
        let a = times(&poisson(&stages, None, 7));
        assert_eq!(
            a,
            times(&poisson(&stages, None, 7)),
            "same seed, same times"
        );
        assert_ne!(a, times(&poisson(&stages, None, 8)));
        // Asked out of order (a worker that took k long ago), a block is drawn
        // again exactly.
        let s = poisson(&stages, None, 7);
        assert_eq!(s.at(9000), Some(a[9000]));
        assert_eq!(s.at(3), Some(a[3]));
        assert_eq!(s.at(5000), Some(a[5000]));
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "times are in order");
    }

    #[test]
    fn poisson_keeps_the_stage_rate_with_gaps_of_cv_one() {
        let stages = [Stage::steady(secs(100), 1000.0)];
        let p = times(&poisson(&stages, None, 1));
        // 100 000 expected, σ ≈ 316: 2 % is over 6σ.
        let rate = p.len() as f64 / 100.0;
        assert!((rate - 1000.0).abs() < 20.0, "mean rate {rate}");
        let cv = gap_cv(&p);
        assert!((cv - 1.0).abs() < 0.03, "Poisson gaps have CV 1, got {cv}");
        let u = times(&uniform(&stages, None));
        assert_eq!(u.len(), 100_000);
        assert!(gap_cv(&u) < 1e-6, "uniform gaps are all alike");
    }

    #[test]
    fn poisson_follows_ramps() {
        // 0 → 1000 req/s over 20 s: 2 500 expected in the first half, 7 500 in
        // the second (σ 50 and 87), then a steady 200 req/s for 10 s.
        let stages = [ramp(secs(20), 0.0, 1000.0), ramp(secs(10), 200.0, 200.0)];
        for seed in 1..=3 {
            let s = poisson(&stages, None, seed);
            let first = s.scheduled_by(10.0) as f64;
            let second = s.scheduled_by(20.0) as f64 - first;
            let last = s.scheduled_by(30.0) as f64 - first - second;
            assert!((first - 2500.0).abs() < 250.0, "seed {seed}: {first}");
            assert!((second - 7500.0).abs() < 450.0, "seed {seed}: {second}");
            assert!((last - 2000.0).abs() < 250.0, "seed {seed}: {last}");
            // Decreasing ramps too: 1000 → 0 mirrors the counts.
            let down = poisson(&[ramp(secs(20), 1000.0, 0.0)], None, seed);
            let early = down.scheduled_by(10.0) as f64;
            assert!((early - 7500.0).abs() < 450.0, "seed {seed}: {early}");
        }
    }

    #[test]
    fn poisson_scheduled_by_counts_the_arrivals_before() {
        let stages = [
            Stage::steady(secs(1), 0.0),
            ramp(secs(3), 500.0, 3000.0),
            Stage::steady(secs(2), 1500.0),
        ];
        // Cut short by a limit, as `-z` does.
        let s = poisson(&stages, Some(Duration::from_millis(5500)), 3);
        let all = times(&s);
        assert!(all.iter().all(|&t| (1.0..5.5).contains(&t)), "{all:?}");
        for i in 0..=120 {
            let t = i as f64 * 0.05;
            let before = all.partition_point(|&x| x < t) as u64;
            assert_eq!(s.scheduled_by(t), before, "t = {t}");
        }
        // Exactly at an arrival: it is not before itself.
        for k in [0, 1023, 1024, 2047, 5000] {
            assert_eq!(s.scheduled_by(all[k]), k as u64);
        }
        assert_eq!(s.scheduled_by(100.0), all.len() as u64);
        assert_eq!(s.at(all.len() as u64), None);
    }

    #[test]
    fn poisson_serves_workers_on_many_threads() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let stages = [Stage::steady(secs(20), 1000.0)];
        let want = times(&poisson(&stages, None, 5));
        let s = poisson(&stages, None, 5);
        let next = AtomicU64::new(0);
        let mut got: Vec<(u64, f64)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            match s.at(k) {
                                Some(t) => mine.push((k, t)),
                                None => return mine,
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        got.sort_by_key(|&(k, _)| k);
        let got: Vec<f64> = got.into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, want);
    }
}
