//! `slolab run` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub fn main(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab run` is not built yet")
}
