//! Results coming back from a sharded run without extra infrastructure: shards
//! POST their results file to `slolab collect`, which merges once all N arrived
//! and serves the merged results and report.
//!
//! - `server`: the collector (`slolab collect`);
//! - `post`: the shard's side (`slolab run --post-results URL`).

pub mod post;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use self::server::Collector;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Routes: POST /shards/{index} (a shard's results.json), GET /status, and once all
shards arrived and merged: GET /results.json, GET /report.html.")]
pub struct CollectArgs {
    /// How many shards the run has (indices 0..N-1).
    #[arg(long)]
    pub shards: u32,
    /// Address to listen on (port 0: any free port, printed on start).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Where shard-{index}.json, results.json and report.html are written.
    #[arg(long)]
    pub out: PathBuf,
    /// Largest results file accepted, in MiB.
    #[arg(long, default_value_t = 256)]
    pub max_body_mib: usize,
    /// The program run as `PROGRAM merge SHARD... -o OUT` (default: this binary).
    #[arg(long, hide = true)]
    pub merge_cmd: Option<PathBuf>,
}

pub fn main(args: CollectArgs) -> anyhow::Result<ExitCode> {
    if args.shards == 0 {
        anyhow::bail!("--shards 0: a run needs at least one shard (e.g. --shards 3)");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let this = std::env::current_exe().context("cannot find this binary to run `merge`")?;
    let collector = Collector {
        expected: args.shards,
        dir: args.out.clone(),
        merge_cmd: args.merge_cmd.clone().unwrap_or_else(|| this.clone()),
        report_cmd: this,
        max_body: args.max_body_mib.saturating_mul(1024 * 1024),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "slolab collect: listening on http://{addr} for {} shards",
            args.shards
        );
        server::serve(collector, listener, async {
            let stop = crate::shutdown::signal_received().await;
            eprintln!("slolab collect: {}: stopping", stop.name());
        })
        .await
    })?;
    Ok(crate::exit::SUCCESS)
}
