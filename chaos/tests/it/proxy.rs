//! The fault proxy against real TCP servers on port 0: each toxic, on new and on
//! live connections, and the seeded toxicity draw. Raw TCP clients, so each
//! failure shows as the exact socket error a client library would classify.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use chaos::{Direction, FaultProxy, ProxyOptions, Toxic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

use crate::support::echo_server;

async fn proxy_to(upstream: SocketAddr) -> FaultProxy {
    FaultProxy::start_with(
        "127.0.0.1:0".parse().unwrap(),
        upstream,
        ProxyOptions {
            name: "test".into(),
            seed: 7,
        },
    )
    .await
    .unwrap()
}

/// Bounded wait used wherever the test expects data or an error to arrive: long
/// enough for a loaded machine, only reached when the proxy is broken.
const PATIENCE: Duration = Duration::from_secs(10);

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    timeout(PATIENCE, s.read_exact(&mut got))
        .await
        .expect("echo did not come back")?;
    Ok(got)
}

#[tokio::test]
async fn forwards_bytes_untouched_both_ways() {
    let proxy = proxy_to(echo_server().await).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&payload).await.unwrap();
    };
    let recv = async {
        let mut got = vec![0u8; payload.len()];
        timeout(PATIENCE, r.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got, payload);
    assert_eq!(proxy.handle().accepted_connections(), 1);
}

#[tokio::test]
async fn latency_applies_to_a_live_connection_and_goes_away() {
    let proxy = proxy_to(echo_server().await).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, b"before").await.unwrap(), b"before");

    let id = proxy
        .add_toxic(
            Toxic::Latency {
                latency: Duration::from_millis(150),
                jitter: Duration::from_millis(10),
                direction: Direction::Both,
            },
            1.0,
        )
        .unwrap();
    let started = Instant::now();
    assert_eq!(round_trip(&mut s, b"slow").await.unwrap(), b"slow");
    // Both directions delayed: at least 2 × (150 - 10) ms. A lower bound only.
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );

    assert!(proxy.remove_toxic(id));
    assert!(!proxy.remove_toxic(id));
    assert_eq!(round_trip(&mut s, b"after").await.unwrap(), b"after");
    assert!(proxy.toxics().is_empty());
}

#[tokio::test]
async fn reset_kills_live_and_new_connections() {
    let proxy = proxy_to(echo_server().await).await;
    let mut live = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut live, b"hello").await.unwrap();

    let id = proxy.add_toxic(Toxic::Reset, 1.0).unwrap();
    let mut buf = [0u8; 8];
    let err = timeout(PATIENCE, live.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let _ = fresh.write_all(b"x").await;
    let err = timeout(PATIENCE, fresh.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    proxy.remove_toxic(id);
    let mut again = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut again, b"ok").await.unwrap(), b"ok");
}

/// Wait (bounded) until connecting to `addr` is refused.
async fn wait_refused(addr: SocketAddr) {
    // The accept loop closes the listener on its next wake-up; wait for it.
    let deadline = Instant::now() + PATIENCE;
    // (A connect racing the close can land in the dying backlog and be reset.)
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ if Instant::now() < deadline => tokio::task::yield_now().await,
            other => panic!("proxy kept accepting under refuse: {other:?}"),
        }
    }
}

/// Wait (bounded) until `addr` accepts again, and echo through it.
async fn wait_reopened(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    let mut s = loop {
        match TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("port {addr} not reopened: {e}"),
        }
    };
    assert_eq!(round_trip(&mut s, b"back").await.unwrap(), b"back");
}

#[tokio::test]
async fn refuse_cuts_live_connections_and_closes_the_port() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.local_addr();
    let mut live = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut live, b"hi").await.unwrap();

    let id = proxy.add_toxic(Toxic::Refuse, 1.0).unwrap();
    // The live connection is closed by the proxy, as if the component went
    // away: its client reads EOF (the echo server never speaks first).
    let mut buf = [0u8; 8];
    let read = timeout(PATIENCE, live.read(&mut buf))
        .await
        .expect("the live connection was not cut");
    assert_eq!(read.unwrap(), 0, "expected EOF on the cut connection");
    wait_refused(addr).await;
    // Nothing is left open through the proxy (the pump ends right after the close).
    let deadline = Instant::now() + PATIENCE;
    while proxy.handle().active_connections() > 0 {
        assert!(Instant::now() < deadline, "connections left open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    proxy.remove_toxic(id);
    wait_reopened(addr).await;
}

#[tokio::test]
async fn refuse_new_closes_the_port_but_live_connections_carry_on() {
    let proxy = proxy_to(echo_server().await).await;
    let addr = proxy.local_addr();
    let mut live = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut live, b"hi").await.unwrap();

    let id = proxy.add_toxic(Toxic::RefuseNew, 1.0).unwrap();
    wait_refused(addr).await;
    // A live connection is not a new connect: it carries on.
    assert_eq!(round_trip(&mut live, b"still").await.unwrap(), b"still");

    proxy.remove_toxic(id);
    wait_reopened(addr).await;
    assert_eq!(round_trip(&mut live, b"after").await.unwrap(), b"after");
}

#[tokio::test]
async fn blackhole_forwards_nothing_until_reverted() {
    let proxy = proxy_to(echo_server().await).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut s, b"hi").await.unwrap();

    let id = proxy.add_toxic(Toxic::Blackhole, 1.0).unwrap();
    s.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 4];
    // Nothing can arrive: the proxy drops these bytes, so the wait must expire.
    assert!(timeout(Duration::from_millis(300), s.read(&mut buf))
        .await
        .is_err());

    proxy.remove_toxic(id);
    assert_eq!(round_trip(&mut s, b"seen").await.unwrap(), b"seen");
}

#[tokio::test]
async fn limit_data_closes_after_n_bytes() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(
            Toxic::LimitData {
                bytes: 10,
                direction: Direction::Downstream,
            },
            1.0,
        )
        .unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(&[b'a'; 100]).await.unwrap();
    let mut got = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![b'a'; 10]);
}

#[tokio::test]
async fn bandwidth_paces_the_transfer() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(
            Toxic::Bandwidth {
                rate: 2_000,
                direction: Direction::Downstream,
            },
            1.0,
        )
        .unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let started = Instant::now();
    let got = round_trip(&mut s, &[7u8; 4_000]).await.unwrap();
    assert_eq!(got, vec![7u8; 4_000]);
    // 4000 bytes at 2000 B/s, first 50 ms slice free: at least ~1.9 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_close_holds_the_fin_back() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add_toxic(
            Toxic::SlowClose {
                delay: Duration::from_millis(200),
            },
            1.0,
        )
        .unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut s, b"bye").await.unwrap();
    let started = Instant::now();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(PATIENCE, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

/// Which of `n` sequential connections a half-toxic reset hits.
async fn reset_pattern(n: usize) -> Vec<bool> {
    let proxy = proxy_to(echo_server().await).await;
    proxy.add_toxic(Toxic::Reset, 0.5).unwrap();
    let mut hit = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        hit.push(round_trip(&mut s, b"?").await.is_err());
    }
    hit
}

#[tokio::test]
async fn toxicity_is_a_seeded_fraction_of_connections() {
    let first = reset_pattern(24).await;
    let second = reset_pattern(24).await;
    assert_eq!(first, second, "same seed, same connections hit");
    assert!(
        first.iter().any(|h| *h) && first.iter().any(|h| !*h),
        "{first:?}"
    );
}

#[tokio::test]
async fn nonsense_toxics_are_refused() {
    let proxy = proxy_to(echo_server().await).await;
    assert!(proxy.add_toxic(Toxic::Reset, 1.5).is_err());
    assert!(proxy.add_toxic(Toxic::Reset, -0.1).is_err());
    assert!(proxy
        .add_toxic(
            Toxic::Bandwidth {
                rate: 0,
                direction: Direction::Both
            },
            1.0
        )
        .is_err());
    assert!(proxy.toxics().is_empty());
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    // Bind then drop to get a port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = proxy_to(dead).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let r = timeout(PATIENCE, s.read(&mut buf)).await.unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionReset);
}
