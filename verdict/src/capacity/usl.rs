//! The Universal Scalability Law, C(N) = λN / (1 + σ(N−1) + κN(N−1)): λ is one
//! instance's capacity, σ the share of work that serialises (contention, e.g. one
//! database), κ the cost of keeping instances coherent (crosstalk). Fitted to the
//! capacities measured at several instance counts, then turned into a plan for a
//! target rate — a model, labelled as one, with the measured points beside it.

use serde::{Deserialize, Serialize};

/// A fitted USL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    pub lambda: f64,
    pub sigma: f64,
    pub kappa: f64,
    /// The measured (instances, capacity) points the fit used.
    pub points: Vec<(f64, f64)>,
    /// Coefficient of determination of the predicted capacities (1: exact).
    pub r_squared: f64,
    /// Instance count at which capacity peaks (`None`: no peak, κ = 0).
    pub peak_instances: Option<f64>,
    /// Capacity at the peak, or the ceiling λ/σ approaches without one
    /// (`None`: linear, no ceiling).
    pub ceiling_rps: Option<f64>,
    /// What could not be fitted with these points (fewer than 3 instance counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UslError {
    #[error("a scalability fit needs capacities at 2 or more instance counts, got {0}")]
    TooFewPoints(usize),
    #[error("capacity at N = {0} is not a positive number")]
    NotPositive(f64),
}

impl UslFit {
    /// Fits λ, σ, κ ≥ 0 to `(instances, capacity)` points by least squares on the
    /// linear form N/C = a + b(N−1) + cN(N−1) (a = 1/λ, b = σ/λ, c = κ/λ),
    /// weighted so each point's relative error counts alike. Two instance counts
    /// fit λ and σ only (κ = 0, Amdahl's law), and the fit says so.
    pub fn fit(points: &[(f64, f64)]) -> Result<Self, UslError> {
        if let Some(&(n, _)) = points.iter().find(|(_, c)| !(*c > 0.0 && c.is_finite())) {
            return Err(UslError::NotPositive(n));
        }
        let mut ns: Vec<f64> = points.iter().map(|p| p.0).collect();
        ns.sort_by(f64::total_cmp);
        ns.dedup();
        if ns.len() < 2 {
            return Err(UslError::TooFewPoints(ns.len()));
        }
        let mut notes = Vec::new();
        // Candidate column sets: all three, then with σ or κ held at zero; the
        // feasible one (every coefficient ≥ 0, a > 0) with the least error wins.
        let sets: &[&[usize]] = if ns.len() >= 3 {
            &[&[0, 1, 2], &[0, 1], &[0, 2], &[0]]
        } else {
            notes.push(
                "two instance counts: κ (coherency) cannot be told apart from σ; fitted with κ = 0"
                    .into(),
            );
            &[&[0, 1], &[0]]
        };
        let mut best: Option<([f64; 3], f64)> = None;
        for cols in sets {
            let Some(coef) = weighted_lsq(points, cols) else {
                continue;
            };
            if coef[0] <= 0.0 || coef[1] < 0.0 || coef[2] < 0.0 {
                continue;
            }
            let err = sse(points, &coef);
            if best
                .as_ref()
                .map_or(true, |(_, e)| err < *e * (1.0 - 1e-12))
            {
                best = Some((coef, err));
            }
        }
        let ([a, b, c], _) = best.ok_or(UslError::TooFewPoints(ns.len()))?;
        let (lambda, sigma, kappa) = (1.0 / a, b / a, c / a);
        let mut fit = Self {
            lambda,
            sigma,
            kappa,
            points: points.to_vec(),
            r_squared: 0.0,
            peak_instances: None,
            ceiling_rps: None,
            notes,
        };
        fit.r_squared = fit.r_squared_of(points);
        if ns.len() == 3 {
            fit.notes.push(
                "three instance counts for three parameters: the curve passes through every \
                 point, so R² = 1 says nothing about the model; a fourth count would test it"
                    .into(),
            );
        }
        if kappa > 0.0 && sigma < 1.0 {
            let peak = ((1.0 - sigma) / kappa).sqrt().max(1.0);
            fit.peak_instances = Some(peak);
            fit.ceiling_rps = Some(fit.capacity(peak));
        } else if sigma > 0.0 {
            fit.ceiling_rps = Some(lambda / sigma);
        }
        Ok(fit)
    }

    /// The model's capacity at `n` instances.
    pub fn capacity(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }

    /// C(N) / (N·λ): the share of linear scaling kept at `n` instances.
    pub fn efficiency(&self, n: f64) -> f64 {
        self.capacity(n) / (n * self.lambda)
    }

    /// The smallest instance count whose modelled capacity reaches `rate`, if
    /// one does (before the peak).
    pub fn instances_for(&self, rate: f64) -> Option<u64> {
        let top = self.peak_instances.unwrap_or(f64::INFINITY);
        if self.ceiling_rps.is_some_and(|c| c < rate) {
            return None;
        }
        // C is increasing up to the peak: bisect on whole instance counts.
        let (mut lo, mut hi) = (1u64, 1u64);
        while self.capacity(hi as f64) < rate {
            if hi as f64 >= top || hi > 1 << 40 {
                return None;
            }
            lo = hi;
            hi = hi
                .saturating_mul(2)
                .min(top.floor().max(1.0) as u64)
                .max(hi + 1);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.capacity(mid as f64) >= rate {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    fn r_squared_of(&self, points: &[(f64, f64)]) -> f64 {
        let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
        let tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
        let res: f64 = points
            .iter()
            .map(|&(n, c)| (c - self.capacity(n)).powi(2))
            .sum();
        if tot == 0.0 {
            if res == 0.0 {
                1.0
            } else {
                0.0
            }
        } else {
            1.0 - res / tot
        }
    }
}

/// The regressors of the linear form at `n`: 1, N−1, N(N−1).
fn row(n: f64) -> [f64; 3] {
    [1.0, n - 1.0, n * (n - 1.0)]
}

/// Weighted least squares on the chosen columns (others held at 0); `None`
/// when the normal equations are singular.
fn weighted_lsq(points: &[(f64, f64)], cols: &[usize]) -> Option<[f64; 3]> {
    let k = cols.len();
    let mut m = vec![vec![0.0; k + 1]; k];
    for &(n, c) in points {
        let y = n / c;
        let w = 1.0 / (y * y);
        let x = row(n);
        for (i, &ci) in cols.iter().enumerate() {
            for (j, &cj) in cols.iter().enumerate() {
                m[i][j] += w * x[ci] * x[cj];
            }
            m[i][k] += w * x[ci] * y;
        }
    }
    // Gauss–Jordan with partial pivoting on a k × k system (k ≤ 3).
    for col in 0..k {
        let piv = (col..k).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[piv][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, piv);
        let pivot = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot[col];
                for (x, p) in row.iter_mut().zip(&pivot).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut out = [0.0; 3];
    for (i, &ci) in cols.iter().enumerate() {
        out[ci] = m[i][k] / m[i][i];
    }
    out.iter().all(|v| v.is_finite()).then_some(out)
}

fn sse(points: &[(f64, f64)], coef: &[f64; 3]) -> f64 {
    points
        .iter()
        .map(|&(n, c)| {
            let x = row(n);
            let y = n / c;
            let e = (x[0] * coef[0] + x[1] * coef[1] + x[2] * coef[2] - y) / y;
            e * e
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usl(l: f64, s: f64, k: f64, n: f64) -> f64 {
        l * n / (1.0 + s * (n - 1.0) + k * n * (n - 1.0))
    }

    #[test]
    fn recovers_sigma_and_kappa_from_exact_points() {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&n| (n, usl(1000.0, 0.08, 0.002, n)))
            .collect();
        let f = UslFit::fit(&pts).unwrap();
        assert!((f.lambda - 1000.0).abs() < 1e-6, "{f:?}");
        assert!((f.sigma - 0.08).abs() < 1e-9, "{f:?}");
        assert!((f.kappa - 0.002).abs() < 1e-9, "{f:?}");
        assert!(f.r_squared > 0.999_999);
        let peak = ((1.0 - 0.08) / 0.002f64).sqrt();
        assert!((f.peak_instances.unwrap() - peak).abs() < 1e-6);
    }

    #[test]
    fn recovers_them_within_a_few_percent_from_noisy_points() {
        let noise = [1.02, 0.97, 1.01, 0.99, 1.015, 0.985];
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
            .iter()
            .zip(noise)
            .map(|(&n, e)| (n, usl(500.0, 0.05, 0.001, n) * e))
            .collect();
        let f = UslFit::fit(&pts).unwrap();
        assert!((f.sigma - 0.05).abs() < 0.02, "{f:?}");
        assert!((f.kappa - 0.001).abs() < 0.0005, "{f:?}");
        assert!((f.lambda - 500.0).abs() / 500.0 < 0.05, "{f:?}");
    }

    #[test]
    fn linear_scaling_has_no_ceiling_and_plans_by_division() {
        let pts = [(1.0, 100.0), (2.0, 200.0), (4.0, 400.0)];
        let f = UslFit::fit(&pts).unwrap();
        assert!(f.sigma.abs() < 1e-9 && f.kappa.abs() < 1e-9, "{f:?}");
        assert_eq!(f.ceiling_rps, None);
        assert_eq!(f.instances_for(10_000_000.0), Some(100_000));
    }

    #[test]
    fn a_target_beyond_the_peak_needs_more_than_one_stack() {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0]
            .iter()
            .map(|&n| (n, usl(1000.0, 0.1, 0.01, n)))
            .collect();
        let f = UslFit::fit(&pts).unwrap();
        assert_eq!(f.instances_for(1e7), None);
        let n = f.instances_for(2000.0).unwrap();
        assert!(f.capacity(n as f64) >= 2000.0 && f.capacity(n as f64 - 1.0) < 2000.0);
    }

    #[test]
    fn negative_coefficients_are_clamped_and_two_points_fit_amdahl() {
        // Superlinear points would need σ < 0: held at 0.
        let f = UslFit::fit(&[(1.0, 100.0), (2.0, 210.0), (4.0, 430.0)]).unwrap();
        assert!(f.sigma >= 0.0 && f.kappa >= 0.0);
        let f = UslFit::fit(&[(1.0, 100.0), (4.0, 250.0)]).unwrap();
        assert_eq!(f.kappa, 0.0);
        assert!((f.sigma - 0.2).abs() < 1e-9, "{f:?}");
        assert!(!f.notes.is_empty());
        assert_eq!(UslFit::fit(&[(2.0, 1.0)]), Err(UslError::TooFewPoints(1)));
    }
}
