//! loadgen: an HTTP load generator with hey's closed model and a coordinated-
//! omission-correct open model, recording HDR histograms per interval and a full
//! outcome taxonomy into a mergeable results file.

mod engine;
mod epoll;
mod h2;
mod http1;
mod meta;
pub mod outcome;
pub mod pacer;
pub mod plan;
mod record;
pub mod results;
mod sock;
pub mod summary;
mod template;
mod tls;
#[cfg(target_os = "linux")]
mod uring;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use engine::LATE_THRESHOLD;
pub use meta::host;
pub use outcome::Outcome;
pub use plan::{
    Arrivals, BadPolicy, Io, LoadPlan, Model, RequestTemplate, Shard, Stage, Stop, Transport,
};
pub use record::{is_bad, PhaseStat, Phases};
pub use results::{ClockOffset, MergedShard, MergedShards, Results, ShardRecord, SCHEMA_VERSION};

/// Why a run could not start. Failures of individual requests are not errors:
/// they are outcomes, counted in the results.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Plan(String),
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("bad template in {template:?}: {reason}")]
    Template { template: String, reason: String },
    #[error("cannot resolve host {host:?}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot start the load runtime: {0}")]
    Runtime(std::io::Error),
}

/// A snapshot for progress bars, published once per interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    /// Requests ended so far (as handed over by workers at interval boundaries).
    pub requests: u64,
    /// Requests per second over the last interval.
    pub rate: f64,
    /// Bad outcomes so far.
    pub errors: u64,
    /// p99 latency of the last interval.
    pub p99_last_interval: Duration,
    /// Index of the open-model stage running now (0 in the closed model).
    pub stage: usize,
}

/// One response, as hey's `-o csv` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    /// Send time from the start of the run.
    pub offset: Duration,
    /// Latency (from the scheduled time in the open model).
    pub response_time: Duration,
    /// Time to connect, 0 on a reused connection.
    pub connect: Duration,
    pub write: Duration,
    /// Time to first response byte.
    pub wait: Duration,
    pub read: Duration,
    pub status: u16,
}

impl RequestRow {
    /// hey's CSV header.
    pub const CSV_HEADER: &'static str =
        "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset";

    /// The row in hey's format (seconds with 4 decimals; DNS is resolved once
    /// before the run, so it is always 0).
    pub fn to_csv(&self) -> String {
        format!(
            "{:4.4},{:4.4},{:4.4},{:4.4},{:4.4},{:4.4},{},{:4.4}",
            self.response_time.as_secs_f64(),
            self.connect.as_secs_f64(),
            0.0,
            self.write.as_secs_f64(),
            self.wait.as_secs_f64(),
            self.read.as_secs_f64(),
            self.status,
            self.offset.as_secs_f64()
        )
    }
}

/// Checks a plan without running it (what `run` refuses, it refuses here too).
pub fn validate(plan: &LoadPlan) -> Result<(), LoadError> {
    engine::validate(plan)?;
    template::compile(plan).map(|_| ())
}

/// The `Authorization` header value for `user:password` (hey's `-a`).
pub fn basic_auth(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// Runs `plan` on the caller's tokio runtime. `shutdown` resolving means Ctrl-C:
/// sending stops, in-flight requests get up to the timeout, and the partial
/// results come back with `run.interrupted = true`.
pub async fn run(
    plan: LoadPlan,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: Option<watch::Sender<Progress>>,
) -> Result<Results, LoadError> {
    engine::run(plan, None, shutdown, progress, None).await
}

/// [`run`] with t = 0 at `origin` (waited for when it is in the future): the
/// schedule, the timeline and `run.started_at` are all measured from it, so a
/// caller that drives something else on the same origin (the chaos plan, other
/// shards) shares one clock with the load instead of re-parsing timestamps.
pub async fn run_from(
    plan: LoadPlan,
    origin: std::time::Instant,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: Option<watch::Sender<Progress>>,
) -> Result<Results, LoadError> {
    engine::run(plan, Some(origin), shutdown, progress, None).await
}

/// [`run`] (or [`run_from`] `origin`), also streaming one [`RequestRow`] per
/// response into `rows` (bounded: a slow reader slows the run rather than
/// growing memory).
pub async fn run_with_rows(
    plan: LoadPlan,
    origin: Option<std::time::Instant>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: Option<watch::Sender<Progress>>,
    rows: mpsc::Sender<RequestRow>,
) -> Result<Results, LoadError> {
    engine::run(plan, origin, shutdown, progress, Some(rows)).await
}

/// Builds a runtime with `plan.threads` worker threads (0: one per core; 1: a
/// single-threaded runtime, the cheapest per request) and runs the plan on it.
pub fn run_blocking(
    plan: LoadPlan,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Results, LoadError> {
    runtime(plan.threads)?.block_on(run(plan, shutdown, None))
}

/// The runtime `run_blocking` uses, for callers that need to drive more on it.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, LoadError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().map_err(LoadError::Runtime)
}
