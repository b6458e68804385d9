//! The gateway's edge duties against a real backend: rate limiting (429 and the
//! RateLimit headers), JWT on write routes (401 cases), request ids, forwarded
//! and hop-by-hop headers, body limits, and its own endpoints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::Method;
use target::auth::{JwtKey, Role};
use target::gateway::RateLimit;

use crate::support::gateway::{config, request, Backend, Mode, RunningGateway, TestClient};

#[tokio::test]
async fn over_the_limit_gets_429_with_retry_after_and_ratelimit_headers() {
    let api = Backend::start("api-1", Mode::Ok).await;
    let mut cfg = config(&[&api]);
    // A refill so slow that no token comes back during the test.
    cfg.rate_limit = Some(RateLimit {
        rate: 0.001,
        burst: 3,
        ..RateLimit::default()
    });
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");
    let with_key = |key: &'static str| request(Method::GET, &url, &[("x-api-key", key)], "");

    for remaining in ["2", "1", "0"] {
        let reply = client.send(with_key("alice")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
    }
    let reply = client.send(with_key("alice")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert!(
        reply
            .header("ratelimit-reset")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= retry_after
    );
    assert_eq!(reply.json()["error"]["code"], "rate_limited");
    assert_eq!(
        api.arrivals(),
        3,
        "the refused request never reached the API"
    );

    // Another key has its own bucket; without a key the client IP is the key.
    assert_eq!(client.send(with_key("bob")).await.status, 200);
    for _ in 0..3 {
        assert_eq!(client.get(&url).await.status, 200);
    }
    assert_eq!(client.get(&url).await.status, 429);
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn writes_need_a_valid_token_at_the_edge() {
    let api = Backend::start("api-1", Mode::Ok).await;
    let secret = b"edge-secret";
    let mut cfg = config(&[&api]);
    cfg.jwt_secret = Some(secret.to_vec());
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");
    let post = |auth: Option<String>| {
        let headers: Vec<(&str, String)> = auth.into_iter().map(|a| ("authorization", a)).collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        request(Method::POST, &url, &headers, r#"{"title":"t"}"#)
    };

    let valid = JwtKey::new(secret).issue("1", Role::User, Duration::from_secs(600));
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": "1", "role": "user", "iat": 1, "exp": now() - 60 }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    let mut tampered: Vec<String> = valid.split('.').map(str::to_string).collect();
    tampered[1] = b64(&format!(
        r#"{{"sub":"1","role":"admin","iat":1,"exp":{}}}"#,
        now() + 600
    ));
    let tampered = tampered.join(".");
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"1","role":"admin","iat":1,"exp":{}}}"#,
            now() + 600
        ))
    );

    for (auth, reason) in [
        (None, "missing"),
        (Some("Basic dXNlcjpwYXNz".to_string()), "missing"),
        (Some(format!("Bearer {expired}")), "expired"),
        (Some(format!("Bearer {tampered}")), "invalid"),
        (Some(format!("Bearer {alg_none}")), "invalid"),
    ] {
        let reply = client.send(post(auth)).await;
        assert_eq!(reply.status, 401, "{reason}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        let body = reply.json();
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(body["error"]["details"]["reason"], reason);
    }
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let reply = client
            .send(request(method, &gateway.url("/api/v1/tasks/1"), &[], ""))
            .await;
        assert_eq!(reply.status, 401);
    }
    assert_eq!(api.arrivals(), 0, "rejected at the edge");

    let reply = client.send(post(Some(format!("Bearer {valid}")))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 13);
    // Reads and the login route need no token.
    assert_eq!(client.get(&url).await.status, 200);
    let login = request(Method::POST, &gateway.url("/api/v1/auth/login"), &[], "{}");
    assert_eq!(client.send(login).await.status, 200);
    assert_eq!(api.arrivals(), 3);
}

#[tokio::test]
async fn request_ids_forwarding_and_hop_by_hop_headers() {
    let api = Backend::start("api-1", Mode::Ok).await;
    let gateway = RunningGateway::start(config(&[&api])).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    let reply = client
        .send(request(
            Method::GET,
            &url,
            &[
                ("x-request-id", "abc-123"),
                ("x-forwarded-for", "203.0.113.7"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
            ],
            "",
        ))
        .await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));
    let seen = reply.json();
    assert_eq!(seen["request_id"], "abc-123");
    assert_eq!(seen["forwarded_for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(
        seen["x_hop"], "",
        "a header named by Connection is hop-by-hop"
    );

    let a = client.get(&url).await;
    let b = client.get(&url).await;
    let id_a = a.header("x-request-id").unwrap();
    assert_eq!(
        a.json()["request_id"],
        id_a,
        "the generated id reaches the API"
    );
    assert_eq!(uuid::Uuid::parse_str(id_a).unwrap().get_version_num(), 4);
    assert_ne!(Some(id_a), b.header("x-request-id"));
    assert_eq!(a.json()["forwarded_for"], "127.0.0.1");
}

#[tokio::test]
async fn oversized_bodies_get_413_and_bodies_are_forwarded_whole() {
    let api = Backend::start("api-1", Mode::Ok).await;
    let mut cfg = config(&[&api]);
    cfg.max_body_bytes = 1024;
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let url = gateway.url("/api/v1/tasks");

    let reply = client
        .send(request(Method::PUT, &url, &[], &"x".repeat(1024)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 1024);
    let reply = client
        .send(request(Method::PUT, &url, &[], &"x".repeat(1025)))
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
    assert_eq!(api.arrivals(), 1);
}

#[tokio::test]
async fn the_gateway_has_its_own_endpoints_and_passes_metrics_through() {
    let api = Backend::start("api-1", Mode::Ok).await;
    let gateway = RunningGateway::start(config(&[&api])).await;
    let client = TestClient::default();
    for _ in 0..3 {
        assert_eq!(client.get(&gateway.url("/api/v1/tasks")).await.status, 200);
    }
    let upstream_metrics = client.get(&gateway.url("/metrics")).await;
    assert!(upstream_metrics
        .body
        .contains("backend_metrics{instance=\"api-1\"}"));

    let own = client.get(&gateway.url("/gateway/metrics")).await;
    assert_eq!(own.status, 200);
    assert!(own
        .body
        .contains("gateway_requests_total{upstream=\"api-1\",status=\"200\"} 4\n"));
    assert!(own
        .body
        .contains("gateway_request_duration_seconds_count 4\n"));
    assert!(own
        .body
        .contains("gateway_breaker_state{upstream=\"api-1\"} 0\n"));

    let health = client.get(&gateway.url("/gateway/healthz")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["healthy_upstreams"], 1);
}
