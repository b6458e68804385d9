//! Real servers for the engine's tests, all on 127.0.0.1 port 0: a hyper server
//! with routes for each behaviour the engine must measure, and raw TCP servers
//! that misbehave in each way a request can fail.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use loadgen::results::Results;
use loadgen::{BadPolicy, LoadPlan, Model, RequestTemplate, Stop};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    pub stalled: AtomicBool,
    pub paths: Mutex<Vec<String>>,
}

/// A hyper HTTP/1.1 server. Routes:
/// `/status/N` answers N; `/redirect` → 302 to `/status/200`; `/chunked/N` sends
/// N bytes in three chunks; `/stall` stalls 500 ms the first time only;
/// `/served` sets X-Served-By a/b alternately; anything else: 200 "hello".
pub struct TestServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A response body of either kind the servers send.
pub type Body = BoxBody<Bytes, Infallible>;

fn full(b: &'static str) -> Body {
    Full::new(Bytes::from_static(b.as_bytes())).boxed()
}

/// `len` bytes of `x` in three chunks, so a client must read past the first.
pub fn chunked(len: usize) -> Body {
    let data = vec![b'x'; len];
    let third = len / 3;
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::copy_from_slice(&data[..third]))),
        Ok(Frame::data(Bytes::copy_from_slice(&data[third..2 * third]))),
        Ok(Frame::data(Bytes::copy_from_slice(&data[2 * third..]))),
    ];
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// How many requests of a run ended in the outcome `name`.
pub fn outcome(r: &Results, name: &str) -> u64 {
    r.totals.outcomes.get(name).copied().unwrap_or(0)
}

async fn handle(req: Request<Incoming>, c: Arc<Counters>) -> Result<Response<Body>, Infallible> {
    let n = c.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    c.paths.lock().unwrap().push(req.uri().to_string());
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(full("hello"));
    if let Some(code) = path.strip_prefix("/status/") {
        *resp.status_mut() = code.parse::<u16>().unwrap().try_into().unwrap();
    } else if path == "/redirect" {
        *resp.status_mut() = hyper::StatusCode::FOUND;
        resp.headers_mut()
            .insert("location", "/status/200".parse().unwrap());
    } else if let Some(len) = path.strip_prefix("/chunked/") {
        *resp.body_mut() = chunked(len.parse().unwrap());
    } else if path == "/stall" {
        if !c.stalled.swap(true, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    } else if path == "/served" {
        let who = if n % 2 == 0 { "a" } else { "b" };
        resp.headers_mut()
            .insert("x-served-by", who.parse().unwrap());
    }
    Ok(resp)
}

pub async fn hyper_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, c.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer { addr, counters }
}

/// Reads one request head (so closing does not turn into a reset by unread
/// data); false if the peer closed first. Over TCP or TLS.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
    }
}

/// How a raw server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Reads the request, then resets the connection (SO_LINGER 0).
    Reset,
    /// Answers something that is not HTTP.
    Garbage,
    /// Reads the request and never answers.
    Silent,
    /// Promises 100 body bytes, sends 5, closes.
    ShortBody,
    /// Answers correctly, then closes without saying `Connection: close`.
    CloseAfterResponse,
}

pub async fn raw_server(how: Misbehaviour) -> (SocketAddr, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            match how {
                Misbehaviour::Silent => held.push(s),
                _ => {
                    tokio::spawn(async move {
                        if !read_head(&mut s).await {
                            return;
                        }
                        c.requests.fetch_add(1, Ordering::SeqCst);
                        match how {
                            Misbehaviour::Reset => {
                                socket2::SockRef::from(&s)
                                    .set_linger(Some(Duration::ZERO))
                                    .unwrap();
                                drop(s);
                            }
                            Misbehaviour::Garbage => {
                                let _ = s.write_all(b"SPEAK FRIEND AND ENTER\r\n\r\n").await;
                            }
                            Misbehaviour::ShortBody => {
                                let _ = s
                                    .write_all(
                                        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
                                    )
                                    .await;
                            }
                            Misbehaviour::CloseAfterResponse => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                    .await;
                            }
                            Misbehaviour::Silent => unreachable!(),
                        }
                    });
                }
            }
        }
    });
    (addr, counters)
}

/// A forward HTTP proxy: takes absolute-form requests (`GET http://host/p
/// HTTP/1.1`, bodiless), records each request line, and relays each in origin
/// form to its host on a fresh connection; anything else gets a 400.
pub async fn forward_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let mut lines = head.split("\r\n");
                    let line = lines.next().unwrap_or_default().to_string();
                    seen.lock().unwrap().push(line.clone());
                    let mut parts = line.split(' ');
                    let (method, target) = (parts.next().unwrap(), parts.next().unwrap_or(""));
                    let Some(rest) = target.strip_prefix("http://") else {
                        let _ = client
                            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        continue;
                    };
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let mut upstream = TcpStream::connect(authority).await.unwrap();
                    let mut out = format!("{method} {path} HTTP/1.1\r\n");
                    for h in lines.filter(|h| !h.to_ascii_lowercase().starts_with("connection:")) {
                        out.push_str(h);
                        out.push_str("\r\n");
                    }
                    out.push_str("Connection: close\r\n\r\n");
                    upstream.write_all(out.as_bytes()).await.unwrap();
                    let mut response = Vec::new();
                    let _ = upstream.read_to_end(&mut response).await;
                    if client.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, lines)
}

/// An address nothing listens on: bound, then released.
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// hey's defaults for `-n count -c connections URL`.
pub fn closed_plan(url: &str, count: u64, connections: usize) -> LoadPlan {
    LoadPlan {
        requests: vec![RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
        }],
        model: Model::Closed {
            rate_per_worker: None,
        },
        arrivals: Default::default(),
        stop: Stop::Requests { count },
        connections,
        timeout: Duration::from_secs(20),
        keepalive: true,
        compression: true,
        follow_redirects: true,
        interval: Duration::from_secs(1),
        threads: 1,
        seed: 7,
        track_header: None,
        bad: BadPolicy::default(),
        io: io(),
        transport: Default::default(),
        shard: None,
    }
}

/// The backend under test: `LOADGEN_TEST_IO` (auto, epoll or uring; `ci/test.sh`
/// runs these tests with the default, then with uring and with epoll by name).
pub fn io() -> loadgen::Io {
    std::env::var("LOADGEN_TEST_IO")
        .ok()
        .map(|v| v.parse().expect("LOADGEN_TEST_IO"))
        .unwrap_or_default()
}

pub fn never() -> impl std::future::Future<Output = ()> + Send + 'static {
    std::future::pending()
}
