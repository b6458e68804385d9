//! On paper: what a target rate (the course's 10 M req/s) would take, from the
//! USL fitted here and the generator's own measured cost. A model, labelled as
//! one: every assumption it makes is listed beside the numbers.

use serde::{Deserialize, Serialize};

use super::usl::UslFit;

/// Generators are planned to run at this share of their CPU, so that they keep
/// their schedule (a generator at 100 % CPU sends late).
pub const GENERATOR_HEADROOM: f64 = 0.7;

/// What one core of this machine's generator delivered during the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorRate {
    /// Best achieved req/s per CPU-second of the generator's process, over the
    /// probes (the process also runs the chaos fault proxies, so this is a floor).
    pub rps_per_core: f64,
    /// The probe it was measured at.
    pub at_offered_rps: f64,
    /// Cores on this machine.
    pub cores: usize,
}

/// The plan for `--target-rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub target_rps: f64,
    /// Instances in one stack (one cell), and its modelled capacity.
    pub instances_per_cell: u64,
    pub cell_rps: f64,
    /// Independent copies of the stack (own database and cache) needed: 1 when
    /// one stack scales to the target.
    pub cells: u64,
    pub instances_total: u64,
    /// Generator machines (of this machine's core count), and cores in all.
    pub generator_shards: Option<u64>,
    pub generator_cores: Option<u64>,
    /// What the model takes for granted; shown with the numbers.
    pub assumptions: Vec<String>,
}

impl Projection {
    /// The plan for `target_rps` from `fit` and the generator's measured rate.
    pub fn plan(fit: &UslFit, target_rps: f64, generator: Option<&GeneratorRate>) -> Self {
        let mut assumptions = vec![
            format!(
                "capacity follows the USL fitted here: λ = {:.0} req/s per instance, σ = {:.4} \
                 (contention), κ = {:.6} (coherency), from {} measured points (R² = {:.3})",
                fit.lambda,
                fit.sigma,
                fit.kappa,
                fit.points.len(),
                fit.r_squared
            ),
            "the shared tiers (database, cache, gateway) that make σ and κ are the limit; \
             instances are identical and share them as they did here"
                .to_string(),
            "the request mix, data size and SLOs stay those of the profile; the machines are \
             like this one"
                .to_string(),
        ];
        let (per_cell, cells) = match fit.instances_for(target_rps) {
            Some(n) => (n, 1),
            None => {
                // Beyond what one stack can serve: copies of the stack, each at
                // its best size, each with its own data tier.
                let n = fit.peak_instances.map(|p| best_whole(fit, p)).unwrap_or(1);
                let cell = fit.capacity(n as f64);
                assumptions.push(format!(
                    "one stack peaks at {:.0} req/s ({} instances): beyond it the model adds \
                     cells — whole copies of the stack with their own database and cache, the \
                     data partitioned between them (sharding), which σ and κ measured here do \
                     not cover",
                    cell, n
                ));
                (n, (target_rps / cell).ceil() as u64)
            }
        };
        let cell_rps = fit.capacity(per_cell as f64);
        let (shards, cores) = match generator {
            Some(g) if g.rps_per_core > 0.0 => {
                let cores = (target_rps / (g.rps_per_core * GENERATOR_HEADROOM)).ceil() as u64;
                assumptions.push(format!(
                    "a generator core delivers {:.0} req/s (measured here at {:.0} req/s offered), \
                     planned at {:.0} % CPU; a shard is a machine of {} cores",
                    g.rps_per_core,
                    g.at_offered_rps,
                    GENERATOR_HEADROOM * 100.0,
                    g.cores
                ));
                assumptions.push(format!(
                    "σ and κ were measured with the instances, the data tier and the generator \
                     sharing one machine of {} cores: they include that contention, which \
                     instances on machines of their own would not have",
                    g.cores
                ));
                (Some(cores.div_ceil(g.cores.max(1) as u64)), Some(cores))
            }
            _ => (None, None),
        };
        Self {
            target_rps,
            instances_per_cell: per_cell,
            cell_rps,
            cells,
            instances_total: per_cell * cells,
            generator_shards: shards,
            generator_cores: cores,
            assumptions,
        }
    }
}

/// The whole instance count next to the real-valued peak with more capacity.
fn best_whole(fit: &UslFit, peak: f64) -> u64 {
    let lo = peak.floor().max(1.0);
    let hi = peak.ceil().max(1.0);
    if fit.capacity(hi) > fit.capacity(lo) {
        hi as u64
    } else {
        lo as u64
    }
}

/// Parses a rate such as `10M`, `250k`, `4000` or `1.5e6` (req/s).
pub fn parse_rate(s: &str) -> Option<f64> {
    let t = s
        .trim()
        .trim_end_matches("req/s")
        .trim_end_matches("rps")
        .trim();
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1e3),
        'm' | 'M' => (&t[..t.len() - 1], 1e6),
        'g' | 'G' => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().replace('_', "").parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(s: f64, k: f64) -> UslFit {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0]
            .iter()
            .map(|&n| (n, 1000.0 * n / (1.0 + s * (n - 1.0) + k * n * (n - 1.0))))
            .collect();
        UslFit::fit(&pts).unwrap()
    }

    #[test]
    fn a_reachable_target_is_one_stack() {
        let p = Projection::plan(&fit(0.01, 0.0), 20_000.0, None);
        assert_eq!(p.cells, 1);
        assert!(p.cell_rps >= 20_000.0);
        assert_eq!(p.generator_shards, None);
    }

    #[test]
    fn ten_million_past_the_peak_takes_cells_and_generator_shards() {
        let g = GeneratorRate {
            rps_per_core: 50_000.0,
            at_offered_rps: 4000.0,
            cores: 2,
        };
        let f = fit(0.05, 0.001);
        let p = Projection::plan(&f, 10e6, Some(&g));
        assert!(p.cells > 1);
        assert!(p.cell_rps * p.cells as f64 >= 10e6);
        assert_eq!(p.instances_total, p.cells * p.instances_per_cell);
        // 10M / (50k × 0.7) = 286 cores → 143 two-core machines.
        assert_eq!(p.generator_cores, Some(286));
        assert_eq!(p.generator_shards, Some(143));
        assert!(p.assumptions.iter().any(|a| a.contains("cells")));
    }

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("10M"), Some(10e6));
        assert_eq!(parse_rate("250k"), Some(250e3));
        assert_eq!(parse_rate("4000"), Some(4000.0));
        assert_eq!(parse_rate("1.5e6"), Some(1.5e6));
        assert_eq!(parse_rate("0"), None);
        assert_eq!(parse_rate("lots"), None);
        // And back, as the reports print them.
        let rps = crate::capacity::format_rps;
        assert_eq!(rps(10e6), "10 M req/s");
        assert_eq!(rps(2.5e6), "2.5 M req/s");
        assert_eq!(rps(1620.0), "1620 req/s");
    }
}
