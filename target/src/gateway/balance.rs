//! Picking an upstream for one try: round-robin, least-connections or a
//! consistent-hash ring. Only available upstreams (healthy, breaker admitting)
//! not yet tried by this request are candidates, so a retry lands elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderName;

use super::config::Balance;
use super::upstream::UpstreamState;

/// Virtual nodes per upstream: enough that N upstreams split the ring within a
/// few percent of 1/N each.
const VIRTUAL_NODES: usize = 160;

/// The upstreams a request already tried, as a bitmask (upstreams past the 64th
/// are never marked, so with that many a retry may land on the same one again).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tried(u64);

impl Tried {
    pub fn insert(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    pub fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
}

pub(crate) enum Picker {
    RoundRobin {
        next: AtomicUsize,
    },
    LeastConnections {
        next: AtomicUsize,
    },
    ConsistentHash {
        header: Option<HeaderName>,
        /// (point on the ring, upstream index), sorted by point.
        ring: Box<[(u64, usize)]>,
    },
}

impl Picker {
    pub fn new(balance: &Balance, upstreams: &[Arc<UpstreamState>]) -> Self {
        match balance {
            Balance::RoundRobin => Self::RoundRobin {
                next: AtomicUsize::new(0),
            },
            Balance::LeastConnections => Self::LeastConnections {
                next: AtomicUsize::new(0),
            },
            Balance::ConsistentHash { header } => {
                let mut ring: Vec<(u64, usize)> = upstreams
                    .iter()
                    .enumerate()
                    .flat_map(|(index, u)| {
                        (0..VIRTUAL_NODES).map(move |v| {
                            // Points derive from the name, not the position, so
                            // the ring is the same whatever order the list has.
                            let point = hash(format!("{}#{v}", u.name).as_bytes());
                            (point, index)
                        })
                    })
                    .collect();
                ring.sort_unstable();
                Self::ConsistentHash {
                    header: header
                        .as_deref()
                        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                    ring: ring.into_boxed_slice(),
                }
            }
        }
    }

    /// The header the hash is keyed on, if any (the caller falls back to the
    /// client IP when the request lacks it).
    pub fn hash_header(&self) -> Option<&HeaderName> {
        match self {
            Self::ConsistentHash { header, .. } => header.as_ref(),
            _ => None,
        }
    }

    /// Chooses an upstream for the next try, claiming a breaker probe if the
    /// chosen upstream is half-open. `key` is only used by consistent hashing.
    pub fn pick(
        &self,
        upstreams: &[Arc<UpstreamState>],
        key: &[u8],
        tried: Tried,
        now_ms: u64,
    ) -> Option<usize> {
        let n = upstreams.len();
        if n == 0 {
            return None;
        }
        let candidate = |i: usize| !tried.contains(i) && upstreams[i].is_available(now_ms);
        match self {
            Self::RoundRobin { next } => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                // A candidate that loses a half-open probe race is passed over
                // for the next one in the same rotation.
                rotation(n, start, candidate).find(|&i| upstreams[i].breaker.admit(now_ms))
            }
            Self::LeastConnections { next } => {
                // Rotating the scan start breaks ties fairly instead of always
                // favouring the first upstream when all are idle.
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut passed = tried;
                for _ in 0..n {
                    let mut best: Option<(usize, usize)> = None;
                    let eligible =
                        |i: usize| !passed.contains(i) && upstreams[i].is_available(now_ms);
                    for i in rotation(n, start, eligible) {
                        let load = upstreams[i].in_flight();
                        // Strictly less: among equals the first in rotation wins.
                        if best.map_or(true, |(l, _)| load < l) {
                            best = Some((load, i));
                        }
                    }
                    let (_, i) = best?;
                    if upstreams[i].breaker.admit(now_ms) {
                        return Some(i);
                    }
                    // Lost a half-open probe race; look again without it.
                    passed.insert(i);
                }
                None
            }
            Self::ConsistentHash { ring, .. } => {
                let point = hash(key);
                let start = ring.partition_point(|&(p, _)| p < point);
                let mut seen = Tried::default();
                for k in 0..ring.len() {
                    let (_, i) = ring[(start + k) % ring.len()];
                    if seen.contains(i) {
                        continue;
                    }
                    seen.insert(i);
                    if candidate(i) && upstreams[i].breaker.admit(now_ms) {
                        return Some(i);
                    }
                }
                None
            }
        }
    }
}

/// The indices in `0..n` for which `eligible` holds, in cyclic order starting
/// at the `start % m`-th of them (`m` = how many are eligible).
///
/// Rotating over the eligible upstreams rather than over all of them keeps the
/// split even when some are out: scanning all `n` from `start` and skipping the
/// ineligible ones would hand an ejected upstream's whole share to the next one
/// in the list (with 1 of 4 out, that one got half again what the others got).
fn rotation(
    n: usize,
    start: usize,
    eligible: impl Fn(usize) -> bool + Copy,
) -> impl Iterator<Item = usize> {
    let m = (0..n).filter(|&i| eligible(i)).count();
    // Eligibility is re-read below and may have changed meanwhile (a health
    // check, a breaker); any start is then as fair as another.
    let first = match m {
        0 => 0,
        m => (0..n).filter(|&i| eligible(i)).nth(start % m).unwrap_or(0),
    };
    (0..n)
        .map(move |k| (first + k) % n)
        .filter(move |&i| eligible(i))
}

/// FNV-1a with a splitmix64 finaliser: fast for short keys (an IP, an API key)
/// and well spread over the ring, and stable across processes and versions.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::{BreakerConfig, Upstream};
    use crate::gateway::upstream::{duration_ms, BreakerState};

    fn upstreams(n: usize) -> Vec<Arc<UpstreamState>> {
        (0..n)
            .map(|i| {
                Arc::new(UpstreamState::new(
                    &Upstream {
                        name: format!("api-{}", i + 1),
                        addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    },
                    &BreakerConfig::default(),
                    &super::super::config::PoolConfig::default(),
                ))
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected_and_tried() {
        let ups = upstreams(3);
        let p = Picker::new(&Balance::RoundRobin, &ups);
        let picks: Vec<_> = (0..6)
            .map(|_| p.pick(&ups, b"", Tried::default(), 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        ups[1].eject();
        let picks: Vec<_> = (0..4)
            .map(|_| p.pick(&ups, b"", Tried::default(), 0).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        let mut tried = Tried::default();
        tried.insert(0);
        tried.insert(2);
        assert_eq!(p.pick(&ups, b"", tried, 0), None);
    }

    /// Counts how often each upstream is picked over `picks` fresh requests
    /// at gateway time `now_ms`.
    fn spread(p: &Picker, ups: &[Arc<UpstreamState>], picks: usize, now_ms: u64) -> Vec<usize> {
        let mut per = vec![0; ups.len()];
        for _ in 0..picks {
            per[p.pick(ups, b"", Tried::default(), now_ms).unwrap()] += 1;
        }
        per
    }

    #[test]
    fn round_robin_spreads_an_ejected_upstreams_share_evenly() {
        let ups = upstreams(4);
        let p = Picker::new(&Balance::RoundRobin, &ups);
        ups[1].eject();
        assert_eq!(spread(&p, &ups, 300, 0), [100, 0, 100, 100]);
        // The first upstream out shifts every rotation position; still even.
        ups[1].readmit();
        ups[0].eject();
        assert_eq!(spread(&p, &ups, 300, 0), [0, 100, 100, 100]);
    }

    #[test]
    fn round_robin_spreads_around_an_open_breaker_then_sends_it_one_probe() {
        let ups = upstreams(3);
        let p = Picker::new(&Balance::RoundRobin, &ups);
        let config = BreakerConfig::default();
        let cooldown = duration_ms(config.cooldown);
        for _ in 0..config.failures {
            ups[0].breaker.on_failure(0);
        }
        assert_eq!(ups[0].breaker.state(), BreakerState::Open);
        assert_eq!(spread(&p, &ups, 300, cooldown - 1), [0, 150, 150]);
        // Past the cooldown the first pick to reach it claims the one probe;
        // the rest of that cooldown goes to the others.
        let picks: Vec<_> = (0..6)
            .map(|_| p.pick(&ups, b"", Tried::default(), cooldown).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 1, "{picks:?}");
        assert_eq!(ups[0].breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn least_connections_ties_spread_evenly_with_one_out() {
        let ups = upstreams(4);
        let p = Picker::new(&Balance::LeastConnections, &ups);
        ups[2].eject();
        assert_eq!(spread(&p, &ups, 300, 0), [100, 100, 0, 100]);
    }

    #[test]
    fn least_connections_prefers_the_idle_upstream() {
        let ups = upstreams(3);
        let p = Picker::new(&Balance::LeastConnections, &ups);
        let _a = ups[0].start_request();
        let _b = ups[2].start_request();
        let _c = ups[2].start_request();
        for _ in 0..5 {
            assert_eq!(p.pick(&ups, b"", Tried::default(), 0), Some(1));
        }
        let _d = ups[1].start_request();
        let _e = ups[1].start_request();
        assert_eq!(p.pick(&ups, b"", Tried::default(), 0), Some(0));
    }

    #[test]
    fn consistent_hash_is_sticky_spread_and_moves_little_when_one_leaves() {
        let ups = upstreams(4);
        let p = Picker::new(&Balance::ConsistentHash { header: None }, &ups);
        let keys: Vec<String> = (0..2000)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let first: Vec<usize> = keys
            .iter()
            .map(|k| p.pick(&ups, k.as_bytes(), Tried::default(), 0).unwrap())
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|k| p.pick(&ups, k.as_bytes(), Tried::default(), 0).unwrap())
            .collect();
        assert_eq!(first, again);
        let mut per = [0usize; 4];
        first.iter().for_each(|&i| per[i] += 1);
        assert!(per.iter().all(|&c| c > 300), "uneven ring: {per:?}");
        ups[3].eject();
        let after: Vec<usize> = keys
            .iter()
            .map(|k| p.pick(&ups, k.as_bytes(), Tried::default(), 0).unwrap())
            .collect();
        for (before, after) in first.iter().zip(&after) {
            if *before != 3 {
                assert_eq!(before, after, "a key not on the removed upstream moved");
            } else {
                assert_ne!(*after, 3);
            }
        }
    }
}
