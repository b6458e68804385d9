//! Is a plateau stationary? A queue that is still growing fails a probe even when
//! the window's percentiles look fine, because a longer window would not. The
//! test is Mann–Kendall (is there a monotonic trend at all, distribution-free)
//! and Theil–Sen (how steep, robust to a noisy interval), and a trend only counts
//! when it is both significant and large next to the series' own level.

use serde::{Deserialize, Serialize};

/// One series' trend across a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// "p99" (ms) or "backlog" (requests scheduled but not yet answered).
    pub series: String,
    pub points: usize,
    /// Theil–Sen slope, series units per second.
    pub slope_per_s: f64,
    /// The slope over the window's span: how much the series rose.
    pub rise: f64,
    /// Median of the series.
    pub median: f64,
    /// Mann–Kendall's normal score (positive: rising).
    pub z: f64,
    /// Significant and large: the window is not stationary.
    pub rising: bool,
}

/// One-sided significance for "rising": z above this (p < 0.01).
const Z_RISING: f64 = 2.326;
/// Fewer points than this cannot show a trend; the series is taken as stationary.
pub const MIN_POINTS: usize = 4;

/// Tests `ys` sampled at `ts` (seconds) for a sustained rise larger than
/// `max(share × median, floor)`.
pub fn trend(series: &str, ts: &[f64], ys: &[f64], share: f64, floor: f64) -> Trend {
    let n = ts.len().min(ys.len());
    let level = median(ys[..n].to_vec()).unwrap_or(0.0);
    if n < MIN_POINTS {
        return Trend {
            series: series.into(),
            points: n,
            slope_per_s: 0.0,
            rise: 0.0,
            z: 0.0,
            rising: false,
            median: level,
        };
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let d = ys[j] - ys[i];
            s += (d > 0.0) as i64 - (d < 0.0) as i64;
            if ts[j] > ts[i] {
                slopes.push(d / (ts[j] - ts[i]));
            }
        }
    }
    let slope = median(slopes).unwrap_or(0.0);
    let span = ts[n - 1] - ts[0];
    let rise = slope * span;
    let z = mann_kendall_z(s, n, &ys[..n]);
    Trend {
        series: series.into(),
        points: n,
        slope_per_s: slope,
        rise,
        median: level,
        z,
        rising: z > Z_RISING && rise > (share * level).max(floor),
    }
}

/// Mann–Kendall's S turned into a normal score, with the variance corrected for
/// ties (a backlog of whole requests ties often) and a continuity correction.
fn mann_kendall_z(s: i64, n: usize, ys: &[f64]) -> f64 {
    let mut sorted = ys.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j + 1;
    }
    let n = n as f64;
    let var = (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0;
    if var <= 0.0 {
        return 0.0;
    }
    match s {
        0 => 0.0,
        s if s > 0 => (s as f64 - 1.0) / var.sqrt(),
        s => (s as f64 + 1.0) / var.sqrt(),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn a_steadily_growing_queue_is_rising() {
        // 10 requests more in the queue every second over a base of ~20.
        let ys: Vec<f64> = (0..10)
            .map(|i| 20.0 + 10.0 * i as f64 + (i % 3) as f64)
            .collect();
        let t = trend("backlog", &ts(10), &ys, 0.25, 5.0);
        assert!(t.rising, "{t:?}");
        assert!((t.slope_per_s - 10.0).abs() < 1.5, "{t:?}");
    }

    #[test]
    fn noise_around_a_level_is_stationary() {
        let ys = [12.0, 15.0, 11.0, 14.0, 12.5, 16.0, 11.5, 13.0, 12.0, 14.5];
        let t = trend("p99", &ts(10), &ys, 0.25, 1.0);
        assert!(!t.rising, "{t:?}");
    }

    #[test]
    fn a_significant_but_tiny_rise_is_stationary() {
        // Monotonic, so significant, but 0.9 ms over a 10 ms level.
        let ys: Vec<f64> = (0..10).map(|i| 10.0 + 0.1 * i as f64).collect();
        let t = trend("p99", &ts(10), &ys, 0.25, 1.0);
        assert!(t.z > Z_RISING && !t.rising, "{t:?}");
    }

    #[test]
    fn a_falling_series_and_a_short_one_are_stationary() {
        let ys: Vec<f64> = (0..10).map(|i| 100.0 - 9.0 * i as f64).collect();
        assert!(!trend("p99", &ts(10), &ys, 0.25, 1.0).rising);
        assert!(!trend("p99", &ts(3), &[1.0, 50.0, 900.0], 0.25, 1.0).rising);
    }

    #[test]
    fn ties_do_not_make_a_flat_series_rise() {
        let ys = [3.0, 3.0, 3.0, 4.0, 3.0, 3.0, 4.0, 3.0];
        assert!(!trend("backlog", &ts(8), &ys, 0.25, 5.0).rising);
    }
}
