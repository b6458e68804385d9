//! Test fixtures: results files built from constructed timelines, shared by the unit
//! tests and (through `#[path]`) the binary's `tests/it/report_cli.rs`, so both
//! exercise the same synthetic experiment.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use loadgen::results::{
    encode_histogram, new_histogram, Host, Interval, LatencySummary, Results, RunMeta, Tool, Totals,
};
use loadgen::{BadPolicy, LoadPlan, Model, RequestTemplate, Stage, Stop};
use rand::{Rng, SeedableRng};

/// The HTML report's chart sections in page order, the time charts first: what the
/// tests expect `html.rs` to draw.
pub const CHART_SECTIONS: [&str; 8] = [
    "latency",
    "latency-good-bad",
    "throughput",
    "status-codes",
    "availability",
    "by-header",
    "distribution",
    "instances",
];
/// The sections whose chart is on the run's clock.
pub const TIME_CHARTS: &[&str] = CHART_SECTIONS.split_at(6).0;

/// One request as the timeline saw it: latency (responses only) and outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub latency_us: Option<u64>,
    pub outcome: &'static str,
    pub bad: bool,
    /// The HTTP status, for a response.
    pub status: Option<u16>,
}

pub fn ok(latency_us: u64) -> Sample {
    Sample {
        latency_us: Some(latency_us),
        outcome: "2xx",
        bad: false,
        status: Some(200),
    }
}

pub fn status_5xx(latency_us: u64) -> Sample {
    Sample {
        latency_us: Some(latency_us),
        outcome: "5xx",
        bad: true,
        status: Some(502),
    }
}

pub fn refused() -> Sample {
    Sample {
        latency_us: None,
        outcome: "connect_refused",
        bad: true,
        status: None,
    }
}

/// An interval `[start_s, start_s + duration_s)` holding exactly `samples`.
pub fn interval(start_s: f64, duration_s: f64, samples: &[Sample]) -> Interval {
    let mut h = new_histogram();
    let mut bad_h = new_histogram();
    let mut outcomes = BTreeMap::new();
    let mut status_codes = BTreeMap::new();
    let (mut good, mut bad) = (0, 0);
    for s in samples {
        if let Some(code) = s.status {
            *status_codes.entry(code).or_insert(0) += 1;
        }
        if let Some(l) = s.latency_us {
            h.record(l).expect("latency in histogram range");
            if s.bad {
                bad_h.record(l).expect("latency in histogram range");
            }
        }
        *outcomes.entry(s.outcome.to_string()).or_insert(0) += 1;
        if s.bad {
            bad += 1;
        } else {
            good += 1;
        }
    }
    Interval {
        start_s,
        duration_s,
        requests: samples.len() as u64,
        good,
        bad,
        outcomes,
        latency: LatencySummary::from_histogram(&h),
        scheduled: samples.len() as u64,
        late_sends: 0,
        max_lag_us: 0,
        histogram: encode_histogram(&h),
        service_histogram: encode_histogram(&h),
        bad_histogram: if bad_h.is_empty() {
            String::new()
        } else {
            encode_histogram(&bad_h)
        },
        status_codes,
        ..Default::default()
    }
}

/// Spreads `n` responses over `values` in turn (round robin), into `iv.by_header`.
pub fn spread(iv: &mut Interval, values: &[&str], n: u64) {
    for (i, v) in values.iter().enumerate() {
        let share = n / values.len() as u64 + u64::from((i as u64) < n % values.len() as u64);
        if share > 0 {
            *iv.by_header.entry(v.to_string()).or_insert(0) += share;
        }
    }
}

fn plan(stages: Vec<Stage>, interval_s: f64) -> LoadPlan {
    LoadPlan {
        requests: vec![RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: "http://127.0.0.1:8080/api/v1/tasks".into(),
            headers: vec![],
            body: None,
        }],
        model: Model::Open { stages },
        arrivals: Default::default(),
        stop: Stop::Stages,
        connections: 64,
        timeout: Duration::from_secs(2),
        keepalive: true,
        compression: false,
        follow_redirects: true,
        interval: Duration::from_secs_f64(interval_s),
        threads: 0,
        seed: 7,
        track_header: Some("X-Served-By".into()),
        bad: BadPolicy::default(),
        io: Default::default(),
        transport: Default::default(),
        shard: None,
    }
}

/// A results file around `timeline`, its totals merged from the intervals.
pub fn results(timeline: Vec<Interval>) -> Results {
    let interval_s = timeline.first().map_or(1.0, |iv| iv.duration_s);
    let duration_s = timeline.last().map_or(0.0, |iv| iv.start_s + iv.duration_s);
    let mut total = new_histogram();
    let mut total_bad = new_histogram();
    let mut totals = Totals::default();
    for iv in &timeline {
        total
            .add(loadgen::results::decode_histogram(&iv.histogram).unwrap())
            .unwrap();
        if !iv.bad_histogram.is_empty() {
            total_bad
                .add(loadgen::results::decode_histogram(&iv.bad_histogram).unwrap())
                .unwrap();
        }
        totals.requests += iv.requests;
        totals.good += iv.good;
        totals.bad += iv.bad;
        for (k, v) in &iv.outcomes {
            *totals.outcomes.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &iv.status_codes {
            *totals.status_codes.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &iv.by_header {
            *totals.by_header.entry(k.clone()).or_insert(0) += v;
        }
    }
    totals.derive_rates(duration_s);
    totals.latency = LatencySummary::from_histogram(&total);
    let mut good_h = total.clone();
    good_h.subtract(&total_bad).unwrap();
    totals.latency_good = LatencySummary::from_histogram(&good_h);
    totals.latency_bad = LatencySummary::from_histogram(&total_bad);
    totals.service_time = totals.latency.clone();
    Results {
        schema_version: loadgen::SCHEMA_VERSION,
        tool: Tool {
            name: "slolab".into(),
            version: "0.1.0".into(),
        },
        run: RunMeta {
            started_at: "2026-11-22T01:00:00Z".into(),
            finished_at: "2026-11-22T01:00:25Z".into(),
            duration_s,
            commit: Some("0123456789abcdef".into()),
            host: Host {
                hostname: "ci-runner".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                cpus: 2,
            },
            interrupted: false,
            io: None,
        },
        plan: plan(
            vec![Stage::steady(
                Duration::from_secs_f64(duration_s.max(1.0)),
                100.0,
            )],
            interval_s,
        ),
        totals,
        pacer: None,
        timeline,
        histogram: encode_histogram(&total),
        service_histogram: encode_histogram(&total),
        bad_histogram: if total_bad.is_empty() {
            String::new()
        } else {
            encode_histogram(&total_bad)
        },
        shard: None,
        shards: None,
        extra: BTreeMap::new(),
    }
}

/// A 25 s experiment on a 3-instance stack: steady 200 req/s, a 10x spike from 10 s
/// to 15 s, steady again. `kill api-2` at 6 s brings 0.5 s of refused connections and
/// 502s, and api-2 serves nothing after it; a 200 ms Redis latency from 17 s to 20 s slows 30 % of requests. The
/// profile's SLO: 99.9 %, p95 ≤ 100 ms, p99 ≤ 250 ms, recover within 10 s, and the
/// spike's own p95 ≤ 300 ms.
pub fn experiment(seed: u64) -> Results {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut timeline = Vec::new();
    for sec in 0..25 {
        let t = sec as f64;
        let spike = (10..15).contains(&sec);
        let n = if spike { 2000 } else { 200 };
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            // Log-normal service time: median 4 ms (12 ms in the spike), long tail.
            let z: f64 = {
                let (u1, u2): (f64, f64) = (rng.gen_range(1e-9..1.0), rng.gen());
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            };
            let median = if spike { 12_000.0 } else { 4_000.0 };
            let mut lat = (median * (0.6 * z).exp()) as u64;
            let slow_cache = (17..20).contains(&sec) && rng.gen_bool(0.3);
            if slow_cache {
                lat += 200_000;
            }
            let s = if sec == 6 && rng.gen_bool(0.15) {
                if rng.gen_bool(0.5) {
                    refused()
                } else {
                    status_5xx(lat / 2)
                }
            } else {
                ok(lat.max(50))
            };
            samples.push(s);
        }
        let mut iv = interval(t, 1.0, &samples);
        // X-Served-By of the successes: api-2 serves its turn until the kill
        // early in second 6, then only api-1 and api-3 answer.
        let served = iv.outcomes.get("2xx").copied().unwrap_or(0);
        match sec {
            ..=5 => spread(&mut iv, &["api-1", "api-2", "api-3"], served),
            6 => {
                spread(&mut iv, &["api-2"], served / 12);
                spread(&mut iv, &["api-1", "api-3"], served - served / 12);
            }
            _ => spread(&mut iv, &["api-1", "api-3"], served),
        }
        timeline.push(iv);
    }
    let mut r = results(timeline);
    r.plan = plan(
        vec![
            Stage::steady(Duration::from_secs(10), 200.0),
            Stage::steady(Duration::from_secs(5), 2000.0),
            Stage::steady(Duration::from_secs(10), 200.0),
        ],
        1.0,
    );
    r.extra.insert(
        "experiment".into(), // record::SECTION_KEY (this file is also a test-binary module)
        serde_json::json!({
            "name": "instance-failure",
            "profile": {
                "name": "instance-failure",
                "slo": {
                    "availability": "99.9%",
                    "p95": "100ms",
                    "p99": "250ms",
                    "recovery": "10s",
                    "stage": [{ "name": "spike", "p95": "300ms" }]
                }
            },
            "profile_path": "profiles/instance-failure.toml",
            "seed": seed,
            "warmup_s": 2.0,
            "target": {
                "url": "http://127.0.0.1:8080",
                "stack": { "instances": 3, "db": "sqlite", "cache": "redis",
                           "gateway": "builtin", "balance": "round-robin" },
                "components": ["redis", "api-1", "api-2", "api-3", "gateway"]
            },
            "stages": [
                { "name": "steady", "start_s": 0.0, "end_s": 10.0, "start_rate": 200.0, "end_rate": 200.0 },
                { "name": "spike", "start_s": 10.0, "end_s": 15.0, "start_rate": 2000.0, "end_rate": 2000.0 },
                { "name": "cool-down", "start_s": 15.0, "end_s": 25.0, "start_rate": 200.0, "end_rate": 200.0 }
            ],
            "faults": [
                { "label": "kill api-2", "fault": "kill", "target": "api-2", "params": {},
                  "planned_s": 6.0, "start_s": 6.0, "end_s": null },
                { "label": "latency redis 200ms", "fault": "latency", "target": "redis",
                  "params": { "latency": "200ms" }, "planned_s": 17.0, "start_s": 17.0, "end_s": 20.0 }
            ],
            "slo": null,
            "interrupted": false
        }),
    );
    r
}

/// challenge-04 as hey runs it: 200 requests on 20 connections that all ended within
/// 33 ms, so the whole run is one (1 s) interval; four instances, round robin.
pub fn short_run() -> Results {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let samples: Vec<Sample> = (0..200).map(|_| ok(rng.gen_range(3_000..10_200))).collect();
    let mut iv = interval(0.0, 1.0, &samples);
    spread(&mut iv, &["api-1", "api-2", "api-3", "api-4"], 200);
    let mut r = results(vec![iv]);
    r.run.duration_s = 0.033;
    r.totals.rps = 200.0 / 0.033;
    r.plan.model = Model::Closed {
        rate_per_worker: None,
    };
    r.plan.stop = Stop::Requests { count: 200 };
    r.plan.connections = 20;
    r.extra.insert(
        "experiment".into(), // record::SECTION_KEY (this file is also a test-binary module)
        serde_json::json!({
            "name": "challenge-04",
            "profile": { "name": "challenge-04",
                         "slo": { "availability": "100%", "p95": "100ms" } },
            "profile_path": "profiles/challenge-04.toml",
            "seed": 4,
            "warmup_s": 1.0,
            "target": {
                "url": "http://127.0.0.1:8080",
                "stack": { "instances": 4, "db": "postgres", "cache": "redis",
                           "gateway": "builtin", "balance": "round-robin" },
                "components": ["postgres", "redis", "api-1", "api-2", "api-3", "api-4", "gateway"]
            },
            "stages": [ { "name": "hey", "start_s": 0.0, "end_s": 1.0, "connections": 20 } ],
            "faults": [],
            "slo": null,
            "interrupted": false
        }),
    );
    r
}

/// A 20 s run at 100 req/s through the Redis cache, tracking X-Cache: 90 % HIT
/// until Redis is stopped at 8 s, every request a slower BYPASS (some 503) until it
/// is back at 14 s, a second of MISSes refilling the cache, then HITs again.
pub fn cache_outage(seed: u64) -> Results {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut timeline = Vec::new();
    for sec in 0..20 {
        let outage = (8..14).contains(&sec);
        let mut samples = Vec::new();
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for _ in 0..100 {
            let (value, sample) = if outage {
                if rng.gen_bool(0.05) {
                    ("BYPASS", status_5xx(rng.gen_range(1_000..3_000)))
                } else {
                    ("BYPASS", ok(rng.gen_range(25_000..45_000)))
                }
            } else if sec == 14 || rng.gen_bool(0.1) {
                ("MISS", ok(rng.gen_range(20_000..35_000)))
            } else {
                ("HIT", ok(rng.gen_range(1_500..4_000)))
            };
            samples.push(sample);
            *by.entry(value).or_insert(0) += 1;
        }
        let mut iv = interval(sec as f64, 1.0, &samples);
        for (v, n) in by {
            spread(&mut iv, &[v], n);
        }
        timeline.push(iv);
    }
    let mut r = results(timeline);
    r.plan.track_header = Some("X-Cache".into());
    r.extra.insert(
        "experiment".into(), // record::SECTION_KEY (this file is also a test-binary module)
        serde_json::json!({
            "name": "cache-outage",
            "profile": { "name": "cache-outage", "slo": { "availability": "99%", "p95": "50ms" } },
            "profile_path": "profiles/cache-outage.toml",
            "seed": seed,
            "target": {
                "url": "http://127.0.0.1:8080",
                "stack": { "instances": 2, "db": "postgres", "cache": "redis",
                           "gateway": "builtin", "balance": "round-robin" },
                "components": ["postgres", "redis", "api-1", "api-2", "gateway"]
            },
            "stages": [ { "name": "steady", "start_s": 0.0, "end_s": 20.0,
                          "start_rate": 100.0, "end_rate": 100.0 } ],
            "faults": [ { "label": "stop redis", "fault": "stop", "target": "redis",
                          "params": {}, "planned_s": 8.0, "start_s": 8.0, "end_s": 14.0 } ],
            "slo": null,
            "interrupted": false
        }),
    );
    r
}
