//! Gateway configuration: what the supervisor hands to `slolab serve gateway` as
//! flags or a JSON/TOML file. Every type is `Default` with production-sane values,
//! durations are humantime strings ("250ms", "5s") so profiles stay readable.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One API instance the gateway forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Upstream {
    /// The instance name (`api-1`), used in metrics and logs.
    pub name: String,
    pub addr: SocketAddr,
}

/// How a request picks its upstream.
///
/// Serialised as a string: `round-robin`, `least-connections`, `consistent-hash`
/// (by client IP) or `consistent-hash:<header>` (by that header, falling back to
/// the client IP when the header is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Fewest requests in flight; ties rotate so equal upstreams share load.
    LeastConnections,
    /// A hash ring with virtual nodes, so a client sticks to one upstream and
    /// only ~1/N of the clients move when an upstream leaves.
    ConsistentHash { header: Option<String> },
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" => Ok(Self::RoundRobin),
            "least-connections" | "least-conn" => Ok(Self::LeastConnections),
            "consistent-hash" => Ok(Self::ConsistentHash { header: None }),
            other => match other.strip_prefix("consistent-hash:") {
                Some(header) if http::HeaderName::from_str(header).is_ok() => {
                    Ok(Self::ConsistentHash {
                        header: Some(header.to_ascii_lowercase()),
                    })
                }
                _ => Err(format!(
                    "unknown balance `{other}`: expected round-robin, least-connections, \
                     consistent-hash or consistent-hash:<header-name>"
                )),
            },
        }
    }
}

impl TryFrom<String> for Balance {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoundRobin => f.write_str("round-robin"),
            Self::LeastConnections => f.write_str("least-connections"),
            Self::ConsistentHash { header: None } => f.write_str("consistent-hash"),
            Self::ConsistentHash { header: Some(h) } => write!(f, "consistent-hash:{h}"),
        }
    }
}

impl From<Balance> for String {
    fn from(b: Balance) -> Self {
        b.to_string()
    }
}

/// Active health checks: `GET path` on every upstream each `interval`; `fall`
/// consecutive failures eject it, `rise` consecutive successes re-admit it.
/// Connection failures seen by live traffic also eject (passive ejection) when
/// checks are enabled, since only a check can bring the upstream back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthCheck {
    /// Default `true`.
    pub enabled: bool,
    /// Default `/readyz` (the API answers 200 only when its database is reachable).
    pub path: String,
    /// Default 2s.
    #[serde(with = "chaos::duration")]
    pub interval: Duration,
    /// Default 1s.
    #[serde(with = "chaos::duration")]
    pub timeout: Duration,
    /// Default 3.
    pub fall: u32,
    /// Default 2.
    pub rise: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/readyz".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
        }
    }
}

/// Retries go to another upstream, for connection failures (any method: nothing
/// was sent) and for resets and per-try timeouts before a response (idempotent
/// methods and POST with `Idempotency-Key` only), within a budget so that retries
/// cannot multiply an overload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryPolicy {
    /// Total tries per request, the first included. Default 3.
    pub attempts: u32,
    /// Retries may be at most this fraction of requests over the last
    /// `budget_window`. Default 0.2.
    pub budget_ratio: f64,
    /// Retries always allowed per second of window, so a quiet gateway can still
    /// retry. Default 10.
    pub min_retries_per_sec: u32,
    /// Default 10s.
    #[serde(with = "chaos::duration")]
    pub budget_window: Duration,
    /// Time for one try to get response headers. Default 5s.
    #[serde(with = "chaos::duration")]
    pub per_try_timeout: Duration,
    /// Time for the whole request, retries included, to get response headers. Default 15s.
    #[serde(with = "chaos::duration")]
    pub overall_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            budget_ratio: 0.2,
            min_retries_per_sec: 10,
            budget_window: Duration::from_secs(10),
            per_try_timeout: Duration::from_secs(5),
            overall_timeout: Duration::from_secs(15),
        }
    }
}

/// Circuit breaker per upstream: `failures` consecutive transport failures or
/// timeouts open it; after `cooldown` one probe request is let through
/// (half-open) and its outcome closes or re-opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BreakerConfig {
    /// Default 5.
    pub failures: u32,
    /// Default 5s.
    #[serde(with = "chaos::duration")]
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(5),
        }
    }
}

/// Token bucket per client, keyed by `key_header` or else the client IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimit {
    /// Tokens added per second. Default 100.
    pub rate: f64,
    /// Bucket size: the largest burst. Default 200.
    pub burst: u32,
    /// Default `X-Api-Key`.
    pub key_header: String,
    /// Upper bound on tracked clients; idle (full) buckets are evicted first.
    /// Default 100000.
    pub max_clients: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            rate: 100.0,
            burst: 200,
            key_header: "X-Api-Key".into(),
            max_clients: 100_000,
        }
    }
}

/// Connections to upstreams: HTTP/1.1 keep-alive, pooled per upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    /// Idle connections kept per upstream. Default 1024.
    pub max_idle_per_upstream: usize,
    /// Default 90s.
    #[serde(with = "chaos::duration")]
    pub idle_timeout: Duration,
    /// Default 1s (loopback or a LAN; a slow connect is a dead upstream).
    #[serde(with = "chaos::duration")]
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_upstream: 1024,
            idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Everything `target::gateway::serve` needs besides its listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatewayConfig {
    pub upstreams: Vec<Upstream>,
    pub balance: Balance,
    pub health: HealthCheck,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Default `None`: no rate limiting.
    pub rate_limit: Option<RateLimit>,
    /// HS256 secret shared with the API. Default `None`: no auth at the edge.
    pub jwt_secret: Option<Vec<u8>>,
    /// Request bodies are buffered (so they can be retried) up to this size;
    /// larger ones get 413. Default 1 MiB.
    pub max_body_bytes: usize,
    pub pool: PoolConfig,
    /// On shutdown, in-flight requests get this long to finish. Default 10s.
    #[serde(with = "chaos::duration")]
    pub drain_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            balance: Balance::default(),
            health: HealthCheck::default(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            rate_limit: None,
            jwt_secret: None,
            max_body_bytes: 1 << 20,
            pool: PoolConfig::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_round_trips_through_strings() {
        for s in [
            "round-robin",
            "least-connections",
            "consistent-hash",
            "consistent-hash:x-user-id",
        ] {
            let b: Balance = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
        }
        assert!("random".parse::<Balance>().is_err());
        assert!("consistent-hash:bad header".parse::<Balance>().is_err());
    }

    #[test]
    fn config_round_trips_through_json_and_fills_defaults() {
        let json = r#"{"upstreams":[{"name":"api-1","addr":"127.0.0.1:9001"}],
            "balance":"consistent-hash:X-User","retry":{"per-try-timeout":"250ms"}}"#;
        let c: GatewayConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.upstreams[0].name, "api-1");
        assert_eq!(
            c.balance,
            Balance::ConsistentHash {
                header: Some("x-user".into())
            }
        );
        assert_eq!(c.retry.per_try_timeout, Duration::from_millis(250));
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.health.path, "/readyz");
        let back: GatewayConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"nope":1}"#).is_err());
    }
}
