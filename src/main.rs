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
mod slo;
mod stack;

fn main() -> ExitCode {
    // Usage errors exit 1 like every other bad input (clap's default is 2), on one
    // line; --help and --version print and exit 0 as usual.
    let args = match load::hey_spellings(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: bad command line")
            );
            return exit::FAILURE;
        }
    };
    cli::init_tracing(cli.verbose);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::FAILURE
        }
    }
}
