//! `slolab chaos` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {}

pub fn main(_args: ChaosArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab chaos` is not built yet")
}
