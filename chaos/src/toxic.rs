//! Toxics: the network faults a [`crate::proxy::FaultProxy`] applies to the bytes
//! it forwards, and how the toxics active on a proxy combine for one connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which way the bytes flow through the proxy. `Upstream` is client → component
/// (requests), `Downstream` is component → client (responses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Upstream,
    /// The default, as in toxiproxy: delaying responses delays every request/response
    /// exchange by exactly the configured latency.
    #[default]
    Downstream,
    Both,
}

impl Direction {
    /// Whether a toxic configured for `self` acts on bytes flowing in `flow`
    /// (`flow` is never `Both`).
    pub fn covers(self, flow: Direction) -> bool {
        self == Direction::Both || self == flow
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        })
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "upstream" => Ok(Direction::Upstream),
            "downstream" => Ok(Direction::Downstream),
            "both" => Ok(Direction::Both),
            other => Err(format!(
                "unknown direction `{other}` (expected upstream, downstream or both)"
            )),
        }
    }
}

/// One network fault. Parameters are validated by [`Toxic::validate`] before a
/// proxy accepts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Toxic {
    /// Delay every chunk by `latency` ± a uniform `jitter`, keeping byte order.
    Latency {
        #[serde(with = "crate::duration")]
        latency: Duration,
        #[serde(with = "crate::duration", default)]
        jitter: Duration,
        #[serde(default)]
        direction: Direction,
    },
    /// Cap the forwarding rate to `rate` bytes per second.
    Bandwidth {
        rate: u64,
        #[serde(default)]
        direction: Direction,
    },
    /// Reset (TCP RST) live connections and every new one.
    Reset,
    /// Accept and read, forward nothing: clients time out.
    Blackhole,
    /// The component is unreachable, as toxiproxy's `down`: stop listening (new
    /// connections are refused) and close the live connections through the proxy,
    /// so pooled clients lose their connection too.
    Refuse,
    /// Stop listening, so new connections are refused; live ones carry on (a
    /// client holding a pooled connection never notices).
    RefuseNew,
    /// Hold a closing side's FIN back for `delay`.
    SlowClose {
        #[serde(with = "crate::duration")]
        delay: Duration,
    },
    /// Close the connection once `bytes` have passed in a covered direction.
    LimitData {
        bytes: u64,
        #[serde(default)]
        direction: Direction,
    },
}

/// Why a toxic was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ToxicError {
    #[error("toxicity must be within 0.0..=1.0, got {0}")]
    Toxicity(f64),
    #[error("bandwidth rate must be at least 1 byte/s")]
    ZeroRate,
    #[error("jitter ({jitter:?}) must not exceed latency ({latency:?})")]
    JitterAboveLatency { latency: Duration, jitter: Duration },
}

impl Toxic {
    /// The toxic's name as the CLI and schedules spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::Reset => "reset",
            Toxic::Blackhole => "blackhole",
            Toxic::Refuse => "refuse",
            Toxic::RefuseNew => "refuse-new",
            Toxic::SlowClose { .. } => "slow-close",
            Toxic::LimitData { .. } => "limit-data",
        }
    }

    pub fn validate(&self) -> Result<(), ToxicError> {
        match self {
            Toxic::Bandwidth { rate: 0, .. } => Err(ToxicError::ZeroRate),
            Toxic::Latency {
                latency, jitter, ..
            } if jitter > latency => Err(ToxicError::JitterAboveLatency {
                latency: *latency,
                jitter: *jitter,
            }),
            _ => Ok(()),
        }
    }
}

/// A toxic installed on a proxy: its id on that proxy, the fraction of connections
/// it affects, and the seed that decides which ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveToxic {
    pub id: u64,
    pub toxic: Toxic,
    pub toxicity: f64,
    pub seed: u64,
}

impl ActiveToxic {
    /// Whether connection number `conn` is one of the affected fraction. A pure
    /// function of (seed, conn), so a replay with the same seed hits the same
    /// connections and a live connection never flips in and out.
    pub fn affects(&self, conn: u64) -> bool {
        if self.toxicity >= 1.0 {
            return true;
        }
        if self.toxicity <= 0.0 {
            return false;
        }
        let draw = splitmix64(self.seed ^ splitmix64(conn)) >> 11;
        (draw as f64 / (1u64 << 53) as f64) < self.toxicity
    }
}

/// A well-mixed 64-bit hash (the SplitMix64 finaliser): cheap and seedable.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What the active toxics mean for one connection in one direction, folded into
/// plain fields the pump can check without walking the list on every chunk.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Effects {
    pub latency: Duration,
    pub jitter: Duration,
    pub rate: Option<u64>,
    pub reset: bool,
    /// `refuse`: close the connection (FIN both ways), as if the component went away.
    pub cut: bool,
    pub blackhole: bool,
    pub slow_close: Option<Duration>,
    pub limit: Option<u64>,
}

impl Effects {
    pub fn for_connection(toxics: &[ActiveToxic], conn: u64, flow: Direction) -> Effects {
        let mut e = Effects::default();
        for t in toxics.iter().filter(|t| t.affects(conn)) {
            match &t.toxic {
                Toxic::Latency {
                    latency,
                    jitter,
                    direction,
                } if direction.covers(flow) => {
                    e.latency += *latency;
                    e.jitter += *jitter;
                }
                Toxic::Bandwidth { rate, direction } if direction.covers(flow) => {
                    e.rate = Some(e.rate.map_or(*rate, |r| r.min(*rate)));
                }
                Toxic::Reset => e.reset = true,
                Toxic::Refuse => e.cut = true,
                Toxic::Blackhole => e.blackhole = true,
                Toxic::SlowClose { delay } => {
                    e.slow_close = Some(e.slow_close.map_or(*delay, |d| d.max(*delay)));
                }
                Toxic::LimitData { bytes, direction } if direction.covers(flow) => {
                    e.limit = Some(e.limit.map_or(*bytes, |l| l.min(*bytes)));
                }
                _ => {}
            }
        }
        e
    }

    /// No toxic touches this flow: the pump may take its fast branch.
    pub fn is_clear(&self) -> bool {
        *self == Effects::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(toxicity: f64, seed: u64) -> ActiveToxic {
        ActiveToxic {
            id: 1,
            toxic: Toxic::Reset,
            toxicity,
            seed,
        }
    }

    #[test]
    fn toxicity_selects_about_that_fraction_deterministically() {
        let t = active(0.3, 42);
        let hits: Vec<bool> = (0..10_000).map(|c| t.affects(c)).collect();
        let n = hits.iter().filter(|h| **h).count();
        assert!((2_700..3_300).contains(&n), "{n} of 10000 affected");
        let again: Vec<bool> = (0..10_000).map(|c| t.affects(c)).collect();
        assert_eq!(hits, again);
        let other_seed: Vec<bool> = (0..10_000).map(|c| active(0.3, 43).affects(c)).collect();
        assert_ne!(hits, other_seed);
        assert!((0..100).all(|c| active(1.0, 7).affects(c)));
        assert!((0..100).all(|c| !active(0.0, 7).affects(c)));
    }

    #[test]
    fn effects_fold_by_direction() {
        let toxics = vec![
            ActiveToxic {
                id: 1,
                toxic: Toxic::Latency {
                    latency: Duration::from_millis(100),
                    jitter: Duration::ZERO,
                    direction: Direction::Downstream,
                },
                toxicity: 1.0,
                seed: 0,
            },
            ActiveToxic {
                id: 2,
                toxic: Toxic::Bandwidth {
                    rate: 1000,
                    direction: Direction::Both,
                },
                toxicity: 1.0,
                seed: 0,
            },
        ];
        let down = Effects::for_connection(&toxics, 0, Direction::Downstream);
        assert_eq!(down.latency, Duration::from_millis(100));
        assert_eq!(down.rate, Some(1000));
        let up = Effects::for_connection(&toxics, 0, Direction::Upstream);
        assert_eq!(up.latency, Duration::ZERO);
        assert_eq!(up.rate, Some(1000));
        assert!(Effects::for_connection(&[], 0, Direction::Upstream).is_clear());
    }

    #[test]
    fn validation_catches_nonsense() {
        assert_eq!(
            Toxic::Bandwidth {
                rate: 0,
                direction: Direction::Both
            }
            .validate(),
            Err(ToxicError::ZeroRate)
        );
        assert!(Toxic::Latency {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(20),
            direction: Direction::Both
        }
        .validate()
        .is_err());
    }
}
