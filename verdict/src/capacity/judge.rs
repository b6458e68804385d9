//! One probe judged: the plateau's window cut out of the probe's timeline, then
//! the three tests a pass needs — the rate was held, every objective met (latency
//! from the scheduled send), the system stationary — and, when it failed, whether
//! the generator rather than the target was the limit.

use loadgen::results::{decode_histogram, Interval, Results};

use super::search::{ProbeKind, ProbeVerdict};
use super::trend::{trend, Trend};
use super::{Criterion, Probe};
use crate::record::FaultRecord;
use crate::slo::{self, format_ms, ObjectiveKind, SloError, SloSpec};

/// A send this share of the window's schedule late (or more) means the generator
/// did not keep the schedule.
const LATE_SHARE: f64 = 0.01;
/// Least p99 rise across a window that counts as a trend, ms.
const P99_FLOOR_MS: f64 = 2.0;

/// What one probe measured, with how it was run.
pub struct ProbeRun<'a> {
    pub index: usize,
    pub kind: ProbeKind,
    pub instances: Option<u32>,
    pub offered_rps: f64,
    pub warmup_s: f64,
    pub window_s: f64,
    /// The whole probe: warm-up then window, on one timeline.
    pub results: &'a Results,
    /// CPU the generator's process used during the probe, seconds.
    pub generator_cpu_s: f64,
    /// `--with-chaos`: the faults fired during the probe, on its timeline.
    pub faults: &'a [FaultRecord],
}

/// Judges `run` against the plateau objectives `spec`.
pub fn judge(run: &ProbeRun<'_>, spec: &SloSpec, min_achieved: f64) -> Result<Probe, SloError> {
    let r = run.results;
    let end = run.warmup_s + run.window_s;
    let in_window = |iv: &Interval| {
        let mid = iv.start_s + iv.duration_s / 2.0;
        mid >= run.warmup_s && mid < end
    };
    let window: Vec<Interval> = r
        .timeline
        .iter()
        .filter(|iv| in_window(iv))
        .cloned()
        .collect();
    let mut cut = r.clone();
    cut.timeline = window.clone();
    let analysis = slo::analyze(&cut, spec, &[], run.faults)?;
    let w = &analysis.run;

    let covered: f64 = window.iter().map(|iv| iv.covered_s(r.run.duration_s)).sum();
    let responses: u64 = window.iter().map(|iv| iv.requests).sum();
    let achieved = if covered > 0.0 {
        responses as f64 / covered
    } else {
        0.0
    };
    let scheduled: u64 = window.iter().map(|iv| iv.scheduled).sum();
    let late: u64 = window.iter().map(|iv| iv.late_sends).sum();

    let trends = stationarity(r, run, spec, &in_window);
    let service = service_percentiles(&window, spec)?;

    let mut failed = Vec::new();
    for o in w
        .objectives
        .iter()
        .filter(|o| o.binding && o.met != Some(true))
    {
        failed.push(objective_criterion(o));
    }
    let share = achieved / run.offered_rps;
    if share < min_achieved {
        failed.push(Criterion {
            name: "achieved rate".into(),
            target: format!(
                "≥ {:.0} % of {}",
                min_achieved * 100.0,
                rps(run.offered_rps)
            ),
            measured: format!("{} ({:.1} %)", rps(achieved), share * 100.0),
            excess: min_achieved / share.max(1e-9) - 1.0,
        });
    }
    for t in trends.iter().filter(|t| t.rising) {
        failed.push(Criterion {
            name: format!("stationary {}", t.series),
            target: "no sustained rise across the window".into(),
            measured: match t.series.as_str() {
                "p99" => format!("rose {} over the window", format_ms(t.rise)),
                _ => format!("{:+.0} requests queued over the window", t.rise),
            },
            excess: t.rise / t.median.max(1.0),
        });
    }

    let late_bound = scheduled > 0 && late as f64 > LATE_SHARE * scheduled as f64;
    let interrupted = r.run.interrupted;
    let mut reasons: Vec<String> = failed
        .iter()
        .map(|c| format!("{}: {} (target {})", c.name, c.measured, c.target))
        .collect();
    let verdict = if interrupted {
        reasons.insert(0, "interrupted before the window ended".into());
        ProbeVerdict::Interrupted
    } else if failed.is_empty() {
        ProbeVerdict::Pass
    } else if late_bound && target_kept_up(&service, spec, w.availability) {
        reasons.insert(
            0,
            format!(
                "generator-bound: {late} of {scheduled} sends were late while the target's \
                 service time met every latency objective ({}); raise [load] connections or \
                 give the generator more CPU",
                service
                    .iter()
                    .map(|(k, ms, _)| format!("{k} {}", format_ms(*ms)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        ProbeVerdict::GeneratorBound
    } else {
        ProbeVerdict::Fail
    };
    Ok(Probe {
        index: run.index,
        kind: run.kind,
        instances: run.instances,
        offered_rps: run.offered_rps,
        warmup_s: run.warmup_s,
        window_s: run.window_s,
        achieved_rps: achieved,
        requests: w.requests,
        good: w.good,
        bad: w.bad,
        availability: w.availability,
        p50_ms: w.p50_ms,
        p95_ms: w.p95_ms,
        p99_ms: w.p99_ms,
        service_ms: service.iter().map(|(k, ms, _)| (k.clone(), *ms)).collect(),
        objectives: w.objectives.clone(),
        trends,
        scheduled,
        late_sends: late,
        generator_cpu_s: run.generator_cpu_s,
        verdict,
        reasons,
        failed,
        started_at: r.run.started_at.clone(),
        faults: run.faults.to_vec(),
        timeline: window,
    })
}

/// Per-interval p99 and backlog (scheduled minus answered, counted from the
/// probe's start so the warm-up's queue carries in) across the window.
fn stationarity(
    r: &Results,
    run: &ProbeRun<'_>,
    spec: &SloSpec,
    in_window: &dyn Fn(&Interval) -> bool,
) -> Vec<Trend> {
    let (mut ts, mut p99, mut p99_ts, mut backlog) = (vec![], vec![], vec![], vec![]);
    let (mut scheduled, mut answered) = (0u64, 0u64);
    for iv in &r.timeline {
        scheduled += iv.scheduled;
        answered += iv.requests;
        if !in_window(iv) {
            continue;
        }
        let mid = iv.start_s + iv.duration_s / 2.0;
        ts.push(mid);
        backlog.push(scheduled as f64 - answered as f64);
        if let Some(us) = iv.latency.percentile("p99").filter(|_| iv.requests > 0) {
            p99_ts.push(mid);
            p99.push(us as f64 / 1e3);
        }
    }
    let arrivals = run.offered_rps * run.window_s;
    // A p99 of a few hundred samples is noisy, and a busy neighbour can lift it
    // for seconds: its rise counts when it is half its own level and a quarter
    // of the tightest latency ceiling (a growing queue soon passes both).
    let ceiling_ms = spec
        .latency
        .iter()
        .map(|t| t.max.as_secs_f64() * 1e3)
        .fold(f64::INFINITY, f64::min);
    let p99_floor = if ceiling_ms.is_finite() {
        (0.25 * ceiling_ms).max(P99_FLOOR_MS)
    } else {
        P99_FLOOR_MS
    };
    vec![
        trend("p99", &p99_ts, &p99, 0.5, p99_floor),
        trend("backlog", &ts, &backlog, 0.25, (0.01 * arrivals).max(5.0)),
    ]
}

/// The window's service time (from the actual send, so without the generator's
/// own waiting) at each latency objective's percentile: (key, ms, target ms).
fn service_percentiles(
    window: &[Interval],
    spec: &SloSpec,
) -> Result<Vec<(String, f64, f64)>, SloError> {
    let mut merged = loadgen::results::new_histogram();
    for iv in window {
        if !iv.service_histogram.is_empty() {
            merged
                .add(decode_histogram(&iv.service_histogram)?)
                .map_err(|e| slo::SloError::Invalid(format!("service histograms: {e}")))?;
        }
    }
    if merged.is_empty() {
        return Ok(Vec::new());
    }
    Ok(spec
        .latency
        .iter()
        .map(|t| {
            let ms = merged.value_at_quantile(t.percentile / 100.0) as f64 / 1e3;
            (t.key.clone(), ms, t.max.as_secs_f64() * 1e3)
        })
        .collect())
}

/// The target kept up when its own service time met every latency ceiling and
/// it answered (availability met, or not asked for).
fn target_kept_up(
    service: &[(String, f64, f64)],
    spec: &SloSpec,
    availability: Option<f64>,
) -> bool {
    let latency_ok = !service.is_empty() && service.iter().all(|(_, ms, max)| ms <= max);
    let available = match (spec.availability, availability) {
        (Some(t), Some(a)) => a >= t,
        (Some(_), None) => false,
        (None, _) => true,
    };
    (latency_ok || spec.latency.is_empty()) && available
}

fn objective_criterion(o: &slo::ObjectiveResult) -> Criterion {
    let (measured, excess) = match (o.kind, o.measured) {
        (_, None) => ("nothing measured".to_string(), f64::INFINITY),
        (ObjectiveKind::Availability, Some(m)) => (
            slo::format_availability(m),
            // Budget burnt over the window: 1 spends it exactly.
            (1.0 - m) / (1.0 - o.target).max(1e-12) - 1.0,
        ),
        (kind, Some(m)) => (slo::format_value(kind, m), m / o.target - 1.0),
    };
    Criterion {
        name: o.objective.clone(),
        target: slo::format_value(o.kind, o.target),
        measured,
        excess,
    }
}

/// A rate as the reports print it: whole req/s from 100 up.
pub fn rps(r: f64) -> String {
    if r >= 1e6 {
        format!("{} M req/s", trim(r / 1e6))
    } else if r >= 100.0 {
        format!("{r:.0} req/s")
    } else {
        format!("{r:.1} req/s")
    }
}

/// Up to two decimals, without trailing zeros (10, 2.5, 1.25).
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The plateau's objectives: the run-level ones, with each `[[slo.stage]]`
/// target folded in (the strictest per key), since a plateau at rate R is a
/// stage the system must hold; `recovery` only when faults are injected.
pub fn plateau_spec(spec: &SloSpec, with_faults: bool) -> SloSpec {
    let mut out = spec.clone();
    for st in &spec.stages {
        if let Some(a) = st.availability {
            out.availability = Some(out.availability.map_or(a, |b| b.max(a)));
        }
        for t in &st.latency {
            match out.latency.iter_mut().find(|l| l.key == t.key) {
                Some(l) => l.max = l.max.min(t.max),
                None => out.latency.push(t.clone()),
            }
        }
    }
    out.latency
        .sort_by(|a, b| a.percentile.total_cmp(&b.percentile));
    out.stages.clear();
    if !with_faults {
        out.recovery = None;
    }
    out
}
