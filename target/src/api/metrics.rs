//! Prometheus metrics of one instance: requests by route, method and status, a
//! latency histogram per route, cache outcomes and database pool use. Lock-free
//! on the hot path once a route's series exist.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use axum::http::Method;

use crate::cache::CacheStats;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct RouteSeries {
    by_status: RwLock<HashMap<(&'static str, u16), AtomicU64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, RouteSeries>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl RouteSeries {
    fn record(&self, method: &'static str, status: u16, elapsed: Duration) {
        let key = (method, status);
        let counted = self
            .by_status
            .read()
            .ok()
            .and_then(|m| m.get(&key).map(|c| c.fetch_add(1, Ordering::Relaxed)))
            .is_some();
        if !counted {
            if let Ok(mut m) = self.by_status.write() {
                m.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
            }
        }
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Records one finished request; `route` is the matched route template.
    pub fn observe(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let method = method_label(method);
        if let Ok(routes) = self.routes.read() {
            if let Some(series) = routes.get(route) {
                series.record(method, status, elapsed);
                return;
            }
        }
        if let Ok(mut routes) = self.routes.write() {
            routes
                .entry(route.to_string())
                .or_default()
                .record(method, status, elapsed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, instance: &str, cache: &CacheStats, pool: (u32, usize)) -> String {
        let mut out = String::with_capacity(4096);
        let routes = match self.routes.read() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        out.push_str("# HELP api_requests_total Requests served, by route, method and status.\n");
        out.push_str("# TYPE api_requests_total counter\n");
        for name in &names {
            let series = &routes[*name];
            let by_status = match series.by_status.read() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            let mut keys: Vec<&(&str, u16)> = by_status.keys().collect();
            keys.sort();
            for key in keys {
                let _ = writeln!(
                    out,
                    "api_requests_total{{instance=\"{instance}\",route=\"{name}\",method=\"{}\",status=\"{}\"}} {}",
                    key.0,
                    key.1,
                    by_status[key].load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP api_request_duration_seconds Request latency, by route.\n");
        out.push_str("# TYPE api_request_duration_seconds histogram\n");
        for name in &names {
            let s = &routes[*name];
            let labels = format!("instance=\"{instance}\",route=\"{name}\"");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "api_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    s.buckets[i].load(Ordering::Relaxed)
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "api_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "api_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "api_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        for (name, help, value) in [
            ("api_cache_hits_total", "Cache reads that hit.", &cache.hits),
            (
                "api_cache_misses_total",
                "Cache reads that missed.",
                &cache.misses,
            ),
            (
                "api_cache_errors_total",
                "Cache calls that failed or timed out.",
                &cache.errors,
            ),
            (
                "api_cache_skipped_total",
                "Cache calls skipped while Redis was unavailable.",
                &cache.skipped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(
                out,
                "{name}{{instance=\"{instance}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let (size, idle) = pool;
        let _ = writeln!(
            out,
            "# HELP api_db_pool_connections Open database connections.\n# TYPE api_db_pool_connections gauge\napi_db_pool_connections{{instance=\"{instance}\"}} {size}"
        );
        let _ = writeln!(
            out,
            "# HELP api_db_pool_idle Idle database connections.\n# TYPE api_db_pool_idle gauge\napi_db_pool_idle{{instance=\"{instance}\"}} {idle}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/api/v1/tasks", &Method::GET, 200, Duration::from_millis(3));
        m.observe(
            "/api/v1/tasks",
            &Method::GET,
            200,
            Duration::from_millis(300),
        );
        m.observe(
            "/api/v1/tasks",
            &Method::POST,
            401,
            Duration::from_micros(10),
        );
        let text = m.render("api-1", &CacheStats::default(), (3, 2));
        assert!(text.contains(
            "api_requests_total{instance=\"api-1\",route=\"/api/v1/tasks\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("method=\"POST\",status=\"401\"} 1"));
        assert!(text.contains("route=\"/api/v1/tasks\",le=\"0.005\"} 2"));
        assert!(text.contains("route=\"/api/v1/tasks\",le=\"0.5\"} 3"));
        assert!(text.contains(
            "api_request_duration_seconds_count{instance=\"api-1\",route=\"/api/v1/tasks\"} 3"
        ));
        assert!(text.contains("api_db_pool_connections{instance=\"api-1\"} 3"));
    }
}
