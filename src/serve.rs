//! `slolab serve` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub fn main(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab serve` is not built yet")
}
