//! `slolab load` — scaffolding; replaced by the issue that builds it.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

pub fn main(_args: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`slolab load` is not built yet")
}
