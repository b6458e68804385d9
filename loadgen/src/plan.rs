//! The load plan: what to send, how fast, and when to stop. Built by `slolab load`
//! from hey-style flags and by `slolab run` from a profile; the engine runs it and
//! the results file records it verbatim so runs can be compared like for like.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the engine needs, and nothing about how it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadPlan {
    /// Requests to send, chosen by weight (one entry for `slolab load`).
    pub requests: Vec<RequestTemplate>,
    pub model: Model,
    /// Open model: how arrivals are spaced within the stages' rate. Absent in
    /// results files written before it existed (and for uniform), hence the default.
    #[serde(default, skip_serializing_if = "Arrivals::is_uniform")]
    pub arrivals: Arrivals,
    pub stop: Stop,
    /// Connections (closed model: concurrent workers; open model: the most
    /// requests in flight at once, beyond which sends are late).
    pub connections: usize,
    /// Per-request timeout, connect included.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    pub keepalive: bool,
    pub compression: bool,
    pub follow_redirects: bool,
    /// Timeline bucket width.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Worker threads for the engine's runtime (0: one per core).
    pub threads: usize,
    /// Seed for the request mix and `{rand:a..b}` templates.
    pub seed: u64,
    /// Count responses by the value of this header (e.g. `X-Served-By`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_header: Option<String>,
    /// Which outcomes count against availability.
    #[serde(default)]
    pub bad: BadPolicy,
    /// The I/O backend the workers run on.
    #[serde(default)]
    pub io: Io,
    /// How requests travel beyond the URL: through a proxy, over HTTP/2.
    #[serde(default, skip_serializing_if = "Transport::is_plain")]
    pub transport: Transport,
    /// One shard of a run spread over several generators: this one sends
    /// arrivals k ≡ index (mod count) of the schedule and its share of the
    /// connections (and of `-n`). Absent: the whole run, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Which part of a sharded run a generator runs: shard `index` of `count`.
/// The shards' union is exactly the unsharded run's schedule and connections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// How many of `total` items (arrivals, requests, connections) dealt
    /// round-robin — item k to shard k mod count — fall to this shard:
    /// ⌈total/count⌉ for the first `total mod count` shards, ⌊total/count⌋ after.
    pub fn share(&self, total: u64) -> u64 {
        let (i, n) = (self.index as u64, self.count as u64);
        if total > i {
            (total - i).div_ceil(n)
        } else {
            0
        }
    }

    /// This shard's connections as global connection ids: a contiguous block
    /// of its [`share`](Self::share), so the blocks tile `0..connections`.
    pub fn connections(&self, connections: usize) -> std::ops::Range<usize> {
        let (i, n) = (self.index as usize, self.count as usize);
        let (base, extra) = (connections / n, connections % n);
        let start = i * base + i.min(extra);
        start..start + base + usize::from(i < extra)
    }

    /// Global index of this shard's `local`-th item (arrival or request).
    pub fn global(&self, local: u64) -> u64 {
        local * self.count as u64 + self.index as u64
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The ways of reaching the target that hey offers beyond the URL itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// An HTTP proxy, `host:port` (hey's `-x`): `http://` requests are sent to
    /// it in absolute form (`GET http://host/path HTTP/1.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// HTTP/2 (hey's `-h2`): negotiated by ALPN over `https://`, prior
    /// knowledge (h2c) over `http://`. Runs on hyper's client and tokio.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,
}

impl Transport {
    /// Direct HTTP/1.1, what a plan without the field means.
    pub fn is_plain(&self) -> bool {
        *self == Transport::default()
    }
}

/// The I/O backend: both speak the same HTTP/1.1 client and run the same worker
/// loop, so they measure the same thing; io_uring costs less CPU per request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Io {
    /// io_uring when sends are paced by timers (open model, per-worker rate)
    /// and the kernel allows it; epoll otherwise.
    #[default]
    Auto,
    /// tokio's epoll reactor.
    Epoll,
    /// An io_uring per thread (Linux 5.19 or later); refused when unavailable.
    Uring,
}

impl std::str::FromStr for Io {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Io::Auto),
            "epoll" => Ok(Io::Epoll),
            "uring" | "io-uring" | "io_uring" => Ok(Io::Uring),
            _ => Err(format!("unknown I/O backend {s:?} (auto, epoll or uring)")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    pub weight: u32,
    pub method: String,
    /// Absolute URL; may contain templates: `{seq}`, `{rand:A..B}`, `{uuid}`.
    pub url: String,
    /// `(name, value)` in the order given; values may contain templates.
    pub headers: Vec<(String, String)>,
    /// Body bytes as UTF-8 text (templates allowed) — `-D` files are read into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// How requests are paced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Model {
    /// hey's model: each connection sends back to back, optionally limited to
    /// `rate_per_worker` requests per second (hey's `-q`). Latency is measured
    /// from the actual send.
    Closed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_per_worker: Option<f64>,
    },
    /// Arrival-rate model: requests are scheduled by the stages regardless of
    /// responses; latency is measured from the scheduled time (coordinated-
    /// omission correct).
    Open { stages: Vec<Stage> },
}

/// How the open model spaces its arrivals. Both follow the stages' rate on
/// average; they differ in what happens between arrivals.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly spaced: arrival k exactly where the expected count reaches k.
    /// Reproducible to the microsecond, and the gentlest load for a given rate.
    #[default]
    Uniform,
    /// A Poisson process at the stages' rate (seeded by the plan's seed):
    /// independent arrivals that bunch up as real traffic does, so queues build
    /// at lower utilisation than under uniform arrivals.
    Poisson,
}

impl Arrivals {
    pub fn is_uniform(&self) -> bool {
        *self == Arrivals::Uniform
    }
}

impl std::fmt::Display for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arrivals::Uniform => "uniform",
            Arrivals::Poisson => "poisson",
        })
    }
}

/// One stretch of an open-model schedule: the rate moves linearly from
/// `start_rate` to `end_rate` over `duration` (equal rates: steady).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    pub start_rate: f64,
    pub end_rate: f64,
}

/// When the run ends (Ctrl-C always ends it too).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Stop {
    /// After this many requests have ended (hey's `-n`).
    Requests { count: u64 },
    /// After this long (hey's `-z`); in-flight requests are waited for up to the timeout.
    Duration {
        #[serde(with = "humantime_serde_compat")]
        duration: Duration,
    },
    /// Open model: when the last stage ends.
    Stages,
}

/// Which outcomes are *bad* for availability. Transport failures and timeouts
/// are always bad; 5xx is bad unless turned off; 4xx and 429 are opt-in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BadPolicy {
    pub status_5xx: bool,
    pub status_429: bool,
    pub status_4xx: bool,
}

impl Default for BadPolicy {
    fn default() -> Self {
        Self {
            status_5xx: true,
            status_429: false,
            status_4xx: false,
        }
    }
}

impl Stage {
    pub fn steady(duration: Duration, rate: f64) -> Self {
        Self {
            duration,
            start_rate: rate,
            end_rate: rate,
        }
    }
}

/// Durations serialise as humantime strings ("1s", "250ms") so plans read well.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_deal_items_round_robin_and_tile_the_connections() {
        for count in 1..=5u32 {
            for total in 0..=23u64 {
                let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
                let shares: u64 = shards.iter().map(|s| s.share(total)).sum();
                assert_eq!(shares, total, "{total} over {count}");
                for s in &shards {
                    // Its share is exactly the k < total with k ≡ index.
                    let dealt = (0..total)
                        .filter(|k| k % count as u64 == s.index as u64)
                        .count();
                    assert_eq!(s.share(total), dealt as u64);
                    assert!(s.global(s.share(total)) >= total);
                }
                let tiles: Vec<usize> = shards
                    .iter()
                    .flat_map(|s| s.connections(total as usize))
                    .collect();
                assert_eq!(tiles, (0..total as usize).collect::<Vec<_>>());
                for s in &shards {
                    assert_eq!(s.connections(total as usize).len() as u64, s.share(total));
                }
            }
        }
    }
}
