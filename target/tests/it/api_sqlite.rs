//! The API's behaviour on the embedded default: SQLite in a temp file.

use crate::support::api::{self, Harness};

#[tokio::test]
async fn crud_on_sqlite() {
    api::crud(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn listing_on_sqlite() {
    api::listing(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn integrity_on_sqlite() {
    api::integrity(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn idempotency_on_sqlite() {
    api::idempotency(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn auth_on_sqlite() {
    api::auth(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn weird_inputs_on_sqlite() {
    api::weird_inputs(&Harness::sqlite().await).await;
}

#[tokio::test]
async fn operations_on_sqlite() {
    api::operations(&Harness::sqlite().await).await;
}

/// `stack up --seed-tasks N` and the printed admin token rely on these being
/// repeatable on an existing database.
#[tokio::test]
async fn seed_and_ensure_admin_are_repeatable() {
    use axum::http::{Method, StatusCode};
    use serde_json::json;
    use target::store::{ensure_admin, seed, SEED_PASSWORD};

    let h = Harness::sqlite().await;
    let first = seed(h.state.store(), 3, 250).await.unwrap();
    assert_eq!(
        (first.users, first.categories, first.tasks_inserted),
        (3, 3, 250)
    );
    let again = seed(h.state.store(), 3, 10).await.unwrap();
    assert_eq!(again.users, 3, "users are not duplicated");
    let page = h.get("/api/v1/tasks?per_page=100&page=3").await;
    assert_eq!(page.body["meta"]["total"], 260);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 60);
    let done = h.get("/api/v1/tasks?status=done&per_page=1").await;
    assert!(done.body["meta"]["total"].as_i64().unwrap() > 0);

    let login = |user: &'static str, password: &'static str| {
        h.call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": user, "password": password})),
            None,
        )
    };
    assert_eq!(login("user2", SEED_PASSWORD).await.status, StatusCode::OK);
    let admin = ensure_admin(h.state.store(), "admin", "a-new-password")
        .await
        .unwrap();
    assert_eq!(admin.id, h.admin_id);
    assert_eq!(
        login("admin", "a-new-password").await.status,
        StatusCode::OK
    );
    assert_eq!(
        login("admin", api::ADMIN_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}
