//! A shard's side of `slolab collect`: `slolab run --post-results URL` POSTs the
//! results file it wrote to `URL/{index}`, retrying with a bounded exponential
//! backoff, because the collector may still be starting (or restarting).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{header, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The env var an Indexed Job sets to each pod's completion index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Waits between attempts: `first`, doubling, at most `max`, `attempts` in all.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Backoff {
    /// 1, 2, 4, 8, 16, 30, 30 s between 8 attempts: about 1.5 min, enough for
    /// a collector pod to be rescheduled, short enough to fail the Job visibly.
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(30),
        attempts: 8,
    };

    /// The wait after failed attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// How long one attempt may take (the body is a few MB at most).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// This shard's index, as the Indexed Job gives it.
pub fn shard_index() -> anyhow::Result<u32> {
    let value = std::env::var(INDEX_ENV).with_context(|| {
        format!("--post-results needs the shard index, and {INDEX_ENV} is not set (an Indexed Job sets it)")
    })?;
    value
        .trim()
        .parse()
        .with_context(|| format!("{INDEX_ENV}={value}: not a shard index"))
}

/// Posts the results file at `path` as shard `index` of the run (blocking).
pub fn post_file(url: &str, index: u32, path: &Path) -> anyhow::Result<()> {
    let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(post(url, index, body, Backoff::DEFAULT))
}

/// `POST {url}/{index}`: done on a 2xx; retried after a connection failure, a
/// time-out, 408, 429 or a 5xx; given up at once on another 4xx (a wrong
/// index or body will not become right).
pub async fn post(url: &str, index: u32, body: Vec<u8>, backoff: Backoff) -> anyhow::Result<()> {
    let target = format!("{}/{index}", url.trim_end_matches('/'));
    let uri: Uri = target
        .parse()
        .with_context(|| format!("--post-results {url}: not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--post-results {url}: only http:// URLs are supported (the collector's Service)");
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = Bytes::from(body);
    let mut last = String::new();
    for attempt in 0..backoff.attempts {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .context("building the request")?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                if status.is_success() {
                    eprintln!("slolab run: results posted to {target} ({status})");
                    return Ok(());
                }
                let text = match response.into_body().collect().await {
                    Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
                    Err(_) => String::new(),
                };
                last = format!("{status} {text}");
                if !retryable(status) {
                    bail!("POST {target}: {last}");
                }
            }
            Ok(Err(e)) => last = error_chain(&e),
            Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        }
        if attempt + 1 < backoff.attempts {
            let wait = backoff.delay(attempt);
            eprintln!("slolab run: POST {target} failed ({last}); retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
    bail!(
        "POST {target}: gave up after {} attempts: {last}",
        backoff.attempts
    )
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// hyper's client error says "client error (Connect)"; the cause is below it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let b = Backoff::DEFAULT;
        let delays: Vec<u64> = (0..7).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.delay(100), b.max);
    }

    /// A collector on port 0 answering the first `failures` POSTs with
    /// `status`, then 201; returns its URL and the count of POSTs it got.
    async fn collector(
        failures: usize,
        status: StatusCode,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            "/shards/{index}",
            axum::routing::post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        (status, "not now")
                    } else {
                        (StatusCode::CREATED, "stored")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/shards", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(1),
        max: Duration::from_millis(2),
        attempts: 3,
    };

    #[tokio::test]
    async fn a_busy_collector_is_retried_and_a_refusal_is_final() {
        use std::sync::atomic::Ordering;
        let (url, seen) = collector(2, StatusCode::SERVICE_UNAVAILABLE).await;
        post(&url, 1, b"{}".to_vec(), QUICK).await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        let (url, seen) = collector(5, StatusCode::NOT_FOUND).await;
        let err = post(&url, 7, b"{}".to_vec(), QUICK).await.unwrap_err();
        assert_eq!(seen.load(Ordering::SeqCst), 1, "a 404 was retried");
        assert!(err.to_string().contains("404 Not Found not now"), "{err}");
    }

    #[tokio::test]
    async fn a_collector_that_never_answers_is_given_up_on() {
        // A port that was free a moment ago: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = post(
            &format!("http://127.0.0.1:{port}/shards"),
            0,
            b"{}".to_vec(),
            QUICK,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("gave up after 3 attempts"), "{err}");
        assert!(err.contains("/shards/0"), "{err}");
    }
}
