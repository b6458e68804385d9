//! Comparison: tells whether HEAD results are worse than BASE results,
//! per metric, with a bootstrap interval so that noise on a shared machine does
//! not raise an alarm and a real slowdown does.

pub(crate) mod compat;
mod render;
mod sample;
mod stats;

#[cfg(test)]
pub(crate) mod fixture;

use std::path::{Path, PathBuf};
use std::time::Duration;

use loadgen::Results;

pub use render::{Format, Report};
use render::{Method, MetricRow, SideSummary};
pub use sample::RunInput;
use sample::Side;
use stats::{Settings, Verdict, MIN_INTERVALS};

/// How to compare: the noise threshold, the interval, the resampling, and
/// which differences between the runs are allowed.
#[derive(Debug, Clone)]
pub struct Options {
    /// Noise threshold in percent of the base value: smaller changes never count.
    pub threshold_pct: f64,
    /// Confidence of the interval, in percent.
    pub confidence_pct: f64,
    /// Latency changes smaller than this never count.
    pub min_latency_change: Duration,
    /// Bootstrap resamples.
    pub resamples: u32,
    /// Seed of the resampling.
    pub seed: u64,
    /// Intended differences: a field path and everything under it.
    pub allow: Vec<String>,
    /// Compare even when the runs' load shape, host or profile differ.
    pub force: bool,
    /// Pool interrupted runs too.
    pub include_interrupted: bool,
}

/// Why a comparison could not be made; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Inputs that cannot be compared (bad settings, incomparable runs, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Results(#[from] loadgen::results::ResultsError),
}

fn invalid(msg: String) -> CompareError {
    CompareError::Invalid(msg)
}

fn io(path: &Path, source: std::io::Error) -> CompareError {
    CompareError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Compares the runs named by `base` and `head` (files, or directories searched
/// for results.json): HEAD worse than BASE, per metric, and why.
pub fn compare(base: &[PathBuf], head: &[PathBuf], args: &Options) -> Result<Report, CompareError> {
    if !(args.threshold_pct.is_finite() && args.threshold_pct >= 0.0) {
        return Err(invalid(format!(
            "--threshold must be a percentage ≥ 0, got {}",
            args.threshold_pct
        )));
    }
    if !(args.confidence_pct > 50.0 && args.confidence_pct < 100.0) {
        return Err(invalid(format!(
            "--confidence must be between 50 and 100 (percent), got {}",
            args.confidence_pct
        )));
    }
    if base.is_empty() || head.is_empty() {
        return Err(invalid(
            "give both BASE and HEAD (or --base and --head)".into(),
        ));
    }
    let mut warnings = Vec::new();
    let base = completed(load_side(base)?, "base", args, &mut warnings)?;
    let head = completed(load_side(head)?, "head", args, &mut warnings)?;

    let (allowed, refused): (Vec<_>, Vec<_>) = compat::differences(&base, &head)
        .into_iter()
        .partition(|d| args.allow.iter().any(|a| d.allowed_by(a)));
    warnings.extend(
        allowed
            .iter()
            .map(|d| format!("intended difference (--allow): {d}")),
    );
    if !refused.is_empty() {
        if !args.force {
            // Each path once, in the order met (several runs may differ in it).
            let mut paths: Vec<&str> = Vec::new();
            for d in &refused {
                if !paths.contains(&d.path.as_str()) {
                    paths.push(&d.path);
                }
            }
            let lines: Vec<String> = refused.iter().map(|d| d.to_string()).collect();
            return Err(invalid(format!(
                "the runs are not comparable:\n  {}\n(compare runs of the same load on the same host; \
                 if a difference is the point of the comparison, declare it: {})",
                lines.join("\n  "),
                paths
                    .iter()
                    .map(|p| format!("--allow {p}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        warnings.extend(
            refused
                .iter()
                .map(|d| format!("compared anyway (--force): {d}")),
        );
    }
    for (name, runs) in [("base", &base), ("head", &head)] {
        for r in runs.iter() {
            warnings.extend(run_warnings(name, r));
        }
    }
    let shared: Vec<_> = base
        .iter()
        .filter(|b| head.iter().any(|h| same_file(&b.path, &h.path)))
        .map(|b| b.path.display().to_string())
        .collect();
    if !shared.is_empty() {
        warnings.push(format!(
            "the same file is on both sides: {}",
            shared.join(", ")
        ));
    }

    let (scale, base_side, head_side) = sample::build_sides(&base, &head)?;
    let single = base.len() == 1 || head.len() == 1;
    if single {
        warnings.push(
            "one run on a side: run-to-run noise cannot be measured, so a worse interval is only \
             unconfirmed unless the change is outside the runs' interval-to-interval spread \
             (ci/compare-commits.sh runs 3 per side, interleaved)"
                .into(),
        );
    }
    let settings = Settings {
        threshold: args.threshold_pct / 100.0,
        confidence: args.confidence_pct / 100.0,
        resamples: args.resamples as usize,
        seed: args.seed,
        min_latency_change_us: args.min_latency_change.as_secs_f64() * 1e6,
        min_recover_change_s: base[0].results.plan.interval.as_secs_f64(),
    };
    let findings = stats::compare(&scale, &base_side, &head_side, &settings);
    let unconfirmed: Vec<&'static str> = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Unconfirmed)
        .map(|f| f.metric.name())
        .collect();
    if !unconfirmed.is_empty() {
        warnings.push(format!(
            "{} {} worse, unconfirmed: with one run on a side this cannot be told from a burst of \
             machine noise; rerun each side 3 times, interleaved, and compare them all \
             (--base B1 --base B2 --base B3 --head H1 --head H2 --head H3, or ci/compare-commits.sh)",
            unconfirmed.join(", "),
            if unconfirmed.len() == 1 { "looks" } else { "look" }
        ));
    }

    Ok(Report {
        base: summary(&base, &base_side),
        head: summary(&head, &head_side),
        method: Method {
            confidence_pct: args.confidence_pct,
            threshold_pct: args.threshold_pct,
            min_latency_change_ms: args.min_latency_change.as_secs_f64() * 1e3,
            resamples: settings.resamples,
            seed: settings.seed,
        },
        regressions: findings
            .iter()
            .filter(|f| f.verdict == Verdict::Worse)
            .map(|f| f.metric.name())
            .collect(),
        unconfirmed,
        metrics: findings.iter().map(MetricRow::new).collect(),
        warnings,
    })
}

fn run_warnings(side: &str, r: &RunInput) -> Vec<String> {
    let mut w = Vec::new();
    let path = r.path.display();
    let n = r.results.timeline.len();
    if n < MIN_INTERVALS {
        w.push(format!(
            "{side} run {path} has {n} timeline interval{}: resampled request by request, which \
             treats requests as independent and understates noise (run longer or use a shorter --interval)",
            if n == 1 { "" } else { "s" }
        ));
    }
    if let Some(e) = &r.unreadable {
        w.push(format!(
            "{side} run {path}: its experiment section could not be read ({e}); compared as a plain load run"
        ));
    }
    if r.interrupted() {
        w.push(format!(
            "{side} run {path} was interrupted and is pooled (--include-interrupted); it covers only what ran"
        ));
    }
    if r.results.pacer.as_ref().is_some_and(|p| p.fell_behind) {
        w.push(format!(
            "{side} run {path}: the load generator fell behind its schedule; throughput is the generator's limit"
        ));
    }
    w
}

/// A side's runs without the interrupted ones (an interrupted run has no
/// verdict and covers only part of the plan), unless the user asked for them.
fn completed(
    runs: Vec<RunInput>,
    side: &str,
    args: &Options,
    warnings: &mut Vec<String>,
) -> Result<Vec<RunInput>, CompareError> {
    if args.include_interrupted {
        return Ok(runs);
    }
    let (kept, skipped): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| !r.interrupted());
    for r in &skipped {
        warnings.push(format!(
            "{side} run {} was interrupted: left out (--include-interrupted pools it)",
            r.path.display()
        ));
    }
    if kept.is_empty() {
        return Err(invalid(format!(
            "every {side} run was interrupted ({}): an interrupted run has no verdict; \
             rerun it, or pass --include-interrupted to compare what ran",
            skipped
                .iter()
                .map(|r| r.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(kept)
}

fn summary(runs: &[RunInput], side: &Side) -> SideSummary {
    let mut commits: Vec<String> = runs
        .iter()
        .filter_map(|r| r.results.run.commit.as_deref())
        .map(|c| c.chars().take(12).collect())
        .collect();
    commits.sort();
    commits.dedup();
    SideSummary {
        runs: runs.len(),
        files: runs.iter().map(|r| r.path.display().to_string()).collect(),
        commits,
        requests: side.requests(),
        intervals: side.interval_count(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Reads every run named by `paths` (files, or directories of results.json).
pub fn load_side(paths: &[PathBuf]) -> Result<Vec<RunInput>, CompareError> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| io(p, source))?;
        if meta.is_dir() {
            let before = files.len();
            find_results(p, &mut files)?;
            if files.len() == before {
                return Err(invalid(format!("no results.json under {}", p.display())));
            }
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|path| {
            let results = Results::read(&path)?;
            Ok(RunInput::new(path, results))
        })
        .collect()
}

fn find_results(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CompareError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|source| io(dir, source))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| io(dir, source))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            find_results(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "results.json") {
            out.push(path);
        }
    }
    Ok(())
}
