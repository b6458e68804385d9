//! The Task API instance (axum): users, categories and tasks under `/api/v1`,
//! with auth, idempotent creates, Redis cache-aside, probes and metrics. One
//! process per instance; `serve` is its library entry point.

mod categories;
mod envelope;
mod error;
mod input;
mod login;
mod metrics;
mod openapi;
mod probes;
mod tasks;
mod users;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::FutureExt as _;
use tracing::Instrument as _;

pub use error::{ApiError, FieldError};
pub use openapi::ApiDoc;

use crate::auth::JwtKey;
use crate::cache::Cache;
pub use crate::store::{Clock, DbConfig, StoreOptions};
use crate::store::{Created, Store, StoredResponse};
use metrics::Metrics;

/// Everything one API instance needs; build with `ApiConfig::new` and adjust.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The instance name, e.g. "api-1": sent as `X-Served-By`, logged, labelled.
    pub name: String,
    pub db: DbConfig,
    /// `redis://...`; `None` runs without a cache (`X-Cache: BYPASS`).
    pub redis_url: Option<String>,
    /// The HS256 secret shared with the gateway.
    pub jwt_secret: Vec<u8>,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub drain_grace: Duration,
    /// Bound on each Redis call; past it the request is served from the DB.
    pub cache_timeout: Duration,
    /// How long a cached entry lives (writes invalidate sooner).
    pub cache_ttl: Duration,
    /// The database pool, its timeouts and Idempotency-Key retention.
    pub store: StoreOptions,
    /// Larger request bodies answer 413.
    pub body_limit: usize,
    /// Lifetime of tokens issued at login.
    pub token_ttl: Duration,
}

impl ApiConfig {
    pub fn new(name: impl Into<String>, db: DbConfig, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            db,
            redis_url: None,
            jwt_secret: jwt_secret.into(),
            drain_grace: Duration::from_secs(10),
            cache_timeout: Duration::from_millis(50),
            cache_ttl: Duration::from_secs(60),
            store: StoreOptions::default(),
            body_limit: 64 * 1024,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// Shared by every request; one `Arc` clone per request.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    name: String,
    served_by: HeaderValue,
    store: Store,
    cache: Cache,
    jwt: JwtKey,
    metrics: Metrics,
    body_limit: usize,
    token_ttl: Duration,
}

impl AppState {
    /// Connects to the database (running migrations) and starts the cache
    /// connection in the background.
    pub async fn connect(config: &ApiConfig) -> Result<AppState, ApiError> {
        let store = Store::connect_with(&config.db, &config.store)
            .await
            .map_err(ApiError::Startup)?;
        let cache = match &config.redis_url {
            Some(url) => Cache::connect(url, config.cache_timeout, config.cache_ttl)?,
            None => Cache::disabled(),
        };
        Ok(Self::new(config, store, cache))
    }

    /// Builds the state from parts already connected.
    pub fn new(config: &ApiConfig, store: Store, cache: Cache) -> AppState {
        let served_by =
            HeaderValue::from_str(&config.name).unwrap_or_else(|_| HeaderValue::from_static("api"));
        AppState(Arc::new(Shared {
            name: config.name.clone(),
            served_by,
            store,
            cache,
            jwt: JwtKey::new(&config.jwt_secret),
            metrics: Metrics::default(),
            body_limit: config.body_limit,
            token_ttl: config.token_ttl,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn cache(&self) -> &Cache {
        &self.0.cache
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

/// The whole API as a router (tests drive it with `oneshot`).
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(login::login))
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/users/{id}/tasks", get(tasks::list_for_user))
        .route(
            "/categories",
            get(categories::list).post(categories::create),
        )
        .route(
            "/categories/{id}",
            get(categories::get)
                .put(categories::replace)
                .patch(categories::patch)
                .delete(categories::delete),
        )
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/tasks/{id}",
            get(tasks::get)
                .put(tasks::replace)
                .patch(tasks::patch)
                .delete(tasks::delete),
        );
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(probes::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.0.body_limit))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// What a create stores under its idempotency key: 201 with the new row.
fn created_body<T: serde::Serialize>(row: &T) -> StoredResponse {
    StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        body: envelope::wrap_value(row, None),
    }
}

/// 201 with the new row, or the stored first response of a retried create.
fn created_response<T>(created: Created<T>) -> Response {
    let (stored, replayed) = match created {
        Created::New(_, stored) => (stored, false),
        Created::Replay(stored) => (stored, true),
    };
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
    let mut response = envelope::json(status, stored.body);
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler bug must cost one 500, not the connection or the process.
async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            ApiError::Internal(format!("handler panicked: {what}")).into_response()
        }
    }
}

/// Outermost layer: a span with the instance name, the access log line,
/// metrics by route template, and `X-Served-By` on every response.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        instance = %state.0.name,
        method = %method,
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    state.0.metrics.observe(route, &method, status, elapsed);
    span.in_scope(|| tracing::info!(status, micros = elapsed.as_micros() as u64, route, "served"));
    response
        .headers_mut()
        .insert("x-served-by", state.0.served_by.clone());
    response
}

/// Runs one instance on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish for up to `drain_grace`, and
/// returns.
pub async fn serve(
    config: ApiConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let state = AppState::connect(&config).await?;
    let local = listener.local_addr()?;
    tracing::info!(instance = %config.name, addr = %local, db = state.store().backend(),
        cache = state.cache().is_enabled(), "api instance listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let pruner = tokio::spawn(prune_idempotency_keys(state.store().clone()));
    let mut graceful_rx = stop_rx.clone();
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
    });
    let mut deadline_rx = stop_rx;
    let grace = config.drain_grace;
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stop| *stop).await;
        tracing::info!(?grace, "shutting down: draining in-flight requests");
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!("drain grace elapsed; dropping remaining connections"),
    }
    pruner.abort();
    state.store().close().await;
    tracing::info!(instance = %config.name, "api instance stopped");
    Ok(())
}

/// Deletes expired Idempotency-Keys every minute (sooner for a shorter TTL)
/// for as long as the instance runs. A background task rather than a delete on
/// the create path: a bulk delete inside a request would put its cost (and, on
/// SQLite, the write lock) into the tail latency the stack exists to measure;
/// frequent small prunes keep each delete short. Expiry does not wait for
/// this: a claim takes over an expired key whether or not it was pruned, so
/// the period only bounds the table's size (TTL plus one period). The first
/// prune waits one period, clear of the start-up rush of instances migrating
/// one shared database. Every instance prunes; deletes are idempotent.
async fn prune_idempotency_keys(store: Store) {
    let period = store
        .idempotency_ttl()
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.prune_idempotency_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned expired idempotency keys"),
            // Transient (the database may be down); the next tick tries again.
            Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_json_500() {
        let router: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("kaboom");
                    }
                    "unreachable"
                }),
            )
            .layer(middleware::from_fn(catch_panic));
        let response = router
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal");
    }
}
