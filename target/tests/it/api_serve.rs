//! `serve` on real sockets: two instances sharing one SQLite file start at
//! once, and shutdown drains an in-flight request, or gives up after the grace.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::api::{admin_token, sqlite_config, RunningApi};

/// One HTTP/1.1 exchange with `Connection: close`; returns the raw response.
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// Polls `/readyz` until the instance is up (it connects and migrates first).
async fn ready(addr: SocketAddr) -> String {
    for _ in 0..300 {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let _ = stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never became ready");
}

fn served_by(response: &str) -> Option<&str> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("x-served-by: "))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = RunningApi::start(sqlite_config(dir.path(), "api-1")).await;
    let b = RunningApi::start(sqlite_config(dir.path(), "api-2")).await;
    let (ra, rb) = tokio::join!(ready(a.addr), ready(b.addr));
    assert_eq!(served_by(&ra), Some("api-1"));
    assert_eq!(served_by(&rb), Some("api-2"));

    let token = admin_token(dir.path()).await;
    let body = r#"{"title":"shared"}"#;
    let created = http(
        a.addr,
        &format!(
            "POST /api/v1/tasks HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let seen = http(
        b.addr,
        "GET /api/v1/tasks?q=shared HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(seen.contains(r#""total":1"#), "{seen}");
    assert_eq!(served_by(&seen), Some("api-2"));
    tokio::join!(a.shutdown(), b.shutdown());
}

/// Sends a POST's head with `Expect: 100-continue` and waits for the
/// `100 Continue`: from then on the request is in flight in the handler.
async fn begin_post(addr: SocketAddr, token: &str, body_len: usize) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    reader.read_line(&mut line).await.unwrap();
    reader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_request() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path()).await;
    let mut config = sqlite_config(dir.path(), "api-1");
    config.drain_grace = Duration::from_secs(20);
    let mut running = RunningApi::start(config).await;
    ready(running.addr).await;

    let body = r#"{"title":"in flight"}"#;
    let mut conn = begin_post(running.addr, &token, body.len()).await;
    running.begin_shutdown();
    // New connections are refused once shutdown has begun...
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(running.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes on shutdown");
    // ...while the request already in flight completes.
    conn.get_mut().write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    running.finished("serve returns once drained").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_stuck_request_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path()).await;
    let mut config = sqlite_config(dir.path(), "api-1");
    config.drain_grace = Duration::from_millis(200);
    let mut running = RunningApi::start(config).await;
    ready(running.addr).await;
    // The body never comes: this request would hold a plain graceful shutdown forever.
    let _stuck = begin_post(running.addr, &token, 100).await;
    running.begin_shutdown();
    running
        .finished("serve returns after the drain grace")
        .await;
}
