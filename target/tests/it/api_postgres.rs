//! The API's behaviour on a real PostgreSQL cluster started by the test, and
//! what clients see when that database goes away and comes back.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use target::process::postgres::{Postgres, PostgresOptions};

use crate::support::api::{self, postgres_config, Harness};

/// Every scenario the SQLite suite runs, each on its own database of one
/// cluster, concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_behaviour_suite_passes_on_postgres() {
    let pg = tokio::task::spawn_blocking(api::start_postgres)
        .await
        .unwrap();
    let (crud, listing, integrity, idempotency, auth, weird, ops) = tokio::join!(
        Harness::postgres_db(&pg, "s_crud"),
        Harness::postgres_db(&pg, "s_listing"),
        Harness::postgres_db(&pg, "s_integrity"),
        Harness::postgres_db(&pg, "s_idempotency"),
        Harness::postgres_db(&pg, "s_auth"),
        Harness::postgres_db(&pg, "s_weird"),
        Harness::postgres_db(&pg, "s_ops"),
    );
    assert_eq!(crud.state.store().backend(), "postgres");
    tokio::join!(
        api::crud(&crud),
        api::listing(&listing),
        api::integrity(&integrity),
        api::idempotency(&idempotency),
        api::auth(&auth),
        api::weird_inputs(&weird),
        api::operations(&ops),
    );
}

/// Two instances starting at once on one fresh database both migrate safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_start_up_migrates_once() {
    let pg = tokio::task::spawn_blocking(api::start_postgres)
        .await
        .unwrap();
    let config = postgres_config(&pg.url());
    let (a, b, c) = tokio::join!(
        target::api::AppState::connect(&config),
        target::api::AppState::connect(&config),
        target::api::AppState::connect(&config),
    );
    for state in [a, b, c] {
        state
            .expect("every instance starts")
            .store()
            .ping()
            .await
            .unwrap();
    }
}

/// Database down: reads and writes are 503 with Retry-After (not 500, not a
/// hang), readiness fails, liveness holds; database back: service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_503_and_recovery_is_automatic() {
    let dir = tempfile::tempdir().unwrap();
    let options = PostgresOptions {
        data_dir: Some(dir.path().join("data")),
        log_file: Some(dir.path().join("postgres.log")),
        ..PostgresOptions::default()
    };
    let first = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || Postgres::start(options).unwrap())
            .await
            .unwrap()
    };
    let port = first.port();
    let h = Harness::with_config(postgres_config(&first.url()), None).await;
    let id = h.task(json!({"title": "survives"})).await;

    tokio::task::spawn_blocking(move || first.stop())
        .await
        .unwrap();
    for uri in ["/api/v1/tasks", &format!("/api/v1/tasks/{id}"), "/readyz"] {
        let r = h.get(uri).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            r.text
        );
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.error_code(), "unavailable");
    }
    let r = h
        .admin(
            Method::POST,
            "/api/v1/tasks",
            json!({"title": "during outage"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);

    let again = PostgresOptions {
        port: Some(port),
        ..options
    };
    let _second = tokio::task::spawn_blocking(move || Postgres::start(again).unwrap())
        .await
        .unwrap();
    // The pool reconnects on demand; the first attempts may still see the
    // old, broken connections.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = h.get(&format!("/api/v1/tasks/{id}")).await.status;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK, "the API recovers with its database");
    assert_eq!(h.get("/readyz").await.status, StatusCode::OK);
}
