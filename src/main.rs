//! The `slolab` binary: parses the command line and hands each subcommand to its
//! module. Everything that can be a library lives in loadgen, chaos and target.

use std::process::ExitCode;

use clap::Parser;

mod chaos_cmd;
mod cli;
mod compare;
mod exit;
mod load;
mod report;
mod run;
mod serve;
mod stack;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_tracing(cli.verbose);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::FAILURE
        }
    }
}
