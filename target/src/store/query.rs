//! Running one query text on either driver: owned `$n` arguments, the pool
//! behind the store, and the generic fetch/execute calls every table's code uses.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::FromRow;

use super::error::classify;
use super::{Store, StoreError};

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
            $crate::store::query::Pool::Sqlite($pool) => $body,
            $crate::store::query::Pool::Postgres($pool) => $body,
        }
    };
}

pub(super) use on_pool;

/// Binds each of `$binds` to `$query`'s placeholders in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::store::query::Bind::I64(v) => q.bind(v),
                $crate::store::query::Bind::OptI64(v) => q.bind(v),
                $crate::store::query::Bind::Text(v) => q.bind(v),
                $crate::store::query::Bind::OptText(v) => q.bind(v),
                $crate::store::query::Bind::Time(v) => q.bind(v),
                $crate::store::query::Bind::OptTime(v) => q.bind(v),
            };
        }
        q
    }};
}

pub(super) use bind_all;

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

impl Store {
    /// Bounds a database call: a stalled server (SIGSTOP, blackholed network)
    /// must produce a 503, not a request that never ends.
    pub(super) async fn within<T, F>(&self, fut: F) -> Result<T, StoreError>
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
