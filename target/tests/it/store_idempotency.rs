//! Idempotency-Key retention on both databases: a key replays within its TTL,
//! is forgotten after it (a retried POST makes a new row), expired keys are
//! pruned by age, and the migration adding the age index upgrades a database
//! created before it. Time moves by advancing the store's clock, not by waiting.

use std::time::Duration;

use axum::http::StatusCode;
use sqlx::Connection as _;
use target::api::{ApiConfig, Clock, DbConfig};
use target::process::postgres::Postgres;
use target::store::{Store, DEFAULT_IDEMPOTENCY_TTL};

use crate::support::api::{
    self, create_database, post_with_key as post, postgres_config, sqlite_config, Harness, Reply,
};

const HOUR: Duration = Duration::from_secs(3600);
const SECOND: Duration = Duration::from_secs(1);

/// The config with the default TTL and a clock the test advances.
fn with_clock(mut config: ApiConfig) -> (ApiConfig, Clock) {
    assert_eq!(
        config.store.idempotency_ttl,
        24 * HOUR,
        "a day, as Stripe keeps them"
    );
    let clock = Clock::default();
    config.store.clock = clock.clone();
    (config, clock)
}

/// An instance on a fresh SQLite file, its clock, and the file's URL.
async fn sqlite_harness() -> (Harness, Clock, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let (config, clock) = with_clock(sqlite_config(dir.path(), "api-test"));
    (Harness::with_config(config, Some(dir)).await, clock, url)
}

async fn postgres_harness(pg: &Postgres, name: &str) -> (Harness, Clock, String) {
    let url = create_database(pg, name).await;
    let (config, clock) = with_clock(postgres_config(&url));
    (Harness::with_config(config, None).await, clock, url)
}

/// A connection straight to the test's database, either kind, for what the
/// API does not expose: seeding rows, undoing a migration, reading the schema.
enum Direct {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Runs `$body` with `$c` bound to whichever connection `$direct` holds.
macro_rules! on_conn {
    ($direct:expr, $c:ident => $body:expr) => {
        match $direct {
            Direct::Sqlite($c) => $body,
            Direct::Postgres($c) => $body,
        }
    };
}

impl Direct {
    async fn connect(url: &str) -> Direct {
        if url.starts_with("sqlite:") {
            Direct::Sqlite(sqlx::SqliteConnection::connect(url).await.unwrap())
        } else {
            Direct::Postgres(sqlx::PgConnection::connect(url).await.unwrap())
        }
    }

    /// Writes `n` keys created at `at`: a backlog bigger than one prune batch
    /// without `n` requests.
    async fn backlog(&mut self, n: i64, at: chrono::DateTime<chrono::Utc>) {
        const INSERT: &str = "WITH RECURSIVE seq (i) AS \
            (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $1) \
            INSERT INTO idempotency_keys \
            (principal, route, key, fingerprint, status, body, created_at) \
            SELECT 'backlog', 'POST /api/v1/tasks', 'k-' || i, 'f', 201, '{}', $2 FROM seq";
        on_conn!(self, c => {
            sqlx::query(INSERT).bind(n).bind(at).execute(c).await.unwrap();
        });
    }

    /// Undoes migration 2, so the database looks like one created before it.
    async fn downgrade(&mut self) {
        const DOWNGRADE: &str = "DROP INDEX idempotency_keys_created_at_idx; \
            DELETE FROM schema_migrations WHERE version = 2";
        on_conn!(self, c => {
            sqlx::raw_sql(DOWNGRADE).execute(c).await.unwrap();
        });
    }

    async fn has_age_index(&mut self) -> bool {
        let n: i64 = match self {
            Direct::Sqlite(c) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master \
                 WHERE type = 'index' AND name = 'idempotency_keys_created_at_idx'",
            )
            .fetch_one(c)
            .await
            .unwrap(),
            Direct::Postgres(c) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_indexes \
                 WHERE indexname = 'idempotency_keys_created_at_idx'",
            )
            .fetch_one(c)
            .await
            .unwrap(),
        };
        n == 1
    }

    async fn versions(&mut self) -> Vec<i64> {
        const SQL: &str = "SELECT version FROM schema_migrations ORDER BY version";
        on_conn!(self, c => sqlx::query_scalar(SQL).fetch_all(c).await.unwrap())
    }
}

fn id(r: &Reply) -> i64 {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["data"]["id"].as_i64().unwrap()
}

fn replayed(r: &Reply) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

/// Replayed up to the TTL, a new row after it, and the new row's response is
/// what later retries replay.
async fn expiry(h: &Harness, clock: &Clock) {
    let body = r#"{"title":"renew licence"}"#;
    let first = post(h, body, "licence").await;
    let first_id = id(&first);
    assert!(!replayed(&first));

    clock.advance(DEFAULT_IDEMPOTENCY_TTL - SECOND);
    let retry = post(h, body, "licence").await;
    assert!(replayed(&retry), "a key within its TTL replays");
    assert_eq!(retry.text, first.text);

    clock.advance(2 * SECOND);
    let late = post(h, body, "licence").await;
    assert!(!replayed(&late), "an expired key is not replayed");
    assert_ne!(id(&late), first_id, "a new row");
    let late_retry = post(h, body, "licence").await;
    assert!(replayed(&late_retry));
    assert_eq!(
        late_retry.text, late.text,
        "the key now stands for the new row"
    );
    let list = h.get("/api/v1/tasks?q=renew%20licence").await;
    assert_eq!(list.body["meta"]["total"], 2, "{}", list.text);

    // Once expired, the key is free for a different request too (no mismatch).
    clock.advance(DEFAULT_IDEMPOTENCY_TTL + SECOND);
    let other = post(h, r#"{"title":"something else"}"#, "licence").await;
    assert!(!replayed(&other));
    assert_eq!(other.body["data"]["title"], "something else");
}

/// Pruning deletes exactly the keys past their TTL (however many batches that
/// takes), and a pruned key's reuse is a new request.
async fn pruning(h: &Harness, clock: &Clock, url: &str) {
    let store = h.state.store();
    assert_eq!(store.prune_idempotency_keys().await.unwrap(), 0);
    let old = post(h, r#"{"title":"old"}"#, "old").await;
    let old_id = id(&old);
    clock.advance(12 * HOUR);
    let young = post(h, r#"{"title":"young"}"#, "young").await;
    id(&young);
    assert_eq!(
        store.prune_idempotency_keys().await.unwrap(),
        0,
        "both within TTL"
    );

    clock.advance(13 * HOUR);
    assert_eq!(
        store.prune_idempotency_keys().await.unwrap(),
        1,
        "only `old`"
    );
    assert_eq!(store.prune_idempotency_keys().await.unwrap(), 0);
    let young_retry = post(h, r#"{"title":"young"}"#, "young").await;
    assert!(replayed(&young_retry), "the younger key survived");
    let old_retry = post(h, r#"{"title":"old"}"#, "old").await;
    assert!(!replayed(&old_retry));
    assert_ne!(id(&old_retry), old_id);

    clock.advance(12 * HOUR);
    assert_eq!(
        store.prune_idempotency_keys().await.unwrap(),
        1,
        "`young` now"
    );

    let expired = clock.now() - DEFAULT_IDEMPOTENCY_TTL - HOUR;
    Direct::connect(url).await.backlog(2500, expired).await;
    assert_eq!(store.prune_idempotency_keys().await.unwrap(), 2500);
    assert_eq!(store.prune_idempotency_keys().await.unwrap(), 0);
}

#[tokio::test]
async fn keys_expire_after_their_ttl_on_sqlite() {
    let (h, clock, _) = sqlite_harness().await;
    expiry(&h, &clock).await;
}

#[tokio::test]
async fn expired_keys_are_pruned_on_sqlite() {
    let (h, clock, url) = sqlite_harness().await;
    pruning(&h, &clock, &url).await;
}

/// A database migrated before version 2 existed gets the index on its next
/// start, and starting again on the upgraded database changes nothing.
async fn upgrade(db: &DbConfig, url: &str) {
    Store::connect(db).await.unwrap().close().await;
    let mut conn = Direct::connect(url).await;
    conn.downgrade().await;
    assert!(!conn.has_age_index().await);
    for _ in 0..2 {
        Store::connect(db).await.unwrap().close().await;
    }
    assert!(conn.has_age_index().await);
    assert_eq!(conn.versions().await, [1, 2]);
}

#[tokio::test]
async fn an_existing_sqlite_database_gets_the_age_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let url = format!("sqlite://{}", path.display());
    upgrade(&DbConfig::Sqlite { path }, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_and_are_pruned_on_postgres() {
    let pg = tokio::task::spawn_blocking(api::start_postgres)
        .await
        .unwrap();
    let ((expiring, expiring_clock, _), (pruned, pruned_clock, pruned_url)) = tokio::join!(
        postgres_harness(&pg, "idem_expiry"),
        postgres_harness(&pg, "idem_pruning"),
    );
    assert_eq!(expiring.state.store().backend(), "postgres");
    tokio::join!(
        expiry(&expiring, &expiring_clock),
        pruning(&pruned, &pruned_clock, &pruned_url),
    );

    let url = create_database(&pg, "idem_upgrade").await;
    upgrade(&DbConfig::Postgres { url: url.clone() }, &url).await;
}
