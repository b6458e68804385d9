//! Redis cache-aside for task reads. Keys carry a generation (`tasks:g{gen}:..`)
//! so one `INCR tasks:gen` invalidates every cached task and list in O(1).
//! Fail-open: every call is bounded by a short timeout, and after a failure the
//! cache is skipped for a moment, so a Redis outage never becomes an API outage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

const GENERATION_KEY: &str = "tasks:gen";
/// How long the cache is skipped after a failure before it is tried again.
const BREAK_FOR: Duration = Duration::from_secs(1);
/// Between attempts to make the first connection when Redis is down at start.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

/// One round trip for a read: the current generation and the entry under it
/// (a missing entry comes back as nil).
const LOOKUP_SCRIPT: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then g = '0' end
return {g, redis.call('GET', 'tasks:g' .. g .. ':' .. ARGV[1])}
";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid redis url {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: redis::RedisError,
    },
}

/// The answer to a cache read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The cached JSON.
    Hit(String),
    /// Not cached; store the fresh value under this generation.
    Miss { generation: i64 },
    /// No cache configured, or Redis is unavailable: go to the database.
    Bypass,
}

impl Lookup {
    /// The `X-Cache` header value.
    pub fn label(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "HIT",
            Lookup::Miss { .. } => "MISS",
            Lookup::Bypass => "BYPASS",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
    /// Calls skipped because Redis was not connected or recently failed.
    pub skipped: AtomicU64,
}

/// Cheap to clone; `Cache::disabled()` when the stack runs without Redis.
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
    stats: Arc<CacheStats>,
}

struct Inner {
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    ttl: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` until which the cache is skipped.
    open_until_ms: AtomicU64,
    /// A write could not bump the generation: bump it before trusting Redis
    /// again, or entries written before the write would be served.
    pending_invalidation: AtomicBool,
    lookup: redis::Script,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("connected", &self.conn.initialized())
            .field("timeout", &self.timeout)
            .finish()
    }
}

enum Failure {
    Skipped,
    Failed(String),
}

impl Cache {
    pub fn disabled() -> Cache {
        Cache {
            inner: None,
            stats: Arc::default(),
        }
    }

    /// Starts connecting in the background (must be called inside a tokio
    /// runtime); until connected, reads bypass the cache.
    pub fn connect(url: &str, timeout: Duration, ttl: Duration) -> Result<Cache, CacheError> {
        let client = redis::Client::open(url).map_err(|source| CacheError::InvalidUrl {
            url: url.to_string(),
            source,
        })?;
        let inner = Arc::new(Inner {
            conn: OnceCell::new(),
            timeout,
            ttl,
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            pending_invalidation: AtomicBool::new(false),
            lookup: redis::Script::new(LOOKUP_SCRIPT),
        });
        let weak = Arc::downgrade(&inner);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(timeout.max(Duration::from_millis(10)))
            .set_number_of_retries(1)
            .set_max_delay(200);
        tokio::spawn(async move {
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => {
                        if let Some(inner) = weak.upgrade() {
                            let _ = inner.conn.set(conn);
                            tracing::info!("connected to redis");
                        }
                        return;
                    }
                    Err(e) => {
                        if weak.strong_count() == 0 {
                            return;
                        }
                        tracing::warn!(error = %e, "redis not reachable yet; serving from the database");
                        tokio::time::sleep(CONNECT_RETRY).await;
                    }
                }
            }
        });
        Ok(Cache {
            inner: Some(inner),
            stats: Arc::default(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Reads `key` (e.g. `id:42`, `list:<canonical query>`) under the current
    /// generation.
    pub async fn get(&self, key: &str) -> Lookup {
        let Some(inner) = &self.inner else {
            return Lookup::Bypass;
        };
        let result = async {
            let mut conn = inner.usable()?;
            if inner.pending_invalidation.load(Ordering::Acquire) {
                inner
                    .bounded(
                        redis::cmd("INCR")
                            .arg(GENERATION_KEY)
                            .query_async::<i64>(&mut conn),
                    )
                    .await?;
                inner.pending_invalidation.store(false, Ordering::Release);
            }
            let mut invocation = inner.lookup.key(GENERATION_KEY);
            invocation.arg(key);
            inner
                .bounded(invocation.invoke_async::<Vec<Option<String>>>(&mut conn))
                .await
        }
        .await;
        match result {
            Ok(mut parts) => match parts.get_mut(1).and_then(Option::take) {
                Some(value) => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    Lookup::Hit(value)
                }
                None => {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    let generation = parts
                        .first()
                        .and_then(|g| g.as_deref())
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0);
                    Lookup::Miss { generation }
                }
            },
            Err(f) => {
                self.failed(inner, f, "read");
                Lookup::Bypass
            }
        }
    }

    /// Stores a value read from the database after a `Miss`.
    pub async fn put(&self, generation: i64, key: &str, value: &str) {
        let Some(inner) = &self.inner else { return };
        let result = async {
            let mut conn = inner.usable()?;
            let full = format!("tasks:g{generation}:{key}");
            let ttl = inner.ttl.as_secs().max(1);
            inner
                .bounded(
                    redis::cmd("SET")
                        .arg(full)
                        .arg(value)
                        .arg("EX")
                        .arg(ttl)
                        .query_async::<()>(&mut conn),
                )
                .await
        }
        .await;
        if let Err(f) = result {
            self.failed(inner, f, "write");
        }
    }

    /// Makes every cached task and list stale; called after each committed write.
    pub async fn invalidate(&self) {
        let Some(inner) = &self.inner else { return };
        let result = async {
            let mut conn = inner.usable()?;
            inner
                .bounded(
                    redis::cmd("INCR")
                        .arg(GENERATION_KEY)
                        .query_async::<i64>(&mut conn),
                )
                .await
        }
        .await;
        if let Err(f) = result {
            inner.pending_invalidation.store(true, Ordering::Release);
            self.failed(inner, f, "invalidate");
        }
    }

    fn failed(&self, inner: &Inner, failure: Failure, op: &'static str) {
        match failure {
            Failure::Skipped => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Failure::Failed(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let until = inner.now_ms() + BREAK_FOR.as_millis() as u64;
                inner.open_until_ms.store(until, Ordering::Release);
                tracing::warn!(%error, op, "redis call failed; serving from the database");
            }
        }
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A connection to use now, unless Redis is not connected yet or failed
    /// within the last `BREAK_FOR`.
    fn usable(&self) -> Result<ConnectionManager, Failure> {
        if self.now_ms() < self.open_until_ms.load(Ordering::Acquire) {
            return Err(Failure::Skipped);
        }
        self.conn.get().cloned().ok_or(Failure::Skipped)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Failed(e.to_string())),
            Err(_) => Err(Failure::Failed(format!(
                "timed out after {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn disabled_cache_bypasses_everything() {
        let cache = Cache::disabled();
        assert_eq!(cache.get("id:1").await, Lookup::Bypass);
        cache.put(0, "id:1", "{}").await;
        cache.invalidate().await;
        assert_eq!(cache.stats().hits.load(Ordering::Relaxed), 0);
        assert!(!cache.is_enabled());
    }

    #[tokio::test]
    async fn unreachable_redis_fails_open_and_remembers_to_invalidate() {
        // Port 1 on loopback refuses connections.
        let cache = Cache::connect(
            "redis://127.0.0.1:1/",
            Duration::from_millis(50),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(cache.get("id:1").await, Lookup::Bypass);
        cache.invalidate().await;
        let inner = cache.inner.as_ref().unwrap();
        assert!(inner.pending_invalidation.load(Ordering::Acquire));
        assert!(cache.stats().skipped.load(Ordering::Relaxed) >= 1);
        assert!(matches!(
            Cache::connect(
                "not a url",
                Duration::from_millis(50),
                Duration::from_secs(1)
            ),
            Err(CacheError::InvalidUrl { .. })
        ));
    }
}
