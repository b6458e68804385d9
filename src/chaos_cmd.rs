//! `slolab chaos list | inject | revert | plan`: drive faults in a running
//! `slolab stack up` through its control endpoint (address and token from the
//! stack's state file), and expand a profile's `[[chaos]]` schedule into a plan.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chaos::control::{ControlClient, FaultsView};
use chaos::{Direction, FaultEvent, FaultParams, FaultRequest, Plan, ScheduleEntry};
use tabled::{Table, Tabled};
use target::stack::{default_run_dir, StackSpec, StackState};

use crate::experiment::Experiment;

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    command: ChaosCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ChaosCommand {
    /// Show the stack's components and the faults in force.
    List(StackDir),
    /// Inject FAULT into TARGET (a name, `api-*`, or `api-random`). Faults: kill,
    /// stop, pause, restart, latency, bandwidth, reset, blackhole, refuse,
    /// refuse-new, slow-close, limit-data. `stop --for D` holds the component
    /// down for D, then starts it; `refuse` cuts live connections too,
    /// `refuse-new` only refuses new ones.
    Inject(InjectArgs),
    /// Revert one fault by id, or all of them.
    Revert(RevertArgs),
    /// Expand a profile's `[[chaos]]` entries from a seed into timed faults; with
    /// --dry-run print the plan and inject nothing, else run it against the stack.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
struct StackDir {
    /// The stack's run directory [default: as `slolab stack up`].
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct InjectArgs {
    fault: String,
    target: String,
    /// Revert after this long (e.g. 10s); without it the fault stays until reverted.
    #[arg(long = "for", value_parser = chaos::duration::parse)]
    duration: Option<Duration>,
    /// latency: added delay (e.g. 200ms).
    #[arg(long, value_parser = chaos::duration::parse)]
    latency: Option<Duration>,
    /// latency: ± uniform jitter.
    #[arg(long, value_parser = chaos::duration::parse)]
    jitter: Option<Duration>,
    /// latency, bandwidth, limit-data: upstream | downstream (default) | both.
    #[arg(long)]
    direction: Option<Direction>,
    /// bandwidth: bytes per second.
    #[arg(long)]
    rate: Option<u64>,
    /// limit-data: bytes before the connection is closed.
    #[arg(long)]
    bytes: Option<u64>,
    /// slow-close: how long the close is held back.
    #[arg(long, value_parser = chaos::duration::parse)]
    delay: Option<Duration>,
    /// Network faults: fraction of connections affected, 0.0..=1.0 (default 1).
    #[arg(long)]
    toxicity: Option<f64>,
    #[command(flatten)]
    stack: StackDir,
}

#[derive(Debug, clap::Args)]
struct RevertArgs {
    /// The fault's id (see `slolab chaos list`). One of ID or --all is needed;
    /// `revert` checks that, so the error can say what to pass.
    #[arg(conflicts_with = "all")]
    id: Option<u64>,
    /// Revert every fault in force.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    stack: StackDir,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// A profile (or any TOML file) with `[[chaos]]` entries.
    file: PathBuf,
    /// Seed for monkey mode and `api-random` [default: the file's `seed`, else 1,
    /// as `slolab run`].
    #[arg(long)]
    seed: Option<u64>,
    /// Print the plan, inject nothing.
    #[arg(long)]
    dry_run: bool,
    /// The run's length, bounding monkey mode [default: the sum of the file's
    /// load stages, else 1h, as `slolab run`].
    #[arg(long, value_parser = chaos::duration::parse)]
    duration: Option<Duration>,
    /// API instances to plan for when no stack is running [default: the file's
    /// `stack.instances`, else 2].
    #[arg(long)]
    instances: Option<usize>,
    #[command(flatten)]
    stack: StackDir,
}

pub fn main(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        match args.command {
            ChaosCommand::List(a) => list(&client(&a)?).await,
            ChaosCommand::Inject(a) => inject(a).await,
            ChaosCommand::Revert(a) => revert(a).await,
            ChaosCommand::Plan(a) => plan(a).await,
        }
    })
}

/// The control endpoint of the running stack, found the way `stack status` does.
fn client(dir: &StackDir) -> anyhow::Result<ControlClient> {
    let run_dir = dir.run_dir.clone().unwrap_or_else(default_run_dir);
    let state = StackState::read(&run_dir)?;
    if !state.is_live() {
        anyhow::bail!(
            "the stack in {} is not running (pid {} is gone); start one with `slolab stack up`",
            run_dir.display(),
            state.pid
        );
    }
    Ok(ControlClient {
        addr: state.control.addr,
        token: state.control.token,
    })
}

#[derive(Tabled)]
struct ComponentRow {
    name: String,
    kind: String,
    pid: String,
    #[tabled(rename = "network faults")]
    proxied: &'static str,
}

#[derive(Tabled)]
struct FaultRow {
    id: u64,
    fault: String,
    target: String,
    params: String,
    #[tabled(rename = "for")]
    duration: String,
    started: String,
}

fn fault_rows(events: &[FaultEvent]) -> Vec<FaultRow> {
    events
        .iter()
        .map(|e| FaultRow {
            id: e.id,
            fault: e.fault.clone(),
            target: e.target.clone(),
            params: e.params.to_string(),
            duration: match (e.duration, e.end == Some(e.start)) {
                (_, true) => "instant".into(),
                (Some(d), _) => chaos::duration::format(d),
                (None, _) => "until reverted".into(),
            },
            started: e.start.wall.format("%H:%M:%S%.3f").to_string(),
        })
        .collect()
}

fn table<T: Tabled>(rows: impl IntoIterator<Item = T>) -> String {
    Table::new(rows)
        .with(tabled::settings::Style::rounded())
        .to_string()
}

async fn list(client: &ControlClient) -> anyhow::Result<ExitCode> {
    let FaultsView {
        components, active, ..
    } = client.list().await?;
    println!(
        "{}",
        table(components.into_iter().map(|c| ComponentRow {
            name: c.name,
            kind: c.kind,
            pid: c.pid.map_or_else(|| "down".into(), |p| p.to_string()),
            proxied: if c.proxied { "yes" } else { "no" },
        }))
    );
    if active.is_empty() {
        println!("no faults in force");
    } else {
        println!("faults in force:\n{}", table(fault_rows(&active)));
    }
    Ok(ExitCode::SUCCESS)
}

async fn inject(a: InjectArgs) -> anyhow::Result<ExitCode> {
    let req = FaultRequest {
        fault: a.fault,
        target: a.target,
        duration: a.duration,
        params: FaultParams {
            latency: a.latency,
            jitter: a.jitter,
            direction: a.direction,
            rate: a.rate,
            bytes: a.bytes,
            delay: a.delay,
            toxicity: a.toxicity,
        },
    };
    // Check here too, so a typo fails before any round trip, in the flags'
    // spelling (`--for 5s`) rather than the profile's (`for = "5s"`).
    chaos::Fault::from_request_spelled(&req, chaos::fault::Spelling::Flags)?;
    let client = client(&a.stack)?;
    let events = client.inject(&req).await?;
    println!("injected:\n{}", table(fault_rows(&events)));
    Ok(ExitCode::SUCCESS)
}

async fn revert(a: RevertArgs) -> anyhow::Result<ExitCode> {
    if a.id.is_none() && !a.all {
        anyhow::bail!(
            "`slolab chaos revert` needs what to revert: a fault id (e.g. `slolab chaos revert 3`; \
             `slolab chaos list` shows the ids) or `--all` for every fault in force"
        );
    }
    let client = client(&a.stack)?;
    let events = match a.id {
        Some(id) => vec![client.revert(id).await?],
        None => client.revert_all().await?,
    };
    if events.is_empty() {
        println!("no faults were in force");
    } else {
        println!("reverted:\n{}", table(fault_rows(&events)));
    }
    Ok(ExitCode::SUCCESS)
}

/// A file that is not a whole profile (only `[[chaos]]`, perhaps a `[stack]`
/// and stage lengths): planned with the same defaults as a profile, so the two
/// can never disagree on the seed, the horizon or the component names.
fn schedule_only_plan(
    path: &Path,
    seed: Option<u64>,
    duration: Option<Duration>,
    instances: Option<usize>,
    live_names: Option<Vec<String>>,
) -> anyhow::Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let entries = match doc.get("chaos") {
        Some(v) => v
            .clone()
            .try_into::<Vec<ScheduleEntry>>()
            .with_context(|| format!("{}: in [[chaos]]", path.display()))?,
        None => Vec::new(),
    };
    let file_seed = doc
        .get("seed")
        .and_then(|v| v.as_integer())
        .map(|s| s as u64);
    let stages = doc
        .get("load")
        .and_then(|l| l.get("stage"))
        .and_then(|s| s.as_array());
    let mut load = None;
    for s in stages.into_iter().flatten() {
        if let Some(d) = s.get("duration").and_then(|d| d.as_str()) {
            let d = chaos::duration::parse(d)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: load stage duration", path.display()))?;
            load = Some(load.unwrap_or(Duration::ZERO) + d);
        }
    }
    let names = match live_names {
        Some(names) => names,
        None => {
            let mut spec: StackSpec = match doc.get("stack") {
                Some(v) => v
                    .clone()
                    .try_into()
                    .with_context(|| format!("{}: in [stack]", path.display()))?,
                None => StackSpec::default(),
            };
            if let Some(n) = instances {
                spec.instances = n;
            }
            spec.component_names()
        }
    };
    let seed = seed
        .or(file_seed)
        .unwrap_or(crate::experiment::DEFAULT_SEED);
    let total = Plan::horizon(duration.or(load.filter(|d| !d.is_zero())));
    Plan::expand(&entries, seed, total, &names).with_context(|| format!("{}", path.display()))
}

async fn plan(a: PlanArgs) -> anyhow::Result<ExitCode> {
    // A running stack knows its real component names; otherwise plan for the
    // stack the file describes.
    let live = match client(&a.stack) {
        Ok(c) => c.list().await.ok().map(|v| (c, v)),
        Err(_) => None,
    };
    let live_names = match &live {
        Some((_, view)) if a.instances.is_none() => {
            Some(view.components.iter().map(|c| c.name.clone()).collect())
        }
        _ => None,
    };
    // A whole profile is planned exactly as `slolab run` plans it (same seed
    // default, horizon and names); anything else from its `[[chaos]]` alone.
    let plan = match Experiment::read(&a.file, &[], a.seed) {
        Ok(exp) => {
            let exp = match a.instances {
                Some(n) => Experiment::read(&a.file, &[format!("stack.instances={n}")], a.seed)?,
                None => exp,
            };
            match (live_names, a.duration) {
                (None, None) => exp.chaos,
                (names, duration) => {
                    let names = names.unwrap_or_else(|| {
                        exp.stack()
                            .map(|s| s.components.clone())
                            .unwrap_or_default()
                    });
                    exp.chaos_plan_for(&names, duration.or(exp.load_duration()))?
                }
            }
        }
        Err(e) => {
            tracing::debug!(
                "{}: not a whole profile ({e}); planning its [[chaos]] entries",
                a.file.display()
            );
            schedule_only_plan(&a.file, a.seed, a.duration, a.instances, live_names)?
        }
    };
    print!("{plan}");
    if a.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let Some((client, _)) = live else {
        anyhow::bail!(
            "no running stack to inject into; start one with `slolab stack up`, or pass --dry-run"
        );
    };
    run_plan(&client, &plan).await
}

/// Inject each planned fault at its offset from now. Ctrl-C reverts what this
/// plan injected and stops.
async fn run_plan(client: &ControlClient, plan: &Plan) -> anyhow::Result<ExitCode> {
    let start = tokio::time::Instant::now();
    let mut injected: Vec<u64> = Vec::new();
    // Ctrl-C or SIGTERM, the same stop every command answers to.
    let ctrl_c = crate::shutdown::signal_received();
    tokio::pin!(ctrl_c);
    for planned in &plan.faults {
        tokio::select! {
            _ = tokio::time::sleep_until(start + planned.at) => {}
            _ = &mut ctrl_c => {
                for id in injected {
                    let _ = client.revert(id).await;
                }
                eprintln!("interrupted: reverted the faults this plan injected");
                return Ok(ExitCode::FAILURE);
            }
        }
        match client.inject(&planned.request).await {
            Ok(events) => {
                injected.extend(events.iter().map(|e| e.id));
                println!("{}", table(fault_rows(&events)));
            }
            Err(e) => eprintln!(
                "at {:?}: {} on {} not injected: {e}",
                planned.at, planned.request.fault, planned.request.target
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
