//! Each connection-level toxic, seen through the load generator: reset, refuse
//! and blackhole in front of a real HTTP server must land in loadgen's `reset`,
//! `connect_refused` and `request_timeout` outcome classes; no toxic, all 2xx.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chaos::{FaultProxy, Toxic};
use loadgen::{BadPolicy, LoadPlan, Model, RequestTemplate, Stop};

use crate::support::http_server;

fn plan(addr: SocketAddr) -> LoadPlan {
    LoadPlan {
        requests: vec![RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: format!("http://{addr}/"),
            headers: vec![],
            body: None,
        }],
        model: Model::Closed {
            rate_per_worker: None,
        },
        arrivals: Default::default(),
        stop: Stop::Requests { count: 6 },
        connections: 2,
        // Short: only the blackhole case waits it out.
        timeout: Duration::from_millis(500),
        keepalive: true,
        compression: false,
        follow_redirects: false,
        interval: Duration::from_secs(1),
        threads: 1,
        seed: 1,
        track_header: None,
        bad: BadPolicy::default(),
        io: Default::default(),
        transport: Default::default(),
        shard: None,
    }
}

/// Run the plan through a proxy carrying `toxic` and return the outcome counts.
async fn outcomes_with(toxic: Option<Toxic>) -> BTreeMap<String, u64> {
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), http_server().addr)
        .await
        .unwrap();
    let refusing = matches!(toxic, Some(Toxic::Refuse));
    if let Some(t) = toxic {
        proxy.add_toxic(t, 1.0).unwrap();
    }
    if refusing {
        // The accept loop closes the listener on its next wake-up: wait (bounded).
        for _ in 0..1000 {
            match tokio::net::TcpStream::connect(proxy.local_addr()).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    let results = loadgen::run(plan(proxy.local_addr()), std::future::pending(), None)
        .await
        .unwrap();
    results
        .totals
        .outcomes
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn only(outcomes: &BTreeMap<String, u64>, name: &str) {
    assert_eq!(
        outcomes.keys().map(String::as_str).collect::<Vec<_>>(),
        [name],
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn no_toxic_all_succeed() {
    let o = outcomes_with(None).await;
    only(&o, "2xx");
}

#[tokio::test]
async fn reset_is_a_reset() {
    only(&outcomes_with(Some(Toxic::Reset)).await, "reset");
}

#[tokio::test]
async fn refuse_is_connect_refused() {
    only(&outcomes_with(Some(Toxic::Refuse)).await, "connect_refused");
}

#[tokio::test]
async fn blackhole_is_a_request_timeout() {
    only(
        &outcomes_with(Some(Toxic::Blackhole)).await,
        "request_timeout",
    );
}
