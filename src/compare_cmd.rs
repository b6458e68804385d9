//! `slolab compare`: the CLI over `verdict::compare` — flags, the method
//! explained in --help, the format, and exit 4 on a regression.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use verdict::compare::{compare, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Md,
    Json,
}

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

Capacity searches:
  BASE and HEAD may each be a capacity.json (`slolab capacity`) or its
  directory. Each instance count is compared: head is worse when its capacity
  fell by more than the search's resolution and its interval lies wholly below
  base's; overlapping intervals are the same (the search cannot tell them apart).

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
    #[arg(long, default_value = "1ms", value_parser = chaos::duration::parse, value_name = "DURATION")]
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
    // The settings themselves are checked by `verdict::compare::compare`.
    let (mut base, mut head) = (args.base.clone(), args.head.clone());
    match args.paths.as_slice() {
        [] => {}
        [b, h] => {
            base.push(b.clone());
            head.push(h.clone());
        }
        _ => anyhow::bail!("give both BASE and HEAD (or --base and --head)"),
    }
    if let Some(code) = compare_capacity(&base, &head, args.format)? {
        return Ok(code);
    }
    let options = Options {
        threshold_pct: args.threshold,
        confidence_pct: args.confidence,
        min_latency_change: args.min_latency_change,
        resamples: args.resamples,
        seed: args.seed,
        allow: args.allow.clone(),
        force: args.force,
        include_interrupted: args.include_interrupted,
    };
    let report = compare(&base, &head, &options)?;
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

/// A capacity search given as the file itself or its directory (holding
/// `capacity.json`), read once; `None` when the path is a run.
fn capacity_record(
    p: &std::path::Path,
) -> anyhow::Result<Option<verdict::capacity::CapacityRecord>> {
    use verdict::capacity::{CapacityRecord, FILE_NAME};
    let f = if p.is_dir() {
        p.join(FILE_NAME)
    } else {
        p.to_path_buf()
    };
    if !f.is_file() {
        return Ok(None);
    }
    Ok(CapacityRecord::read_if_capacity(&f)?)
}

/// Compares two capacity searches when BASE and HEAD are (one each); `None`
/// when they are runs.
fn compare_capacity(
    base: &[PathBuf],
    head: &[PathBuf],
    format: Format,
) -> anyhow::Result<Option<ExitCode>> {
    use verdict::capacity::compare::compare;
    let found = |side: &[PathBuf]| -> anyhow::Result<Vec<_>> {
        let mut v = Vec::new();
        for p in side {
            v.extend(capacity_record(p)?);
        }
        Ok(v)
    };
    let (b, h) = (found(base)?, found(head)?);
    match (b.as_slice(), h.as_slice()) {
        ([], []) => Ok(None),
        ([b], [h]) if base.len() == 1 && head.len() == 1 => {
            let c = compare(b, h);
            print!(
                "{}",
                match format {
                    Format::Text => c.text(),
                    Format::Md => c.markdown(),
                    Format::Json => c.json(),
                }
            );
            Ok(Some(if c.regression {
                ExitCode::from(crate::exit::REGRESSION)
            } else {
                crate::exit::SUCCESS
            }))
        }
        _ => anyhow::bail!(
            "compare one capacity search with one capacity search (capacity.json or its directory), \
             or runs with runs; a capacity search and a run cannot be compared"
        ),
    }
}
