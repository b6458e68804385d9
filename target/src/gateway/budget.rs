//! The retry budget: retries may be at most `ratio` of the requests seen over a
//! sliding window, plus a small floor per second. Without it, retries turn an
//! overloaded upstream into a retry storm (every failure becomes `attempts` tries).

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::RetryPolicy;

/// One-second buckets; a bucket packs (second << 32 | count) so a stale bucket
/// is recognised and reset without a lock.
struct Window {
    buckets: Box<[AtomicU64]>,
}

impl Window {
    fn new(seconds: usize) -> Self {
        Self {
            buckets: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn add(&self, second: u64) {
        let slot = &self.buckets[(second % self.buckets.len() as u64) as usize];
        let tag = (second & 0xffff_ffff) << 32;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = if current & !0xffff_ffff == tag {
                current + 1
            } else {
                tag | 1
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Sum over the buckets whose second lies within the window ending at `second`.
    fn sum(&self, second: u64) -> u64 {
        let len = self.buckets.len() as u64;
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|v| {
                let s = v >> 32;
                let now = second & 0xffff_ffff;
                now >= s && now - s < len
            })
            .map(|v| v & 0xffff_ffff)
            .sum()
    }
}

pub(crate) struct RetryBudget {
    requests: Window,
    retries: Window,
    ratio: f64,
    floor: u64,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        let seconds = policy.budget_window.as_secs().clamp(1, 300) as usize;
        Self {
            requests: Window::new(seconds),
            retries: Window::new(seconds),
            ratio: policy.budget_ratio.max(0.0),
            floor: u64::from(policy.min_retries_per_sec) * seconds as u64,
        }
    }

    pub fn on_request(&self, now_ms: u64) {
        self.requests.add(now_ms / 1000);
    }

    /// Spends one retry if the budget allows it.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        let allowed = self.floor as f64 + self.ratio * self.requests.sum(second) as f64;
        if (self.retries.sum(second) as f64) < allowed {
            self.retries.add(second);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(ratio: f64, floor: u32) -> RetryBudget {
        RetryBudget::new(&RetryPolicy {
            budget_ratio: ratio,
            min_retries_per_sec: floor,
            budget_window: Duration::from_secs(10),
            ..RetryPolicy::default()
        })
    }

    #[test]
    fn retries_are_capped_at_the_ratio_of_requests() {
        let b = budget(0.2, 0);
        for _ in 0..100 {
            b.on_request(5_000);
        }
        let granted = (0..100).filter(|_| b.try_retry(5_500)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_retries_when_quiet_and_the_window_slides() {
        let b = budget(0.0, 1);
        let granted = (0..50).filter(|_| b.try_retry(1_000)).count();
        assert_eq!(granted, 10, "1/s over a 10s window");
        assert!(!b.try_retry(10_999));
        // Eleven seconds later the retries at second 1 have left the window.
        assert!(b.try_retry(11_000));
    }
}
