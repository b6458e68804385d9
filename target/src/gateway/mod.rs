//! The gateway: our own reverse proxy and load balancer in front of the API
//! instances (hyper 1 server, our own pooled HTTP/1.1 client), with health
//! checks, retries within a budget, breakers, rate limiting and JWT at the edge.
//!
//! Routes: `/gateway/metrics` (Prometheus text) and `/gateway/healthz` are the
//! gateway's own; every other path, `/metrics`, `/healthz` and `/readyz`
//! included, goes to an upstream. Gateway-made errors use the API's shape
//! `{"error":{"code","message","details"}}`: 401 (edge JWT), 413 (body over
//! `max_body_bytes`), 429 (rate limit, with Retry-After and RateLimit-*), 502
//! (every try failed), 503 (no healthy upstream, Retry-After: 1), 504 (timeouts).
//! Timeouts cover the wait for response headers; bodies then stream through.

mod balance;
mod budget;
mod config;
mod health;
mod metrics;
mod nginx;
mod pool;
mod proxy;
mod ratelimit;
mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub use config::{
    Balance, BreakerConfig, GatewayConfig, HealthCheck, PoolConfig, RateLimit, RetryPolicy,
    Upstream,
};
pub use nginx::{nginx_conf, NginxOptions};
pub use proxy::GatewayBody;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway needs at least one upstream")]
    NoUpstreams,
    #[error("invalid gateway config: {0}")]
    Config(String),
    #[error("gateway runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Serves the gateway on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish for up to `drain_timeout`.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Arc::new(proxy::Gateway::new(&config)?);
    let mut health_checks = health::spawn(&gateway, &config.health);
    info!(
        addr = ?listener.local_addr().ok(),
        upstreams = config.upstreams.len(),
        balance = %config.balance,
        "gateway listening"
    );

    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        let service = service_fn(move |req| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "client connection ended with an error");
            }
        });
    }

    drop(listener);
    info!(connections = graceful.count(), "gateway draining");
    tokio::select! {
        () = graceful.shutdown() => info!("gateway drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            warn!(timeout = ?config.drain_timeout, "drain timed out; closing the remaining connections");
        }
    }
    health_checks.abort_all();
    Ok(())
}

/// Runs [`serve`] on a runtime of its own: with `threads == 1` a
/// current-thread runtime (no work-stealing overhead; the fastest shape when
/// the gateway is pinned to one core), else a multi-thread one.
pub fn run_blocking(
    config: GatewayConfig,
    listener: std::net::TcpListener,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            builder.worker_threads(threads);
        }
        builder.enable_all().build()
    }
    .map_err(GatewayError::Runtime)?;
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(GatewayError::Runtime)?;
        let listener = TcpListener::from_std(listener).map_err(GatewayError::Runtime)?;
        serve(config, listener, shutdown).await
    })
}
