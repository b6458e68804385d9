//! Operational endpoints: liveness, readiness (the database answers), the
//! Prometheus metrics and the OpenAPI document.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi as _;

use super::envelope;
use super::{ApiDoc, ApiError, AppState};

/// The process is up and serving HTTP.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let body = json!({"status": "ok", "instance": state.0.name});
    envelope::one(&body)
}

/// Ready when the database answers; the gateway health-checks this.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.0.store.ping().await?;
    let body = json!({"status": "ready", "instance": state.0.name,
        "db": state.0.store.backend(), "cache": state.0.cache.is_enabled()});
    Ok(envelope::one(&body))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.0.metrics.render(
        &state.0.name,
        state.0.cache.stats(),
        state.0.store.pool_usage(),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

pub async fn openapi() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()));
    envelope::json(StatusCode::OK, doc.clone())
}
