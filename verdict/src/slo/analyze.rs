//! The analysis itself: the whole run, each stage and each fault window against the
//! spec, with time to recover located on the timeline.

use super::*;

/// Analyses `results` against `spec`. `stages` and `faults` are on the timeline's
/// clock (seconds from the load start); either may be empty (`slolab load` results).
pub fn analyze(
    results: &Results,
    spec: &SloSpec,
    stages: &[StageWindow],
    faults: &[FaultRecord],
) -> Result<SloAnalysis, SloError> {
    let timeline = &results.timeline;
    let hists = Histograms::decode(timeline, spec.latency_of)?;
    let interrupted = results.run.interrupted;
    let run_end = timeline
        .last()
        .map(|iv| iv.start_s + iv.duration_s)
        .unwrap_or(0.0);
    let run_objectives = spec.run_objectives();
    let mut failures = Vec::new();
    let mut unjudged = Vec::new();
    let mut notes = Vec::new();
    if results.plan.bad != spec.bad {
        notes.push(format!(
            "the load counted bad outcomes as {:?}, the SLO asks for {:?}; availability uses the load's counts",
            results.plan.bad, spec.bad
        ));
    }

    // Whole run: every run-level objective binds.
    let all: Vec<usize> = (0..timeline.len()).collect();
    let stats = WindowStats::merge(timeline, &hists, &all);
    let checks: Vec<_> = run_objectives
        .iter()
        .map(|o| stats.check(o, true))
        .collect();
    collect_failures(&checks, "run", &mut failures);
    if stats.good + stats.bad == 0 {
        notes.push("no valid requests were measured".into());
    }
    let run = stats.analysis("run", 0.0, run_end, checks, spec.availability);

    // Stages: run-level objectives for insight, `[[slo.stage]]` targets bind
    // (and replace a run-level target of the same name in that stage).
    let mut stage_out = Vec::new();
    for st in stages {
        let idx = window_indices(timeline, st.start_s, st.end_s);
        let stats = WindowStats::merge(timeline, &hists, &idx);
        let own = spec.stages.iter().find(|s| s.name == st.name);
        let mut checks: Vec<ObjectiveResult> = Vec::new();
        if let Some(own) = own {
            for o in objectives(own.availability, &own.latency) {
                checks.push(stats.check(&o, true));
            }
        }
        for o in &run_objectives {
            let c = stats.check(o, false);
            if !checks.iter().any(|b| b.objective == c.objective) {
                checks.push(c);
            }
        }
        collect_failures(&checks, &format!("stage {}", st.name), &mut failures);
        let target = own.and_then(|o| o.availability).or(spec.availability);
        stage_out.push(stats.analysis(&st.name, st.start_s, st.end_s, checks, target));
    }
    for own in &spec.stages {
        if !stages.iter().any(|s| s.name == own.name) {
            if interrupted {
                unjudged.push(format!(
                    "stage {}: not reached before the interrupt",
                    own.name
                ));
            } else {
                failures.push(format!("stage {}: no such stage was run", own.name));
            }
        }
    }

    // Faults.
    let window_s = spec.recovery_window.as_secs_f64();
    let step = results.plan.interval.as_secs_f64();
    let k = if step > 0.0 {
        ((window_s / step) - 1e-9).ceil().max(1.0) as usize
    } else {
        1
    };
    let mut fault_out = Vec::new();
    // A fault whose injection failed never happened: nothing to analyse.
    for f in faults.iter().filter(|f| f.error.is_none()) {
        let end = f.end_s.unwrap_or(f.start_s).max(f.start_s);
        let during_idx = window_indices(timeline, f.start_s, end);
        let during = WindowStats::merge(timeline, &hists, &during_idx);
        let checks = run_objectives
            .iter()
            .map(|o| during.check(o, false))
            .collect();
        let during = during.analysis(&f.label, f.start_s, end, checks, spec.availability);

        let after_end = end + window_s;
        let after_idx: Vec<usize> = window_indices(timeline, end, after_end)
            .into_iter()
            .filter(|i| !during_idx.contains(i))
            .collect();
        let after = WindowStats::merge(timeline, &hists, &after_idx);
        let checks = run_objectives
            .iter()
            .map(|o| after.check(o, false))
            .collect();
        let after = after.analysis(&f.label, end, after_end, checks, spec.availability);

        let recovered = if run_objectives.is_empty() {
            None
        } else {
            recovery_point(timeline, &hists, f.start_s, k, &run_objectives)
        };
        let since = |from: f64, t: f64| (t - from).max(0.0);
        let after_revert = recovered.map(|r| (since(end, r.earliest_s), since(end, r.at_s)));
        // A run cut short before a full window after the fault proves nothing either way.
        let cut_short = interrupted && recovered.is_none();
        if cut_short && !run_objectives.is_empty() {
            unjudged.push(format!(
                "fault {}: recovery (the run stopped before a full {} window after it)",
                f.label,
                chaos::duration::format(spec.recovery_window)
            ));
        }
        let resolution_s = recovered.map_or(step, |r| r.resolution_s);
        let recovery = spec.recovery.map(|max| {
            let target = max.as_secs_f64();
            ObjectiveResult {
                objective: "recovery".into(),
                kind: ObjectiveKind::Recovery,
                target,
                measured: after_revert.map(|(_, at)| at),
                // Not recovering at all is a failure of the objective, not a gap in
                // data — unless the run was cut short.
                met: if cut_short {
                    None
                } else {
                    Some(after_revert.is_some_and(|(_, at)| at <= target))
                },
                binding: true,
                latency_of: None,
                bad_ms: None,
                measured_min: after_revert.map(|(earliest, _)| earliest),
                resolution_s: Some(resolution_s),
            }
        });
        if let Some(r) = recovery.as_ref().filter(|_| !cut_short) {
            collect_failures(
                std::slice::from_ref(r),
                &format!("fault {}", f.label),
                &mut failures,
            );
        }
        fault_out.push(FaultAnalysis {
            label: f.label.clone(),
            start_s: f.start_s,
            end_s: f.end_s,
            during,
            after,
            time_to_recover_s: recovered.map(|r| since(f.start_s, r.at_s)),
            time_to_recover_min_s: recovered.map(|r| since(f.start_s, r.earliest_s)),
            recovered_after_revert_s: after_revert.map(|(_, at)| at),
            recovered_after_revert_min_s: after_revert.map(|(earliest, _)| earliest),
            resolution_s,
            recovery,
        });
    }
    if !faults.is_empty() && run_objectives.is_empty() {
        notes.push(
            "time to recover needs an availability or latency objective; none was given".into(),
        );
    }

    let verdict = if interrupted {
        Verdict::Interrupted
    } else if failures.is_empty() {
        Verdict::Met
    } else {
        Verdict::NotMet
    };
    Ok(SloAnalysis {
        met: verdict == Verdict::Met,
        verdict: Some(verdict),
        failures,
        unjudged,
        run,
        stages: stage_out,
        faults: fault_out,
        recovery_window_s: window_s,
        notes,
    })
}

/// Where the timeline places recovery: during `[earliest_s, at_s)`, on the load clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovered {
    /// Start of the last interval still inside a failing window (`at_s` when the SLO
    /// never broke).
    earliest_s: f64,
    /// Start of the first sliding window that meets every objective.
    at_s: f64,
    /// Width of the interval recovery was placed in: the timeline's own, however fine.
    resolution_s: f64,
}

/// The first `k`-interval sliding window at or after the interval holding `from_s`
/// that meets every objective; `None` if no complete window does.
pub(crate) fn recovery_point(
    timeline: &[Interval],
    hists: &Histograms,
    from_s: f64,
    k: usize,
    objectives: &[Objective],
) -> Option<Recovered> {
    let first = timeline
        .iter()
        .position(|iv| iv.start_s + iv.duration_s > from_s)?;
    let i = (first..timeline.len())
        .take_while(|i| i + k <= timeline.len())
        .find(|&i| {
            let idx: Vec<usize> = (i..i + k).collect();
            WindowStats::merge(timeline, hists, &idx).meets_all(objectives)
        })?;
    let at_s = timeline[i].start_s.max(from_s);
    let (earliest_s, resolution_s) = if i > first {
        let last_bad = &timeline[i - 1];
        (last_bad.start_s.max(from_s), last_bad.duration_s)
    } else {
        (at_s, timeline[i].duration_s)
    };
    Some(Recovered {
        earliest_s,
        at_s,
        resolution_s,
    })
}

pub(crate) fn collect_failures(
    checks: &[ObjectiveResult],
    scope: &str,
    failures: &mut Vec<String>,
) {
    for c in checks.iter().filter(|c| c.binding && c.met != Some(true)) {
        let measured = match c.measured {
            Some(m) => format_value(c.kind, m),
            None if c.kind == ObjectiveKind::Recovery => "did not recover".into(),
            None => "no data".into(),
        };
        let op = match c.kind {
            ObjectiveKind::Availability => "≥",
            _ => "≤",
        };
        failures.push(format!(
            "{scope}: {} {measured} (target {op} {})",
            c.objective,
            format_value(c.kind, c.target)
        ));
    }
}
