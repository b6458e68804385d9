//! The gateway in front of two real Task API instances (`target::api::serve` on a
//! shared SQLite file): spread by X-Served-By, JWT at the edge with a real login,
//! an idempotent create through the gateway, and losing an instance.

use http::Method;
use target::gateway::Upstream;

use crate::support::api::{admin_token, sqlite_config, RunningApi, ADMIN_PASSWORD, SECRET};
use crate::support::gateway::{config, request, RunningGateway, TestClient};

fn upstream(name: &str, api: &RunningApi) -> Upstream {
    Upstream {
        name: name.into(),
        addr: api.addr,
    }
}

#[tokio::test]
async fn two_real_api_instances_behind_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    // Migrate and create the admin once, before the instances share the file.
    admin_token(dir.path()).await;
    let one = RunningApi::start(sqlite_config(dir.path(), "api-1")).await;
    let two = RunningApi::start(sqlite_config(dir.path(), "api-2")).await;

    let mut cfg = config(&[]);
    cfg.upstreams = vec![upstream("api-1", &one), upstream("api-2", &two)];
    cfg.jwt_secret = Some(SECRET.to_vec());
    let gateway = RunningGateway::start(cfg).await;
    let client = TestClient::default();
    let tasks = gateway.url("/api/v1/tasks");

    let mut per = [0; 2];
    for _ in 0..20 {
        let reply = client.get(&tasks).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        match reply.served_by() {
            "api-1" => per[0] += 1,
            "api-2" => per[1] += 1,
            other => panic!("served by {other:?}"),
        }
    }
    assert_eq!(per, [10, 10]);

    let body = r#"{"title":"through the gateway","user_id":1}"#;
    let reply = client.send(request(Method::POST, &tasks, &[], body)).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["details"]["reason"], "missing");

    let login = client
        .send(request(
            Method::POST,
            &gateway.url("/api/v1/auth/login"),
            &[("content-type", "application/json")],
            &format!(r#"{{"username":"admin","password":"{ADMIN_PASSWORD}"}}"#),
        ))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["data"]["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "gateway-create-1"),
    ];
    let first = client
        .send(request(Method::POST, &tasks, &headers, body))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    // The replay lands on the other instance (round-robin) and still returns
    // the first response, not a second row.
    let replay = client
        .send(request(Method::POST, &tasks, &headers, body))
        .await;
    assert_ne!(first.served_by(), replay.served_by());
    assert_eq!(replay.json()["data"]["id"], first.json()["data"]["id"]);

    // Losing an instance: requests keep succeeding on the other one.
    two.shutdown().await;
    for _ in 0..10 {
        let reply = client.get(&tasks).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "api-1");
    }
    drop(one);
}
