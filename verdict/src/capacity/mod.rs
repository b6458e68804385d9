//! Capacity: the highest open-model rate at which a system still meets its SLOs,
//! what breaks first there, how capacity scales with instances, and what a target
//! rate would take. The search is plateaus, not a ramp: each probe holds one rate
//! and passes only if the rate was held, every objective met and the queue not
//! growing. This crate holds the search, the judgement, the fit and `capacity.json`;
//! the binary runs the probes.
//!
//! - `search`: which rate next (grow, bisect, confirm), no I/O;
//! - `judge`: one probe's results → pass, fail or generator-bound, with reasons;
//! - `trend`: stationarity (Mann–Kendall, Theil–Sen);
//! - `usl`: the Universal Scalability Law fit and its plan;
//! - `report`: terminal, Markdown and HTML (charts);
//! - `compare`: two searches, for CI (a capacity that fell is a regression).

mod charts;
pub mod compare;
mod judge;
mod plan;
mod report;
mod search;
mod trend;
mod usl;

use std::path::Path;

use loadgen::results::{Host, Interval};
use serde::{Deserialize, Serialize};

pub use judge::{judge, plateau_spec, rps as format_rps, ProbeRun};
pub use plan::{parse_rate, GeneratorRate, Projection, GENERATOR_HEADROOM};
pub use report::{format_secs, html, markdown, text};
pub use search::{Outcome, ProbeKind, ProbeVerdict, Search, SearchSettings, Step};
pub use trend::Trend;
pub use usl::{UslError, UslFit};

use crate::slo::ObjectiveResult;

/// Version of `capacity.json`'s layout (documented in `results/README.md`).
pub const SCHEMA_VERSION: u32 = 1;
/// `kind` of a capacity file, which tells it from a run's `results.json`.
pub const KIND: &str = "capacity";
/// The file a search writes in its directory.
pub const FILE_NAME: &str = "capacity.json";

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a capacity file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} is a {kind:?} file, not a capacity search")]
    Kind { path: String, kind: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What a JSON file turned out to be.
enum Parsed {
    Capacity(Box<CapacityRecord>),
    Other { path: String, kind: String },
    NotJson(CapacityError),
}

/// `capacity.json`: everything a search measured and concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityRecord {
    pub schema_version: u32,
    /// Always [`KIND`].
    pub kind: String,
    pub name: String,
    pub profile_path: String,
    /// The profile as run (after `--set`).
    pub profile: serde_json::Value,
    pub seed: u64,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default)]
    pub commit: Option<String>,
    pub host: Host,
    /// The target: the stack's settings, or the URL.
    pub target: serde_json::Value,
    /// `uniform` or `poisson`.
    pub arrivals: String,
    /// `--with-chaos`: each probe fired the profile's faults planned within its
    /// window, offsets counted from the window's start.
    #[serde(default)]
    pub with_chaos: bool,
    /// The stack was started afresh before each probe (its seed data only), so
    /// every probe met the same state.
    #[serde(default)]
    pub fresh_target: bool,
    /// The objectives each plateau was judged by (the `[slo]` table's, with the
    /// strictest `[[slo.stage]]` targets folded in), as `[slo]` writes them.
    pub objectives: serde_json::Value,
    pub settings: SearchSettings,
    /// One search per instance count (one in all for a `url` target).
    pub searches: Vec<SearchRecord>,
    /// The USL fit over the searches' capacities, when several instance counts ran.
    #[serde(default)]
    pub scaling: Option<UslFit>,
    /// Why there is no fit although several instance counts ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_note: Option<String>,
    /// The generator's own measured rate per CPU-second.
    #[serde(default)]
    pub generator: Option<GeneratorRate>,
    /// `--target-rate`: what it would take, by the model.
    #[serde(default)]
    pub projection: Option<Projection>,
    pub interrupted: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One search, at one instance count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRecord {
    /// API instances behind the gateway (`None`: a `url` target).
    pub instances: Option<u32>,
    /// Requests of the mix that write (not GET or HEAD) sent over the search,
    /// estimated from the mix's weights: the data the later probes met grew by
    /// this much, which a stateful target may answer more slowly.
    #[serde(default)]
    pub writes: u64,
    pub answer: Answer,
    pub probes: Vec<Probe>,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub outcome: Outcome,
    /// Highest offered rate that passed (and held its confirmation), req/s.
    pub last_pass_rps: Option<f64>,
    /// Lowest offered rate that failed, req/s.
    pub first_fail_rps: Option<f64>,
    /// What failed first: the worst criterion at the lowest failing rate.
    pub binding: Option<Criterion>,
    /// Where p99 turns up most sharply across the probes (a knee), req/s.
    pub knee_rps: Option<f64>,
    /// The confirmation disagreed once and held when re-probed.
    #[serde(default)]
    pub confirmation_disagreed: bool,
    /// The answer in one line.
    pub summary: String,
}

/// One test a probe failed: what was asked, what was measured, and by how much
/// it missed (relative: 0.77 is 77 % over a latency ceiling, or 77 % more error
/// budget burnt than the whole budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub excess: f64,
}

/// One plateau.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Order within its search, from 1.
    pub index: usize,
    pub kind: ProbeKind,
    pub instances: Option<u32>,
    pub offered_rps: f64,
    pub warmup_s: f64,
    pub window_s: f64,
    /// Responses per second of the window.
    pub achieved_rps: f64,
    pub requests: u64,
    pub good: u64,
    pub bad: u64,
    pub availability: Option<f64>,
    /// From the scheduled send (coordinated-omission correct), per the `[slo]`
    /// table's `latency-of`.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Service time (from the actual send) at each latency objective's percentile.
    pub service_ms: Vec<(String, f64)>,
    pub objectives: Vec<ObjectiveResult>,
    pub trends: Vec<Trend>,
    /// Sends the window's schedule called for, and how many went out late.
    pub scheduled: u64,
    pub late_sends: u64,
    /// CPU the generator's process used over the probe, seconds.
    pub generator_cpu_s: f64,
    pub verdict: ProbeVerdict,
    /// One line per failed test; empty for a pass.
    pub reasons: Vec<String>,
    pub failed: Vec<Criterion>,
    pub started_at: String,
    /// `--with-chaos`: the faults the probe fired, on its timeline (seconds
    /// from the probe's start, warm-up included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::record::FaultRecord>,
    /// The window's intervals with their HDR histograms, so probes merge and
    /// re-analyse like any run's timeline.
    pub timeline: Vec<Interval>,
}

impl Answer {
    /// The answer a search's outcome and probes give.
    pub fn of(search: &Search, outcome: Outcome, probes: &[Probe]) -> Self {
        let lo = search.last_pass();
        let hi = search.first_fail();
        // Binding: the worst criterion of the lowest-rate failure the answer
        // stands on (a confirmation that failed and then held does not).
        let binding = probes
            .iter()
            .filter(|p| p.verdict == ProbeVerdict::Fail)
            .filter(|p| hi.map_or(true, |hi| p.offered_rps >= hi))
            .min_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))
            .and_then(|p| {
                p.failed
                    .iter()
                    .max_by(|a, b| a.excess.total_cmp(&b.excess))
                    .cloned()
                    .map(|mut c| {
                        c.name = format!("{} at {}", c.name, judge::rps(p.offered_rps));
                        c
                    })
            });
        let knee_rps = knee(probes);
        let gen_at = probes
            .iter()
            .find(|p| p.verdict == ProbeVerdict::GeneratorBound)
            .map(|p| p.offered_rps);
        let r = |v: Option<f64>| v.map(judge::rps).unwrap_or_else(|| "—".into());
        let summary = match outcome {
            Outcome::Found => format!(
                "capacity between {} and {}{}",
                r(lo),
                r(hi),
                binding
                    .as_ref()
                    .map(|b| format!("; binding: {}", describe(b)))
                    .unwrap_or_default()
            ),
            Outcome::BelowStart => format!(
                "no capacity found: even the start rate {} fails{}",
                r(hi),
                binding
                    .as_ref()
                    .map(|b| format!(" ({})", describe(b)))
                    .unwrap_or_default()
            ),
            Outcome::GeneratorBound => format!(
                "at least {}, generator-bound at {}: the generator, not the target, was the limit",
                r(lo),
                r(gen_at)
            ),
            Outcome::AboveMax => format!(
                "at least {}: every rate up to the search's maximum met the SLOs",
                r(lo)
            ),
            Outcome::Aborted => format!(
                "aborted: slolab failed during the search; no capacity concluded (last pass {}, \
                 first fail {})",
                r(lo),
                r(hi)
            ),
            Outcome::Interrupted => format!(
                "interrupted: no capacity concluded (last pass {}, first fail {})",
                r(lo),
                r(hi)
            ),
        };
        Self {
            outcome,
            last_pass_rps: lo,
            first_fail_rps: hi,
            binding,
            knee_rps,
            confirmation_disagreed: search.disagreed,
            summary,
        }
    }

    /// The capacity a fit and a comparison use: the last pass of a found interval.
    pub fn capacity_rps(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Found | Outcome::AboveMax | Outcome::GeneratorBound => self.last_pass_rps,
            Outcome::BelowStart | Outcome::Interrupted | Outcome::Aborted => None,
        }
    }
}

fn describe(c: &Criterion) -> String {
    let by = if c.excess.is_finite() {
        format!(", {:+.0} %", c.excess * 100.0)
    } else {
        String::new()
    };
    format!("{} {} vs {}{}", c.name, c.measured, c.target, by)
}

/// The probe that speaks for each rate (the last one probed there: a
/// confirmation over the probe it confirmed), for the
/// charts' lines and the knee; every probe is still a dot on the charts.
pub(crate) fn by_rate<'a>(probes: &[&'a Probe]) -> Vec<&'a Probe> {
    let mut last: Vec<&Probe> = Vec::new();
    for p in probes {
        match last.iter_mut().find(|q| q.offered_rps == p.offered_rps) {
            Some(q) if q.index < p.index => *q = p,
            Some(_) => {}
            None => last.push(p),
        }
    }
    last.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    last
}

/// The knee of p99 against offered rate (Kneedle: the probe farthest below the
/// chord from the lowest to the highest rate, both axes normalised), over the
/// probes that judged the target; `None` with fewer than three.
fn knee(probes: &[Probe]) -> Option<f64> {
    let judged: Vec<&Probe> = probes
        .iter()
        .filter(|p| matches!(p.verdict, ProbeVerdict::Pass | ProbeVerdict::Fail))
        .collect();
    let pts: Vec<(f64, f64)> = by_rate(&judged)
        .into_iter()
        .filter_map(|p| Some((p.offered_rps, p.p99_ms?)))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0);
    let ymin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if x1 <= x0 || ymax <= ymin {
        return None;
    }
    pts.iter()
        .map(|&(x, y)| (x, (x - x0) / (x1 - x0) - (y - ymin) / (ymax - ymin)))
        .filter(|&(_, d)| d > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(x, _)| x)
}

impl CapacityRecord {
    pub fn read(path: &Path) -> Result<Self, CapacityError> {
        match Self::parse(path)? {
            Parsed::Capacity(rec) => Ok(*rec),
            Parsed::Other { path, kind } => Err(CapacityError::Kind { path, kind }),
            Parsed::NotJson(e) => Err(e),
        }
    }

    /// The record when `path` is a capacity search, `None` when it is some other
    /// file (a run's `results.json`): the file is read and parsed once.
    pub fn read_if_capacity(path: &Path) -> Result<Option<Self>, CapacityError> {
        Ok(match Self::parse(path)? {
            Parsed::Capacity(rec) => Some(*rec),
            Parsed::Other { .. } | Parsed::NotJson(_) => None,
        })
    }

    /// Reads `path` once and tells a capacity search (its record, which must
    /// then be whole) from any other file.
    fn parse(path: &Path) -> Result<Parsed, CapacityError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CapacityError::Read {
            path: p.clone(),
            source,
        })?;
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(source) => return Ok(Parsed::NotJson(CapacityError::Parse { path: p, source })),
        };
        match value.get("kind").and_then(|k| k.as_str()) {
            Some(KIND) => serde_json::from_value(value)
                .map(|rec| Parsed::Capacity(Box::new(rec)))
                .map_err(|source| CapacityError::Parse { path: p, source }),
            other => Ok(Parsed::Other {
                path: p,
                kind: other.unwrap_or("results").to_string(),
            }),
        }
    }

    /// Writes the record whole or not at all.
    pub fn write(&self, path: &Path) -> Result<(), CapacityError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a capacity record serialises");
        atomicfile::write_atomic(path, &bytes).map_err(|source| CapacityError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// `(instances, capacity)` of each search that found one.
    pub fn capacities(&self) -> Vec<(u32, f64)> {
        self.searches
            .iter()
            .filter_map(|s| Some((s.instances.unwrap_or(1), s.answer.capacity_rps()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
