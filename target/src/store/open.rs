//! Opening a store: connecting and migrating, with SQLite's open retried while
//! other instances starting on the same fresh file hold it.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::error::{classify, is_sqlite_busy};
use super::query::Pool;
use super::{migrate, DbConfig, Store, StoreError, StoreOptions};

/// How long opening a SQLite file keeps retrying while other instances hold it.
const SQLITE_OPEN_RETRY: Duration = Duration::from_secs(10);

/// A failed attempt at opening a SQLite file. It keeps sqlx's error (rather
/// than a `StoreError`'s text) so the retry decision can read SQLite's code.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("migrating: {0}")]
    Migrate(#[source] sqlx::Error),
    #[error("connecting: {0}")]
    Connect(#[source] sqlx::Error),
}

impl OpenError {
    /// Another connection holds the file: worth another attempt.
    fn is_busy(&self) -> bool {
        let (OpenError::Migrate(e) | OpenError::Connect(e)) = self;
        matches!(e, sqlx::Error::Database(db) if is_sqlite_busy(&**db))
    }
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Migrate(e) => migrate::failed(e),
            OpenError::Connect(e) => classify(e),
        }
    }
}

/// WAL so readers never wait for the writer; the busy timeout covers ordinary
/// lock waits between instances sharing the file.
fn sqlite_options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

/// Migrates (one writer at a time) and opens the pool on a SQLite file.
async fn open_sqlite(
    options: &SqliteConnectOptions,
    opts: &StoreOptions,
) -> Result<SqlitePool, OpenError> {
    migrate::sqlite(options).await.map_err(OpenError::Migrate)?;
    SqlitePoolOptions::new()
        .max_connections(opts.pool_size)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options.clone())
        .await
        .map_err(OpenError::Connect)
}

/// Repeats `attempt` while SQLite answers busy and `deadline` has not passed;
/// any other outcome (an open pool, another error) returns at once.
async fn retry_while_busy<F, Fut>(
    deadline: Instant,
    mut attempt: F,
) -> Result<SqlitePool, OpenError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<SqlitePool, OpenError>>,
{
    loop {
        match attempt().await {
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "sqlite busy while opening; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

impl Store {
    /// Connects with default options and runs the embedded migrations.
    pub async fn connect(db: &DbConfig) -> Result<Store, StoreError> {
        Self::connect_with(db, &StoreOptions::default()).await
    }

    pub async fn connect_with(db: &DbConfig, opts: &StoreOptions) -> Result<Store, StoreError> {
        let pool = match db {
            DbConfig::Sqlite { path } => {
                let options = sqlite_options(path);
                // Instances starting at once on a fresh file race to switch it
                // to WAL and migrate; SQLite answers the loser SQLITE_BUSY at
                // once, without waiting out the busy timeout (its deadlock
                // avoidance), so the whole open is retried a while.
                let deadline = Instant::now() + SQLITE_OPEN_RETRY;
                Pool::Sqlite(retry_while_busy(deadline, || open_sqlite(&options, opts)).await?)
            }
            DbConfig::Postgres { url } => {
                let options = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Unavailable(format!("bad postgres url: {e}")))?;
                let pool = PgPoolOptions::new()
                    .max_connections(opts.pool_size)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(options)
                    .await?;
                migrate::postgres(&pool).await?;
                Pool::Postgres(pool)
            }
        };
        Ok(Store {
            pool,
            query_timeout: opts.query_timeout,
            idempotency_ttl: opts.idempotency_ttl,
            clock: opts.clock.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

    use super::*;

    /// Creates `path` in rollback-journal mode and holds its write lock: an
    /// open's first step, switching the file to WAL, is then refused with
    /// SQLITE_BUSY, as it is for the instances that lose a start-up race.
    async fn hold_write_lock(path: &std::path::Path) -> sqlx::SqliteConnection {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        conn.execute("CREATE TABLE held (x INTEGER)").await.unwrap();
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        conn.execute("INSERT INTO held VALUES (1)").await.unwrap();
        conn
    }

    async fn migrations_applied(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// The retry proven without racing the clock: the lock is released only
    /// after the first attempt has been refused, so an open that gave up on
    /// the first busy answer would fail this test.
    #[tokio::test]
    async fn an_open_refused_as_busy_is_retried_until_the_file_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.db");
        let holder = Mutex::new(Some(hold_write_lock(&path).await));
        let attempts = AtomicUsize::new(0);
        let (options, opts) = (sqlite_options(&path), StoreOptions::default());
        let (holder, attempts, options, opts) = (&holder, &attempts, &options, &opts);
        let deadline = Instant::now() + SQLITE_OPEN_RETRY;
        let pool = retry_while_busy(deadline, || async move {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 2 {
                let mut conn = holder.lock().unwrap().take().expect("held once");
                conn.execute("ROLLBACK").await.unwrap();
                conn.close().await.unwrap();
            }
            let result = open_sqlite(options, opts).await;
            if n == 1 {
                assert!(
                    matches!(&result, Err(e) if e.is_busy()),
                    "the held file refuses the first attempt as busy: {result:?}"
                );
            }
            result
        })
        .await
        .expect("opens once the lock is released");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(migrations_applied(&pool).await, MIGRATION_COUNT);
        pool.close().await;
    }

    /// Busy past the deadline, or any other error, ends the open at once; a
    /// busy answer becomes a 503 and the rest do not.
    #[tokio::test]
    async fn an_open_stops_at_the_first_error_that_is_not_busy_or_past_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::default();
        let count_attempts = |options: SqliteConnectOptions, deadline: Instant| {
            let opts = &opts;
            async move {
                let attempts = AtomicUsize::new(0);
                let result = retry_while_busy(deadline, || {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    open_sqlite(&options, opts)
                })
                .await;
                (result.expect_err("cannot open"), attempts.into_inner())
            }
        };

        let held = dir.path().join("held.db");
        let _holder = hold_write_lock(&held).await;
        let (busy, attempts) = count_attempts(sqlite_options(&held), Instant::now()).await;
        assert!(busy.is_busy(), "{busy:?}");
        assert_eq!(attempts, 1, "the deadline has passed");
        let busy = StoreError::from(busy);
        assert!(matches!(busy, StoreError::Unavailable(_)), "{busy:?}");

        // SQLITE_CANTOPEN: the directory does not exist.
        let nowhere = dir.path().join("missing").join("tasks.db");
        let far = Instant::now() + SQLITE_OPEN_RETRY;
        let (cannot_open, attempts) = count_attempts(sqlite_options(&nowhere), far).await;
        assert!(!cannot_open.is_busy(), "{cannot_open:?}");
        assert_eq!(attempts, 1, "only busy is retried");
        let cannot_open = StoreError::from(cannot_open);
        assert!(
            !matches!(cannot_open, StoreError::Unavailable(_)),
            "{cannot_open:?}"
        );
    }

    /// Several instances starting on one fresh file race to switch it to WAL
    /// and to migrate: every one comes up, and each migration runs once.
    /// Whether a run hits a busy answer is up to the scheduler (the retry
    /// itself is proven deterministically above).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn instances_opening_one_fresh_file_at_once_all_start() {
        let dir = tempfile::tempdir().unwrap();
        let db = DbConfig::Sqlite {
            path: dir.path().join("tasks.db"),
        };
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { Store::connect(&db).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().expect("every instance opens the file");
            let Pool::Sqlite(pool) = &store.pool else {
                unreachable!("a sqlite store")
            };
            assert_eq!(migrations_applied(pool).await, MIGRATION_COUNT);
            store.close().await;
        }
    }

    /// Every migration, applied once.
    const MIGRATION_COUNT: i64 = migrate::MIGRATIONS.len() as i64;
}
