//! `slolab compare` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {}

pub fn main(_args: CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab compare` is not built yet")
}
