//! The SLO analysis on constructed timelines: spec parsing, windows, budgets, recovery.

use super::*;
use crate::report::fixture::{interval, ok, refused, results, status_5xx, Sample};

fn spec(toml_text: &str) -> SloSpec {
    toml::from_str(toml_text).unwrap()
}

fn spec_err(toml_text: &str) -> String {
    toml::from_str::<SloSpec>(toml_text)
        .unwrap_err()
        .to_string()
}

/// `n` samples of which `bad` are 5xx, every response at `latency_us`.
fn mixed(n: usize, bad: usize, latency_us: u64) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            if i < bad {
                status_5xx(latency_us)
            } else {
                ok(latency_us)
            }
        })
        .collect()
}

#[test]
fn spec_parses_every_field_and_round_trips() {
    let s = spec(
        r#"
        availability = "99.99%"
        p95 = "100ms"
        "p99.9" = "1s"
        p50 = "20ms"
        bad = ["5xx", "429"]
        recovery = "10s"
        recovery-window = "3s"
        [[stage]]
        name = "spike"
        p95 = "300ms"
        "#,
    );
    assert!((s.availability.unwrap() - 0.9999).abs() < 1e-12);
    let keys: Vec<_> = s
        .latency
        .iter()
        .map(|l| (l.key.as_str(), l.percentile))
        .collect();
    assert_eq!(keys, [("p50", 50.0), ("p95", 95.0), ("p99.9", 99.9)]);
    assert_eq!(s.latency[2].max, Duration::from_secs(1));
    assert!(s.bad.status_5xx && s.bad.status_429 && !s.bad.status_4xx);
    assert_eq!(s.recovery, Some(Duration::from_secs(10)));
    assert_eq!(s.recovery_window, Duration::from_secs(3));
    assert_eq!(s.stages[0].name, "spike");
    assert_eq!(s.stages[0].latency[0].max, Duration::from_millis(300));

    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["availability"], "99.99%");
    assert_eq!(json["p95"], "100ms");
    let back: SloSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn spec_defaults_count_5xx_and_use_a_5s_window() {
    let s = spec("p99 = \"250ms\"");
    assert_eq!(s.bad, BadPolicy::default());
    assert_eq!(s.recovery_window, DEFAULT_RECOVERY_WINDOW);
    assert!(s.availability.is_none());
    assert!(!s.is_empty());
    assert!(spec("").is_empty());
}

#[test]
fn spec_errors_name_the_field_and_what_to_write() {
    let e = spec_err("latency = \"1s\"");
    assert!(
        e.contains("unknown field `latency`") && e.contains("p95"),
        "{e}"
    );
    let e = spec_err("p95 = 100");
    assert!(e.contains("p95") && e.contains("\"100ms\""), "{e}");
    let e = spec_err("p95 = \"fast\"");
    assert!(e.contains("p95 = \"fast\""), "{e}");
    let e = spec_err("availability = \"99.9\"");
    assert!(e.contains("percentage"), "{e}");
    let e = spec_err("availability = \"101%\"");
    assert!(e.contains("at most 100"), "{e}");
    let e = spec_err("p0 = \"1ms\"");
    assert!(e.contains("unknown field `p0`"), "{e}");
    let e = spec_err("\"p99.\" = \"1ms\"");
    assert!(e.contains("unknown field `p99.`"), "{e}");
    let e = spec_err("p95 = \"0ms\"");
    assert!(e.contains("more than zero"), "{e}");
    let e = spec_err("bad = [\"418\"]");
    assert!(e.contains("\"418\"") && e.contains("transport"), "{e}");
    let e =
        spec_err("[[stage]]\nname = \"a\"\np95 = \"1s\"\n[[stage]]\nname = \"a\"\np99 = \"1s\"");
    assert!(e.contains("given twice"), "{e}");
    let e = spec_err("[[stage]]\nname = \"a\"");
    assert!(e.contains("no targets"), "{e}");
    let e = spec_err("[[stage]]\nname = \"a\"\nrecovery = \"1s\"");
    assert!(e.contains("unknown field `recovery`"), "{e}");
}

#[test]
fn percentile_keys() {
    assert_eq!(parse_percentile_key("p99.99"), Some(99.99));
    assert_eq!(parse_percentile_key("p100"), Some(100.0));
    for bad in ["p", "p101", "95", "p9x", "p-1", "p.5", "p99.9.9", "p 95"] {
        assert_eq!(parse_percentile_key(bad), None, "{bad}");
    }
}

#[test]
fn stage_names_are_checked_against_the_load() {
    let s = spec("[[stage]]\nname = \"spike\"\np95 = \"1s\"");
    assert!(s.check_stage_names(&["warm", "spike"]).is_ok());
    let e = s.check_stage_names(&["warm"]).unwrap_err().to_string();
    assert!(e.contains("\"spike\"") && e.contains("warm"), "{e}");
}

#[test]
fn availability_and_error_budget_are_exact() {
    // 10 × 1000 requests, 5 bad in all: 99.95 % against 99.9 %.
    let timeline = (0..10)
        .map(|i| interval(i as f64, 1.0, &mixed(1000, usize::from(i % 2 == 0), 2_000)))
        .collect();
    let r = results(timeline);
    let a = analyze(&r, &spec("availability = \"99.9%\""), &[], &[]).unwrap();
    assert!(a.met, "{:?}", a.failures);
    assert_eq!((a.run.good, a.run.bad), (9995, 5));
    assert!((a.run.availability.unwrap() - 0.9995).abs() < 1e-12);
    let b = a.run.budget.as_ref().unwrap();
    assert!((b.allowed_bad - 10.0).abs() < 1e-9);
    assert!((b.consumed_pct.unwrap() - 50.0).abs() < 1e-9);
    assert!((b.remaining_pct.unwrap() - 50.0).abs() < 1e-9);
    assert!((b.burn_rate.unwrap() - 0.5).abs() < 1e-9);

    let a = analyze(&r, &spec("availability = \"99.99%\""), &[], &[]).unwrap();
    assert!(!a.met);
    let b = a.run.budget.as_ref().unwrap();
    assert!((b.burn_rate.unwrap() - 5.0).abs() < 1e-6);
    assert!(b.remaining_pct.unwrap() < 0.0);
    assert_eq!(a.failures.len(), 1);
    assert!(a.failures[0].contains("99.95"), "{:?}", a.failures);
}

#[test]
fn percentiles_come_from_merged_histograms_not_averages() {
    // 90 fast intervals at 1 ms, 10 slow at 100 ms: the merged p95 is 100 ms; an
    // average of per-interval p95s would say about 11 ms.
    let timeline = (0..100)
        .map(|i| {
            let l = if i % 10 == 0 { 100_000 } else { 1_000 };
            interval(i as f64, 1.0, &mixed(50, 0, l))
        })
        .collect();
    let r = results(timeline);
    let a = analyze(&r, &spec("p95 = \"50ms\"\np50 = \"2ms\""), &[], &[]).unwrap();
    let p95 = a
        .run
        .objectives
        .iter()
        .find(|o| o.objective == "p95")
        .unwrap();
    assert!((p95.measured.unwrap() - 100.0).abs() < 0.1, "{p95:?}");
    assert_eq!(p95.met, Some(false));
    let p50 = a
        .run
        .objectives
        .iter()
        .find(|o| o.objective == "p50")
        .unwrap();
    assert!((p50.measured.unwrap() - 1.0).abs() < 0.01);
    assert_eq!(p50.met, Some(true));
    assert!(!a.met);
}

#[test]
fn stages_partition_the_timeline_and_their_own_targets_bind() {
    // 0–5 s fast, 5–8 s slow (200 ms), 8–10 s fast.
    let timeline = (0..10)
        .map(|i| {
            let l = if (5..8).contains(&i) { 200_000 } else { 3_000 };
            interval(i as f64, 1.0, &mixed(100, 0, l))
        })
        .collect();
    let r = results(timeline);
    let stages = [
        StageWindow {
            name: "warm".into(),
            start_s: 0.0,
            end_s: 5.0,
            ..Default::default()
        },
        StageWindow {
            name: "spike".into(),
            start_s: 5.0,
            end_s: 8.0,
            ..Default::default()
        },
        StageWindow {
            name: "cool".into(),
            start_s: 8.0,
            end_s: 10.0,
            ..Default::default()
        },
    ];
    let s = spec("p95 = \"250ms\"\n[[stage]]\nname = \"spike\"\np95 = \"150ms\"");
    let a = analyze(&r, &s, &stages, &[]).unwrap();
    let counts: Vec<_> = a.stages.iter().map(|w| w.requests).collect();
    assert_eq!(counts, [500, 300, 200]);
    let spike = &a.stages[1];
    assert_eq!(
        spike.objectives.len(),
        1,
        "the stage's own p95 replaces the run's"
    );
    assert!(spike.objectives[0].binding);
    assert_eq!(spike.objectives[0].met, Some(false));
    assert!(!a.stages[0].objectives[0].binding);
    // Run p95 (30 % at 200 ms) meets 250 ms; the spike's 150 ms does not.
    assert_eq!(a.run.met, Some(true));
    assert!(!a.met);
    assert_eq!(a.failures.len(), 1);
    assert!(
        a.failures[0].starts_with("stage spike: p95"),
        "{:?}",
        a.failures
    );
}

/// A fault whose injection failed never happened: the analysis has no window
/// for it (one rule, in `analyze`, for run and report alike).
#[test]
fn a_fault_that_failed_to_inject_is_not_analysed() {
    let timeline = (0..10)
        .map(|i| interval(i as f64, 1.0, &mixed(100, 0, 2_000)))
        .collect();
    let r = results(timeline);
    let s = spec("availability = \"99%\"\nrecovery = \"5s\"");
    let fired = FaultRecord {
        label: "kill api-1".into(),
        start_s: 3.0,
        ..Default::default()
    };
    let failed = FaultRecord {
        label: "kill api-2".into(),
        start_s: 5.0,
        error: Some("no such component".into()),
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], &[fired, failed]).unwrap();
    let labels: Vec<&str> = a.faults.iter().map(|f| f.label.as_str()).collect();
    assert_eq!(labels, ["kill api-1"]);
}

#[test]
fn time_to_recover_is_measured_from_injection() {
    // A kill at 5.0 s: intervals 5 and 6 lose 10 % of their requests.
    let timeline = (0..20)
        .map(|i| {
            let bad = if (5..7).contains(&i) { 10 } else { 0 };
            interval(i as f64, 1.0, &mixed(100, bad, 2_000))
        })
        .collect();
    let r = results(timeline);
    let s = spec("availability = \"99%\"\nrecovery = \"5s\"");
    let kill = FaultRecord {
        label: "kill api-2".into(),
        start_s: 5.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], std::slice::from_ref(&kill)).unwrap();
    let f = &a.faults[0];
    // Windows [5,10) and [6,11) hold errors; [7,12) is the first clean one.
    assert_eq!(f.time_to_recover_s, Some(2.0));
    assert_eq!(f.recovered_after_revert_s, Some(2.0));
    assert_eq!(
        f.during.intervals, 1,
        "an instantaneous fault takes its interval"
    );
    assert_eq!(f.during.bad, 10);
    assert_eq!(f.after.start_s, 5.0);
    assert_eq!(
        f.after.bad, 10,
        "the recovery window after the kill holds interval 6"
    );
    assert_eq!(f.recovery.as_ref().unwrap().met, Some(true));
    // Run availability exactly 99 % ≥ 99 %, recovery 2 s ≤ 5 s.
    assert!(a.met, "{:?}", a.failures);

    // A fault mid-interval: recovery cannot start before the injection.
    let late = FaultRecord {
        label: "x".into(),
        start_s: 2.5,
        end_s: Some(3.0),
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], &[late]).unwrap();
    let f = &a.faults[0];
    // Windows from interval 2 onwards: [2,7) to [6,11) hold errors; [7,12) is clean.
    assert_eq!(f.time_to_recover_s, Some(4.5));
    assert_eq!(f.recovered_after_revert_s, Some(4.0));
}

/// `n` requests in `[start, start + width)`, the first `bad_share` of the
/// interval's time failing: an outage that ends partway through it.
fn outage_interval(start: f64, width: f64, n: usize, outage_end: f64) -> Interval {
    let bad_share = ((outage_end - start) / width).clamp(0.0, 1.0);
    let bad = (n as f64 * bad_share).round() as usize;
    interval(start, width, &mixed(n, bad, 2_000))
}

/// A 4.2 s outage from a kill at 5.0 s, on a timeline of `width`-second intervals.
fn outage_timeline(width: f64, per_interval: usize) -> Results {
    let n = (20.0 / width).round() as usize;
    results(
        (0..n)
            .map(|i| {
                let start = i as f64 * width;
                if start >= 5.0 - 1e-9 {
                    outage_interval(start, width, per_interval, 9.2)
                } else {
                    interval(start, width, &mixed(per_interval, 0, 2_000))
                }
            })
            .collect(),
    )
}

#[test]
fn a_4_2_s_outage_is_placed_between_4_and_5_s_at_1_s_resolution() {
    let r = outage_timeline(1.0, 100);
    let s = spec("availability = \"99.9%\"\nrecovery = \"5s\"");
    let kill = FaultRecord {
        label: "kill api-1".into(),
        start_s: 5.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], std::slice::from_ref(&kill)).unwrap();
    let f = &a.faults[0];
    // Interval [9, 10) still holds errors; the first clean window starts at 10.
    assert_eq!(f.time_to_recover_min_s, Some(4.0));
    assert_eq!(f.time_to_recover_s, Some(5.0));
    assert_eq!(f.resolution_s, 1.0);
    // A kill has nothing to revert: after the revert is after the injection.
    assert_eq!(f.recovered_after_revert_min_s, Some(4.0));
    assert_eq!(f.recovered_after_revert_s, Some(5.0));
    let rec = f.recovery.as_ref().unwrap();
    assert_eq!(
        (rec.measured_min, rec.measured, rec.resolution_s),
        (Some(4.0), Some(5.0), Some(1.0))
    );
    // Judged by the upper end: 5.0 s is within 5 s ...
    assert_eq!(rec.met, Some(true), "{:?}", a.failures);
    // ... but not within 4.5 s, though the outage (4.2 s) was: the timeline
    // cannot prove it, so the objective is not claimed.
    let strict = spec("availability = \"99.9%\"\nrecovery = \"4.5s\"");
    let a = analyze(&r, &strict, &[], std::slice::from_ref(&kill)).unwrap();
    assert_eq!(a.faults[0].recovery.as_ref().unwrap().met, Some(false));
    assert!(
        a.failures.iter().any(|f| f.contains("recovery 5.0 s")),
        "{:?}",
        a.failures
    );

    // The same outage as a 4 s restart (reverted at 9.0 s): the objective
    // judges the time after the revert, 0–1 s, not the 4 s the fault was held.
    let restart = FaultRecord {
        label: "restart postgres".into(),
        start_s: 5.0,
        end_s: Some(9.0),
        ..Default::default()
    };
    let a = analyze(&r, &strict, &[], &[restart]).unwrap();
    let f = &a.faults[0];
    assert_eq!(
        (f.time_to_recover_min_s, f.time_to_recover_s),
        (Some(4.0), Some(5.0))
    );
    assert_eq!(
        (f.recovered_after_revert_min_s, f.recovered_after_revert_s),
        (Some(0.0), Some(1.0))
    );
    assert_eq!(f.recovery.as_ref().unwrap().measured, Some(1.0));
    assert_eq!(f.recovery.as_ref().unwrap().met, Some(true));
}

#[test]
fn a_finer_timeline_places_recovery_more_finely() {
    // 0.1 s intervals: the same 4.2 s outage lands in [4.1, 4.2] s.
    let r = outage_timeline(0.1, 10);
    let s = spec("availability = \"99.9%\"\nrecovery = \"5s\"");
    let kill = FaultRecord {
        label: "kill api-1".into(),
        start_s: 5.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], &[kill]).unwrap();
    let f = &a.faults[0];
    let (min, max) = (
        f.time_to_recover_min_s.unwrap(),
        f.time_to_recover_s.unwrap(),
    );
    assert!(
        (min - 4.1).abs() < 1e-6 && (max - 4.2).abs() < 1e-6,
        "{min}–{max}"
    );
    assert!((f.resolution_s - 0.1).abs() < 1e-9);
}

/// Good responses: 94 % at 10 ms, 6 % at 200 ms (p95 200 ms). From 5 s to 9 s
/// the database is down and as many again answer 503 in 0.3 ms.
fn fast_errors() -> Results {
    results(
        (0..15)
            .map(|i| {
                let mut samples: Vec<Sample> = (0..100)
                    .map(|j| ok(if j < 94 { 10_000 } else { 200_000 }))
                    .collect();
                if (5..9).contains(&i) {
                    samples.extend(vec![status_5xx(300); 300]);
                }
                interval(i as f64, 1.0, &samples)
            })
            .collect(),
    )
}

#[test]
fn fast_errors_do_not_pass_for_fast_service() {
    let r = fast_errors();
    let a = analyze(&r, &spec("p95 = \"100ms\""), &[], &[]).unwrap();
    let p95 = &a.run.objectives[0];
    assert_eq!(p95.latency_of, Some(LatencyOf::Good));
    assert!((p95.measured.unwrap() - 200.0).abs() < 0.5, "{p95:?}");
    assert_eq!(p95.met, Some(false));
    // The errors' own p95, reported beside.
    assert!((p95.bad_ms.unwrap() - 0.3).abs() < 0.01, "{p95:?}");
    assert!(!a.met);

    // Judged on every response, the 1 200 fast 503s pull p95 down to 10 ms.
    let all = spec("p95 = \"100ms\"\nlatency-of = \"all\"");
    assert_eq!(all.latency_of, LatencyOf::All);
    let a = analyze(&r, &all, &[], &[]).unwrap();
    let p95 = &a.run.objectives[0];
    assert_eq!(p95.latency_of, Some(LatencyOf::All));
    assert!((p95.measured.unwrap() - 10.0).abs() < 0.1, "{p95:?}");
    assert!(a.met);
}

#[test]
fn files_without_bad_histograms_judge_every_response_as_before() {
    let mut r = fast_errors();
    for iv in &mut r.timeline {
        iv.bad_histogram.clear();
    }
    r.bad_histogram.clear();
    let a = analyze(&r, &spec("p95 = \"100ms\""), &[], &[]).unwrap();
    let p95 = &a.run.objectives[0];
    assert!((p95.measured.unwrap() - 10.0).abs() < 0.1, "{p95:?}");
    assert_eq!(p95.bad_ms, None);
    assert!(a.met);
}

#[test]
fn latency_of_is_good_or_all() {
    assert_eq!(spec("p95 = \"1s\"").latency_of, LatencyOf::Good);
    let e = spec_err("latency-of = \"bad\"");
    assert!(
        e.contains("latency-of = \"bad\"") && e.contains("\"good\"") && e.contains("\"all\""),
        "{e}"
    );
    let s = spec("p95 = \"1s\"\nlatency-of = \"all\"");
    let back: SloSpec = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    assert_eq!(
        SloSpec::from_pairs(&["p95=1s", "latency-of=all"]).unwrap(),
        s
    );
}

#[test]
fn an_interrupted_run_has_no_verdict_and_lists_what_it_could_not_judge() {
    // Clean, objectives all met so far; interrupted at 10 s.
    let mut r = results(
        (0..10)
            .map(|i| interval(i as f64, 1.0, &mixed(100, 0, 2_000)))
            .collect(),
    );
    r.run.interrupted = true;
    let s = spec(
        "availability = \"99%\"\nrecovery = \"5s\"\n[[stage]]\nname = \"spike\"\np95 = \"1s\"",
    );
    let stages = [StageWindow {
        name: "warm".into(),
        start_s: 0.0,
        end_s: 10.0,
        ..Default::default()
    }];
    // Injected 2 s before the interrupt: no full 5 s window after it.
    let late = FaultRecord {
        label: "kill api-2".into(),
        start_s: 8.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &s, &stages, &[late]).unwrap();
    assert_eq!(a.verdict(), Verdict::Interrupted);
    assert!(!a.met, "an interrupted run is never met");
    assert_eq!(a.run.met, Some(true), "measured so far");
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    assert_eq!(a.unjudged.len(), 2, "{:?}", a.unjudged);
    assert!(a.unjudged[0].contains("stage spike") && a.unjudged[0].contains("not reached"));
    assert!(a.unjudged[1].contains("kill api-2") && a.unjudged[1].contains("recovery"));
    assert_eq!(a.faults[0].recovery.as_ref().unwrap().met, None);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["verdict"], "interrupted");

    // The same run completed: met, and a file without `verdict` reads as before.
    r.run.interrupted = false;
    let a = analyze(&r, &spec("availability = \"99%\""), &stages, &[]).unwrap();
    assert_eq!(a.verdict(), Verdict::Met);
    let mut json = serde_json::to_value(&a).unwrap();
    json.as_object_mut().unwrap().remove("verdict");
    let old: SloAnalysis = serde_json::from_value(json).unwrap();
    assert_eq!(old.verdict(), Verdict::Met);
}

#[test]
fn a_fault_that_breaks_nothing_recovers_at_once() {
    let timeline = (0..10)
        .map(|i| interval(i as f64, 1.0, &mixed(100, 0, 2_000)))
        .collect();
    let r = results(timeline);
    let f = FaultRecord {
        label: "latency".into(),
        start_s: 2.0,
        end_s: Some(4.0),
        ..Default::default()
    };
    let a = analyze(&r, &spec("p99 = \"10ms\""), &[], &[f]).unwrap();
    assert_eq!(a.faults[0].time_to_recover_s, Some(0.0));
    assert_eq!(a.faults[0].during.intervals, 2);
    assert_eq!(a.faults[0].after.intervals, 5);
}

#[test]
fn never_recovering_is_a_finding() {
    // Everything fails from 15 s to the end of a 20 s run.
    let timeline = (0..20)
        .map(|i| {
            let s: Vec<Sample> = if i >= 15 {
                vec![refused(); 100]
            } else {
                mixed(100, 0, 2_000)
            };
            interval(i as f64, 1.0, &s)
        })
        .collect();
    let r = results(timeline);
    let s = spec("availability = \"99%\"\nrecovery = \"10s\"");
    let f = FaultRecord {
        label: "stop db".into(),
        start_s: 15.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &s, &[], &[f]).unwrap();
    assert_eq!(a.faults[0].time_to_recover_s, None);
    assert_eq!(a.faults[0].recovery.as_ref().unwrap().met, Some(false));
    assert!(!a.met);
    assert!(
        a.failures
            .iter()
            .any(|f| f.contains("stop db") && f.contains("did not recover")),
        "{:?}",
        a.failures
    );
    // A fault too close to the end for a full window cannot show recovery either.
    let f = FaultRecord {
        label: "late".into(),
        start_s: 18.0,
        end_s: None,
        ..Default::default()
    };
    let clean = results(
        (0..20)
            .map(|i| interval(i as f64, 1.0, &mixed(10, 0, 1_000)))
            .collect(),
    );
    let a = analyze(&clean, &s, &[], &[f]).unwrap();
    assert_eq!(a.faults[0].time_to_recover_s, None);
}

#[test]
fn no_traffic_cannot_meet_an_slo() {
    let r = results(Vec::new());
    let a = analyze(&r, &spec("availability = \"99%\"\np95 = \"1s\""), &[], &[]).unwrap();
    assert!(!a.met);
    assert_eq!(a.run.availability, None);
    assert_eq!(a.run.met, None);
    assert!(a.run.objectives.iter().all(|o| o.met.is_none()));
    assert_eq!(a.failures.len(), 2);
    assert!(a.failures[0].contains("no data"));
    assert!(a.notes.iter().any(|n| n.contains("no valid requests")));
    let b = a.run.budget.as_ref().unwrap();
    assert_eq!((b.consumed_pct, b.burn_rate), (None, None));
}

#[test]
fn all_errors() {
    let r = results(
        (0..5)
            .map(|i| interval(i as f64, 1.0, &vec![refused(); 20]))
            .collect(),
    );
    let a = analyze(&r, &spec("availability = \"90%\"\np95 = \"1s\""), &[], &[]).unwrap();
    assert_eq!(a.run.availability, Some(0.0));
    assert_eq!(a.run.p95_ms, None, "refused connections have no latency");
    assert!(!a.met);
    let b = a.run.budget.as_ref().unwrap();
    assert!((b.burn_rate.unwrap() - 10.0).abs() < 1e-9);
    assert!((b.consumed_pct.unwrap() - 1000.0).abs() < 1e-6);
}

#[test]
fn without_objectives_the_verdict_is_met_and_recovery_unknown() {
    let r = results(
        (0..10)
            .map(|i| interval(i as f64, 1.0, &mixed(10, 5, 1_000)))
            .collect(),
    );
    let f = FaultRecord {
        label: "kill".into(),
        start_s: 1.0,
        end_s: None,
        ..Default::default()
    };
    let a = analyze(&r, &SloSpec::default(), &[], &[f]).unwrap();
    assert!(a.met);
    assert_eq!(a.faults[0].time_to_recover_s, None);
    assert!(a.notes.iter().any(|n| n.contains("time to recover needs")));
}

#[test]
fn a_policy_mismatch_is_noted() {
    let r = results(vec![interval(0.0, 1.0, &mixed(10, 0, 1_000))]);
    let a = analyze(&r, &spec("bad = [\"5xx\", \"429\"]"), &[], &[]).unwrap();
    assert!(
        a.notes.iter().any(|n| n.contains("bad outcomes")),
        "{:?}",
        a.notes
    );
}

#[test]
fn from_pairs_matches_the_toml_form() {
    let s = SloSpec::from_pairs(&["availability=99.9%", "p95=100ms", "bad=5xx,4xx"]).unwrap();
    assert_eq!(
        s,
        spec("availability = \"99.9%\"\np95 = \"100ms\"\nbad = [\"5xx\", \"4xx\"]")
    );
    assert!(SloSpec::from_pairs(&["p95"]).is_err());
    assert!(SloSpec::from_pairs(&["speed=1ms"]).is_err());
}

#[test]
fn formatting_never_rounds_up_to_a_met_target() {
    assert_eq!(format_availability(0.99989), "99.989%");
    assert_eq!(format_availability(0.9999), "99.990%");
    assert_eq!(format_availability(0.999999), "99.999%");
    assert_eq!(format_availability(1.0), "100%");
    assert_eq!(format_availability(0.5), "50.00%");
    assert_eq!(format_ms(0.5), "0.50 ms");
    assert_eq!(format_ms(123.4), "123.4 ms");
    assert_eq!(format_ms(2500.0), "2.50 s");
}
