//! Shared pieces of the gateway tests: real HTTP backends on port 0 that can be
//! killed, restarted, made unready, slow or rude; a running gateway; a client.
//! Backends are small hyper servers (the Task API was not ready when these were
//! written) that answer with `X-Served-By` like an API instance does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use target::gateway::{GatewayConfig, GatewayError, HealthCheck, Upstream};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// How a backend treats requests (other than its `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers at once.
    Ok,
    /// Holds each request until `release` (or forever).
    Gated,
    /// Reads the request, then closes the connection without a response byte.
    Reset,
}

pub struct BackendState {
    pub name: String,
    /// Requests that arrived (readiness checks excluded).
    pub arrivals: AtomicUsize,
    pub ready: AtomicBool,
    gate: Semaphore,
    mode: Mode,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn start(name: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(BackendState {
            name: name.to_string(),
            arrivals: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            gate: Semaphore::new(0),
            mode,
        });
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Self {
            addr,
            state,
            task: Some(task),
        }
    }

    pub fn upstream(&self) -> Upstream {
        Upstream {
            name: self.state.name.clone(),
            addr: self.addr,
        }
    }

    pub fn arrivals(&self) -> usize {
        self.state.arrivals.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::SeqCst);
    }

    /// Lets every held request (and all later ones) through.
    pub fn release(&self) {
        self.state.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Like a crashed process: the port refuses and open connections drop.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Comes back on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(accept_loop(listener, Arc::clone(&self.state))));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Owns the connection tasks, so aborting this task drops every connection.
async fn accept_loop(listener: TcpListener, state: Arc<BackendState>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let state = Arc::clone(&state);
        if state.mode == Mode::Reset {
            connections.spawn(reset_after_request(stream, state));
            continue;
        }
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(respond(req, &state).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn reset_after_request(mut stream: TcpStream, state: Arc<BackendState>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    state.arrivals.fetch_add(1, Ordering::SeqCst);
    // Dropping the stream closes it: the client sees the connection end with
    // no response.
}

async fn respond(req: Request<Incoming>, state: &BackendState) -> Response<Full<Bytes>> {
    if req.uri().path() == "/readyz" {
        let status = if state.ready.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    state.arrivals.fetch_add(1, Ordering::SeqCst);
    if state.mode == Mode::Gated {
        state.gate.acquire().await.unwrap().forget();
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let text = if parts.uri.path() == "/metrics" {
        format!("backend_metrics{{instance=\"{}\"}} 1\n", state.name)
    } else {
        serde_json::json!({
            "served_by": state.name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "body_len": body.len(),
            "request_id": seen("x-request-id"),
            "forwarded_for": seen("x-forwarded-for"),
            "x_hop": seen("x-hop"),
            "connection": seen("connection"),
        })
        .to_string()
    };
    Response::builder()
        .header("x-served-by", state.name.as_str())
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// A gateway serving on port 0 in this test's runtime.
pub struct RunningGateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), GatewayError>>,
}

impl RunningGateway {
    pub async fn start(config: GatewayConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(target::gateway::serve(config, listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown; the returned handle resolves when `serve` returns.
    pub fn stop(mut self) -> JoinHandle<Result<(), GatewayError>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
    }

    /// One sample of the gateway's own metrics, e.g.
    /// `gateway_upstream_healthy{upstream="api-1"}`.
    pub async fn metric(&self, client: &TestClient, series: &str) -> Option<f64> {
        let reply = client.get(&self.url("/gateway/metrics")).await;
        reply.body.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }
}

/// Upstreams from backends, health checks fast (so tests converge quickly) with
/// fall = rise = 1, and breakers that only open when a test asks for it.
pub fn config(backends: &[&Backend]) -> GatewayConfig {
    let mut config = GatewayConfig {
        upstreams: backends.iter().map(|b| b.upstream()).collect(),
        health: HealthCheck {
            interval: Duration::from_millis(50),
            fall: 1,
            rise: 1,
            ..HealthCheck::default()
        },
        ..GatewayConfig::default()
    };
    config.breaker.failures = 1000;
    config
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn served_by(&self) -> &str {
        self.header("x-served-by").unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

#[derive(Clone)]
pub struct TestClient(Client<HttpConnector, Full<Bytes>>);

impl Default for TestClient {
    fn default() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }
}

impl TestClient {
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(30), self.0.request(req))
            .await
            .expect("the gateway answered within 30s")
            .expect("the gateway answered");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(request(Method::GET, url, &[], "")).await
    }
}

pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Polls `check` until it holds; panics after 20s (a bound, not a timing claim:
/// the conditions normally hold within a few health-check intervals).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
