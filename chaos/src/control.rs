//! The chaos routes of the stack's loopback control endpoint: list, inject and
//! revert faults over HTTP, so `slolab chaos` can drive a running stack. The
//! stack adds the bearer-token check; these routes assume it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fault::FaultRequest;
use crate::injector::{FaultEvent, InjectError, Injector, InjectorOptions};
use crate::process::{Component, Components};

/// `GET /faults`: the components, the faults in force, and every event so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultsView {
    pub components: Vec<ComponentView>,
    pub active: Vec<FaultEvent>,
    pub events: Vec<FaultEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentView {
    pub name: String,
    pub kind: String,
    pub pid: Option<u32>,
    /// Whether network faults can apply (a fault proxy is in front of it).
    pub proxied: bool,
}

impl From<Component> for ComponentView {
    fn from(c: Component) -> Self {
        let kind = serde_json::to_value(&c.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        ComponentView {
            name: c.name,
            kind,
            pid: c.pid,
            proxied: c.proxy.is_some(),
        }
    }
}

/// The error body of every chaos route: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

struct ApiError(InjectError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            InjectError::Fault(_) => StatusCode::BAD_REQUEST,
            InjectError::NotActive(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(ErrorBody {
                error: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

/// `GET /faults`, `POST /faults`, `DELETE /faults/{id}`, `DELETE /faults`.
pub fn routes(injector: Arc<Injector>) -> Router {
    Router::new()
        .route("/faults", get(list).post(inject).delete(revert_all))
        .route("/faults/{id}", delete(revert))
        .with_state(injector)
}

/// What the stack's control endpoint calls with its components: makes the
/// injector (reverting what a crashed run left in `options.ledger_dir`) and its
/// routes. The injector lives as long as the router; dropping it reverts all.
pub fn installer(options: InjectorOptions) -> impl FnOnce(Arc<dyn Components>) -> Router + Send {
    move |components| match Injector::new(components, options) {
        Ok((injector, recovery)) => {
            if !recovery.resumed.is_empty() {
                tracing::warn!(pids = ?recovery.resumed, "resumed processes a crashed run left paused");
            }
            routes(injector)
        }
        Err(e) => {
            // Without its ledger the injector must not run: serve the reason.
            tracing::error!(error = %e, "chaos injector unavailable");
            let reason = e.to_string();
            Router::new().route(
                "/faults",
                get(move || async move {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(ErrorBody { error: reason }),
                    )
                }),
            )
        }
    }
}

async fn list(State(injector): State<Arc<Injector>>) -> Json<FaultsView> {
    let components = injector.components();
    let views = components
        .names()
        .iter()
        .filter_map(|n| components.lookup(n))
        .map(ComponentView::from)
        .collect();
    Json(FaultsView {
        components: views,
        active: injector.active(),
        events: injector.events(),
    })
}

async fn inject(
    State(injector): State<Arc<Injector>>,
    Json(req): Json<FaultRequest>,
) -> Result<(StatusCode, Json<Vec<FaultEvent>>), ApiError> {
    let events = injector.inject(&req).await.map_err(ApiError)?;
    Ok((StatusCode::CREATED, Json(events)))
}

async fn revert(
    State(injector): State<Arc<Injector>>,
    Path(id): Path<u64>,
) -> Result<Json<FaultEvent>, ApiError> {
    injector.revert(id).await.map(Json).map_err(ApiError)
}

async fn revert_all(State(injector): State<Arc<Injector>>) -> Json<Vec<FaultEvent>> {
    Json(injector.revert_all().await)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the control endpoint at {addr}: {source} (is `slolab stack up` running?)"
    )]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the control endpoint at {addr} did not answer within {0:?}",
        CLIENT_TIMEOUT
    )]
    Timeout { addr: SocketAddr },
    #[error("the control endpoint answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unreadable answer from the control endpoint: {0}")]
    Invalid(String),
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of these routes, for `slolab chaos`: one HTTP/1.1 exchange per call
/// over loopback, `Connection: close`, bearer token.
#[derive(Debug, Clone)]
pub struct ControlClient {
    pub addr: SocketAddr,
    pub token: String,
}

impl ControlClient {
    pub async fn list(&self) -> Result<FaultsView, ClientError> {
        self.call("GET", "/faults", None).await
    }

    pub async fn inject(&self, req: &FaultRequest) -> Result<Vec<FaultEvent>, ClientError> {
        let body = serde_json::to_string(req).expect("requests serialise");
        self.call("POST", "/faults", Some(body)).await
    }

    pub async fn revert(&self, id: u64) -> Result<FaultEvent, ClientError> {
        self.call("DELETE", &format!("/faults/{id}"), None).await
    }

    pub async fn revert_all(&self) -> Result<Vec<FaultEvent>, ClientError> {
        self.call("DELETE", "/faults", None).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<T, ClientError> {
        let addr = self.addr;
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await?;
            let body = body.unwrap_or_default();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.token,
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(CLIENT_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout { addr })?
            .map_err(|source| ClientError::Io { addr, source })?;
        let (status, body) = split_response(&raw)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| body.trim().to_string());
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Invalid(e.to_string()))
    }
}

/// Status and body of an HTTP/1.1 response read to EOF (chunked or not).
fn split_response(raw: &[u8]) -> Result<(u16, String), ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Invalid("no header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Invalid(format!("bad status line in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, String::from_utf8_lossy(body).into_owned()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| ClientError::Invalid("bad chunk size".into()))?;
        let data = &rest[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(split_response(plain).unwrap(), (201, "[]".into()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(split_response(chunked).unwrap(), (200, "{\"a\":1}".into()));
        assert!(split_response(b"garbage").is_err());
    }
}
