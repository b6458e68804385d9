//! `slolab report` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {}

pub fn main(_args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab report` is not built yet")
}
