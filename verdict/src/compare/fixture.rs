//! Results files built in memory for the unit tests: a run is a list of
//! intervals, each a list of latencies and a count of failed requests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use loadgen::plan::{BadPolicy, LoadPlan, Model, RequestTemplate, Stop};
use loadgen::results::{
    encode_histogram, new_histogram, Host, Interval, LatencySummary, Results, RunMeta, Tool, Totals,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sample::RunInput;

/// One interval: latencies (µs) of good responses and a number of bad requests.
pub struct Spec {
    pub latencies_us: Vec<u64>,
    pub bad: u64,
}

pub fn plan() -> LoadPlan {
    LoadPlan {
        requests: vec![RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: "http://127.0.0.1:1/tasks".into(),
            headers: vec![],
            body: None,
        }],
        model: Model::Closed {
            rate_per_worker: None,
        },
        arrivals: Default::default(),
        stop: Stop::Duration {
            duration: Duration::from_secs(30),
        },
        connections: 10,
        timeout: Duration::from_secs(5),
        keepalive: true,
        compression: false,
        follow_redirects: false,
        interval: Duration::from_secs(1),
        threads: 0,
        seed: 1,
        track_header: None,
        bad: BadPolicy::default(),
        io: Default::default(),
        transport: Default::default(),
        shard: None,
    }
}

pub fn results(intervals: &[Spec]) -> Results {
    let mut total = new_histogram();
    let timeline: Vec<Interval> = intervals
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let mut h = new_histogram();
            s.latencies_us.iter().for_each(|v| h.record(*v).unwrap());
            total.add(&h).unwrap();
            let good = s.latencies_us.len() as u64;
            let encoded = encode_histogram(&h);
            // Per-interval summaries are not read by compare; skipping them
            // keeps the fixtures cheap in debug builds.
            Interval {
                start_s: n as f64,
                duration_s: 1.0,
                requests: good + s.bad,
                good,
                bad: s.bad,
                outcomes: BTreeMap::new(),
                histogram: encoded.clone(),
                service_histogram: encoded,
                ..Default::default()
            }
        })
        .collect();
    let good: u64 = timeline.iter().map(|i| i.good).sum();
    let bad: u64 = timeline.iter().map(|i| i.bad).sum();
    Results {
        schema_version: loadgen::SCHEMA_VERSION,
        tool: Tool {
            name: "slolab".into(),
            version: "test".into(),
        },
        run: RunMeta {
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:30Z".into(),
            duration_s: intervals.len() as f64,
            commit: None,
            host: Host {
                hostname: "ci".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                cpus: 2,
            },
            interrupted: false,
            io: None,
        },
        plan: plan(),
        totals: Totals {
            requests: good + bad,
            good,
            bad,
            availability: good as f64 / (good + bad).max(1) as f64,
            rps: (good + bad) as f64 / intervals.len() as f64,
            latency: LatencySummary::from_histogram(&total),
            ..Default::default()
        },
        pacer: None,
        timeline,
        histogram: encode_histogram(&total),
        service_histogram: encode_histogram(&total),
        bad_histogram: String::new(),
        shard: None,
        shards: None,
        extra: BTreeMap::new(),
    }
}

/// A lognormal-ish service: median `median_us`, a tail to ~10x, plus `add_us`
/// on every request, and `bad_per_mille` failures per thousand requests.
pub fn service(
    seed: u64,
    intervals: usize,
    per_interval: usize,
    median_us: f64,
    add_us: u64,
    bad_per_mille: u64,
) -> Results {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs: Vec<Spec> = (0..intervals)
        .map(|_| {
            let mut bad = 0;
            let mut latencies_us = Vec::with_capacity(per_interval);
            for _ in 0..per_interval {
                if rng.gen_range(0..1000) < bad_per_mille {
                    bad += 1;
                    continue;
                }
                // Sum of uniforms ≈ normal, exponentiated: a right-skewed latency.
                let z: f64 = (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
                latencies_us.push((median_us * (0.6 * z).exp()) as u64 + add_us);
            }
            Spec { latencies_us, bad }
        })
        .collect();
    results(&specs)
}

pub fn input(name: &str, results: Results) -> RunInput {
    RunInput::new(PathBuf::from(name), results)
}
