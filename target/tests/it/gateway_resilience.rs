//! Gateway behaviour when upstreams fail, against real backends: ejection and
//! re-admission, retries (and when not to retry), timeouts, no healthy upstream,
//! the circuit breaker, and draining on shutdown.

use std::time::Duration;

use http::Method;

use crate::support::gateway::{
    config, eventually, request, Backend, Mode, RunningGateway, TestClient,
};

const HEALTHY_2: &str = "gateway_upstream_healthy{upstream=\"api-2\"}";

#[tokio::test]
async fn a_killed_upstream_is_ejected_then_readmitted_when_it_returns() {
    let one = Backend::start("api-1", Mode::Ok).await;
    let mut two = Backend::start("api-2", Mode::Ok).await;
    let gateway = RunningGateway::start(config(&[&one, &two])).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    two.kill().await;
    // Every request still succeeds: a refused connection is retried on api-1.
    for _ in 0..20 {
        let reply = client.get(&url).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "api-1");
    }
    assert_eq!(gateway.metric(&client, HEALTHY_2).await, Some(0.0));
    let ejections = "gateway_ejections_total{upstream=\"api-2\"}";
    assert!(gateway.metric(&client, ejections).await.unwrap() >= 1.0);

    two.restart().await;
    eventually("api-2 re-admitted and serving", || async {
        client.get(&url).await.served_by() == "api-2"
    })
    .await;
    assert_eq!(gateway.metric(&client, HEALTHY_2).await, Some(1.0));
}

#[tokio::test]
async fn an_unready_upstream_is_ejected_by_health_checks_and_comes_back() {
    let one = Backend::start("api-1", Mode::Ok).await;
    let two = Backend::start("api-2", Mode::Ok).await;
    let gateway = RunningGateway::start(config(&[&one, &two])).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    two.set_ready(false);
    eventually("api-2 ejected", || async {
        gateway.metric(&client, HEALTHY_2).await == Some(0.0)
    })
    .await;
    let before = two.arrivals();
    for _ in 0..10 {
        assert_eq!(client.get(&url).await.served_by(), "api-1");
    }
    assert_eq!(two.arrivals(), before);

    two.set_ready(true);
    eventually("api-2 re-admitted", || async {
        gateway.metric(&client, HEALTHY_2).await == Some(1.0)
    })
    .await;
    let served: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(client.get(&url).await.served_by().to_string());
        }
        v
    };
    assert!(served.iter().any(|s| s == "api-2"), "{served:?}");
}

#[tokio::test]
async fn connection_refused_is_retried_for_any_method() {
    let live = Backend::start("live", Mode::Ok).await;
    let mut dead = Backend::start("dead", Mode::Ok).await;
    dead.kill().await;
    let mut cfg = config(&[&dead, &live]);
    // No health checks: the dead upstream stays in rotation, so every request
    // that picks it first must be retried.
    cfg.health.enabled = false;
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();

    for _ in 0..6 {
        let reply = client.get(&gateway.url("/api/v1/tasks")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "live");
    }
    // Nothing reached the dead upstream, so even a plain POST is safe to retry.
    let reply = client
        .send(request(
            Method::POST,
            &gateway.url("/api/v1/tasks"),
            &[],
            "{}",
        ))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(live.arrivals(), 7);
    assert!(
        gateway
            .metric(&client, "gateway_retries_total")
            .await
            .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn a_reset_after_sending_is_retried_only_when_repeating_is_safe() {
    let rude = Backend::start("rude", Mode::Reset).await;
    let good = Backend::start("good", Mode::Ok).await;
    let mut cfg = config(&[&rude, &good]);
    cfg.health.enabled = false;
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    // POST without Idempotency-Key: whoever got it first is the only one to see it.
    let mut bad_gateway = 0;
    for _ in 0..6 {
        let reply = client.send(request(Method::POST, &url, &[], "{}")).await;
        match reply.status {
            200 => assert_eq!(reply.served_by(), "good"),
            502 => {
                assert_eq!(reply.json()["error"]["code"], "bad_gateway");
                bad_gateway += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        bad_gateway >= 1,
        "round-robin sends some POSTs to the rude backend"
    );
    assert_eq!(rude.arrivals(), bad_gateway);
    assert_eq!(good.arrivals(), 6 - bad_gateway);

    // With an Idempotency-Key, and for GET and PUT, the reset is retried.
    let before = rude.arrivals();
    for (method, headers) in [
        (Method::POST, vec![("idempotency-key", "k-1")]),
        (Method::POST, vec![("idempotency-key", "k-2")]),
        (Method::GET, vec![]),
        (Method::GET, vec![]),
        (Method::PUT, vec![]),
        (Method::PUT, vec![]),
    ] {
        let reply = client.send(request(method, &url, &headers, "{}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "good");
    }
    assert!(
        rude.arrivals() > before,
        "some of them tried the rude backend first"
    );
}

#[tokio::test]
async fn per_try_and_overall_timeouts_give_504() {
    let slow = Backend::start("slow", Mode::Gated).await;
    let mut cfg = config(&[&slow]);
    cfg.retry.attempts = 1;
    cfg.retry.per_try_timeout = Duration::from_millis(200);
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let reply = client.get(&gateway.url("/api/v1/tasks")).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"]["code"], "gateway_timeout");

    let slow_too = Backend::start("slow-too", Mode::Gated).await;
    let mut cfg = config(&[&slow, &slow_too]);
    cfg.retry.per_try_timeout = Duration::from_secs(60);
    cfg.retry.overall_timeout = Duration::from_millis(200);
    let gateway = RunningGateway::start(cfg).await;
    let reply = client.get(&gateway.url("/api/v1/tasks")).await;
    assert_eq!(reply.status, 504);
    slow.release();
    slow_too.release();
}

#[tokio::test]
async fn no_healthy_upstream_gives_503_with_the_api_error_shape() {
    let one = Backend::start("api-1", Mode::Ok).await;
    let two = Backend::start("api-2", Mode::Ok).await;
    let gateway = RunningGateway::start(config(&[&one, &two])).await;
    let client = TestClient::default();
    one.set_ready(false);
    two.set_ready(false);
    let url = gateway.url("/api/v1/tasks");
    eventually("both upstreams ejected", || async {
        gateway
            .metric(&client, "gateway_upstream_healthy{upstream=\"api-1\"}")
            .await
            == Some(0.0)
            && gateway.metric(&client, HEALTHY_2).await == Some(0.0)
    })
    .await;
    let reply = client.get(&url).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], "no_healthy_upstream");
    assert!(body["error"]["message"].is_string());
    assert!(body["error"]["details"].is_object());
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn consecutive_failures_open_the_breaker() {
    let rude = Backend::start("rude", Mode::Reset).await;
    let mut cfg = config(&[&rude]);
    cfg.health.enabled = false;
    cfg.breaker.failures = 3;
    cfg.breaker.cooldown = Duration::from_secs(3600);
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");
    let state = "gateway_breaker_state{upstream=\"rude\"}";

    for _ in 0..3 {
        assert_eq!(client.get(&url).await.status, 502);
    }
    assert_eq!(gateway.metric(&client, state).await, Some(1.0));
    // Open: the upstream is not even tried.
    let reply = client.get(&url).await;
    assert_eq!(reply.status, 503);
    assert_eq!(rude.arrivals(), 3);
    assert_eq!(
        gateway
            .metric(&client, "gateway_breaker_opened_total{upstream=\"rude\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let slow = Backend::start("slow", Mode::Gated).await;
    let gateway = RunningGateway::start(config(&[&slow])).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(&url).await }
    });
    eventually("the request reached the backend", || async {
        slow.arrivals() == 1
    })
    .await;
    let stopped = gateway.stop();
    slow.release();
    assert_eq!(in_flight.await.unwrap().status, 200);
    stopped.await.unwrap().unwrap();
}
