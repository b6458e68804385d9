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

  Runs must have the same load shape (model, stages, stop, connections, request
  mix and URL paths, timeout, keep-alive), the same host (hostname, cpus) and
  profile; otherwise compare refuses and names what differs (--force overrides).

Exit codes:
  0  no regression
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
    /// Compare even when the runs' load shape, host or profile differ.
    #[arg(long)]
    force: bool,
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
    let base = load_side(&base_paths)?;
    let head = load_side(&head_paths)?;

    let mut warnings = Vec::new();
    let differences = compat::differences(&base, &head);
    if !differences.is_empty() {
        if !args.force {
            anyhow::bail!(
                "the runs are not comparable:\n  {}\n(compare runs of the same load on the same host, or pass --force)",
                differences.join("\n  ")
            );
        }
        warnings.extend(
            differences
                .into_iter()
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
    if base.len() == 1 || head.len() == 1 {
        warnings.push(
            "one run on a side: run-to-run noise cannot be measured, only the threshold guards \
             against it (ci/compare-commits.sh runs 3 per side, interleaved)"
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
    if r.results.run.interrupted {
        w.push(format!(
            "{side} run {path} was interrupted; it covers only what ran"
        ));
    }
    if r.results.pacer.as_ref().is_some_and(|p| p.fell_behind) {
        w.push(format!(
            "{side} run {path}: the load generator fell behind its schedule; throughput is the generator's limit"
        ));
    }
    w
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
