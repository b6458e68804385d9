//! The request path: edge checks (rate limit, JWT), header rewriting, then tries
//! against upstreams with retries, timeouts and breakers, streaming the chosen
//! upstream's response back. Everything here runs per request, so it avoids locks
//! and allocations it does not need.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::balance::{Picker, Tried};
use super::budget::RetryBudget;
use super::config::{GatewayConfig, RetryPolicy};
use super::metrics::{LocalReason, Metrics};
use super::pool::{PoolError, Sender};
use super::ratelimit::{Decision, RateLimiter};
use super::upstream::{duration_ms, InFlight, UpstreamState};
use super::GatewayError;
use crate::auth::{AuthError, JwtKey};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Response body: an upstream's streamed body (holding its in-flight slot until
/// done) or one the gateway wrote itself. An enum rather than a boxed body so
/// the hot path does not allocate for it.
pub struct GatewayBody(BodyKind);

enum BodyKind {
    Upstream {
        body: Incoming,
        in_flight: InFlight,
        /// The connection, handed back to its pool once the body is read.
        sender: Option<Sender>,
    },
    Local(Full<Bytes>),
}

impl GatewayBody {
    fn local(bytes: Bytes) -> Self {
        Self(BodyKind::Local(Full::new(bytes)))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Upstream {
                body,
                in_flight,
                sender,
            } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                let done = match &frame {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    _ => false,
                };
                if done {
                    if let Some(sender) = sender.take() {
                        in_flight.upstream().pool.put(sender);
                    }
                }
                frame
            }
            BodyKind::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Upstream { body, .. } => body.is_end_stream(),
            BodyKind::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Upstream { body, .. } => body.size_hint(),
            BodyKind::Local(full) => full.size_hint(),
        }
    }
}

/// Upstream response bodies up to this size are buffered rather than streamed.
const BUFFERED_RESPONSE_BYTES: u64 = 64 * 1024;

/// Why a try's exchange failed.
#[derive(Debug, thiserror::Error)]
enum TryError {
    #[error(transparent)]
    Send(PoolError),
    #[error("reading the response body: {0}")]
    Body(#[source] hyper::Error),
}

/// How a try ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Could not connect: nothing was sent, so any method may be retried.
    Connect,
    /// The connection failed after the request was (maybe) sent.
    Reset,
    /// No response headers within the per-try or overall timeout.
    Timeout,
}

/// Shared state of one running gateway.
pub(crate) struct Gateway {
    pub upstreams: Box<[Arc<UpstreamState>]>,
    picker: Picker,
    attempts: u32,
    per_try_timeout: Duration,
    overall_timeout: Duration,
    budget: RetryBudget,
    passive_ejection: bool,
    limiter: Option<(RateLimiter, HeaderName)>,
    jwt: Option<JwtKey>,
    max_body_bytes: usize,
    pub metrics: Metrics,
    epoch: Instant,
}

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        if config.upstreams.is_empty() {
            return Err(GatewayError::NoUpstreams);
        }
        let upstreams: Box<[Arc<UpstreamState>]> = config
            .upstreams
            .iter()
            .map(|u| Arc::new(UpstreamState::new(u, &config.breaker, &config.pool)))
            .collect();
        let limiter = match &config.rate_limit {
            Some(rl) => {
                let header = HeaderName::from_bytes(rl.key_header.as_bytes()).map_err(|_| {
                    GatewayError::Config(format!(
                        "rate-limit key-header `{}` is not a valid header name",
                        rl.key_header
                    ))
                })?;
                Some((RateLimiter::new(rl), header))
            }
            None => None,
        };
        let RetryPolicy {
            attempts,
            per_try_timeout,
            overall_timeout,
            ..
        } = config.retry;
        Ok(Self {
            picker: Picker::new(&config.balance, &upstreams),
            upstreams,
            attempts: attempts.max(1),
            per_try_timeout,
            overall_timeout,
            budget: RetryBudget::new(&config.retry),
            passive_ejection: config.health.enabled,
            limiter,
            jwt: config.jwt_secret.as_deref().map(JwtKey::new),
            max_body_bytes: config.max_body_bytes,
            metrics: Metrics::default(),
            epoch: Instant::now(),
        })
    }

    /// Milliseconds on the gateway's clock (tokio's, so tests can pause it).
    pub fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// `now_ms` for an instant already read (each read is a clock call).
    fn ms_at(&self, at: Instant) -> u64 {
        duration_ms(at.saturating_duration_since(self.epoch))
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<GatewayBody> {
        if let Some(route) = req.uri().path().strip_prefix("/gateway/") {
            return self.own_route(route);
        }
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let request_id = match parts.headers.get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                parts.headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };

        let mut ip_buf = [0u8; 16];
        let ip_key = ip_bytes(peer.ip(), &mut ip_buf);
        let rate = self.limiter.as_ref().map(|(limiter, header)| {
            let key = parts
                .headers
                .get(header)
                .map_or(ip_key, HeaderValue::as_bytes);
            limiter.check(key, self.ms_at(started))
        });

        let mut response = match rate {
            Some(decision) if !decision.allowed => {
                let mut r = self.local(
                    LocalReason::RateLimited,
                    "too many requests; retry after the time in Retry-After",
                    serde_json::json!({ "retry_after_secs": decision.retry_after_secs }),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, decision.retry_after_secs.into());
                r
            }
            _ => match self.check_auth(&parts.method, parts.uri.path(), &parts.headers) {
                Err(e) => {
                    let mut r = self.local(
                        LocalReason::Unauthorized,
                        "a valid bearer token is required for writes",
                        serde_json::json!({ "reason": auth_reason(&e) }),
                    );
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    r
                }
                Ok(()) => self.forward(parts, body, peer.ip(), ip_key, started).await,
            },
        };

        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID.clone(), request_id);
        if let Some(d) = rate {
            insert_rate_headers(headers, &d);
        }
        self.metrics.observe(started.elapsed());
        response
    }

    /// `/gateway/metrics` and `/gateway/healthz`: the gateway's own endpoints,
    /// kept under a prefix so `/metrics`, `/healthz` and `/readyz` still reach
    /// an API instance.
    fn own_route(&self, route: &str) -> Response<GatewayBody> {
        match route {
            "metrics" => {
                let mut r = Response::new(GatewayBody::local(Bytes::from(
                    self.metrics.render(&self.upstreams),
                )));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            "healthz" => {
                let healthy = self.upstreams.iter().filter(|u| u.is_healthy()).count();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "status": "ok",
                        "upstreams": self.upstreams.len(),
                        "healthy_upstreams": healthy,
                    }),
                )
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                &error_body(
                    "not_found",
                    "the gateway serves /gateway/metrics and /gateway/healthz",
                    serde_json::json!({}),
                ),
            ),
        }
    }

    fn check_auth(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), AuthError> {
        let Some(key) = &self.jwt else {
            return Ok(());
        };
        let write = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let under_api = path == "/api/v1" || path.starts_with("/api/v1/");
        if !write || !under_api || path == "/api/v1/auth/login" {
            return Ok(());
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        key.verify_header(value).map(drop)
    }

    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
        client_ip: IpAddr,
        ip_key: &[u8],
        started: Instant,
    ) -> Response<GatewayBody> {
        let body = match self.buffer_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(reason) => {
                return self.local(
                    reason,
                    "the request body could not be read or is too large",
                    serde_json::json!({ "max_body_bytes": self.max_body_bytes }),
                );
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::EXPECT);
        append_forwarded_for(&mut parts.headers, client_ip);
        parts
            .headers
            .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));

        // Once a request may have reached an upstream, only repeat it when doing
        // so twice is harmless.
        let repeatable = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::DELETE
                | Method::OPTIONS
                | Method::TRACE
        ) || (parts.method == Method::POST
            && parts.headers.contains_key(&IDEMPOTENCY_KEY));
        // A copy (a reference count) so the last try can take the headers.
        let hash_value = self
            .picker
            .hash_header()
            .and_then(|h| parts.headers.get(h).cloned());
        let hash_key = hash_value.as_ref().map_or(ip_key, HeaderValue::as_bytes);
        // Upstreams get the origin form (`/path?query`).
        let origin: Uri = match parts.uri.path_and_query() {
            Some(_) if parts.uri.scheme().is_none() => parts.uri.clone(),
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };

        let deadline = started + self.overall_timeout;
        self.budget.on_request(self.ms_at(started));
        let mut tried = Tried::default();
        let mut last_failure = None;
        for attempt in 0..self.attempts {
            // A bodiless first try goes out as the request arrived (reading a
            // body or a retry takes time: those read the clock again).
            let now = if attempt == 0 && body.is_empty() {
                started
            } else {
                Instant::now()
            };
            let now_ms = self.ms_at(now);
            let Some(index) = self.picker.pick(&self.upstreams, hash_key, tried, now_ms) else {
                break;
            };
            if attempt > 0 {
                if !self.budget.try_retry(now_ms) {
                    self.metrics
                        .retries_refused_by_budget
                        .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            }
            tried.insert(index);
            let upstream = &self.upstreams[index];
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                last_failure = Some(Failure::Timeout);
                break;
            }

            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = origin.clone();
            *req.version_mut() = Version::HTTP_11;
            // Only a try that may be followed by another needs a copy.
            *req.headers_mut() = if attempt + 1 < self.attempts {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            if let header::Entry::Vacant(host) = req.headers_mut().entry(header::HOST) {
                host.insert(authority_value(&upstream.authority));
            }

            let in_flight = upstream.start_request();
            let exchange = async {
                let (response, sender) = upstream.pool.send(req).await.map_err(TryError::Send)?;
                let (mut head, body) = response.into_parts();
                // Small bodies of known length are read whole, like nginx's
                // proxy_buffering: the client then gets headers and body in one
                // write, and the upstream connection returns to the pool at once.
                let body = match body.size_hint().exact() {
                    Some(len) if len <= BUFFERED_RESPONSE_BYTES => {
                        let whole = body.collect().await.map_err(TryError::Body)?;
                        upstream.pool.put(sender);
                        GatewayBody::local(whole.to_bytes())
                    }
                    _ => GatewayBody(BodyKind::Upstream {
                        body,
                        in_flight: upstream.start_request(),
                        sender: Some(sender),
                    }),
                };
                strip_hop_by_hop(&mut head.headers);
                Ok::<_, TryError>(Response::from_parts(head, body))
            };
            let outcome = tokio::time::timeout(self.per_try_timeout.min(remaining), exchange).await;
            let failure = match outcome {
                Ok(Ok(response)) => {
                    upstream.breaker.on_success();
                    upstream.record_status(response.status().as_u16());
                    return response;
                }
                Ok(Err(TryError::Send(e))) if e.is_connect() => {
                    debug!(upstream = %upstream.name, error = ?e, "connect failed");
                    if self.passive_ejection && upstream.eject() {
                        warn!(upstream = %upstream.name, "ejected after a connection failure");
                    }
                    Failure::Connect
                }
                Ok(Err(e)) => {
                    debug!(upstream = %upstream.name, error = %e, "upstream failed before responding");
                    Failure::Reset
                }
                Err(_) => {
                    debug!(upstream = %upstream.name, "try timed out");
                    Failure::Timeout
                }
            };
            drop(in_flight);
            upstream.failures.fetch_add(1, Ordering::Relaxed);
            if upstream.breaker.on_failure(self.now_ms()) {
                warn!(upstream = %upstream.name, "circuit breaker opened");
            }
            last_failure = Some(failure);
            if failure != Failure::Connect && !repeatable {
                break;
            }
        }
        match last_failure {
            None => {
                let mut r = self.local(
                    LocalReason::NoHealthyUpstream,
                    "no healthy upstream is available",
                    serde_json::json!({ "upstreams": self.upstreams.len() }),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Some(Failure::Timeout) => self.local(
                LocalReason::GatewayTimeout,
                "the upstream did not respond in time",
                serde_json::json!({ "tries": tried_count(tried) }),
            ),
            Some(Failure::Connect | Failure::Reset) => self.local(
                LocalReason::BadGateway,
                "the upstream failed before responding",
                serde_json::json!({ "tries": tried_count(tried) }),
            ),
        }
    }

    /// Reads the whole request body (bounded) so a retry can send it again.
    async fn buffer_body(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, LocalReason> {
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(LocalReason::PayloadTooLarge);
        }
        match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(LocalReason::PayloadTooLarge)
            }
            Err(_) => Err(LocalReason::BadRequest),
        }
    }

    fn local(
        &self,
        reason: LocalReason,
        message: &str,
        details: serde_json::Value,
    ) -> Response<GatewayBody> {
        self.metrics.local(reason);
        json_response(
            reason.status(),
            &error_body(reason.code(), message, details),
        )
    }
}

/// The API's error shape: `{"error":{"code","message","details"}}`.
fn error_body(code: &str, message: &str, details: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message, "details": details } })
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<GatewayBody> {
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    let mut r = Response::new(GatewayBody::local(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn auth_reason(e: &AuthError) -> &'static str {
    match e {
        AuthError::Missing => "missing",
        AuthError::Expired => "expired",
        AuthError::Invalid(_) => "invalid",
    }
}

fn tried_count(tried: Tried) -> u32 {
    (0..64).filter(|&i| tried.contains(i)).count() as u32
}

fn insert_rate_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert(RATELIMIT_LIMIT.clone(), d.limit.into());
    headers.insert(RATELIMIT_REMAINING.clone(), d.remaining.into());
    headers.insert(RATELIMIT_RESET.clone(), d.reset_secs.into());
}

/// A UUID v4 from the thread-local RNG: no syscall per request (unlike
/// `Uuid::new_v4` without the fast-rng feature).
fn new_request_id() -> HeaderValue {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .expect("a hyphenated UUID is a valid header value")
}

fn authority_value(authority: &http::uri::Authority) -> HeaderValue {
    HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value")
}

fn ip_bytes(ip: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            &buf[..4]
        }
        IpAddr::V6(v6) => {
            *buf = v6.octets();
            &buf[..]
        }
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    let mut ip = [0u8; 64];
    let ip = ip_text(client_ip, &mut ip);
    let value = match headers.get(&X_FORWARDED_FOR) {
        Some(previous) => {
            let mut v = Vec::with_capacity(previous.len() + 2 + ip.len());
            v.extend_from_slice(previous.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip);
            HeaderValue::from_maybe_shared(Bytes::from(v))
        }
        None => HeaderValue::from_bytes(ip),
    };
    if let Ok(v) = value {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// An address as text without `fmt` (IPv4, the common case, by hand).
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            &buf[..len]
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{v6}");
            let len = cursor.position() as usize;
            &buf[..len]
        }
    }
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few headers a message has is cheaper than nine
    // hashed lookups; most messages carry no hop-by-hop header but
    // `Connection: keep-alive`.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            // Connection options, not header names (keep-alive is removed below).
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        append_forwarded_for(&mut h, "192.168.0.255".parse().unwrap());
        append_forwarded_for(&mut h, "1:2:3:4:5:6:7:8".parse().unwrap());
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "10.0.0.1, ::1, 192.168.0.255, 1:2:3:4:5:6:7:8"
        );
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let id = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }
}
