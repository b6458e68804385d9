//! `slolab stack` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StackArgs {}

pub fn main(_args: StackArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab stack` is not built yet")
}
