use super::*;
use crate::report::fixture::{interval, ok, results, status_5xx, Sample};
use crate::slo::SloSpec;

fn spec() -> SloSpec {
    SloSpec::from_pairs(&["availability=99%", "p95=100ms"]).unwrap()
}

/// A probe's results: `warmup` then `window` one-second intervals at `rate`,
/// each interval's latencies from `latency_ms(i)` and the last `bad_every`-th bad.
fn probe_results(
    rate: u64,
    answered: impl Fn(usize) -> u64,
    latency_ms: impl Fn(usize) -> u64,
    bad_every: Option<u64>,
) -> loadgen::Results {
    let tl = (0..12)
        .map(|i| {
            let n = answered(i);
            let samples: Vec<Sample> = (0..n)
                .map(|k| {
                    let us = latency_ms(i) * 1000 + k % 7;
                    match bad_every {
                        Some(e) if k % e == 0 => status_5xx(us),
                        _ => ok(us),
                    }
                })
                .collect();
            let mut iv = interval(i as f64, 1.0, &samples);
            iv.scheduled = rate;
            iv
        })
        .collect();
    results(tl)
}

fn run(results: &loadgen::Results, rate: f64) -> Probe {
    judge(
        &ProbeRun {
            index: 1,
            kind: ProbeKind::Grow,
            instances: Some(2),
            offered_rps: rate,
            warmup_s: 2.0,
            window_s: 10.0,
            results,
            generator_cpu_s: 1.0,
            faults: &[],
        },
        &spec(),
        0.97,
    )
    .unwrap()
}

#[test]
fn a_held_rate_within_the_objectives_passes() {
    let r = probe_results(200, |_| 200, |_| 10, None);
    let p = run(&r, 200.0);
    assert_eq!(p.verdict, ProbeVerdict::Pass, "{:?}", p.reasons);
    assert!((p.achieved_rps - 200.0).abs() < 1e-9);
    assert_eq!(p.timeline.len(), 10, "only the window's intervals are kept");
    assert!(p.reasons.is_empty());
}

#[test]
fn latency_over_the_ceiling_fails_and_names_the_objective() {
    let r = probe_results(200, |_| 200, |_| 180, None);
    let p = run(&r, 200.0);
    assert_eq!(p.verdict, ProbeVerdict::Fail);
    assert_eq!(p.failed[0].name, "p95");
    assert!((p.failed[0].excess - 0.8).abs() < 0.01, "{:?}", p.failed);
}

#[test]
fn errors_fail_on_availability() {
    let r = probe_results(200, |_| 200, |_| 5, Some(10));
    let p = run(&r, 200.0);
    assert_eq!(p.verdict, ProbeVerdict::Fail);
    assert!(
        p.failed.iter().any(|c| c.name == "availability"),
        "{:?}",
        p.failed
    );
}

#[test]
fn a_rate_not_held_fails_on_the_achieved_rate() {
    let r = probe_results(200, |_| 180, |_| 5, None);
    let p = run(&r, 200.0);
    assert_eq!(p.verdict, ProbeVerdict::Fail);
    assert!(
        p.failed.iter().any(|c| c.name == "achieved rate"),
        "{:?}",
        p.failed
    );
}

#[test]
fn a_slowly_growing_queue_fails_although_the_rate_and_p95_hold() {
    // 98.5 % answered: the rate test passes (≥ 97 %), but 3 requests a second
    // pile up, and p99 climbs 3 ms a second (within the 100 ms ceiling).
    let r = probe_results(200, |_| 197, |i| 20 + 3 * i as u64, None);
    let p = run(&r, 200.0);
    assert_eq!(p.verdict, ProbeVerdict::Fail, "{:?}", p.trends);
    assert!(
        p.failed.iter().all(|c| c.name.starts_with("stationary")),
        "{:?}",
        p.failed
    );
    assert!(p.trends.iter().any(|t| t.series == "backlog" && t.rising));
}

#[test]
fn late_sends_with_a_fast_target_are_generator_bound() {
    let mut r = probe_results(400, |_| 300, |_| 5, None);
    for iv in &mut r.timeline {
        iv.late_sends = 100;
    }
    let p = run(&r, 400.0);
    assert_eq!(p.verdict, ProbeVerdict::GeneratorBound, "{:?}", p.reasons);
    assert!(p.reasons[0].starts_with("generator-bound"));
}

#[test]
fn plateau_objectives_take_the_strictest_stage_target() {
    let mut s = SloSpec::from_pairs(&["p95=200ms"]).unwrap();
    s.stages.push(crate::slo::StageSlo {
        name: "spike".into(),
        availability: Some(0.999),
        latency: SloSpec::from_pairs(&["p95=100ms", "p99=300ms"])
            .unwrap()
            .latency,
    });
    let p = plateau_spec(&s, false);
    assert!(p.stages.is_empty());
    assert_eq!(p.availability, Some(0.999));
    let keys: Vec<(String, u128)> = p
        .latency
        .iter()
        .map(|l| (l.key.clone(), l.max.as_millis()))
        .collect();
    assert_eq!(keys, vec![("p95".into(), 100), ("p99".into(), 300)]);
}

fn probe_at(rate: f64, p99: f64, verdict: ProbeVerdict) -> Probe {
    let r = probe_results(rate as u64, |_| rate as u64, |_| 5, None);
    let mut p = run(&r, rate);
    p.p99_ms = Some(p99);
    p.verdict = verdict;
    if verdict == ProbeVerdict::Fail {
        p.failed = vec![Criterion {
            name: "p95".into(),
            target: "100 ms".into(),
            measured: "150 ms".into(),
            excess: 0.5,
        }];
    }
    p
}

#[test]
fn the_answer_names_the_interval_the_binding_objective_and_the_knee() {
    let mut s = Search::new(SearchSettings {
        start_rate: 100.0,
        growth: 2.0,
        resolution: 0.6,
        max_rate: 1e6,
        warmup_s: 1.0,
        window_s: 1.0,
        confirm_s: 1.0,
        cooldown_s: 0.0,
        min_achieved: 0.97,
    });
    let mut probes = Vec::new();
    for (rate, p99, v) in [
        (100.0, 10.0, ProbeVerdict::Pass),
        (200.0, 11.0, ProbeVerdict::Pass),
        (400.0, 14.0, ProbeVerdict::Pass),
        (800.0, 400.0, ProbeVerdict::Fail),
        (600.0, 150.0, ProbeVerdict::Fail),
    ] {
        s.record(rate, ProbeKind::Grow, v);
        probes.push(probe_at(rate, p99, v));
    }
    // A confirmation that failed once and then held binds nothing.
    s.record(400.0, ProbeKind::Confirm, ProbeVerdict::Fail);
    probes.push(probe_at(400.0, 300.0, ProbeVerdict::Fail));
    s.record(400.0, ProbeKind::Reprobe, ProbeVerdict::Pass);
    assert_eq!(s.next(), Step::Done(Outcome::Found));
    let a = Answer::of(&s, Outcome::Found, &probes);
    assert_eq!(
        (a.last_pass_rps, a.first_fail_rps),
        (Some(400.0), Some(600.0))
    );
    let b = a.binding.as_ref().unwrap();
    assert_eq!(b.name, "p95 at 600 req/s", "the lowest failing rate binds");
    assert!(a.confirmation_disagreed);
    assert!(
        a.summary.contains("between 400 req/s and 600 req/s"),
        "{}",
        a.summary
    );
    assert_eq!(a.capacity_rps(), Some(400.0));
}

fn record(searches: Vec<SearchRecord>) -> CapacityRecord {
    CapacityRecord {
        schema_version: SCHEMA_VERSION,
        kind: KIND.into(),
        name: "t".into(),
        profile_path: "profiles/t.toml".into(),
        profile: serde_json::json!({}),
        seed: 1,
        started_at: "2026-12-05T00:00:00Z".into(),
        finished_at: "2026-12-05T00:01:00Z".into(),
        commit: None,
        host: loadgen::results::Host {
            hostname: "h".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            cpus: 2,
        },
        target: serde_json::json!({"url": "http://127.0.0.1:1"}),
        arrivals: "uniform".into(),
        with_chaos: false,
        fresh_target: false,
        objectives: serde_json::to_value(spec()).unwrap(),
        settings: SearchSettings {
            start_rate: 100.0,
            growth: 2.0,
            resolution: 0.05,
            max_rate: 1e6,
            warmup_s: 2.0,
            window_s: 10.0,
            confirm_s: 20.0,
            cooldown_s: 1.0,
            min_achieved: 0.97,
        },
        searches,
        scaling: None,
        scaling_note: None,
        generator: None,
        projection: None,
        interrupted: false,
        other: Default::default(),
    }
}

#[test]
fn a_record_round_trips_and_renders_in_every_format() {
    let probes = vec![
        probe_at(100.0, 10.0, ProbeVerdict::Pass),
        probe_at(200.0, 300.0, ProbeVerdict::Fail),
    ];
    let mut rec = record(vec![SearchRecord {
        instances: Some(1),
        writes: 0,
        answer: Answer {
            outcome: Outcome::Found,
            last_pass_rps: Some(100.0),
            first_fail_rps: Some(200.0),
            binding: None,
            knee_rps: None,
            confirmation_disagreed: false,
            summary: "capacity between 100 req/s and 200 req/s".into(),
        },
        probes,
    }]);
    let fit = UslFit::fit(&[(1.0, 100.0), (2.0, 180.0), (4.0, 300.0)]).unwrap();
    rec.projection = Some(Projection::plan(&fit, 10e6, None));
    rec.scaling = Some(fit);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    rec.write(&path).unwrap();
    assert!(CapacityRecord::read_if_capacity(&path).unwrap().is_some());
    let back = CapacityRecord::read(&path).unwrap();
    assert_eq!(back.searches[0].answer, rec.searches[0].answer);
    assert_eq!(back.capacities(), vec![(1, 100.0)]);
    assert_eq!(rec.objectives_ms(), vec![("p95".to_string(), 100.0)]);

    let md = markdown(&rec);
    assert!(md.contains("| # | probe | offered |"), "{md}");
    assert!(md.contains("On paper"), "{md}");
    let html = html(&rec);
    // Latency, throughput and errors for the search, and the USL fit.
    assert_eq!(html.matches("<svg").count(), 4, "{html}");
    assert!(!html.contains("chart not drawn"));
    assert!(!html.contains("http://") || !html.contains("<script src"));
    let text = text(&rec);
    assert!(text.contains("capacity between 100 req/s and 200 req/s"));
}

#[test]
fn a_results_file_is_not_a_capacity_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, r#"{"schema_version": 1, "tool": {}}"#).unwrap();
    assert!(CapacityRecord::read_if_capacity(&path).unwrap().is_none());
    assert!(matches!(
        CapacityRecord::read(&path),
        Err(CapacityError::Kind { .. })
    ));
}

#[test]
fn the_knee_is_where_p99_turns_up() {
    let probes: Vec<Probe> = [
        (100.0, 10.0),
        (200.0, 11.0),
        (400.0, 14.0),
        (600.0, 150.0),
        (800.0, 400.0),
    ]
    .iter()
    .map(|&(r, p99)| probe_at(r, p99, ProbeVerdict::Pass))
    .collect();
    assert_eq!(knee(&probes), Some(400.0));
    assert_eq!(knee(&probes[..2]), None, "two points have no knee");
}
