//! `https://` against real TLS servers on port 0 (tokio-rustls with a fresh
//! self-signed rcgen certificate, which the client accepts like hey does):
//! keep-alive reuse, session resumption, exact body counts, redirects across
//! schemes, each way TLS can fail, and HTTP/2 (`-h2`): by ALPN over TLS and by
//! prior knowledge (h2c) over plain TCP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::*;

#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    /// TLS handshakes completed, and how many of them resumed a session.
    handshakes: AtomicU64,
    resumed: AtomicU64,
    requests: AtomicU64,
    hosts: Mutex<Vec<String>>,
    /// The HTTP version of every request served.
    versions: Mutex<Vec<hyper::Version>>,
}

/// How the server behaves after accepting a TCP connection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// TLS, then HTTP/1.1 keep-alive (hyper) with the routes of `handle`.
    Serve,
    /// Plain HTTP/1.1 with the same routes (for redirects into https).
    Plain,
    /// Offers only `h2` by ALPN, so the handshake ends in a fatal alert.
    OnlyH2,
    /// TLS with ALPN `h2`, then HTTP/2 (hyper) with the routes of `handle`.
    H2,
    /// HTTP/2 without TLS, by prior knowledge (h2c).
    PlainH2,
    /// Reads a request, promises 100 body bytes, sends 5, then ends the TLS
    /// session with `close_notify` (true) or just closes the socket (false).
    ShortBody { close_notify: bool },
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Server {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Routes: `/length/N` N bytes with Content-Length; `/chunked/N` N bytes in three
/// chunks; `/relative` 302 to `/length/7`; `/to?URL` 302 to URL; else "hello".
async fn handle(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<Body>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let host = req
        .headers()
        .get("host")
        .map(|h| h.to_str().unwrap().to_string())
        // HTTP/2 carries it as :authority.
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    seen.hosts.lock().unwrap().push(host);
    seen.versions.lock().unwrap().push(req.version());
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(b"hello")).boxed());
    if let Some(n) = path.strip_prefix("/length/") {
        let data = vec![b'x'; n.parse().unwrap()];
        *resp.body_mut() = Full::new(Bytes::from(data)).boxed();
    } else if let Some(n) = path.strip_prefix("/chunked/") {
        *resp.body_mut() = chunked(n.parse().unwrap());
    } else if path == "/relative" || path == "/to" {
        let location = match query {
            Some(q) if path == "/to" => q,
            _ => "/length/7".to_string(),
        };
        *resp.status_mut() = hyper::StatusCode::FOUND;
        resp.headers_mut()
            .insert("location", location.parse().unwrap());
    }
    Ok(resp)
}

async fn server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let acceptor = TlsAcceptor::from(match mode {
        Mode::OnlyH2 | Mode::H2 => server_config(&[b"h2"]),
        _ => server_config(&[b"http/1.1"]),
    });
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let seen = s.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn({
                    let seen = seen.clone();
                    move |req| handle(req, seen.clone())
                });
                let http = hyper::server::conn::http1::Builder::new();
                let h2 =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                if mode == Mode::PlainH2 {
                    let _ = h2.serve_connection(TokioIo::new(tcp), svc).await;
                    return;
                }
                if mode == Mode::Plain {
                    let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    return;
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.handshakes.fetch_add(1, Ordering::SeqCst);
                if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                    seen.resumed.fetch_add(1, Ordering::SeqCst);
                }
                match mode {
                    Mode::H2 => {
                        let _ = h2.serve_connection(TokioIo::new(tls), svc).await;
                    }
                    Mode::ShortBody { close_notify } => {
                        if !read_head(&mut tls).await {
                            return;
                        }
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                            .await;
                        let _ = tls.flush().await;
                        if close_notify {
                            let _ = tls.shutdown().await;
                        }
                    }
                    _ => {
                        let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
            });
        }
    });
    Server { addr, seen }
}

#[tokio::test]
async fn keep_alive_over_tls_sends_exactly_n_on_at_most_c_connections() {
    let s = server(Mode::Serve).await;
    let r = loadgen::run(closed_plan(&s.url("https", "/"), 200, 10), never(), None)
        .await
        .unwrap();
    assert_eq!(r.totals.requests, 200);
    assert_eq!(outcome(&r, "2xx"), 200);
    assert_eq!(r.totals.status_codes[&200], 200);
    assert_eq!(r.totals.bytes_received, 200 * 5);
    assert_eq!(s.seen.requests.load(Ordering::SeqCst), 200);
    let connections = s.seen.connections.load(Ordering::SeqCst);
    assert!((1..=10).contains(&connections), "{connections} connections");
    assert_eq!(s.seen.handshakes.load(Ordering::SeqCst), connections);
    // The Host header is the authority as written (here with its port).
    let host = s.addr.to_string();
    assert!(s.seen.hosts.lock().unwrap().iter().all(|h| *h == host));
}

#[tokio::test]
async fn reconnects_resume_the_tls_session() {
    let s = server(Mode::Serve).await;
    let mut plan = closed_plan(&s.url("https", "/"), 20, 1);
    plan.keepalive = false;
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(outcome(&r, "2xx"), 20);
    assert_eq!(s.seen.connections.load(Ordering::SeqCst), 20);
    assert_eq!(s.seen.handshakes.load(Ordering::SeqCst), 20);
    // Only the first handshake is a full one.
    assert_eq!(s.seen.resumed.load(Ordering::SeqCst), 19);
}

#[tokio::test]
async fn content_length_and_chunked_bodies_over_tls_are_counted_exactly() {
    let s = server(Mode::Serve).await;
    // Larger than the read buffer and than one TLS record (16 KiB).
    for (path, size) in [("/length/40000", 40_000), ("/chunked/30001", 30_001)] {
        let r = loadgen::run(closed_plan(&s.url("https", path), 30, 3), never(), None)
            .await
            .unwrap();
        assert_eq!(outcome(&r, "2xx"), 30, "{path}");
        assert_eq!(r.totals.bytes_received, 30 * size, "{path}");
    }
}

#[tokio::test]
async fn redirects_into_https_and_within_it_are_followed() {
    let tls = server(Mode::Serve).await;
    let plain = server(Mode::Plain).await;
    let url = plain.url("http", &format!("/to?{}", tls.url("https", "/relative")));
    let r = loadgen::run(closed_plan(&url, 25, 2), never(), None)
        .await
        .unwrap();
    assert_eq!(outcome(&r, "2xx"), 25);
    assert_eq!(r.totals.bytes_received, 25 * 7);
    assert_eq!(plain.seen.requests.load(Ordering::SeqCst), 25);
    // /relative, then /length/7 on the same https origin.
    assert_eq!(tls.seen.requests.load(Ordering::SeqCst), 50);
    let host = tls.addr.to_string();
    assert!(tls.seen.hosts.lock().unwrap().iter().all(|h| *h == host));
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_failed_tls_handshake() {
    let s = hyper_server().await;
    let url = format!("https://{}/", s.addr);
    let r = loadgen::run(closed_plan(&url, 12, 3), never(), None)
        .await
        .unwrap();
    assert_eq!(r.totals.requests, 12);
    assert_eq!(outcome(&r, "tls_handshake"), 12);
    assert_eq!(
        loadgen::summary::diagnosis(&r),
        loadgen::Outcome::TlsHandshake.hint()
    );
    let text = loadgen::summary::hey_text(&r);
    assert!(text.contains("the TLS handshake failed"), "{text}");
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_fatal_tls_alert_is_a_failed_tls_handshake() {
    let s = server(Mode::OnlyH2).await;
    let r = loadgen::run(closed_plan(&s.url("https", "/"), 8, 2), never(), None)
        .await
        .unwrap();
    assert_eq!(outcome(&r, "tls_handshake"), 8);
    assert_eq!(s.seen.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_is_a_connect_timeout() {
    let (addr, counters) = raw_server(Misbehaviour::Silent).await;
    let mut plan = closed_plan(&format!("https://{addr}/"), 3, 1);
    plan.timeout = Duration::from_millis(300);
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(outcome(&r, "connect_timeout"), 3);
    assert_eq!(counters.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_tls_server_closing_mid_body_is_a_reset() {
    for close_notify in [true, false] {
        let s = server(Mode::ShortBody { close_notify }).await;
        let r = loadgen::run(closed_plan(&s.url("https", "/"), 6, 2), never(), None)
            .await
            .unwrap();
        assert_eq!(outcome(&r, "reset"), 6, "close_notify: {close_notify}");
        assert_eq!(s.seen.requests.load(Ordering::SeqCst), 6);
    }
}

fn h2_plan(url: &str, count: u64, connections: usize) -> loadgen::LoadPlan {
    let mut plan = closed_plan(url, count, connections);
    plan.transport.http2 = true;
    if plan.io == loadgen::Io::Uring {
        plan.io = loadgen::Io::Auto;
    }
    plan
}

#[tokio::test]
async fn h2_over_tls_is_agreed_by_alpn_and_counts_bodies_exactly() {
    let s = server(Mode::H2).await;
    let r = loadgen::run(
        h2_plan(&s.url("https", "/length/40000"), 30, 3),
        never(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(outcome(&r, "2xx"), 30);
    assert_eq!(r.totals.bytes_received, 30 * 40_000);
    assert_eq!(r.run.io.as_deref(), Some("epoll"));
    let versions = s.seen.versions.lock().unwrap().clone();
    assert_eq!(versions.len(), 30);
    assert!(
        versions.iter().all(|v| *v == hyper::Version::HTTP_2),
        "{versions:?}"
    );
    // One connection per worker, kept alive.
    let connections = s.seen.connections.load(Ordering::SeqCst);
    assert!((1..=3).contains(&connections), "{connections} connections");
}

#[tokio::test]
async fn h2c_by_prior_knowledge_over_plain_http() {
    let s = server(Mode::PlainH2).await;
    let mut plan = h2_plan(&s.url("http", "/chunked/30001"), 20, 2);
    plan.requests[0]
        .headers
        .push(("Host".into(), "api.example.test".into()));
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(outcome(&r, "2xx"), 20);
    assert_eq!(r.totals.bytes_received, 20 * 30_001);
    let versions = s.seen.versions.lock().unwrap().clone();
    assert!(
        versions.iter().all(|v| *v == hyper::Version::HTTP_2),
        "{versions:?}"
    );
    assert_eq!(versions.len(), 20);
    // hey's -host becomes :authority.
    assert!(s
        .seen
        .hosts
        .lock()
        .unwrap()
        .iter()
        .all(|h| h == "api.example.test"));
}

#[tokio::test]
async fn h2_to_a_server_that_speaks_only_http1_fails_the_handshake() {
    // TLS offering only http/1.1: no common ALPN protocol.
    let s = server(Mode::Serve).await;
    let r = loadgen::run(h2_plan(&s.url("https", "/"), 6, 2), never(), None)
        .await
        .unwrap();
    assert_eq!(outcome(&r, "tls_handshake"), 6);
    assert_eq!(s.seen.requests.load(Ordering::SeqCst), 0);
    // h2c to an HTTP/1.1 server: it cannot read the preface.
    let s = hyper_server().await;
    let r = loadgen::run(h2_plan(&s.url("/"), 4, 1), never(), None)
        .await
        .unwrap();
    assert_eq!(r.totals.good, 0);
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 0);
}
