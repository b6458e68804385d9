//! What a store is opened with: which database, and the pool sizing, timeouts
//! and Idempotency-Key lifetime, kept apart from the code that opens it.

use std::path::PathBuf;
use std::time::Duration;

use super::Clock;

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
