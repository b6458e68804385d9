//! What the binary's tests share: the `slolab` binary to run, a bounded wait, a
//! blocking GET (and POST) for a stack's URL, and a keep-alive HTTP server on port 0 that
//! counts what it is sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the test machine is shared; this bounds a hang, it is not an SLO.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The binary under test, for what starts it itself (the stack's supervisor).
pub const SLOLAB: &str = env!("CARGO_BIN_EXE_slolab");

/// The `slolab` binary under test, run from the repository root (where the
/// profiles are).
pub fn slolab() -> Command {
    let mut c = Command::new(SLOLAB);
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `slolab ARGS`, run to completion.
pub fn run_slolab(args: &[&str]) -> Output {
    slolab().args(args).output().expect("run slolab")
}

/// Polls `done` until it holds; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response as (status, headers with lower-cased names, body).
pub type Reply = (u16, Vec<(String, String)>, String);

/// A blocking `GET {url}{path}` on a fresh connection.
pub fn get(url: &str, path: &str) -> Reply {
    try_get(url, path).unwrap_or_else(|e| panic!("GET {url}{path}: {e}"))
}

/// [`get`], or why it failed (while a stack comes back, say).
pub fn try_get(url: &str, path: &str) -> std::io::Result<Reply> {
    try_request("GET", url, path, None)
}

/// A blocking `POST {url}{path}` of `body` on a fresh connection.
pub fn post(url: &str, path: &str, body: &[u8]) -> Reply {
    try_request("POST", url, path, Some(body)).unwrap_or_else(|e| panic!("POST {url}{path}: {e}"))
}

/// One request on a fresh connection (`Connection: close`), its whole reply.
fn try_request(method: &str, url: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<Reply> {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let length = body.map_or(String::new(), |b| {
        format!("Content-Length: {}\r\n", b.len())
    });
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{length}Connection: close\r\n\r\n"
    )?;
    if let Some(body) = body {
        // A server refusing a large body may close before reading it all.
        let _ = stream.write_all(body);
    }
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let bad = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {raw:?}"))
    };
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("not a full response"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// The value of the header `name` (lower case) in a [`Reply`]'s headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A keep-alive HTTP/1.1 server on port 0 and what it has been sent.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    /// Every request head received, lower-cased.
    pub heads: Arc<Mutex<Vec<String>>>,
}

/// How [`http_server_with`] answers a request its path does not decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answers {
    /// Waited before each answer.
    pub delay: Duration,
    /// Every `k`-th request (counted over all connections) gets a 500.
    pub fail_every: Option<u64>,
    /// Added to this machine's clock in the `Date` header: a server whose
    /// clock is off, for the shards' clock check.
    pub clock_skew_s: i64,
}

/// A keep-alive HTTP/1.1 server on its own threads: answers every request with
/// 200 "ok" (or 503 for paths starting /fail), dated by this machine's clock.
pub fn http_server() -> HttpServer {
    http_server_with(Answers::default())
}

/// [`http_server`], answering as `answers` says.
pub fn http_server_with(answers: Answers) -> HttpServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (r, c, h) = (requests.clone(), connections.clone(), heads.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let (r, h) = (r.clone(), h.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Not HTTP (a TLS ClientHello starts with 0x16): answer 400 and
                    // close, as nginx and hyper do.
                    if buf.first().is_some_and(|b: &u8| !b.is_ascii_alphabetic()) {
                        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                        return;
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        h.lock().unwrap().push(head.to_ascii_lowercase());
                        let close = head.to_ascii_lowercase().contains("connection: close");
                        let n = r.fetch_add(1, Ordering::SeqCst);
                        if !answers.delay.is_zero() {
                            std::thread::sleep(answers.delay);
                        }
                        let status = if head.starts_with("GET /fail") {
                            "503 Service Unavailable"
                        } else if answers.fail_every.is_some_and(|k| (n + 1) % k == 0) {
                            "500 Internal Server Error"
                        } else {
                            "200 OK"
                        };
                        // /cache: X-Cache HIT and MISS by turns (even and odd requests).
                        let cache = match (head.starts_with("GET /cache"), n % 2) {
                            (false, _) => "",
                            (true, 0) => "X-Cache: HIT\r\n",
                            (true, _) => "X-Cache: MISS\r\n",
                        };
                        let date = (chrono::Utc::now()
                            + chrono::Duration::seconds(answers.clock_skew_s))
                        .format("%a, %d %b %Y %H:%M:%S GMT");
                        let resp = format!(
                            "HTTP/1.1 {status}\r\nDate: {date}\r\n{cache}Content-Length: 2\r\n\r\nok"
                        );
                        if s.write_all(resp.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    HttpServer {
        addr,
        requests,
        connections,
        heads,
    }
}
