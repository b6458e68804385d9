//! The statistics behind a verdict: each metric's value over a side's pooled
//! intervals, and a seeded bootstrap interval on the head − base difference that
//! keeps the structure of the noise (whole runs, then blocks of adjacent intervals).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sample::{BinScale, IntervalSample, RunSample, Side};

/// The latency percentiles compared, as (name, percent).
pub const LATENCY_QUANTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9)];

/// A run with fewer intervals than this has no usable interval-to-interval
/// variation; it is resampled request by request instead (and the report says so).
pub const MIN_INTERVALS: usize = 4;

/// Availability changes below this (0.01 percentage points, one request in ten
/// thousand) are never a regression, whatever the base error rate.
pub const AVAILABILITY_FLOOR: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Index into [`LATENCY_QUANTILES`].
    Latency(usize),
    Availability,
    Throughput,
    TimeToRecover,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Latency(0),
        Metric::Latency(1),
        Metric::Latency(2),
        Metric::Latency(3),
        Metric::Availability,
        Metric::Throughput,
        Metric::TimeToRecover,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency(i) => LATENCY_QUANTILES[i].0,
            Metric::Availability => "availability",
            Metric::Throughput => "throughput",
            Metric::TimeToRecover => "time to recover",
        }
    }

    /// Whether a larger value is the bad direction.
    pub fn higher_is_worse(self) -> bool {
        matches!(self, Metric::Latency(_) | Metric::TimeToRecover)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Same,
    Worse,
    /// The interval says worse, but a side has one run and the change is not
    /// outside the runs' own interval-to-interval spread: a burst of machine
    /// noise would look the same. Not a regression until repeated runs show it.
    Unconfirmed,
    /// No interval could be formed (e.g. one run per side for time to recover).
    Untested,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Same => "same",
            Verdict::Worse => "worse",
            Verdict::Unconfirmed => "unconfirmed",
            Verdict::Untested => "n/a",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Noise threshold as a fraction (0.05 = 5 %).
    pub threshold: f64,
    /// Two-sided confidence as a fraction (0.95).
    pub confidence: f64,
    pub resamples: usize,
    pub seed: u64,
    /// Latency changes smaller than this (µs) are never a regression.
    pub min_latency_change_us: f64,
    /// Time-to-recover changes smaller than this (s) are never a regression:
    /// recovery is measured at timeline resolution.
    pub min_recover_change_s: f64,
}

/// One metric compared. `interval` bounds head − base in the metric's unit.
#[derive(Debug, Clone)]
pub struct Finding {
    pub metric: Metric,
    pub base: Option<f64>,
    pub head: Option<f64>,
    pub interval: Option<(f64, f64)>,
    /// The smallest change that can count (threshold, or its floor).
    pub tolerance: f64,
    pub verdict: Verdict,
}

impl Finding {
    pub fn change(&self) -> Option<f64> {
        Some(self.head? - self.base?)
    }
}

/// What a side's (possibly resampled) intervals measure.
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    pub latency_us: [Option<f64>; 4],
    pub availability: Option<f64>,
    pub throughput: Option<f64>,
    pub time_to_recover_s: Option<f64>,
}

impl Estimate {
    pub fn get(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Latency(i) => self.latency_us[i],
            Metric::Availability => self.availability,
            Metric::Throughput => self.throughput,
            Metric::TimeToRecover => self.time_to_recover_s,
        }
    }
}

/// Interval contents added with weights: an exact merge of their histograms.
struct Pool<'a> {
    /// Bin values: exact for the point estimate, coarse for resamples.
    values_us: &'a [u64],
    coarse: bool,
    counts: Vec<u64>,
    latency_count: u64,
    good: u64,
    bad: u64,
    requests: u64,
    duration_s: f64,
    recover_sum: f64,
    recover_runs: usize,
    runs: usize,
}

impl<'a> Pool<'a> {
    fn new(scale: &'a BinScale, coarse: bool) -> Self {
        let values_us = scale.values_us(coarse);
        Self {
            values_us,
            coarse,
            counts: vec![0; values_us.len()],
            latency_count: 0,
            good: 0,
            bad: 0,
            requests: 0,
            duration_s: 0.0,
            recover_sum: 0.0,
            recover_runs: 0,
            runs: 0,
        }
    }

    fn clear(&mut self) {
        self.counts.fill(0);
        self.latency_count = 0;
        self.good = 0;
        self.bad = 0;
        self.requests = 0;
        self.duration_s = 0.0;
        self.recover_sum = 0.0;
        self.recover_runs = 0;
        self.runs = 0;
    }

    fn add_run_meta(&mut self, run: &RunSample) {
        self.runs += 1;
        if let Some(t) = run.time_to_recover_s {
            self.recover_sum += t;
            self.recover_runs += 1;
        }
    }

    fn bins<'i>(&self, i: &'i IntervalSample) -> &'i [(u32, u64)] {
        if self.coarse {
            &i.coarse
        } else {
            &i.bins
        }
    }

    fn add(&mut self, i: &IntervalSample) {
        for &(bin, c) in self.bins(i) {
            self.counts[bin as usize] += c;
            self.latency_count += c;
        }
        self.good += i.good;
        self.bad += i.bad;
        self.requests += i.requests;
        self.duration_s += i.duration_s;
    }

    /// Poisson bootstrap of the interval's requests: each request appears
    /// Poisson(1) times, so each count becomes a Poisson draw around itself.
    fn add_poisson(&mut self, i: &IntervalSample, rng: &mut ChaCha8Rng) {
        for &(bin, c) in self.bins(i) {
            let c = poisson(rng, c as f64);
            self.counts[bin as usize] += c;
            self.latency_count += c;
        }
        self.good += poisson(rng, i.good as f64);
        self.bad += poisson(rng, i.bad as f64);
        self.requests += poisson(rng, i.requests as f64);
        self.duration_s += i.duration_s;
    }

    fn estimate(&self) -> Estimate {
        let mut latency_us = [None; 4];
        if self.latency_count > 0 {
            // The same rank rule as HdrHistogram's value_at_quantile, all
            // percentiles in one pass (they are ascending).
            let ranks = LATENCY_QUANTILES.map(|(_, q)| rank(q, self.latency_count));
            let mut k = 0;
            let mut seen = 0u64;
            for (bin, &c) in self.counts.iter().enumerate() {
                seen += c;
                while seen >= ranks[k] {
                    latency_us[k] = Some(self.values_us[bin] as f64);
                    k += 1;
                    if k == ranks.len() {
                        break;
                    }
                }
                if k == ranks.len() {
                    break;
                }
            }
        }
        let valid = self.good + self.bad;
        Estimate {
            latency_us,
            availability: (valid > 0).then(|| self.good as f64 / valid as f64),
            throughput: (self.duration_s > 0.0).then(|| self.requests as f64 / self.duration_s),
            time_to_recover_s: (self.runs > 0 && self.recover_runs == self.runs)
                .then(|| self.recover_sum / self.recover_runs as f64),
        }
    }
}

fn rank(percent: f64, total: u64) -> u64 {
    ((percent / 100.0 * total as f64).ceil() as u64).max(1)
}

/// The estimate over every interval of every run of a side: the exact merge.
pub fn point(scale: &BinScale, side: &Side) -> Estimate {
    let mut pool = Pool::new(scale, false);
    for run in &side.runs {
        pool.add_run_meta(run);
        run.intervals.iter().for_each(|i| pool.add(i));
    }
    pool.estimate()
}

/// Moving-block length for `n` intervals: n^(1/3), the usual rate, so that
/// correlation between neighbouring intervals (a stall spanning two) is kept.
fn block_len(n: usize) -> usize {
    ((n as f64).cbrt().round() as usize).clamp(1, n.max(1))
}

/// One bootstrap draw of a side. Runs are resampled first when there are
/// several (run-to-run noise is the largest on shared machines, and only
/// several runs show it); within a run, blocks of adjacent intervals.
fn draw(side: &Side, pool: &mut Pool<'_>, rng: &mut ChaCha8Rng) {
    pool.clear();
    let r = side.runs.len();
    for k in 0..r {
        let run = if r > 1 {
            &side.runs[rng.gen_range(0..r)]
        } else {
            &side.runs[k]
        };
        pool.add_run_meta(run);
        let n = run.intervals.len();
        if n < MIN_INTERVALS {
            run.intervals.iter().for_each(|i| pool.add_poisson(i, rng));
            continue;
        }
        let b = block_len(n);
        let mut taken = 0;
        while taken < n {
            let start = rng.gen_range(0..=n - b);
            for i in &run.intervals[start..(start + b).min(start + n - taken)] {
                pool.add(i);
                taken += 1;
            }
        }
    }
}

/// Compares every metric; deterministic for a given seed.
pub fn compare(scale: &BinScale, base: &Side, head: &Side, s: &Settings) -> Vec<Finding> {
    let base_point = point(scale, base);
    let head_point = point(scale, head);

    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut base_pool = Pool::new(scale, true);
    let mut head_pool = Pool::new(scale, true);
    let mut diffs: Vec<Vec<f64>> = vec![Vec::with_capacity(s.resamples); Metric::ALL.len()];
    for _ in 0..s.resamples {
        draw(base, &mut base_pool, &mut rng);
        draw(head, &mut head_pool, &mut rng);
        let (b, h) = (base_pool.estimate(), head_pool.estimate());
        for (m, d) in Metric::ALL.iter().zip(diffs.iter_mut()) {
            if let (Some(b), Some(h)) = (b.get(*m), h.get(*m)) {
                d.push(h - b);
            }
        }
    }

    Metric::ALL
        .iter()
        .zip(diffs)
        .filter_map(|(&metric, mut d)| {
            let (base_v, head_v) = (base_point.get(metric), head_point.get(metric));
            if base_v.is_none() && head_v.is_none() {
                return None;
            }
            // Time to recover is one number per run: with a single run on a
            // side there is nothing to resample.
            let resamplable =
                metric != Metric::TimeToRecover || (base.runs.len() > 1 && head.runs.len() > 1);
            let interval = (resamplable
                && base_v.is_some()
                && head_v.is_some()
                && d.len() * 2 >= s.resamples.max(1))
            .then(|| {
                d.sort_by(f64::total_cmp);
                let alpha = 1.0 - s.confidence;
                (quantile(&d, alpha / 2.0), quantile(&d, 1.0 - alpha / 2.0))
            });
            let tolerance = tolerance(metric, base_v.unwrap_or(0.0), s);
            let mut verdict = verdict(metric, interval, tolerance);
            let repeated = base.runs.len() > 1 && head.runs.len() > 1;
            if verdict == Verdict::Worse
                && !repeated
                && !outside_spread(scale, metric, base, head, tolerance)
            {
                verdict = Verdict::Unconfirmed;
            }
            Some(Finding {
                metric,
                base: base_v,
                head: head_v,
                interval,
                tolerance,
                verdict,
            })
        })
        .collect()
}

/// The metric of each interval of every run of a side, one value per interval
/// that has one (an interval of only errors has no latency).
fn per_interval(scale: &BinScale, side: &Side, metric: Metric) -> Vec<f64> {
    let mut pool = Pool::new(scale, false);
    let mut out = Vec::new();
    for run in &side.runs {
        for i in &run.intervals {
            pool.clear();
            pool.add(i);
            out.extend(pool.estimate().get(metric));
        }
    }
    out
}

/// Whether a change is one that no burst of noise explains: most of head's
/// intervals (its median interval) are worse, by more than the tolerance, than
/// base's worst interval. A burst moves a few intervals and so the pooled tail,
/// never the median interval; a run with too few intervals shows no spread at
/// all and so confirms nothing.
fn outside_spread(
    scale: &BinScale,
    metric: Metric,
    base: &Side,
    head: &Side,
    tolerance: f64,
) -> bool {
    let enough = |side: &Side| side.runs.iter().all(|r| r.intervals.len() >= MIN_INTERVALS);
    if metric == Metric::TimeToRecover || !enough(base) || !enough(head) {
        return false;
    }
    let mut b = per_interval(scale, base, metric);
    let mut h = per_interval(scale, head, metric);
    if b.is_empty() || h.is_empty() {
        return false;
    }
    b.sort_by(f64::total_cmp);
    h.sort_by(f64::total_cmp);
    let head_median = quantile(&h, 0.5);
    if metric.higher_is_worse() {
        head_median - b[b.len() - 1] > tolerance
    } else {
        b[0] - head_median > tolerance
    }
}

fn tolerance(metric: Metric, base: f64, s: &Settings) -> f64 {
    match metric {
        Metric::Latency(_) => (s.threshold * base).max(s.min_latency_change_us),
        // The error rate must grow by the threshold, relatively: availability
        // itself moves too little (100 % → 99 % is −1 %) for a relative test.
        Metric::Availability => (s.threshold * (1.0 - base)).max(AVAILABILITY_FLOOR),
        Metric::Throughput => s.threshold * base,
        Metric::TimeToRecover => (s.threshold * base).max(s.min_recover_change_s),
    }
}

/// A change counts only when the whole interval lies beyond the tolerance: the
/// threshold stands for run-to-run noise the intervals cannot see, the interval
/// for the noise they can.
fn verdict(metric: Metric, interval: Option<(f64, f64)>, tolerance: f64) -> Verdict {
    let Some((lo, hi)) = interval else {
        return Verdict::Untested;
    };
    let (worse, better) = if metric.higher_is_worse() {
        (lo > tolerance, hi < -tolerance)
    } else {
        (hi < -tolerance, lo > tolerance)
    };
    match (worse, better) {
        (true, _) => Verdict::Worse,
        (_, true) => Verdict::Better,
        _ => Verdict::Same,
    }
}

/// Linear interpolation between order statistics of sorted `v`.
fn quantile(v: &[f64], p: f64) -> f64 {
    let x = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (i, f) = (x.floor() as usize, x.fract());
    if i + 1 < v.len() {
        v[i] + (v[i + 1] - v[i]) * f
    } else {
        v[i]
    }
}

/// Knuth's method for small means; a rounded normal beyond, where Poisson is
/// close to normal and Knuth's loop would be slow.
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p: f64 = rng.gen();
        while p > limit {
            k += 1;
            p *= rng.gen::<f64>();
        }
        return k;
    }
    // Box–Muller.
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (lambda + lambda.sqrt() * z).round().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fixture::{input, service};
    use crate::compare::sample::build_sides;

    fn settings() -> Settings {
        Settings {
            threshold: 0.05,
            confidence: 0.95,
            resamples: 1000,
            seed: 7,
            min_latency_change_us: 1000.0,
            min_recover_change_s: 1.0,
        }
    }

    fn run(base: Vec<Results>, head: Vec<Results>, s: &Settings) -> Vec<Finding> {
        let name = |side: &str, n: usize| format!("{side}-{n}.json");
        let base: Vec<_> = base
            .into_iter()
            .enumerate()
            .map(|(n, r)| input(&name("base", n), r))
            .collect();
        let head: Vec<_> = head
            .into_iter()
            .enumerate()
            .map(|(n, r)| input(&name("head", n), r))
            .collect();
        let (scale, b, h) = build_sides(&base, &head).unwrap();
        compare(&scale, &b, &h, s)
    }

    fn verdict_of(findings: &[Finding], name: &str) -> Verdict {
        findings
            .iter()
            .find(|f| f.metric.name() == name)
            .unwrap()
            .verdict
    }

    fn worse(findings: &[Finding]) -> Vec<&'static str> {
        findings
            .iter()
            .filter(|f| f.verdict == Verdict::Worse)
            .map(|f| f.metric.name())
            .collect()
    }

    use loadgen::Results;

    #[test]
    fn pooled_percentiles_equal_the_merged_histogram() {
        let a = service(1, 20, 300, 2000.0, 0, 0);
        let b = service(2, 15, 400, 5000.0, 0, 0);
        let mut merged = a.total_histogram().unwrap();
        merged.add(b.total_histogram().unwrap()).unwrap();
        let runs = vec![input("a", a), input("b", b)];
        let (scale, side, _) = build_sides(&runs, &runs).unwrap();
        let est = point(&scale, &side);
        for (k, (_, q)) in LATENCY_QUANTILES.iter().enumerate() {
            assert_eq!(
                est.latency_us[k],
                Some(merged.value_at_quantile(q / 100.0) as f64),
                "p{q}"
            );
        }
    }

    /// The last interval of a run usually covers only part of its width; the
    /// throughput estimate divides by the time the run actually took.
    #[test]
    fn throughput_counts_a_partial_last_interval_by_the_time_it_covered() {
        let mut r = service(3, 10, 200, 2000.0, 0, 0);
        let last = r.timeline.last_mut().unwrap();
        last.requests = 50;
        r.run.duration_s = 9.25;
        let runs = vec![input("a", r)];
        let (scale, side, _) = build_sides(&runs, &runs).unwrap();
        let est = point(&scale, &side);
        assert_eq!(est.throughput, Some((9.0 * 200.0 + 50.0) / 9.25));
    }

    #[test]
    fn same_distribution_is_same() {
        for seed in 0..3 {
            let f = run(
                vec![service(seed, 30, 500, 2000.0, 0, 0)],
                vec![service(seed + 100, 30, 500, 2000.0, 0, 0)],
                &settings(),
            );
            assert_eq!(worse(&f), Vec::<&str>::new(), "seed {seed}: {f:#?}");
            assert!(
                f.iter().all(|f| f.verdict != Verdict::Better),
                "seed {seed}: {f:#?}"
            );
        }
    }

    #[test]
    fn a_20ms_delay_is_worse_at_every_percentile() {
        let f = run(
            vec![service(1, 30, 500, 2000.0, 0, 0)],
            vec![service(2, 30, 500, 2000.0, 20_000, 0)],
            &settings(),
        );
        assert_eq!(worse(&f), vec!["p50", "p95", "p99", "p99.9"]);
        // The same change the other way round is an improvement, not a regression.
        let f = run(
            vec![service(2, 30, 500, 2000.0, 20_000, 0)],
            vec![service(1, 30, 500, 2000.0, 0, 0)],
            &settings(),
        );
        assert_eq!(worse(&f), Vec::<&str>::new());
        assert_eq!(verdict_of(&f, "p50"), Verdict::Better);
    }

    #[test]
    fn availability_from_100_to_99_percent_is_worse() {
        let f = run(
            vec![service(1, 30, 500, 2000.0, 0, 0)],
            vec![service(2, 30, 500, 2000.0, 0, 10)],
            &settings(),
        );
        assert_eq!(worse(&f), vec!["availability"]);
        let a = f.iter().find(|f| f.metric == Metric::Availability).unwrap();
        assert_eq!(a.base, Some(1.0));
        assert!((a.head.unwrap() - 0.99).abs() < 0.003, "{a:?}");
    }

    #[test]
    fn a_change_below_the_threshold_is_same_and_above_it_worse() {
        // No absolute floor, so the relative threshold alone decides.
        let s = Settings {
            min_latency_change_us: 0.0,
            ..settings()
        };
        let base = || vec![service(1, 40, 500, 20_000.0, 0, 0)];
        let small = run(base(), vec![service(2, 40, 500, 20_000.0, 400, 0)], &s);
        assert_eq!(verdict_of(&small, "p50"), Verdict::Same, "{small:#?}");
        let large = run(base(), vec![service(2, 40, 500, 20_000.0, 3_000, 0)], &s);
        assert_eq!(verdict_of(&large, "p50"), Verdict::Worse, "{large:#?}");
    }

    /// `run` with 300 ms stalls added to 75 requests of each of the given
    /// intervals (13 % of those intervals' requests).
    fn with_stalls(
        mut run: Results,
        seed: u64,
        intervals: impl IntoIterator<Item = usize>,
    ) -> Results {
        let n = run.timeline.len();
        let stalled = service(seed, n, 75, 2000.0, 300_000, 0);
        for k in intervals {
            let mut h = loadgen::results::decode_histogram(&run.timeline[k].histogram).unwrap();
            h.add(loadgen::results::decode_histogram(&stalled.timeline[k].histogram).unwrap())
                .unwrap();
            run.timeline[k].histogram = loadgen::results::encode_histogram(&h);
            run.timeline[k].good += 75;
            run.timeline[k].requests += 75;
        }
        run
    }

    #[test]
    fn a_periodic_stall_is_worse_in_the_tail() {
        // Every fifth interval stalls (3 % of requests overall), in each of
        // three head runs: repeated runs confirm it.
        let base = (1..=3).map(|k| service(k, 30, 500, 2000.0, 0, 0)).collect();
        let head = (4..=6)
            .map(|k| {
                with_stalls(
                    service(k, 30, 500, 2000.0, 0, 0),
                    k + 10,
                    (0..30).step_by(5),
                )
            })
            .collect();
        let f = run(base, head, &settings());
        assert_eq!(verdict_of(&f, "p99"), Verdict::Worse, "{f:#?}");
        assert_eq!(verdict_of(&f, "p50"), Verdict::Same, "{f:#?}");
    }

    /// The false alarm of a busy machine: one run per side, and a burst of
    /// noise (a neighbour stalling one interval in four) in head. Its pooled p99
    /// is far worse, but the noise moved a quarter of the intervals, not the run:
    /// unconfirmed, which is no regression.
    #[test]
    fn a_burst_in_one_run_per_side_is_unconfirmed_not_a_regression() {
        for seed in 0..3 {
            let base = service(seed, 30, 500, 2000.0, 0, 0);
            let head = with_stalls(
                service(seed + 50, 30, 500, 2000.0, 0, 0),
                seed + 90,
                (2..30).step_by(4),
            );
            let f = run(vec![base], vec![head], &settings());
            assert_eq!(
                verdict_of(&f, "p99"),
                Verdict::Unconfirmed,
                "seed {seed}: {f:#?}"
            );
            assert_eq!(worse(&f), Vec::<&str>::new(), "seed {seed}: {f:#?}");
            let p99 = f.iter().find(|f| f.metric.name() == "p99").unwrap();
            assert!(
                p99.head.unwrap() > 5.0 * p99.base.unwrap(),
                "the burst is large: {p99:?}"
            );
        }
    }

    /// A shift of every interval is outside the runs' interval-to-interval
    /// spread, so one run per side is enough to call it.
    #[test]
    fn a_shift_of_every_interval_is_worse_with_one_run_per_side() {
        let f = run(
            vec![service(1, 30, 500, 2000.0, 0, 0)],
            vec![service(2, 30, 500, 6000.0, 0, 0)],
            &settings(),
        );
        assert_eq!(worse(&f), vec!["p50", "p95", "p99", "p99.9"], "{f:#?}");
    }

    #[test]
    fn run_to_run_noise_with_several_runs_is_same() {
        // Each side has a fast and a slow run (a noisy neighbour in one of them):
        // pooled, the sides are alike, and resampling runs shows the spread.
        let f = run(
            vec![
                service(1, 20, 300, 2000.0, 0, 0),
                service(2, 20, 300, 2600.0, 0, 0),
            ],
            vec![
                service(3, 20, 300, 2600.0, 0, 0),
                service(4, 20, 300, 2000.0, 0, 0),
            ],
            &Settings {
                min_latency_change_us: 0.0,
                ..settings()
            },
        );
        assert_eq!(worse(&f), Vec::<&str>::new(), "{f:#?}");
    }

    #[test]
    fn short_runs_fall_back_to_requests_and_still_catch_a_delay() {
        let same = run(
            vec![service(1, 1, 200, 2000.0, 0, 0)],
            vec![service(2, 1, 200, 2000.0, 0, 0)],
            &settings(),
        );
        assert_eq!(worse(&same), Vec::<&str>::new(), "{same:#?}");
        // One interval shows no interval-to-interval spread: flagged, unconfirmed.
        let slow = run(
            vec![service(1, 1, 200, 2000.0, 0, 0)],
            vec![service(2, 1, 200, 2000.0, 20_000, 0)],
            &settings(),
        );
        assert_eq!(verdict_of(&slow, "p50"), Verdict::Unconfirmed, "{slow:#?}");
        assert_eq!(verdict_of(&slow, "p99"), Verdict::Unconfirmed, "{slow:#?}");
        // Repeated short runs confirm it.
        let slow = run(
            (1..=3).map(|k| service(k, 1, 200, 2000.0, 0, 0)).collect(),
            (4..=6)
                .map(|k| service(k, 1, 200, 2000.0, 20_000, 0))
                .collect(),
            &settings(),
        );
        assert!(
            worse(&slow).contains(&"p50") && worse(&slow).contains(&"p99"),
            "{slow:#?}"
        );
    }

    #[test]
    fn output_is_reproducible_for_a_seed() {
        let go = || {
            run(
                vec![
                    service(1, 60, 200, 2000.0, 0, 1),
                    service(5, 60, 200, 2000.0, 0, 1),
                ],
                vec![
                    service(2, 60, 200, 2100.0, 0, 2),
                    service(6, 60, 200, 2000.0, 0, 1),
                ],
                &settings(),
            )
        };
        let (a, b) = (go(), go());
        let key = |f: &[Finding]| {
            f.iter()
                .map(|f| (f.interval, f.verdict))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn time_to_recover_needs_two_runs_per_side() {
        let with_ttr = |seed, t: f64| {
            let mut r = service(seed, 10, 100, 2000.0, 0, 0);
            let faults = [
                serde_json::json!({ "start_s": 2.0, "time_to_recover_s": t / 2.0 }),
                serde_json::json!({ "start_s": 5.0, "time_to_recover_s": t }),
            ];
            r.extra.insert(
                crate::record::SECTION_KEY.into(),
                serde_json::json!({ "slo": { "faults": faults } }),
            );
            r
        };
        let one = run(vec![with_ttr(1, 2.0)], vec![with_ttr(2, 9.0)], &settings());
        assert_eq!(verdict_of(&one, "time to recover"), Verdict::Untested);
        let three = run(
            vec![with_ttr(1, 2.0), with_ttr(2, 2.5), with_ttr(3, 2.0)],
            vec![with_ttr(4, 9.0), with_ttr(5, 9.5), with_ttr(6, 9.0)],
            &settings(),
        );
        assert_eq!(verdict_of(&three, "time to recover"), Verdict::Worse);
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        let v = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(quantile(&v, 0.0), 0.0);
        assert_eq!(quantile(&v, 0.5), 20.0);
        assert_eq!(quantile(&v, 0.125), 5.0);
        assert_eq!(quantile(&v, 1.0), 40.0);
    }
}
