//! The store's errors, and the sorting of sqlx's errors into what the API must
//! answer (503 for a database that is away or busy, 409 for a conflict, 500).

use sqlx::error::DatabaseError;
use sqlx::sqlite::SqliteError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded; the client may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A unique constraint or a restricting foreign key refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The named fields point at rows that do not exist.
    #[error("referenced rows do not exist: {0:?}")]
    MissingReference(Vec<&'static str>),
    /// The same Idempotency-Key was sent with a different request body.
    #[error("idempotency key was already used for a different request")]
    IdempotencyMismatch,
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("password hashing failed: {0}")]
    Password(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

/// Sorts sqlx errors into what the API must answer: transport and pool
/// problems are "unavailable" (503), constraint violations are conflicts.
pub(super) fn classify(e: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(ref db) => match db.kind() {
            ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => {
                StoreError::Conflict(db.message().to_string())
            }
            _ if is_transient(&**db) => StoreError::Unavailable(db.message().into()),
            _ => StoreError::Database(e),
        },
        other => StoreError::Database(other),
    }
}

/// Transient, so 503 rather than 500: PostgreSQL's connection-exception (08),
/// operator-intervention (57P: shutdown, crash) and too-many-connections codes;
/// SQLite's BUSY/LOCKED. Which backend said it decides how the code is read: a
/// PostgreSQL SQLSTATE such as 42501 (permission denied) parses as a number
/// whose low byte is 5, and is no lock.
fn is_transient(db: &dyn DatabaseError) -> bool {
    if db.try_downcast_ref::<SqliteError>().is_some() {
        return is_sqlite_busy(db);
    }
    let code = db.code().unwrap_or_default();
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

/// Whether SQLite refused because another connection holds the file or a table:
/// SQLITE_BUSY or SQLITE_LOCKED. sqlx reports the extended result code, whose
/// low byte is the primary one (SQLITE_BUSY_SNAPSHOT is 5 | 2 << 8).
pub(super) fn is_sqlite_busy(db: &dyn DatabaseError) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    db.try_downcast_ref::<SqliteError>().is_some()
        && matches!(
            db.code().and_then(|c| c.parse::<i64>().ok()),
            Some(code) if matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
        )
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection as _, Executor as _};

    use super::*;
    use crate::process::postgres::{Postgres, PostgresOptions};

    /// A PostgreSQL code is never read as a SQLite one: 42501 (permission
    /// denied) has SQLITE_BUSY's low byte but is a 500, while 57P01 (the
    /// server ended the session) is a 503.
    #[tokio::test]
    async fn postgres_codes_are_not_read_as_sqlite_codes() {
        let pg = Postgres::start(PostgresOptions::default()).expect("start a private postgres");
        let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
        conn.execute("CREATE TABLE secret (x INTEGER); CREATE ROLE nobody")
            .await
            .unwrap();
        conn.execute("SET ROLE nobody").await.unwrap();
        let denied = conn.execute("SELECT x FROM secret").await.unwrap_err();
        assert_eq!(database_code(&denied).as_deref(), Some("42501"));
        let denied = classify(denied);
        assert!(matches!(denied, StoreError::Database(_)), "{denied:?}");

        conn.execute("RESET ROLE").await.unwrap();
        let ended = conn
            .execute("SELECT pg_terminate_backend(pg_backend_pid())")
            .await
            .unwrap_err();
        assert_eq!(database_code(&ended).as_deref(), Some("57P01"));
        let ended = classify(ended);
        assert!(matches!(ended, StoreError::Unavailable(_)), "{ended:?}");
    }

    fn database_code(e: &sqlx::Error) -> Option<String> {
        e.as_database_error()
            .and_then(|db| db.code())
            .map(|c| c.into_owned())
    }
}
