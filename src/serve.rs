//! `slolab serve api|gateway` (hidden): runs one component of the stack in this
//! process, so the supervisor can start each instance and the gateway as a separate
//! OS process (re-executing this binary) and a killed instance is really gone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use target::api::{ApiConfig, DbConfig};
use target::gateway::GatewayConfig;

use target::stack::JWT_SECRET_ENV;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    component: Component,
}

#[derive(Debug, clap::Subcommand)]
enum Component {
    /// One Task API instance.
    Api(ApiArgs),
    /// The builtin gateway (reverse proxy and load balancer).
    Gateway(GatewayArgs),
}

#[derive(Debug, clap::Args)]
struct ApiArgs {
    /// Instance name, sent as X-Served-By (e.g. api-1).
    #[arg(long, default_value = "api-1")]
    name: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// `sqlite:PATH` or a `postgres://` URL.
    #[arg(long, value_parser = parse_db)]
    db: DbConfig,
    /// `redis://` URL of the cache; without it the instance runs uncached.
    #[arg(long)]
    redis: Option<String>,
    /// HS256 secret shared with the gateway.
    #[arg(long, env = JWT_SECRET_ENV, hide_env_values = true)]
    jwt_secret: String,
    /// Database connections in this instance's pool.
    #[arg(long)]
    db_pool_size: Option<u32>,
    /// How long an Idempotency-Key is remembered, e.g. `24h` (the default) or
    /// `90m`; a POST reusing a key after that creates a new row.
    #[arg(long, value_parser = chaos::duration::parse)]
    idempotency_ttl: Option<std::time::Duration>,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct GatewayArgs {
    /// A JSON file holding a `GatewayConfig` (upstreams, balance, health, ...).
    #[arg(long)]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Runtime threads; 1 runs a current-thread runtime (best when pinned to a core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn parse_db(s: &str) -> Result<DbConfig, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(DbConfig::Postgres { url: s.to_string() })
    } else if let Some(path) = s.strip_prefix("sqlite:") {
        Ok(DbConfig::Sqlite {
            path: PathBuf::from(path.trim_start_matches("//")),
        })
    } else {
        Err(format!(
            "`{s}` is neither `sqlite:PATH` nor a `postgres://` URL"
        ))
    }
}

pub fn main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    match args.component {
        Component::Api(a) => serve_api(a),
        Component::Gateway(g) => serve_gateway(g),
    }
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads.filter(|n| *n > 0) {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// The supervisor stops components with SIGTERM, a terminal with Ctrl-C.
async fn shutdown_signal() {
    let stop = crate::shutdown::signal_received().await;
    tracing::info!("{}: shutting down", stop.name());
}

fn serve_api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let mut config = ApiConfig::new(&args.name, args.db, args.jwt_secret.into_bytes());
    config.redis_url = args.redis;
    if let Some(n) = args.db_pool_size {
        config.store.pool_size = n;
    }
    if let Some(ttl) = args.idempotency_ttl {
        config.store.idempotency_ttl = ttl;
    }
    runtime(args.threads)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("{}: cannot listen on {}", args.name, args.listen))?;
        target::api::serve(config, listener, shutdown_signal())
            .await
            .with_context(|| format!("api instance {}", args.name))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn serve_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading gateway config {}", args.config.display()))?;
    let mut config: GatewayConfig = serde_json::from_str(&text)
        .with_context(|| format!("parsing gateway config {}", args.config.display()))?;
    if config.jwt_secret.is_none() {
        config.jwt_secret = std::env::var(JWT_SECRET_ENV).ok().map(String::into_bytes);
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("gateway: cannot listen on {}", args.listen))?;
    let threads = args.threads;
    // The shutdown future needs a runtime to register signal handlers; run_blocking
    // builds its own, so the future registers lazily when first polled there.
    target::gateway::run_blocking(config, listener, threads, shutdown_signal())
        .context("gateway")?;
    Ok(ExitCode::SUCCESS)
}
