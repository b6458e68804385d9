//! The Task API's storage: one `Store` over PostgreSQL or SQLite (sqlx, runtime
//! queries, `$n` placeholders, which both drivers accept), so the same handlers
//! run on the embedded default and on the real database.

mod categories;
mod migrate;
mod model;
mod password;
mod seed;
mod tasks;
mod users;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::FromRow;

pub use model::{
    Category, CategoryChanges, NewCategory, NewTask, NewUser, Task, TaskChanges, TaskStatus, User,
    UserChanges,
};
pub use password::{hash_password, verify_password};
pub use seed::{ensure_admin, seed, SeedSummary, SEED_PASSWORD};
pub use tasks::{SortField, SortKey, TaskQuery};
pub use users::Credentials;

/// Which database an instance uses (`db = "sqlite" | "postgres"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbConfig {
    /// A file shared by every instance of the stack (WAL mode, busy timeout).
    Sqlite { path: PathBuf },
    /// A `postgres://` URL.
    Postgres { url: String },
}

/// How long an Idempotency-Key is remembered by default: a day, as Stripe does,
/// which outlasts any client's retry schedule.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Pool sizing and timeouts; short by default so an unreachable database turns
/// into a quick 503 rather than a pile of stuck requests.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Database connections in this instance's pool.
    pub pool_size: u32,
    /// Waiting longer than this for a connection answers 503.
    pub acquire_timeout: Duration,
    /// Bound on each database call (a stalled server answers 503).
    pub query_timeout: Duration,
    /// How long an Idempotency-Key is remembered; a request reusing it after
    /// that is new. The API prunes expired keys in the background.
    pub idempotency_ttl: Duration,
    /// The time key ages are measured on: the system clock unless a test
    /// passes a clone it advances (instead of waiting).
    pub clock: Clock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            acquire_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(5),
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            clock: Clock::default(),
        }
    }
}

/// The system clock plus an offset that only [`Clock::advance`] changes, so a
/// test can age stored keys by a day in an instant. Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_us: Arc<AtomicI64>,
}

impl Clock {
    /// Microseconds, the precision PostgreSQL keeps, so SQLite stores the same.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_us.load(Ordering::Relaxed));
        (Utc::now() + offset).trunc_subsecs(6)
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_us.fetch_add(us, Ordering::Relaxed);
    }
}

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
fn classify(e: sqlx::Error) -> StoreError {
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
fn is_sqlite_busy(db: &dyn DatabaseError) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    db.try_downcast_ref::<SqliteError>().is_some()
        && matches!(
            db.code().and_then(|c| c.parse::<i64>().ok()),
            Some(code) if matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
        )
}

/// A value bound to a `$n` placeholder, owned so one query text and its
/// arguments can be built once and run on either driver.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    I64(i64),
    OptI64(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
}

/// Runs `$body` with `$pool` bound to whichever concrete pool the store has;
/// the body is type-checked once per driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::store::Bind::I64(v) => q.bind(v),
                $crate::store::Bind::OptI64(v) => q.bind(v),
                $crate::store::Bind::Text(v) => q.bind(v),
                $crate::store::Bind::OptText(v) => q.bind(v),
                $crate::store::Bind::Time(v) => q.bind(v),
                $crate::store::Bind::OptTime(v) => q.bind(v),
            };
        }
        q
    }};
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A row type both drivers can decode.
pub(crate) trait AnyRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}
impl<T> AnyRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// The response stored with an Idempotency-Key and replayed on a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// Who sent a keyed request, to which route, with what body: a key is scoped
/// to (principal, route) and bound to the request body's fingerprint.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub principal: String,
    pub route: &'static str,
    pub key: String,
    pub fingerprint: String,
}

/// A create either made a new row (and the response to send) or found the
/// stored response of an earlier request with the same Idempotency-Key.
#[derive(Debug)]
pub enum Created<T> {
    New(T, StoredResponse),
    Replay(StoredResponse),
}

/// A page of rows and the number of rows matching the filter.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    query_timeout: Duration,
    idempotency_ttl: Duration,
    clock: Clock,
}

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

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Open connections and how many of them are idle, for `/metrics`.
    pub fn pool_usage(&self) -> (u32, usize) {
        on_pool!(self, p => (p.size(), p.num_idle()))
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.execute("SELECT 1", Vec::new()).await.map(|_| ())
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// Bounds a database call: a stalled server (SIGSTOP, blackholed network)
    /// must produce a 503, not a request that never ends.
    async fn within<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        match tokio::time::timeout(self.query_timeout, fut).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(format!(
                "query timed out after {:?}",
                self.query_timeout
            ))),
        }
    }

    pub(crate) async fn fetch_optional<T: AnyRow>(
        &self,
        sql: &str,
        binds: Vec<Bind>,
    ) -> Result<Option<T>, StoreError> {
        self.within(async {
            on_pool!(self, p => bind_all!(sqlx::query_as::<_, T>(sql), binds).fetch_optional(p).await)
        })
        .await
    }

    pub(crate) async fn fetch_all<T: AnyRow>(
        &self,
        sql: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<T>, StoreError> {
        self.within(async {
            on_pool!(self, p => bind_all!(sqlx::query_as::<_, T>(sql), binds).fetch_all(p).await)
        })
        .await
    }

    pub(crate) async fn fetch_count(&self, sql: &str, binds: Vec<Bind>) -> Result<i64, StoreError> {
        self.within(async {
            on_pool!(self, p => bind_all!(sqlx::query_scalar::<_, i64>(sql), binds).fetch_one(p).await)
        })
        .await
    }

    pub(crate) async fn execute(&self, sql: &str, binds: Vec<Bind>) -> Result<u64, StoreError> {
        self.within(async {
            on_pool!(self, p => bind_all!(sqlx::query(sql), binds)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
        })
        .await
    }

    /// Runs an `INSERT ... RETURNING` and, when a key is given, records the
    /// response under it in the same transaction: the key row is claimed first
    /// (so a concurrent retry on another instance waits on it, then replays),
    /// and a create that fails leaves no key behind.
    pub(crate) async fn insert_returning<T: AnyRow>(
        &self,
        sql: &str,
        binds: Vec<Bind>,
        idem: Option<&IdempotencyKey>,
        render: impl FnOnce(&T) -> StoredResponse + Send,
    ) -> Result<Created<T>, StoreError> {
        // An expired key is taken over in place (as if it had been pruned),
        // atomically: of two concurrent retries only one sees it expired.
        const CLAIM: &str = "INSERT INTO idempotency_keys \
            (principal, route, key, fingerprint, status, body, created_at) \
            VALUES ($1, $2, $3, $4, 0, '', $5) \
            ON CONFLICT (principal, route, key) DO UPDATE SET \
            fingerprint = excluded.fingerprint, status = 0, body = '', \
            created_at = excluded.created_at \
            WHERE idempotency_keys.created_at < $6";
        const COMPLETE: &str = "UPDATE idempotency_keys SET status = $1, body = $2 \
            WHERE principal = $3 AND route = $4 AND key = $5";
        let now = self.clock.now();
        let expired_before = self.idempotency_cutoff(now);
        let outcome = self
            .within(async {
                on_pool!(self, p => {
                    let mut tx = p.begin().await?;
                    if let Some(k) = idem {
                        let claimed = sqlx::query(CLAIM)
                            .bind(&k.principal)
                            .bind(k.route)
                            .bind(&k.key)
                            .bind(&k.fingerprint)
                            .bind(now)
                            .bind(expired_before)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if claimed == 0 {
                            tx.rollback().await?;
                            return Ok(None);
                        }
                    }
                    let value = bind_all!(sqlx::query_as::<_, T>(sql), binds)
                        .fetch_one(&mut *tx)
                        .await?;
                    let response = render(&value);
                    if let Some(k) = idem {
                        sqlx::query(COMPLETE)
                            .bind(i64::from(response.status))
                            .bind(&response.body)
                            .bind(&k.principal)
                            .bind(k.route)
                            .bind(&k.key)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(Some((value, response)))
                })
            })
            .await;
        match outcome? {
            Some((value, response)) => Ok(Created::New(value, response)),
            None => self.replay(idem.expect("a replay needs a key")).await,
        }
    }

    /// Keys created before this are expired at `now`.
    fn idempotency_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        TimeDelta::from_std(self.idempotency_ttl)
            .ok()
            .and_then(|ttl| now.checked_sub_signed(ttl))
            // A TTL too long to represent never expires anything.
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// Deletes the Idempotency-Keys past their TTL; returns how many. The API
    /// runs this periodically; a claim never depends on it having run.
    pub async fn prune_idempotency_keys(&self) -> Result<u64, StoreError> {
        // In batches, each its own statement: one DELETE of a large backlog
        // would hold SQLite's write lock (or PostgreSQL row locks) for as long
        // as it runs, stalling the creates being measured meanwhile.
        const BATCH: i64 = 1000;
        const DELETE: &str = "DELETE FROM idempotency_keys \
            WHERE (principal, route, key) IN (SELECT principal, route, key \
            FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";
        let cutoff = self.idempotency_cutoff(self.clock.now());
        let mut deleted = 0;
        loop {
            let n = self
                .execute(DELETE, vec![Bind::Time(cutoff), Bind::I64(BATCH)])
                .await?;
            deleted += n;
            if n < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// How long Idempotency-Keys are kept.
    pub fn idempotency_ttl(&self) -> Duration {
        self.idempotency_ttl
    }

    async fn replay<T>(&self, k: &IdempotencyKey) -> Result<Created<T>, StoreError> {
        let row: Option<(String, i64, String)> = self
            .within(async {
                on_pool!(self, p => sqlx::query_as(
                    "SELECT fingerprint, status, body FROM idempotency_keys \
                     WHERE principal = $1 AND route = $2 AND key = $3",
                )
                .bind(&k.principal)
                .bind(k.route)
                .bind(&k.key)
                .fetch_optional(p)
                .await)
            })
            .await?;
        match row {
            Some((fingerprint, status, body)) if fingerprint == k.fingerprint => {
                Ok(Created::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(200),
                    body,
                }))
            }
            Some(_) => Err(StoreError::IdempotencyMismatch),
            // Claimed and then rolled back between our attempt and this read.
            None => Err(StoreError::Unavailable(
                "idempotent request in flight elsewhere".into(),
            )),
        }
    }

    /// `UPDATE table SET a = $1, .. WHERE id = $n RETURNING cols`.
    pub(crate) async fn update_returning<T: AnyRow>(
        &self,
        table: &str,
        columns: &str,
        id: i64,
        sets: Vec<(&'static str, Bind)>,
    ) -> Result<Option<T>, StoreError> {
        if sets.is_empty() {
            let sql = format!("SELECT {columns} FROM {table} WHERE id = $1");
            return self.fetch_optional(&sql, vec![Bind::I64(id)]).await;
        }
        let mut sql = format!("UPDATE {table} SET ");
        let mut binds = Vec::with_capacity(sets.len() + 1);
        for (i, (column, value)) in sets.into_iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("{column} = ${}", i + 1));
            binds.push(value);
        }
        binds.push(Bind::I64(id));
        sql.push_str(&format!(" WHERE id = ${} RETURNING {columns}", binds.len()));
        self.fetch_optional(&sql, binds).await
    }

    /// Deletes by id; a row still referenced (a user or category with tasks)
    /// is a conflict, because deletes restrict rather than cascade.
    pub(crate) async fn delete_by_id(
        &self,
        table: &str,
        entity: &str,
        id: i64,
    ) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {table} WHERE id = $1");
        match self.execute(&sql, vec![Bind::I64(id)]).await {
            Ok(0) => Err(StoreError::NotFound),
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "{entity} {id} still has tasks"
            ))),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn exists(&self, table: &str, id: i64) -> Result<bool, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = $1");
        Ok(self.fetch_count(&sql, vec![Bind::I64(id)]).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

    use super::*;
    use crate::process::postgres::{Postgres, PostgresOptions};

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

    /// Every migration, applied once.
    const MIGRATION_COUNT: i64 = migrate::MIGRATIONS.len() as i64;
}
