//! The live state of one upstream as the request path and the health checker see
//! it: health (ejected or not), requests in flight, its circuit breaker and its
//! counters. All atomics, so picking an upstream never takes a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;

use super::config::{BreakerConfig, PoolConfig, Upstream};
use super::pool::Pool;

/// Highest status code counted individually; anything above lands in the last slot.
const STATUS_SLOTS: usize = 600;

pub(crate) struct UpstreamState {
    pub name: String,
    pub authority: Authority,
    /// Idle keep-alive connections to this upstream.
    pub pool: Pool,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    pub breaker: Breaker,
    pub ejections: AtomicU64,
    /// Responses received, by status code.
    statuses: Box<[AtomicU64]>,
    /// Tries that ended without a response (connect failure, reset, timeout).
    pub failures: AtomicU64,
}

impl UpstreamState {
    pub fn new(upstream: &Upstream, breaker: &BreakerConfig, pool: &PoolConfig) -> Self {
        let authority = Authority::try_from(upstream.addr.to_string())
            .expect("a socket address is a valid authority");
        Self {
            name: upstream.name.clone(),
            authority,
            pool: Pool::new(upstream.addr, pool),
            healthy: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            breaker: Breaker::new(breaker),
            ejections: AtomicU64::new(0),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            failures: AtomicU64::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Takes the upstream out of rotation; returns whether it was in rotation
    /// (so an ejection is logged and counted once).
    pub fn eject(&self) -> bool {
        let was = self.healthy.swap(false, Ordering::Relaxed);
        if was {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        was
    }

    /// Puts the upstream back; returns whether it was out.
    pub fn readmit(&self) -> bool {
        !self.healthy.swap(true, Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether a request may be sent now (healthy and the breaker lets it),
    /// without claiming a half-open probe.
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.is_healthy() && self.breaker.would_admit(now_ms)
    }

    pub fn record_status(&self, status: u16) {
        let slot = (status as usize).min(STATUS_SLOTS - 1);
        self.statuses[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// `(status, count)` for every status seen.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses.iter().enumerate().filter_map(|(code, n)| {
            let n = n.load(Ordering::Relaxed);
            (n > 0).then_some((code as u16, n))
        })
    }
}

/// Decrements the in-flight count on drop; travels with the response body so
/// least-connections sees a request until its body has been sent.
pub(crate) struct InFlight(Arc<UpstreamState>);

impl InFlight {
    pub fn upstream(&self) -> &UpstreamState {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// A consecutive-failures circuit breaker. Open blocks the upstream for
/// `cooldown`; then exactly one request (the probe) claims the half-open state,
/// and its outcome closes or re-opens the breaker. A probe that never reports
/// (its client went away) is replaced after another cooldown.
pub(crate) struct Breaker {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// When the breaker opened or the current probe started (gateway clock, ms).
    since_ms: AtomicU64,
    threshold: u32,
    cooldown_ms: u64,
    pub opened: AtomicU64,
}

impl Breaker {
    pub fn new(config: &BreakerConfig) -> Self {
        Self {
            state: AtomicU8::new(BreakerState::Closed as u8),
            consecutive_failures: AtomicU32::new(0),
            since_ms: AtomicU64::new(0),
            threshold: config.failures.max(1),
            cooldown_ms: duration_ms(config.cooldown),
            opened: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    fn cooled_down(&self, now_ms: u64) -> bool {
        now_ms >= self.since_ms.load(Ordering::Acquire) + self.cooldown_ms
    }

    pub fn would_admit(&self, now_ms: u64) -> bool {
        self.state() == BreakerState::Closed || self.cooled_down(now_ms)
    }

    /// Claims the right to send a request: always when closed; when open or
    /// half-open past the cooldown, only the one caller that wins the probe.
    pub fn admit(&self, now_ms: u64) -> bool {
        let current = self.state.load(Ordering::Acquire);
        if current == BreakerState::Closed as u8 {
            return true;
        }
        let since = self.since_ms.load(Ordering::Acquire);
        if now_ms < since + self.cooldown_ms {
            return false;
        }
        // The probe is whoever moves `since` forward first.
        if self
            .since_ms
            .compare_exchange(since, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.state
            .store(BreakerState::HalfOpen as u8, Ordering::Release);
        true
    }

    pub fn on_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.state.load(Ordering::Relaxed) != BreakerState::Closed as u8 {
            self.state
                .store(BreakerState::Closed as u8, Ordering::Release);
        }
    }

    /// Returns true when this failure opened the breaker.
    pub fn on_failure(&self, now_ms: u64) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let state = self.state.load(Ordering::Acquire);
        let open = if state == BreakerState::HalfOpen as u8 {
            true
        } else {
            state == BreakerState::Closed as u8 && failures >= self.threshold
        };
        if !open {
            return false;
        }
        self.since_ms.store(now_ms, Ordering::Release);
        let previous = self.state.swap(BreakerState::Open as u8, Ordering::AcqRel);
        if previous != BreakerState::Open as u8 {
            self.opened.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(&BreakerConfig {
            failures,
            cooldown: Duration::from_millis(cooldown_ms),
        })
    }

    #[test]
    fn consecutive_failures_open_and_a_success_resets_the_count() {
        let b = breaker(3, 1000);
        assert!(!b.on_failure(0));
        assert!(!b.on_failure(0));
        b.on_success();
        assert!(!b.on_failure(0));
        assert!(!b.on_failure(0));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.on_failure(10));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admit(500));
        assert!(!b.would_admit(1009));
    }

    #[test]
    fn one_probe_after_cooldown_then_close_or_reopen() {
        let b = breaker(1, 1000);
        assert!(b.on_failure(0));
        assert!(b.admit(1000), "first caller after the cooldown probes");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.admit(1001), "only one probe at a time");
        assert!(b.on_failure(1500), "a failed probe re-opens");
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.opened.load(Ordering::Relaxed), 2);
        assert!(!b.on_failure(1600), "already open");
        assert!(!b.admit(2000));
        assert!(b.admit(2500));
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(2501));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_another_cooldown() {
        let b = breaker(1, 100);
        b.on_failure(0);
        assert!(b.admit(100));
        assert!(!b.admit(150));
        assert!(b.admit(200));
    }

    #[test]
    fn ejection_is_counted_once() {
        let u = Arc::new(UpstreamState::new(
            &Upstream {
                name: "api-1".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            &BreakerConfig::default(),
            &PoolConfig::default(),
        ));
        assert!(u.eject());
        assert!(!u.eject());
        assert_eq!(u.ejections.load(Ordering::Relaxed), 1);
        assert!(u.readmit());
        assert!(!u.readmit());
        {
            let _a = u.start_request();
            let _b = u.start_request();
            assert_eq!(u.in_flight(), 2);
        }
        assert_eq!(u.in_flight(), 0);
    }
}
