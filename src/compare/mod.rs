//! `slolab compare`: tells whether HEAD results are worse than BASE results,
//! per metric, with a bootstrap interval so that noise on a shared machine does
//! not raise an alarm and a real slowdown does.

mod compat;
mod render;
mod sample;
mod stats;

#[cfg(test)]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use loadgen::Results;

use render::{Format, Method, MetricRow, Report, SideSummary};
use sample::{RunInput, Side};
use stats::{Settings, Verdict, MIN_INTERVALS};

const HELP: &str = "\
Inputs:
  BASE and HEAD are each a results file (`slolab load --save`, `slolab run`) or a
  directory searched recursively for files named results.json. Use --base/--head
  (repeatable) to list several runs per side by hand. Several runs of a side are
  pooled by merging their interval histograms exactly, never by averaging
  percentiles.

Method:
  For p50, p95, p99, p99.9, availability, throughput (and time to recover when
  the runs carry an experiment section) compare prints base, head, the change and
  a bootstrap interval of head − base: runs are resampled when a side has several
  (run-to-run noise), and within a run blocks of adjacent timeline intervals (a
  run with fewer than 4 intervals is resampled request by request). A metric is
  worse only when the whole interval lies beyond the noise threshold: --threshold
  of the base value (latency: and at least --min-latency-change; availability: the
  error rate must grow by the threshold and by at least 0.01 percentage points).
  The resampling is seeded, so the same inputs give the same output.

  With one run on a side a worse interval is reported as unconfirmed (exit 0,
  with a warning): a burst of machine noise in one run looks the same. It is a
  regression only when each side has several runs (run-to-run noise is then
  resampled), or when head's median interval is worse than base's worst
  interval by more than the threshold (a shift no burst explains).

  Runs must have the same load shape (model, stages, stop, connections, request
  mix and URL paths, timeout, keep-alive), the same host (hostname, cpus) and
  profile; otherwise compare refuses and names each differing field as
  `path: base → head`. --allow PATH declares an intended difference (the field
  and everything under it, e.g. --allow stack.gateway); --force compares anyway.
  Interrupted runs are left out unless --include-interrupted.

Exit codes:
  0  no regression (an unconfirmed change is a warning, not a regression)
  1  bad input: unreadable or incomparable results
  4  a metric is worse";

#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct CompareArgs {
    /// BASE then HEAD: results files or directories of them.
    #[arg(value_name = "BASE HEAD", num_args = 0..=2)]
    paths: Vec<PathBuf>,
    /// A base run (file or directory); repeatable.
    #[arg(long = "base", value_name = "PATH")]
    base: Vec<PathBuf>,
    /// A head run (file or directory); repeatable.
    #[arg(long = "head", value_name = "PATH")]
    head: Vec<PathBuf>,
    /// Noise threshold in percent of the base value: smaller changes never count.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    threshold: f64,
    /// Confidence of the interval, in percent.
    #[arg(long, default_value_t = 95.0, value_name = "PERCENT")]
    confidence: f64,
    /// Latency changes smaller than this never count (scheduler noise on shared runners).
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    min_latency_change: Duration,
    /// Bootstrap resamples (100-10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=10_000))]
    resamples: u32,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// An intended difference: runs that differ in this field (or under it,
    /// e.g. `stack.gateway`, `stack`, `load.stages[1].rate`) are compared; repeatable.
    #[arg(long = "allow", value_name = "PATH")]
    allow: Vec<String>,
    /// Compare even when the runs' load shape, host or profile differ.
    #[arg(long)]
    force: bool,
    /// Pool interrupted runs too (they cover only what ran; left out by default).
    #[arg(long)]
    include_interrupted: bool,
}

pub fn main(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let report = compare(&args)?;
    let text = match args.format {
        Format::Text => report.text(),
        Format::Md => report.markdown(),
        Format::Json => report.json(),
    };
    print!("{text}");
    Ok(if report.regressions.is_empty() {
        crate::exit::SUCCESS
    } else {
        ExitCode::from(crate::exit::REGRESSION)
    })
}

fn compare(args: &CompareArgs) -> anyhow::Result<Report> {
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        anyhow::bail!(
            "--threshold must be a percentage ≥ 0, got {}",
            args.threshold
        );
    }
    if !(args.confidence > 50.0 && args.confidence < 100.0) {
        anyhow::bail!(
            "--confidence must be between 50 and 100 (percent), got {}",
            args.confidence
        );
    }
    let (mut base_paths, mut head_paths) = (args.base.clone(), args.head.clone());
    match args.paths.as_slice() {
        [] => {}
        [b, h] => {
            base_paths.push(b.clone());
            head_paths.push(h.clone());
        }
        _ => anyhow::bail!("give both BASE and HEAD (or --base and --head)"),
    }
    if base_paths.is_empty() || head_paths.is_empty() {
        anyhow::bail!("give both BASE and HEAD (or --base and --head)");
    }
    let mut warnings = Vec::new();
    let base = completed(load_side(&base_paths)?, "base", args, &mut warnings)?;
    let head = completed(load_side(&head_paths)?, "head", args, &mut warnings)?;

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
            let mut paths: Vec<&str> = refused.iter().map(|d| d.path.as_str()).collect();
            paths.dedup();
            let lines: Vec<String> = refused.iter().map(|d| d.to_string()).collect();
            anyhow::bail!(
                "the runs are not comparable:\n  {}\n(compare runs of the same load on the same host; \
                 if a difference is the point of the comparison, declare it: {})",
                lines.join("\n  "),
                paths
                    .iter()
                    .map(|p| format!("--allow {p}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
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
        threshold: args.threshold / 100.0,
        confidence: args.confidence / 100.0,
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
            confidence_pct: args.confidence,
            threshold_pct: args.threshold,
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
    if interrupted(&r.results) {
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

/// Whether a run ended early: the loadgen flag, or (files written before it
/// was set by `run`) the experiment section's.
fn interrupted(r: &Results) -> bool {
    r.run.interrupted
        || crate::record::ExperimentSection::of(r)
            .ok()
            .flatten()
            .is_some_and(|e| e.interrupted)
}

/// A side's runs without the interrupted ones (an interrupted run has no
/// verdict and covers only part of the plan), unless the user asked for them.
fn completed(
    runs: Vec<RunInput>,
    side: &str,
    args: &CompareArgs,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<RunInput>> {
    if args.include_interrupted {
        return Ok(runs);
    }
    let (kept, skipped): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|r| !interrupted(&r.results));
    for r in &skipped {
        warnings.push(format!(
            "{side} run {} was interrupted: left out (--include-interrupted pools it)",
            r.path.display()
        ));
    }
    if kept.is_empty() {
        anyhow::bail!(
            "every {side} run was interrupted ({}): an interrupted run has no verdict; \
             rerun it, or pass --include-interrupted to compare what ran",
            skipped
                .iter()
                .map(|r| r.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
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
fn load_side(paths: &[PathBuf]) -> anyhow::Result<Vec<RunInput>> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let before = files.len();
            find_results(p, &mut files)?;
            if files.len() == before {
                anyhow::bail!("no results.json under {}", p.display());
            }
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|path| {
            let results = Results::read(&path)?;
            Ok(RunInput { path, results })
        })
        .collect()
}

fn find_results(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
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
