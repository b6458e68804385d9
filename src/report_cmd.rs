//! `slolab report`: the CLI over `verdict::report` — reads a results file,
//! renders it, writes it atomically, and exits by the verdict.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use loadgen::Results;
use verdict::report::{render, Format as ReportFormat, Report};
use verdict::slo::{self, SloSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for a terminal.
    Text,
    /// Markdown tables (CI step summary, PR comment).
    Md,
    /// One self-contained HTML file with inline SVG charts.
    Html,
}

impl From<Format> for ReportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Text => ReportFormat::Text,
            Format::Md => ReportFormat::Md,
            Format::Html => ReportFormat::Html,
        }
    }
}

/// Regenerate a report from a results file. Exits 3 when the file's SLO analysis
/// (or the one `--slo` asks for) is not met, 130 when the run was interrupted (it
/// has no verdict), 0 otherwise.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A results.json written by `slolab run` or `slolab load --save`.
    pub results: PathBuf,
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Judge the run against these objectives instead of the ones it was run with,
    /// e.g. `--slo availability=99.9% --slo p95=100ms` (also `bad=5xx,429`,
    /// `recovery=10s`, `recovery-window=5s`).
    #[arg(long = "slo", value_name = "KEY=VALUE")]
    pub slo: Vec<String>,
}

pub fn main(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let results = Results::read(&args.results)?;
    let spec = if args.slo.is_empty() {
        None
    } else {
        Some(SloSpec::from_pairs(&args.slo).context("--slo")?)
    };
    let report = Report::new(results, spec.as_ref())?;
    let rendered = render(&report, args.format.into());
    match &args.out {
        Some(path) => loadgen::results::write_atomic(path, rendered.as_bytes())?,
        None => print!("{rendered}"),
    }
    Ok(match &report.analysis {
        Some(a) if a.verdict() == slo::Verdict::Interrupted => {
            ExitCode::from(crate::exit::INTERRUPTED)
        }
        Some(a) if !a.met => ExitCode::from(crate::exit::SLO_NOT_MET),
        _ => crate::exit::SUCCESS,
    })
}
