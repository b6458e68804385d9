//! The loopback control endpoint of a running stack: `GET /components` (name,
//! kind, pid, port, front, health) behind a bearer token. Other routes (the chaos
//! injector's) merge into the same router and share the token check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Registry;

/// Builds extra control routes from the stack's components (the chaos injector
/// uses `chaos::Components` to find pids and proxies and to stop/start).
pub type ControlRoutes = Box<dyn FnOnce(Arc<dyn chaos::Components>) -> Router + Send>;

/// One row of `GET /components`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub kind: String,
    pub pid: Option<u32>,
    pub port: u16,
    pub front: Option<SocketAddr>,
    /// `healthy`, `unhealthy (STATUS)`, `down`, `stopped` or `exited (STATUS)`.
    pub health: String,
    pub restarts: u32,
}

/// The stack's own routes. Authentication is added by [`protect`].
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/components", get(components))
        .with_state(registry)
}

async fn components(State(registry): State<Arc<Registry>>) -> Json<Vec<ComponentStatus>> {
    Json(registry.status().await)
}

/// Require `Authorization: Bearer <token>` on every route.
pub fn protect(router: Router, token: String) -> Router {
    let token: Arc<str> = token.into();
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let token = token.clone();
        async move {
            let presented = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n")
                    .into_response();
            }
            next.run(req).await
        }
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random 32-byte token, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serve `router` on 127.0.0.1:0 until the returned sender is dropped or fired.
pub async fn serve(
    router: Router,
) -> std::io::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "control endpoint failed");
        }
    });
    Ok((addr, tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn the_token_is_required() {
        let app = protect(
            Router::new().route("/components", get(|| async { "[]" })),
            "s3cret".into(),
        );
        for (header, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
            (Some("s3cret"), StatusCode::UNAUTHORIZED),
            (Some("Bearer s3cret"), StatusCode::OK),
        ] {
            let mut req = Request::get("/components");
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let res = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), expected, "{header:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
