//! The gateway in front of two real Task API instances (`target::api::serve` on a
//! shared SQLite file): spread by X-Served-By, JWT at the edge with a real login,
//! an idempotent create through the gateway, and losing an instance.

mod gateway_support;

use std::time::Duration;

use gateway_support::{config, request, RunningGateway, TestClient};
use http::Method;
use target::api::{ApiConfig, AppState, DbConfig};
use target::gateway::{HealthCheck, Upstream};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &[u8] = b"gateway-api-secret";
const PASSWORD: &str = "admin-password";

struct Instance {
    upstream: Upstream,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn instance(name: &str, db: &std::path::Path) -> Instance {
    let config = ApiConfig::new(name, DbConfig::Sqlite { path: db.into() }, SECRET);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        target::api::serve(config, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("api instance ran");
    });
    Instance {
        upstream: Upstream {
            name: name.into(),
            addr,
        },
        stop: Some(tx),
        task,
    }
}

#[tokio::test]
async fn two_real_api_instances_behind_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    {
        // Migrate and create the admin once, before the instances share the file.
        let state = AppState::connect(&ApiConfig::new(
            "setup",
            DbConfig::Sqlite { path: db.clone() },
            SECRET,
        ))
        .await
        .unwrap();
        target::store::ensure_admin(state.store(), "admin", PASSWORD)
            .await
            .unwrap();
        state.store().close().await;
    }
    let one = instance("api-1", &db).await;
    let mut two = instance("api-2", &db).await;

    let mut cfg = config(&[]);
    cfg.upstreams = vec![one.upstream.clone(), two.upstream.clone()];
    cfg.health = HealthCheck {
        interval: Duration::from_millis(50),
        fall: 1,
        rise: 1,
        ..HealthCheck::default()
    };
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
            &format!(r#"{{"username":"admin","password":"{PASSWORD}"}}"#),
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
    two.stop.take().unwrap().send(()).unwrap();
    two.task.await.unwrap();
    for _ in 0..10 {
        let reply = client.get(&tasks).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.served_by(), "api-1");
    }
    drop(one);
}
