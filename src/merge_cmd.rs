//! `slolab merge`: the CLI over `verdict::merge` — reads the shards' results,
//! writes the merged file atomically, and says by its exit code whether the
//! run is whole (and, with an `[slo]`, whether it met it) or INCOMPLETE.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use loadgen::Results;
use verdict::merge::{merge, ShardFile};

const HELP: &str = "\
Each SHARD is a shard's results file (`slolab load --shard I/N --start-at T
--save FILE`) or a directory holding its results.json. The shards must be one
run: the same plan (but for the shard index), the same --start-at and shard
count, each index 0..N-1 at most once; otherwise merge refuses and names what
differs as `path: a → b`. Interval histograms are added interval by interval
(the common start aligns them), so the merged percentiles are exactly those of
all the requests pooled. `report` and `compare` read the merged file like any
results file; an experiment's SLO analysis is recomputed on the merged data.

A shard missing (not given, or its file unreadable) or interrupted makes the run
INCOMPLETE: the merged file is still written, marked `run.interrupted` with the
reason in `shards.incomplete`, and merge exits 5.

Exit codes:
  0  merged: every shard ran to the end (and the SLO, if any, was met)
  1  bad input: not shards of one run, a duplicate index, unreadable output
  3  merged whole, and an SLO of the experiment was not met
  5  INCOMPLETE: merged and marked, but a shard is missing or was interrupted";

#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct MergeArgs {
    /// The shards: results files, or directories holding a results.json.
    #[arg(value_name = "SHARD", required = true)]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged results file (atomically).
    #[arg(short = 'o', long = "out", default_value = "results.json")]
    pub out: PathBuf,
}

pub fn main(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in &args.shards {
        let file = if path.is_dir() {
            path.join("results.json")
        } else {
            path.clone()
        };
        match Results::read(&file) {
            Ok(results) => files.push(ShardFile {
                file: file.display().to_string(),
                results,
            }),
            // A shard that failed may have left no file: its index shows as
            // missing, and the run as INCOMPLETE.
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    for e in &unreadable {
        eprintln!("slolab merge: warning: {e}; that shard counts as missing");
    }
    if files.is_empty() {
        anyhow::bail!("no shard's results could be read");
    }
    let merged = merge(files)?;
    merged
        .results
        .write(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let r = &merged.results;
    let shards = match &r.shards {
        Some(s) => format!("{} of {} shards", s.merged.len(), s.count),
        None => "shards".to_string(),
    };
    let p99 = r.totals.latency.percentile("p99").unwrap_or(0);
    println!(
        "slolab merge: {shards}, {} requests, availability {:.4}%, p99 {:.2} ms → {}",
        r.totals.requests,
        r.totals.availability * 100.0,
        p99 as f64 / 1e3,
        args.out.display()
    );
    if let Some(why) = &merged.incomplete {
        eprintln!("slolab merge: INCOMPLETE: {why}; the merged file is marked interrupted and gets no verdict");
        return Ok(ExitCode::from(crate::exit::INCOMPLETE));
    }
    if let Some(a) = &merged.analysis {
        if a.met {
            println!("slolab merge: SLO met");
        } else {
            println!("slolab merge: SLO NOT met: {}", a.failures.join("; "));
            return Ok(ExitCode::from(crate::exit::SLO_NOT_MET));
        }
    }
    Ok(crate::exit::SUCCESS)
}
