//! Embedded schema migrations, safe when several API instances start at once:
//! SQLite runs them under `BEGIN IMMEDIATE` (one writer at a time on the shared
//! file), PostgreSQL under a transaction-scoped advisory lock.

use chrono::Utc;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use super::StoreError;

/// (version, SQLite text, PostgreSQL text); append only.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("schema/sqlite.sql"),
        include_str!("schema/postgres.sql"),
    ),
    (2, IDEMPOTENCY_EXPIRY, IDEMPOTENCY_EXPIRY),
];

/// Version 2: pruning expired Idempotency-Keys deletes by age, which without
/// this index scans the whole table. A migration of its own (not an edit of
/// version 1) so databases created before it get the index too.
const IDEMPOTENCY_EXPIRY: &str = "CREATE INDEX IF NOT EXISTS idempotency_keys_created_at_idx \
    ON idempotency_keys (created_at)";

/// An arbitrary constant naming this schema's advisory lock.
const PG_LOCK_ID: i64 = 0x510_1ab;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
    (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";

/// A migration's error as the caller sees it: transient ones stay retryable
/// (503), anything else is a failed migration.
pub(super) fn failed(e: sqlx::Error) -> StoreError {
    match super::error::classify(e) {
        StoreError::Unavailable(m) => StoreError::Unavailable(m),
        other => StoreError::Migration(other.to_string()),
    }
}

/// Returns sqlx's error as is: the caller decides by SQLite's result code
/// whether another instance holding the file is worth waiting out, then turns
/// it into a `StoreError` with [`failed`].
pub(super) async fn sqlite(options: &SqliteConnectOptions) -> Result<(), sqlx::Error> {
    // A dedicated connection: the raw BEGIN below is invisible to sqlx's
    // transaction tracking, so it must never go back into a pool half-done.
    let mut conn = options.connect().await?;
    conn.execute("BEGIN IMMEDIATE").await?;
    let result = async {
        conn.execute(CREATE_LEDGER).await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut conn)
            .await?;
        for (version, sql, _) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            conn.execute(*sql).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(Utc::now().to_rfc3339())
                .execute(&mut conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.execute(end).await;
    let _ = conn.close().await;
    result?;
    ended?;
    Ok(())
}

pub(super) async fn postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_LOCK_ID)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    tx.execute(CREATE_LEDGER).await.map_err(failed)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
    for (version, _, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.execute(*sql).await.map_err(failed)?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(Utc::now().to_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}
