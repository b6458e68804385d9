//! Gateway balancing against real backends: round-robin spread (also around an
//! ejected upstream), least-connections avoiding a busy upstream,
//! consistent-hash stickiness by header and client IP.

use std::collections::HashMap;

use http::Method;
use target::gateway::Balance;

use crate::support::gateway::{
    config, eventually, request, Backend, Mode, RunningGateway, TestClient,
};

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let backends = [
        Backend::start("api-1", Mode::Ok).await,
        Backend::start("api-2", Mode::Ok).await,
        Backend::start("api-3", Mode::Ok).await,
    ];
    let gateway = RunningGateway::start(config(&backends.iter().collect::<Vec<_>>())).await;
    let client = TestClient::default();

    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let reply = client.get(&gateway.url("/api/v1/tasks")).await;
        assert_eq!(reply.status, 200);
        *served.entry(reply.served_by().to_string()).or_default() += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served.values().all(|&n| n == 10), "{served:?}");
    gateway.stop().await.unwrap().unwrap();
}

/// With one of four upstreams ejected, the other three split its share
/// evenly rather than its successor in the list taking all of it.
#[tokio::test]
async fn round_robin_spreads_evenly_around_an_ejected_upstream() {
    let backends = [
        Backend::start("api-1", Mode::Ok).await,
        Backend::start("api-2", Mode::Ok).await,
        Backend::start("api-3", Mode::Ok).await,
        Backend::start("api-4", Mode::Ok).await,
    ];
    let gateway = RunningGateway::start(config(&backends.iter().collect::<Vec<_>>())).await;
    let client = TestClient::default();
    backends[1].set_ready(false);
    eventually("api-2 ejected", || async {
        gateway
            .metric(&client, "gateway_upstream_healthy{upstream=\"api-2\"}")
            .await
            == Some(0.0)
    })
    .await;

    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let reply = client.get(&gateway.url("/api/v1/tasks")).await;
        assert_eq!(reply.status, 200);
        *served.entry(reply.served_by().to_string()).or_default() += 1;
    }
    let expected: HashMap<String, usize> = [("api-1", 100), ("api-3", 100), ("api-4", 100)]
        .into_iter()
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    assert_eq!(served, expected);
    gateway.stop().await.unwrap().unwrap();
}

#[tokio::test]
async fn least_connections_avoids_the_busy_upstream() {
    let busy = Backend::start("busy", Mode::Gated).await;
    let idle = Backend::start("idle", Mode::Ok).await;
    let mut cfg = config(&[&busy, &idle]);
    cfg.balance = Balance::LeastConnections;
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();

    // Park one request on the busy backend (requests that land on the idle one
    // just complete), so it has one in flight and the idle one none.
    let url = gateway.url("/api/v1/tasks");
    let mut parked = Vec::new();
    eventually("a request held by the busy backend", || {
        if busy.arrivals() == 0 {
            let (client, url) = (client.clone(), url.clone());
            parked.push(tokio::spawn(async move { client.get(&url).await }));
        }
        let arrived = busy.arrivals() >= 1;
        async move { arrived }
    })
    .await;
    let held = busy.arrivals();

    for _ in 0..20 {
        let reply = client.get(&url).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "idle");
    }
    assert_eq!(busy.arrivals(), held);
    busy.release();
    for p in parked {
        assert_eq!(p.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn consistent_hash_sticks_by_header_and_by_client_ip() {
    let backends = [
        Backend::start("api-1", Mode::Ok).await,
        Backend::start("api-2", Mode::Ok).await,
        Backend::start("api-3", Mode::Ok).await,
    ];
    let mut cfg = config(&backends.iter().collect::<Vec<_>>());
    cfg.balance = "consistent-hash:X-User-Id".parse().unwrap();
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for user in 0..30 {
            let user = format!("user-{user}");
            let reply = client
                .send(request(Method::GET, &url, &[("x-user-id", &user)], ""))
                .await;
            assert_eq!(reply.status, 200);
            let served = reply.served_by().to_string();
            if round == 0 {
                owner.insert(user, served);
            } else {
                assert_eq!(owner[&user], served, "{user} moved");
            }
        }
    }
    let distinct: std::collections::HashSet<_> = owner.values().collect();
    assert!(
        distinct.len() > 1,
        "30 users all on one upstream: {owner:?}"
    );

    // Without the header the client IP is the key: one client, one upstream.
    let first = client.get(&url).await.served_by().to_string();
    for _ in 0..10 {
        assert_eq!(client.get(&url).await.served_by(), first);
    }
}
