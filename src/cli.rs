//! The command line: one `Cli` with a subcommand per job. Each subcommand's flags
//! live with the code that runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0    success (every SLO met)
  1    slolab failed: bad input, or it could not start
  3    an SLO was not met (run, merge, report --slo; capacity: not even at the start rate)
  4    compare found a regression
  5    merge: the run is INCOMPLETE (a shard missing or interrupted); the merged
       file is written and marked
  130  run interrupted (Ctrl-C or SIGTERM): faults reverted, stack stopped,
       what was measured written and marked interrupted";

#[derive(Debug, Parser)]
#[command(name = "slolab", version, about = "Does this system meet its SLOs under this load and these faults?", after_help = EXIT_CODES)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive HTTP load at a URL (hey's flags, plus an open model).
    // Boxed: hey's flag set makes it much larger than the other variants.
    Load(Box<crate::load::LoadArgs>),
    /// Run an experiment profile: stack + staged load + faults → SLO report.
    Run(crate::run::RunArgs),
    /// Find the highest rate that still meets the profile's SLOs, and how it scales.
    Capacity(crate::capacity::CapacityArgs),
    /// Regenerate a report from a results file.
    Report(crate::report_cmd::ReportArgs),
    /// Tell whether HEAD results are worse than BASE results.
    Compare(crate::compare_cmd::CompareArgs),
    /// Merge the results of a sharded run's shards into one results file.
    Merge(crate::merge_cmd::MergeArgs),
    /// Bring the bundled target stack up, show it, take it down.
    Stack(crate::stack::StackArgs),
    /// Inject and revert faults in a running stack.
    Chaos(crate::chaos_cmd::ChaosArgs),
    /// Receive shards' results, merge them when all arrived, serve the report.
    Collect(crate::collect::CollectArgs),
    /// Kubernetes: render the manifests of a sharded run.
    K8s(crate::k8s::K8sArgs),
    /// Run one component of the stack (used by the supervisor).
    #[command(hide = true)]
    Serve(crate::serve::ServeArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Load(a) => crate::load::main(*a),
        Command::Run(a) => crate::run::main(a),
        Command::Capacity(a) => crate::capacity::main(a),
        Command::Report(a) => crate::report_cmd::main(a),
        Command::Compare(a) => crate::compare_cmd::main(a),
        Command::Merge(a) => crate::merge_cmd::main(a),
        Command::Stack(a) => crate::stack::main(a),
        Command::Chaos(a) => crate::chaos_cmd::main(a),
        Command::Collect(a) => crate::collect::main(a),
        Command::K8s(a) => crate::k8s::main(a),
        Command::Serve(a) => crate::serve::main(a),
    }
}

pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal: a component's stderr is its log
    // file, and escape codes there make the logs unreadable and ungreppable.
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
