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
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
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
    pub pool_size: u32,
    pub acquire_timeout: Duration,
    pub query_timeout: Duration,
    /// After this an Idempotency-Key is forgotten: a request reusing it is new.
    pub idempotency_ttl: Duration,
    /// The time source for key ages (tests advance it instead of waiting).
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
        sqlx::Error::Database(ref db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match db.kind() {
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => {
                    StoreError::Conflict(db.message().to_string())
                }
                _ if is_unavailable_code(&code) => StoreError::Unavailable(db.message().into()),
                _ => StoreError::Database(e),
            }
        }
        other => StoreError::Database(other),
    }
}

/// PostgreSQL connection-exception and shutdown codes, SQLite BUSY/LOCKED
/// (base code of an extended code): transient, so 503 rather than 500.
fn is_unavailable_code(code: &str) -> bool {
    if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
        return true;
    }
    matches!(code.parse::<i64>(), Ok(n) if n % 256 == 5 || n % 256 == 6)
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

fn is_sqlite_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

/// Migrates (one writer at a time) and opens the pool on a SQLite file.
async fn open_sqlite(
    options: &SqliteConnectOptions,
    opts: &StoreOptions,
) -> Result<SqlitePool, StoreError> {
    migrate::sqlite(options).await?;
    Ok(SqlitePoolOptions::new()
        .max_connections(opts.pool_size)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options.clone())
        .await?)
}

impl Store {
    /// Connects with default options and runs the embedded migrations.
    pub async fn connect(db: &DbConfig) -> Result<Store, StoreError> {
        Self::connect_with(db, &StoreOptions::default()).await
    }

    pub async fn connect_with(db: &DbConfig, opts: &StoreOptions) -> Result<Store, StoreError> {
        let pool = match db {
            DbConfig::Sqlite { path } => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                // Instances starting at once on a fresh file race to switch it
                // to WAL and migrate; SQLite answers the loser "database is
                // locked" at once, without waiting out the busy timeout (its
                // deadlock avoidance), so the whole open is retried a while.
                let deadline = std::time::Instant::now() + SQLITE_OPEN_RETRY;
                loop {
                    match open_sqlite(&options, opts).await {
                        Err(StoreError::Unavailable(m))
                            if is_sqlite_busy(&m) && std::time::Instant::now() < deadline =>
                        {
                            tracing::debug!(error = %m, "sqlite busy while opening; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => break Pool::Sqlite(other?),
                    }
                }
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
