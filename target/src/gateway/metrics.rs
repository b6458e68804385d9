//! The gateway's own Prometheus metrics, served at `/gateway/metrics`: requests by
//! upstream and status, retries, ejections, breaker state, a latency histogram.
//! Plain atomics written on the hot path and only formatted when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::upstream::UpstreamState;

/// Histogram bucket upper bounds in seconds (Prometheus `le`).
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKET_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Why the gateway answered a request itself instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalReason {
    RateLimited = 0,
    Unauthorized,
    PayloadTooLarge,
    BadRequest,
    NoHealthyUpstream,
    BadGateway,
    GatewayTimeout,
}

impl LocalReason {
    const ALL: [LocalReason; 7] = [
        Self::RateLimited,
        Self::Unauthorized,
        Self::PayloadTooLarge,
        Self::BadRequest,
        Self::NoHealthyUpstream,
        Self::BadGateway,
        Self::GatewayTimeout,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BadRequest => "bad_request",
            Self::NoHealthyUpstream => "no_healthy_upstream",
            Self::BadGateway => "bad_gateway",
            Self::GatewayTimeout => "gateway_timeout",
        }
    }

    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::RateLimited => S::TOO_MANY_REQUESTS,
            Self::Unauthorized => S::UNAUTHORIZED,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::BadRequest => S::BAD_REQUEST,
            Self::NoHealthyUpstream => S::SERVICE_UNAVAILABLE,
            Self::BadGateway => S::BAD_GATEWAY,
            Self::GatewayTimeout => S::GATEWAY_TIMEOUT,
        }
    }
}

/// A per-upstream series: name, type, help, and how to read it.
type PerUpstream = (
    &'static str,
    &'static str,
    &'static str,
    fn(&UpstreamState) -> u64,
);

#[derive(Default)]
pub(crate) struct Metrics {
    local: [AtomicU64; 7],
    pub retries: AtomicU64,
    pub retries_refused_by_budget: AtomicU64,
    latency_buckets: [AtomicU64; 14],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn local(&self, reason: LocalReason) {
        self.local[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Non-cumulative here; the scrape accumulates.
        if let Some(i) = BUCKET_US.iter().position(|&b| us <= b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, upstreams: &[Arc<UpstreamState>]) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        out.push_str("# HELP gateway_requests_total Responses from upstreams by status; upstream=\"gateway\" are answered by the gateway itself.\n");
        out.push_str("# TYPE gateway_requests_total counter\n");
        for u in upstreams {
            for (status, n) in u.statuses() {
                let _ = writeln!(
                    out,
                    "gateway_requests_total{{upstream=\"{}\",status=\"{status}\"}} {n}",
                    u.name
                );
            }
        }
        for reason in LocalReason::ALL {
            let n = load(&self.local[reason as usize]);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "gateway_requests_total{{upstream=\"gateway\",status=\"{}\",reason=\"{}\"}} {n}",
                    reason.status().as_u16(),
                    reason.code()
                );
            }
        }

        let gauges: [PerUpstream; 6] = [
            (
                "gateway_upstream_failures_total",
                "counter",
                "Tries that got no response (connect failure, reset, timeout).",
                |u| u.failures.load(Ordering::Relaxed),
            ),
            (
                "gateway_upstream_healthy",
                "gauge",
                "1 when the upstream is in rotation.",
                |u| u64::from(u.is_healthy()),
            ),
            (
                "gateway_ejections_total",
                "counter",
                "Times an upstream was taken out of rotation.",
                |u| u.ejections.load(Ordering::Relaxed),
            ),
            (
                "gateway_breaker_state",
                "gauge",
                "Circuit breaker: 0 closed, 1 open, 2 half-open.",
                |u| u.breaker.state() as u64,
            ),
            (
                "gateway_breaker_opened_total",
                "counter",
                "Times the circuit breaker opened.",
                |u| u.breaker.opened.load(Ordering::Relaxed),
            ),
            (
                "gateway_upstream_in_flight",
                "gauge",
                "Requests in flight per upstream.",
                |u| u.in_flight() as u64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for u in upstreams {
                let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {}", u.name, value(u));
            }
        }
        for (name, help, counter) in [
            (
                "gateway_retries_total",
                "Retries sent to another upstream.",
                &self.retries,
            ),
            (
                "gateway_retries_refused_total",
                "Retries not sent because the retry budget was spent.",
                &self.retries_refused_by_budget,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(counter)
            );
        }

        out.push_str("# HELP gateway_request_duration_seconds Time from request to response headers, retries included.\n# TYPE gateway_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += load(bucket);
            let _ = writeln!(
                out,
                "gateway_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "gateway_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "gateway_request_duration_seconds_sum {}",
            load(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "gateway_request_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let m = Metrics::default();
        m.observe(Duration::from_micros(300));
        m.observe(Duration::from_millis(3));
        m.observe(Duration::from_secs(60));
        m.local(LocalReason::RateLimited);
        let text = m.render(&[]);
        assert!(text.contains("gateway_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("gateway_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("gateway_request_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("gateway_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("gateway_request_duration_seconds_count 3\n"));
        assert!(text.contains(
            "gateway_requests_total{upstream=\"gateway\",status=\"429\",reason=\"rate_limited\"} 1\n"
        ));
    }
}
