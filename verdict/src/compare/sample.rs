//! One side of a comparison (base or head) reduced to what the statistics
//! resample: per run, per timeline interval, latency counts on a bin scale shared
//! by both sides, good/bad counts and the interval's rate.

use std::path::PathBuf;

use super::CompareError;
use crate::record::ExperimentSection;
use loadgen::results::{decode_histogram, Results};

/// A results file and where it came from (named in messages), with its
/// experiment section read once (compatibility, interruption and recovery all
/// ask it).
pub struct RunInput {
    pub path: PathBuf,
    pub results: Results,
    /// `None` for a plain load run, or a section this version cannot read
    /// (then `unreadable` says why, and the run compares as a plain load run).
    pub experiment: Option<ExperimentSection>,
    pub unreadable: Option<String>,
}

impl RunInput {
    pub fn new(path: PathBuf, results: Results) -> Self {
        let (experiment, unreadable) = match ExperimentSection::of(&results) {
            Ok(e) => (e, None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            path,
            results,
            experiment,
            unreadable,
        }
    }

    /// Whether the run ended early: the loadgen flag, or (files written before
    /// it was set by `run`) the experiment section's.
    pub fn interrupted(&self) -> bool {
        self.results.run.interrupted || self.experiment.as_ref().is_some_and(|e| e.interrupted)
    }
}

/// The distinct latency values (HDR bucket tops, µs) seen in any interval of
/// either side. Pooling adds counts by bin index, which is exact (the same
/// buckets a merged HdrHistogram would hold) and far cheaper than merging
/// full-range histograms thousands of times.
pub struct BinScale {
    values_us: Vec<u64>,
    /// The same values grouped into bins [`COARSE_WIDTH`] wide, each named by
    /// its largest value: what the bootstrap resamples. An interval bound that
    /// is 0.5 % coarse is ample next to a 5 % threshold, and a run of many
    /// requests then costs a few hundred bins per interval, not thousands.
    coarse_us: Vec<u64>,
}

/// Relative width of a bootstrap bin.
pub const COARSE_WIDTH: f64 = 0.005;

/// One timeline bucket of one run.
pub struct IntervalSample {
    /// (bin index, count), bin indices ascending.
    pub bins: Vec<(u32, u64)>,
    /// The same counts on the coarse bins.
    pub coarse: Vec<(u32, u64)>,
    pub good: u64,
    pub bad: u64,
    pub requests: u64,
    /// Seconds of the interval the run covered: its width, or less for the
    /// run's partial last interval.
    pub duration_s: f64,
}

pub struct RunSample {
    pub intervals: Vec<IntervalSample>,
    /// From the experiment runner's section, when the run had faults.
    pub time_to_recover_s: Option<f64>,
}

/// All runs of one side.
pub struct Side {
    pub runs: Vec<RunSample>,
}

impl BinScale {
    pub fn values_us(&self, coarse: bool) -> &[u64] {
        if coarse {
            &self.coarse_us
        } else {
            &self.values_us
        }
    }
}

impl Side {
    pub fn interval_count(&self) -> usize {
        self.runs.iter().map(|r| r.intervals.len()).sum()
    }

    pub fn requests(&self) -> u64 {
        self.runs
            .iter()
            .flat_map(|r| &r.intervals)
            .map(|i| i.requests)
            .sum()
    }
}

/// Decodes every interval histogram of both sides once and puts them on one
/// bin scale.
pub fn build_sides(
    base: &[RunInput],
    head: &[RunInput],
) -> Result<(BinScale, Side, Side), CompareError> {
    let base_raw = base
        .iter()
        .map(decode_run)
        .collect::<Result<Vec<_>, CompareError>>()?;
    let head_raw = head
        .iter()
        .map(decode_run)
        .collect::<Result<Vec<_>, CompareError>>()?;

    let mut values_us: Vec<u64> = base_raw
        .iter()
        .chain(&head_raw)
        .flat_map(|run| &run.intervals)
        .flat_map(|i| i.values.iter().map(|(v, _)| *v))
        .collect();
    values_us.sort_unstable();
    values_us.dedup();
    // Sorted values have non-decreasing log-keys, so each group is a run.
    let key = |v: u64| ((v.max(1) as f64).ln() / COARSE_WIDTH.ln_1p()).floor() as i64;
    let mut coarse_of = Vec::with_capacity(values_us.len());
    let mut coarse_us: Vec<u64> = Vec::new();
    let mut last_key = None;
    for &v in &values_us {
        if last_key != Some(key(v)) {
            last_key = Some(key(v));
            coarse_us.push(v);
        }
        *coarse_us.last_mut().expect("pushed above") = v;
        coarse_of.push(coarse_us.len() as u32 - 1);
    }
    let scale = BinScale {
        values_us,
        coarse_us,
    };

    let side = |raw: Vec<RawRun>| Side {
        runs: raw
            .into_iter()
            .map(|run| RunSample {
                time_to_recover_s: run.time_to_recover_s,
                intervals: run
                    .intervals
                    .into_iter()
                    .map(|i| {
                        let bins: Vec<(u32, u64)> = i
                            .values
                            .iter()
                            .map(|(v, c)| {
                                let bin = scale
                                    .values_us
                                    .binary_search(v)
                                    .expect("every value is on the scale");
                                (bin as u32, *c)
                            })
                            .collect();
                        let mut coarse: Vec<(u32, u64)> = Vec::new();
                        for &(bin, c) in &bins {
                            let cb = coarse_of[bin as usize];
                            match coarse.last_mut() {
                                Some((last, n)) if *last == cb => *n += c,
                                _ => coarse.push((cb, c)),
                            }
                        }
                        IntervalSample {
                            bins,
                            coarse,
                            good: i.good,
                            bad: i.bad,
                            requests: i.requests,
                            duration_s: i.duration_s,
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let base_side = side(base_raw);
    let head_side = side(head_raw);
    Ok((scale, base_side, head_side))
}

struct RawInterval {
    values: Vec<(u64, u64)>,
    good: u64,
    bad: u64,
    requests: u64,
    duration_s: f64,
}

struct RawRun {
    intervals: Vec<RawInterval>,
    time_to_recover_s: Option<f64>,
}

fn decode_run(input: &RunInput) -> Result<RawRun, CompareError> {
    let r = &input.results;
    let path = input.path.display();
    if r.timeline.is_empty() {
        return Err(CompareError::Invalid(format!(
            "{path} has no timeline intervals ({} requests): nothing to compare",
            r.totals.requests
        )));
    }
    let intervals = r
        .timeline
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let h = decode_histogram(&i.histogram).map_err(|e| {
                CompareError::Invalid(format!("{path}: timeline interval {n}: {e}"))
            })?;
            if !(i.duration_s.is_finite() && i.duration_s >= 0.0) {
                return Err(CompareError::Invalid(format!(
                    "{path}: timeline interval {n} has duration_s {}",
                    i.duration_s
                )));
            }
            Ok(RawInterval {
                values: h
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect(),
                good: i.good,
                bad: i.bad,
                requests: i.requests,
                // The time the run covered, not the width: the last interval
                // is usually partial, and its full width would pull every
                // throughput estimate down.
                duration_s: i.covered_s(r.run.duration_s),
            })
        })
        .collect::<Result<Vec<_>, CompareError>>()?;
    Ok(RawRun {
        intervals,
        time_to_recover_s: time_to_recover(input),
    })
}

/// The slowest recovery among the run's faults, from the experiment runner's
/// SLO analysis (`experiment.slo.faults[].time_to_recover_s`). A fault that did
/// not recover before the run ended counts as the rest of the run, a lower bound.
/// No faults, or no analysis: no metric.
pub fn time_to_recover(input: &RunInput) -> Option<f64> {
    let r = &input.results;
    let faults = input.experiment.as_ref()?.slo.get("faults")?.as_array()?;
    faults
        .iter()
        .map(|f| {
            f.get("time_to_recover_s")
                .and_then(|t| t.as_f64())
                .or_else(|| {
                    let start = f.get("start_s")?.as_f64()?;
                    Some((r.run.duration_s - start).max(0.0))
                })
        })
        .collect::<Option<Vec<f64>>>()?
        .into_iter()
        .reduce(f64::max)
        .filter(|t| t.is_finite())
}
