//! Active health checks: one task per upstream polls its readiness path and
//! ejects it after `fall` failures in a row, re-admits it after `rise` successes
//! in a row. This is also the only way back for a passively ejected upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use super::config::HealthCheck;
use super::pool::Pool;
use super::proxy::Gateway;

pub(crate) fn spawn(gateway: &Arc<Gateway>, config: &HealthCheck) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    if !config.enabled {
        return tasks;
    }
    let path = PathAndQuery::try_from(config.path.as_str())
        .unwrap_or_else(|_| PathAndQuery::from_static("/readyz"));
    for index in 0..gateway.upstreams.len() {
        tasks.spawn(watch(
            Arc::clone(gateway),
            index,
            path.clone(),
            config.clone(),
        ));
    }
    tasks
}

async fn watch(gateway: Arc<Gateway>, index: usize, path: PathAndQuery, config: HealthCheck) {
    let upstream = &gateway.upstreams[index];
    let uri = Uri::from(path);
    let host = HeaderValue::from_str(upstream.authority.as_str())
        .expect("an authority is a valid header value");

    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut seen_healthy = upstream.is_healthy();
    loop {
        ticker.tick().await;
        let ok = probe(&upstream.pool, &uri, &host, config.timeout).await;
        let healthy = upstream.is_healthy();
        if seen_healthy && !healthy {
            // Ejected by live traffic since the last check: it has to earn
            // `rise` fresh successes to come back.
            successes = 0;
        }
        if ok {
            failures = 0;
            successes = successes.saturating_add(1);
            if !healthy && successes >= config.rise && upstream.readmit() {
                info!(upstream = %upstream.name, "re-admitted by health checks");
            }
        } else {
            successes = 0;
            failures = failures.saturating_add(1);
            if healthy && failures >= config.fall && upstream.eject() {
                warn!(upstream = %upstream.name, path = %config.path, "ejected by health checks");
            }
        }
        seen_healthy = upstream.is_healthy();
    }
}

/// A check passes on any 2xx within the timeout (body included, so the
/// connection goes back to the pool clean).
async fn probe(pool: &Pool, uri: &Uri, host: &HeaderValue, timeout: Duration) -> bool {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(HOST, host.clone());
    let check = async {
        let (response, sender) = pool.send(req).await.ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        pool.put(sender);
        Some(ok)
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(true)))
}
