//! Token-bucket rate limiting per client (API key, else client IP). Buckets live
//! in hash-sharded maps so clients rarely contend on a lock, and memory is bounded:
//! past the limit, full buckets (idle clients, same as having none) are evicted.

use std::collections::HashMap;
use std::sync::Mutex;

use super::balance::hash;
use super::config::RateLimit;

const SHARDS: usize = 32;

/// Buckets by client key.
type Shard = HashMap<Vec<u8>, Bucket>;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// What the limiter decided, with the numbers for the RateLimit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until the next token (only meaningful when refused).
    pub retry_after_secs: u64,
}

pub(crate) struct RateLimiter {
    rate_per_ms: f64,
    burst: f64,
    shard_capacity: usize,
    shards: Box<[Mutex<Shard>]>,
}

impl RateLimiter {
    pub fn new(config: &RateLimit) -> Self {
        Self {
            rate_per_ms: config.rate.max(f64::MIN_POSITIVE) / 1000.0,
            burst: f64::from(config.burst.max(1)),
            shard_capacity: (config.max_clients / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(bucket.updated_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_ms).min(self.burst);
        bucket.updated_ms = now_ms;
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn check(&self, key: &[u8], now_ms: u64) -> Decision {
        let shard = &self.shards[(hash(key) % SHARDS as u64) as usize];
        let mut map = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = match map.get_mut(key) {
            Some(bucket) => {
                self.refill(bucket, now_ms);
                *bucket
            }
            None => {
                if map.len() >= self.shard_capacity {
                    self.evict(&mut map, now_ms);
                }
                let fresh = Bucket {
                    tokens: self.burst,
                    updated_ms: now_ms,
                };
                map.insert(key.to_vec(), fresh);
                fresh
            }
        };
        let allowed = bucket.tokens >= 1.0;
        let tokens = if allowed {
            bucket.tokens - 1.0
        } else {
            bucket.tokens
        };
        if allowed {
            if let Some(b) = map.get_mut(key) {
                b.tokens = tokens;
            }
        }
        drop(map);
        let ms_to = |target: f64| ((target - tokens).max(0.0) / self.rate_per_ms).ceil();
        Decision {
            allowed,
            limit: self.burst as u32,
            remaining: tokens.floor() as u32,
            reset_secs: (ms_to(self.burst) / 1000.0).ceil() as u64,
            retry_after_secs: ((ms_to(1.0) / 1000.0).ceil() as u64).max(1),
        }
    }

    /// Drops buckets that have refilled (their clients are idle); if every client
    /// is active, drops the longest-untouched one so the map stays bounded.
    fn evict(&self, map: &mut Shard, now_ms: u64) {
        map.retain(|_, b| {
            let tokens = b.tokens + now_ms.saturating_sub(b.updated_ms) as f64 * self.rate_per_ms;
            tokens < self.burst
        });
        if map.len() >= self.shard_capacity {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, b)| b.updated_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter::new(&RateLimit {
            rate,
            burst,
            max_clients,
            ..RateLimit::default()
        })
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let l = limiter(2.0, 3, 1000);
        let d: Vec<_> = (0..4).map(|_| l.check(b"k", 0)).collect();
        assert!(d[..3].iter().all(|d| d.allowed));
        assert_eq!(d[2].remaining, 0);
        assert!(!d[3].allowed);
        assert_eq!(d[3].retry_after_secs, 1);
        assert_eq!(d[3].reset_secs, 2, "3 tokens at 2/s");
        assert_eq!(d[3].limit, 3);
        // Another client has its own bucket.
        assert!(l.check(b"other", 0).allowed);
        // Half a second later one token is back.
        assert!(l.check(b"k", 500).allowed);
        assert!(!l.check(b"k", 500).allowed);
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_go_first() {
        let l = limiter(1.0, 1, SHARDS * 4);
        for i in 0..10_000u32 {
            l.check(&i.to_be_bytes(), u64::from(i));
        }
        assert!(l.tracked() <= SHARDS * 4);
    }
}
