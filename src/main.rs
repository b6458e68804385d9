//! The `slolab` binary: parses the command line and hands each subcommand to its
//! module. Everything that can be a library lives in loadgen, chaos, target and verdict.

use std::process::ExitCode;

use clap::Parser;

mod capacity;
mod chaos_cmd;
mod cli;
mod collect;
mod compare_cmd;
mod exit;
mod experiment;
mod k8s;
mod load;
mod merge_cmd;
mod progress;
mod report_cmd;
mod run;
mod serve;
mod shard;
mod shutdown;
mod stack;

fn main() -> ExitCode {
    // Usage errors exit 1 like every other bad input (clap's default is 2), as
    // clap's message without its usage trailer (a message may span lines, e.g.
    // the list of missing arguments); --help and --version print and exit 0.
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
            let message: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).collect();
            if message.is_empty() {
                eprintln!("error: bad command line");
            } else {
                eprintln!("{}", message.join("\n"));
            }
            return exit::FAILURE;
        }
    };
    cli::init_tracing(cli.verbose);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            exit::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many errors already
/// write their `source` into their own message (`cannot read X: Is a directory`)
/// and also expose it through `source()`, which anyhow's `{:#}` would print again.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// Says its source in its message, and exposes it too (as thiserror's
    /// `#[error("...: {source}")]` does).
    #[derive(Debug)]
    struct ReadFailed(std::io::Error);

    impl std::fmt::Display for ReadFailed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read results file /tmp/x: {}", self.0)
        }
    }

    impl std::error::Error for ReadFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn is_a_directory() -> std::io::Error {
        std::io::Error::other("Is a directory (os error 21)")
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = anyhow::Error::new(ReadFailed(is_a_directory())).context("report");
        assert_eq!(
            error_text(&err),
            "report: cannot read results file /tmp/x: Is a directory (os error 21)"
        );
    }

    #[test]
    fn a_cause_not_in_the_message_is_still_printed() {
        let err = anyhow::Error::new(is_a_directory()).context("reading the profile");
        assert_eq!(
            error_text(&err),
            "reading the profile: Is a directory (os error 21)"
        );
    }
}
