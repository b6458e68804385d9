//! The Task API's storage: one `Store` over PostgreSQL or SQLite (sqlx, runtime
//! queries, `$n` placeholders, which both drivers accept), so the same handlers
//! run on the embedded default and on the real database.

mod categories;
mod clock;
mod error;
mod idempotency;
mod migrate;
mod model;
mod open;
mod options;
mod password;
mod query;
mod seed;
mod tasks;
mod users;

use std::time::Duration;

pub use clock::Clock;
pub use error::StoreError;
pub use idempotency::{Created, IdempotencyKey, StoredResponse};
pub use model::{
    Category, CategoryChanges, NewCategory, NewTask, NewUser, Task, TaskChanges, TaskStatus, User,
    UserChanges,
};
pub use options::{DbConfig, StoreOptions, DEFAULT_IDEMPOTENCY_TTL};
pub use password::{hash_password, verify_password};
pub(crate) use query::Bind;
pub use seed::{ensure_admin, seed, SeedSummary, SEED_PASSWORD};
pub use tasks::{SortField, SortKey, TaskQuery};
pub use users::Credentials;

use query::{on_pool, Pool};

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

impl Store {
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
}
