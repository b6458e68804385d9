//! `slolab stack up | status | down`: bring the bundled target stack up in the
//! foreground (Ctrl-C stops it), show its components, or stop the running one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tabled::{Table, Tabled};
use target::gateway::Balance;
use target::stack::{
    default_run_dir, probe, CacheKind, ComponentStatus, DbKind, GatewayKind, RestartPolicy,
    StackError, StackSpec, StackState, Supervisor,
};

#[derive(Debug, clap::Args)]
pub struct StackArgs {
    #[command(subcommand)]
    command: StackCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StackCommand {
    /// Start the stack, wait until it is ready, print its URL and admin token, and
    /// stay in the foreground; Ctrl-C stops everything. No flags: 2 instances,
    /// SQLite, no cache, builtin gateway on port 8080 (needs nothing installed).
    Up(UpArgs),
    /// Show the running stack's components: pid, port, fault-proxy front, health.
    Status(RunDirArgs),
    /// Stop the running stack (signals the `stack up` process and waits).
    Down(RunDirArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// API instances behind the gateway.
    #[arg(long, default_value_t = 2)]
    instances: usize,
    /// sqlite | postgres
    #[arg(long, default_value = "sqlite", value_parser = kebab::<DbKind>)]
    db: DbKind,
    /// none | redis
    #[arg(long, default_value = "none", value_parser = kebab::<CacheKind>)]
    cache: CacheKind,
    /// builtin | nginx
    #[arg(long, default_value = "builtin", value_parser = kebab::<GatewayKind>)]
    gateway: GatewayKind,
    /// round-robin | least-connections | consistent-hash[:HEADER]
    #[arg(long, default_value = "round-robin", value_parser = |s: &str| s.parse::<Balance>())]
    balance: Balance,
    /// The gateway's port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Tasks to seed at start.
    #[arg(long, default_value_t = 0)]
    seed_tasks: usize,
    /// never | on-failure (1 s delay) | on-failure:DELAY (e.g. on-failure:500ms)
    #[arg(long, default_value = "on-failure", value_parser = |s: &str| s.parse::<RestartPolicy>())]
    restart: RestartPolicy,
    /// Logs, state file and SQLite database [default: $XDG_RUNTIME_DIR/slolab or /tmp/slolab-$UID/stack]
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// No fault proxies in front of components (network faults impossible).
    #[arg(long)]
    no_fault_proxies: bool,
    /// Reopen the SQLite database left in the run dir by an earlier stack
    /// (default: start from an empty one; PostgreSQL always starts empty).
    #[arg(long)]
    keep_data: bool,
}

#[derive(Debug, clap::Args)]
struct RunDirArgs {
    /// The run dir of the stack [default: $XDG_RUNTIME_DIR/slolab or /tmp/slolab-$UID/stack]
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

/// Parse a kebab-case enum value the way the profile's `[stack]` section does.
fn kebab<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

pub fn main(args: StackArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StackCommand::Up(up) => stack_up(up),
        StackCommand::Status(a) => stack_status(a.run_dir.unwrap_or_else(default_run_dir)),
        StackCommand::Down(a) => stack_down(a.run_dir.unwrap_or_else(default_run_dir)),
    }
}

fn stack_up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let spec = StackSpec {
        instances: args.instances,
        db: args.db,
        cache: args.cache,
        gateway: args.gateway,
        balance: args.balance,
        port: args.port,
        seed_tasks: args.seed_tasks,
        restart: args.restart,
        run_dir: args.run_dir,
        fault_proxies: !args.no_fault_proxies,
        keep_data: args.keep_data,
        ..StackSpec::default()
    };
    let bin = std::env::current_exe().context("finding our own binary to re-execute")?;
    // The chaos injector's routes join the control endpoint; its ledger (faults in
    // force, so a crashed run's faults get reverted) lives in the run dir.
    let run_dir = spec.run_dir.clone().unwrap_or_else(default_run_dir);
    let chaos_routes = chaos::control::installer(chaos::injector::InjectorOptions {
        ledger_dir: Some(run_dir.join("chaos")),
        ..Default::default()
    });
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        // Register before starting: a Ctrl-C during start-up must still stop cleanly.
        let mut shutdown =
            crate::shutdown::Shutdown::install().context("installing SIGINT/SIGTERM handlers")?;
        let stack = tokio::select! {
            stack = Supervisor::start_with(spec, bin, Some(Box::new(chaos_routes))) => stack.context("starting the stack")?,
            _ = shutdown.recv() => anyhow::bail!("interrupted during start-up"),
        };
        let state = stack.state();
        let rows = stack.registry().status().await;
        println!("slolab stack is up: {}", state.url);
        println!("admin token: {}", state.admin_token);
        println!(
            "admin login: {} / {}",
            state.admin_user, state.admin_password
        );
        println!("logs:        {}", state.log_dir.display());
        println!(
            "state:       {}",
            StackState::path_in(&state.run_dir).display()
        );
        println!("{}", table(&rows));
        println!("Ctrl-C (or `slolab stack down`) stops it.");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let stop = shutdown.recv().await;
        eprintln!("{}: stopping the stack", stop.name());
        stack.shutdown().await;
        println!("stack stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Tabled)]
struct Row {
    component: String,
    kind: String,
    pid: String,
    port: u16,
    front: String,
    health: String,
    restarts: u32,
}

fn table(rows: &[ComponentStatus]) -> String {
    let rows = rows.iter().map(|c| Row {
        component: c.name.clone(),
        kind: c.kind.clone(),
        pid: c.pid.map_or("-".into(), |p| p.to_string()),
        port: c.port,
        front: c.front.map_or("-".into(), |f| f.to_string()),
        health: c.health.clone(),
        restarts: c.restarts,
    });
    Table::new(rows)
        .with(tabled::settings::Style::rounded())
        .to_string()
}

fn stack_status(run_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let state = StackState::read_live(&run_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let reply = runtime.block_on(probe::http_get(
        state.control.addr,
        "/components",
        Some(&state.control.token),
    ));
    let rows: Vec<ComponentStatus> = match reply {
        Ok((200, body)) => serde_json::from_str(&body).context("reading /components")?,
        other => {
            // The control endpoint is down or busy: show what the state file knows.
            tracing::warn!(
                ?other,
                "control endpoint did not answer; showing the state file"
            );
            state
                .components
                .iter()
                .map(|c| ComponentStatus {
                    name: c.name.clone(),
                    kind: c.kind.clone(),
                    pid: c.pid,
                    port: c.port,
                    front: c.front,
                    health: match c.pid {
                        Some(pid) if target::stack::pid_alive(pid) => "running (unprobed)".into(),
                        _ => "down".into(),
                    },
                    restarts: c.restarts,
                })
                .collect()
        }
    };
    println!(
        "stack {} (pid {}), logs in {}",
        state.url,
        state.pid,
        state.log_dir.display()
    );
    println!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// Idempotent, like `docker compose down`: with no stack running there is
/// nothing to stop, which is what the caller wanted.
fn stack_down(run_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let state = match StackState::read(&run_dir) {
        Ok(state) => state,
        Err(StackError::NoState { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            println!("no stack is running in {}", run_dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    if !state.is_live() {
        let _ = std::fs::remove_file(StackState::path_in(&run_dir));
        println!(
            "no stack is running in {} (removed a stale state file)",
            run_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let pid = nix::unistd::Pid::from_raw(state.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("signalling the stack (pid {})", state.pid))?;
    // The stack stops its components in order, each with a grace period.
    let deadline = Instant::now() + Duration::from_secs(90);
    while target::stack::pid_alive(state.pid) {
        if Instant::now() > deadline {
            anyhow::bail!("the stack (pid {}) did not stop within 90s", state.pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stack stopped (pid {})", state.pid);
    Ok(ExitCode::SUCCESS)
}
