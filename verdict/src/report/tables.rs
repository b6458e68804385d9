//! The report's content as plain tables, built once and printed three ways
//! (terminal, Markdown, HTML) so the formats can never disagree on a number.

use loadgen::results::LatencySummary;

use super::Report;
use crate::slo::{
    format_availability, format_ms, format_value, BudgetUse, FaultAnalysis, ObjectiveKind,
    ObjectiveResult, Verdict, WindowAnalysis,
};
use loadgen::results::LatencyOf;

/// Which part of the report a table is; the HTML report puts its charts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionId {
    Objectives,
    Budget,
    Measurements,
    Outcomes,
    Stages,
    Faults,
    Instances,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub id: SectionId,
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Section {
    fn new(id: SectionId, title: &str, header: &[&str]) -> Self {
        Self {
            id,
            title: title.to_string(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

pub const MET: &str = "✓";
pub const NOT_MET: &str = "✗";
pub const NO_DATA: &str = "–";

pub fn met_mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => MET,
        Some(false) => NOT_MET,
        None => NO_DATA,
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| NO_DATA.to_string())
}

fn us(v: Option<u64>) -> String {
    opt(v.map(|u| u as f64 / 1e3), format_ms)
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

/// What an interrupted run says instead of a verdict.
pub const INTERRUPTED_VERDICT: &str = "interrupted — incomplete, no verdict";

/// The verdict in one line, e.g. "SLO met ✓ (3 objectives)".
pub fn verdict_line(report: &Report) -> String {
    match &report.analysis {
        None => "No SLO given: measurements only.".to_string(),
        Some(a) if a.verdict() == Verdict::Interrupted => {
            let n = measured_count(a);
            let mut s = format!(
                "SLO: {INTERRUPTED_VERDICT} ({n} objective{} measured over what ran",
                if n == 1 { "" } else { "s" }
            );
            if !a.unjudged.is_empty() {
                s.push_str(&format!(", {} not judged", a.unjudged.len()));
            }
            s.push(')');
            s
        }
        Some(a) if a.met => {
            let n = binding_count(a);
            format!(
                "SLO met {MET} ({n} objective{})",
                if n == 1 { "" } else { "s" }
            )
        }
        Some(a) => format!(
            "SLO NOT met {NOT_MET} ({} of {} objectives failed)",
            a.failures.len(),
            binding_count(a).max(a.failures.len())
        ),
    }
}

/// Binding objectives that had something to measure.
fn measured_count(a: &crate::slo::SloAnalysis) -> usize {
    let windows = std::iter::once(&a.run).chain(&a.stages);
    let recovery = a.faults.iter().filter_map(|f| f.recovery.as_ref());
    windows
        .flat_map(|w| &w.objectives)
        .chain(recovery)
        .filter(|o| o.binding && o.met.is_some())
        .count()
}

fn binding_count(a: &crate::slo::SloAnalysis) -> usize {
    let windows = std::iter::once(&a.run).chain(&a.stages);
    windows
        .flat_map(|w| &w.objectives)
        .filter(|o| o.binding)
        .count()
        + a.faults.iter().filter(|f| f.recovery.is_some()).count()
}

/// One line about the run: when, how long, what commit, on what host.
pub fn run_line(report: &Report) -> String {
    let r = &report.results;
    let mut s = format!(
        "{} · {:.1} s · {} requests · {:.1} req/s",
        r.run.started_at, r.run.duration_s, r.totals.requests, r.totals.rps
    );
    if let Some(c) = &r.run.commit {
        s.push_str(&format!(" · commit {}", &c[..c.len().min(10)]));
    }
    s.push_str(&format!(
        " · {} ({} CPUs)",
        r.run.host.hostname, r.run.host.cpus
    ));
    if let Some(e) = &report.experiment {
        if !e.profile_path.is_empty() {
            s.push_str(&format!(" · profile {}", e.profile_path));
        }
        if let Some(seed) = e.seed {
            s.push_str(&format!(" · seed {seed}"));
        }
    }
    s
}

/// What was under load, e.g. "stack: 4 instances · gateway builtin (round-robin) ·
/// db postgres · cache redis": the stack slolab started (else the profile's
/// `[stack]`), or the external URL. None for a plain load run.
pub fn stack_line(report: &Report) -> Option<String> {
    let section = report.experiment.as_ref()?;
    let target = &section.target;
    let stack = Some(&target.stack)
        .filter(|s| s.is_object())
        .or_else(|| section.profile.get("stack").filter(|s| s.is_object()));
    let Some(stack) = stack else {
        let url = Some(target.url.as_str()).filter(|u| !u.is_empty())?;
        return Some(format!("target: {url} (external)"));
    };
    let field = |k: &str| match stack.get(k) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let dash = || "–".to_string();
    let instances = field("instances").unwrap_or_else(dash);
    let mut gateway = field("gateway").unwrap_or_else(dash);
    if let Some(b) = field("balance") {
        gateway.push_str(&format!(" ({b})"));
    }
    Some(format!(
        "stack: {instances} instance{} · gateway {gateway} · db {} · cache {}",
        if instances == "1" { "" } else { "s" },
        field("db").unwrap_or_else(dash),
        field("cache").unwrap_or_else(dash),
    ))
}

/// Warnings a reader must not miss: interrupted runs, a generator that fell behind.
pub fn warnings(report: &Report) -> Vec<String> {
    let r = &report.results;
    let mut w = Vec::new();
    if r.run.interrupted || report.experiment.as_ref().is_some_and(|e| e.interrupted) {
        w.push("The run was interrupted; the numbers cover what ran.".to_string());
    }
    if let Some(behind) = r.pacer.as_ref().and_then(|p| p.behind()) {
        w.push(format!("{behind}."));
    }
    for f in report.faults() {
        if let Some(e) = &f.error {
            w.push(format!("Fault {} was not injected: {e}", f.label));
        }
    }
    if let Some(a) = &report.analysis {
        w.extend(a.notes.iter().cloned());
    }
    w.extend(report.notes.iter().cloned());
    w
}

/// Failed objectives, one per line (empty when met); in an interrupted run the
/// ones failed so far, then the ones that could not be judged.
pub fn failures(report: &Report) -> Vec<String> {
    verdict_items(report).into_iter().map(|(_, l)| l).collect()
}

/// [`failures`] with the mark each line goes with: ✗ failed, – not judged.
pub fn verdict_items(report: &Report) -> Vec<(&'static str, String)> {
    let Some(a) = &report.analysis else {
        return Vec::new();
    };
    if a.verdict() != Verdict::Interrupted {
        return a.failures.iter().map(|f| (NOT_MET, f.clone())).collect();
    }
    let so_far = a.failures.iter().map(|f| (NOT_MET, format!("so far: {f}")));
    let unjudged = a
        .unjudged
        .iter()
        .map(|u| (NO_DATA, format!("not judged: {u}")));
    so_far.chain(unjudged).collect()
}

/// Header of the columns of ✓ / ✗ marks: in an interrupted run they say how the
/// objectives stood when it stopped, not whether they were met.
fn mark_header(report: &Report) -> &'static str {
    match &report.analysis {
        Some(a) if a.verdict() == Verdict::Interrupted => "So far",
        _ => "Met",
    }
}

pub fn sections(report: &Report) -> Vec<Section> {
    let mut out = Vec::new();
    if let Some(a) = &report.analysis {
        let mut s = Section::new(
            SectionId::Objectives,
            "Objectives (whole run)",
            &["Objective", "Target", "Measured", mark_header(report)],
        );
        for o in &a.run.objectives {
            s.rows.push(objective_row(o));
        }
        for f in a
            .faults
            .iter()
            .filter_map(|f| f.recovery.as_ref().map(|r| (f, r)))
        {
            let (fault, o) = f;
            let mut row = objective_row(o);
            row[0] = format!("recovery after {}", fault.label);
            s.rows.push(row);
        }
        if !s.rows.is_empty() {
            out.push(s);
        }
        if let Some(b) = &a.run.budget {
            let mut s = Section::new(
                SectionId::Budget,
                "Error budget (whole run)",
                &["Allowed bad", "Bad", "Consumed", "Remaining", "Burn rate"],
            );
            s.rows.push(budget_row(b));
            out.push(s);
        }
    }

    let t = &report.results.totals;
    let mut s = Section::new(
        SectionId::Measurements,
        "Measurements",
        &[
            "Requests",
            "Good",
            "Bad",
            "Availability",
            "Req/s",
            "p50",
            "p90",
            "p95",
            "p99",
            "p99.9",
            "Max",
        ],
    );
    s.rows.push(vec![
        t.requests.to_string(),
        t.good.to_string(),
        t.bad.to_string(),
        if t.good + t.bad > 0 {
            format_availability(t.availability)
        } else {
            NO_DATA.into()
        },
        format!("{:.1}", t.rps),
        us(t.latency.percentile("p50")),
        us(t.latency.percentile("p90")),
        us(t.latency.percentile("p95")),
        us(t.latency.percentile("p99")),
        us(t.latency.percentile("p99.9")),
        max_of(&t.latency),
    ]);
    out.push(s);

    if !t.outcomes.is_empty() {
        let mut s = Section::new(
            SectionId::Outcomes,
            "Outcomes",
            &["Outcome", "Count", "Share"],
        );
        let total = t.requests.max(1) as f64;
        for (name, n) in outcome_rows(t) {
            s.rows.push(vec![
                name,
                n.to_string(),
                format!("{:.2}%", n as f64 / total * 100.0),
            ]);
        }
        out.push(s);
    }

    let stages = report.stages();
    if !stages.is_empty() {
        let mut s = Section::new(
            SectionId::Stages,
            "Stages",
            &[
                "Stage",
                "Start",
                "End",
                "Requests",
                "Availability",
                "p95",
                "p99",
                "Burn rate",
                mark_header(report),
            ],
        );
        let analysed = &report.windows.stages;
        for (i, st) in stages.iter().enumerate() {
            let w = analysed
                .iter()
                .find(|w| w.label == st.name)
                .or(analysed.get(i));
            let mut row = vec![st.name.clone(), secs(st.start_s), secs(st.end_s)];
            match w {
                Some(w) => row.extend(window_cells(w)),
                None => row.extend([NO_DATA; 6].map(String::from)),
            }
            s.rows.push(row);
        }
        out.push(s);
    }

    let faults = report.faults();
    if !faults.is_empty() {
        let analysed = &report.windows.faults;
        let title = match analysed.iter().map(|f| f.resolution_s).find(|r| *r > 0.0) {
            Some(r) => format!(
                "Faults (recovery located to within {}, the timeline's interval)",
                secs_short(r)
            ),
            None => "Faults".to_string(),
        };
        let mut s = Section::new(
            SectionId::Faults,
            &title,
            &[
                "Fault",
                "Injected",
                "Reverted",
                "Availability during",
                "p99 during",
                "Availability after",
                "Recovered after injection",
                "Recovered after revert",
                mark_header(report),
            ],
        );
        let mut k = 0;
        for f in faults {
            let reverted = match (&f.error, f.end_s) {
                (Some(_), _) => "not injected".to_string(),
                (None, Some(e)) => secs(e),
                (None, None) => NO_DATA.to_string(),
            };
            let mut row = vec![f.label.clone(), secs(f.start_s), reverted];
            // Analyses skip faults that were never injected; keep rows aligned.
            let a = if f.error.is_none() {
                let a = analysed.get(k);
                k += 1;
                a
            } else {
                None
            };
            match a {
                Some(a) => {
                    row.push(opt(a.during.availability, format_availability));
                    row.push(opt(a.during.p99_ms, format_ms));
                    row.push(opt(a.after.availability, format_availability));
                    let interrupted = report
                        .analysis
                        .as_ref()
                        .is_some_and(|a| a.verdict() == Verdict::Interrupted);
                    let [from_injection, from_revert] = recovery_cells(a, interrupted);
                    row.push(from_injection);
                    row.push(from_revert);
                    row.push(met_mark(a.recovery.as_ref().and_then(|r| r.met)).into());
                }
                None => row.extend([NO_DATA; 6].map(String::from)),
            }
            s.rows.push(row);
        }
        out.push(s);
    }

    if !t.by_header.is_empty() {
        let header = report
            .results
            .plan
            .track_header
            .clone()
            .unwrap_or_else(|| "Instance".into());
        // X-Served-By names instances; any other header (X-Cache) is its own thing.
        let title = if header.eq_ignore_ascii_case(super::INSTANCE_HEADER) {
            "Requests per instance".to_string()
        } else {
            format!("Responses by {header}")
        };
        let mut s = Section::new(
            SectionId::Instances,
            &title,
            &[header.as_str(), "Responses", "Share"],
        );
        let total: u64 = t.by_header.values().sum();
        for (name, n) in &t.by_header {
            s.rows.push(vec![
                name.clone(),
                n.to_string(),
                format!("{:.1}%", *n as f64 / total.max(1) as f64 * 100.0),
            ]);
        }
        out.push(s);
    }
    out
}

/// "0.25 s", "1 s": an interval width without a pointless ".0".
fn secs_short(s: f64) -> String {
    let t = format!("{s:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t} s")
}

/// "4.0–5.0 s": where the timeline places recovery, from `min` to `max` seconds.
fn range(min: Option<f64>, max: f64) -> String {
    match min {
        Some(m) if (max - m).abs() > 1e-9 => format!("{m:.1}–{max:.1} s"),
        _ => secs(max),
    }
}

/// Time to recover from the injection and from the revert, as ranges.
fn recovery_cells(a: &FaultAnalysis, interrupted: bool) -> [String; 2] {
    match (a.time_to_recover_s, a.recovered_after_revert_s) {
        (Some(inj), Some(rev)) => [
            range(a.time_to_recover_min_s, inj),
            range(a.recovered_after_revert_min_s, rev),
        ],
        (Some(inj), None) => [range(a.time_to_recover_min_s, inj), NO_DATA.into()],
        _ if a.during.objectives.is_empty() => [NO_DATA.into(), NO_DATA.into()],
        _ if interrupted => ["not judged".into(), "not judged".into()],
        _ => ["did not recover".into(), "did not recover".into()],
    }
}

/// Outcomes by count, most frequent first, those that never happened left out. A
/// status class (`5xx`) is shown by code (`503 (5xx)`) when the file counted codes,
/// so "503s with Retry-After" can be told from "500s from a crash".
fn outcome_rows(t: &loadgen::results::Totals) -> Vec<(String, u64)> {
    let is_class = |name: &str| {
        let b = name.as_bytes();
        b.len() == 3 && b[0].is_ascii_digit() && &name[1..] == "xx"
    };
    let by_code = !t.status_codes.is_empty();
    let mut rows: Vec<(String, u64)> = t
        .outcomes
        .iter()
        .filter(|(name, n)| **n > 0 && !(by_code && is_class(name)))
        .map(|(name, n)| (name.clone(), *n))
        .collect();
    if by_code {
        rows.extend(
            t.status_codes
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| (format!("{code} ({}xx)", code / 100), *n)),
        );
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows
}

fn max_of(l: &LatencySummary) -> String {
    if l.count == 0 {
        NO_DATA.into()
    } else {
        format_ms(l.max_us as f64 / 1e3)
    }
}

fn objective_row(o: &ObjectiveResult) -> Vec<String> {
    let op = match o.kind {
        ObjectiveKind::Availability => "≥",
        _ => "≤",
    };
    let mut name = o.objective.clone();
    let mut target = format!("{op} {}", format_value(o.kind, o.target));
    let mut measured = match (o.measured, o.kind) {
        (Some(m), ObjectiveKind::Recovery) => range(o.measured_min, m),
        (Some(m), k) => format_value(k, m),
        (None, ObjectiveKind::Recovery) if o.met.is_none() => "not judged".into(),
        (None, ObjectiveKind::Recovery) => "did not recover".into(),
        (None, _) => "no data".into(),
    };
    match o.kind {
        ObjectiveKind::Latency => {
            match o.latency_of {
                Some(LatencyOf::Good) => name.push_str(" (good responses)"),
                Some(LatencyOf::All) => name.push_str(" (all responses)"),
                Some(LatencyOf::Bad) => name.push_str(" (bad responses)"),
                None => {}
            }
            if let Some(bad) = o.bad_ms {
                measured.push_str(&format!(" ({} of errors: {})", o.objective, format_ms(bad)));
            }
        }
        // Files from before the revert was the reference keep their old reading.
        ObjectiveKind::Recovery if o.resolution_s.is_some() => {
            target.push_str(" after the revert");
            if o.measured.is_some() {
                measured.push_str(" after the revert");
            }
            if let Some(r) = o.resolution_s.filter(|r| *r > 0.0 && o.measured.is_some()) {
                measured.push_str(&format!(" ({} resolution)", secs_short(r)));
            }
        }
        _ => {}
    }
    vec![name, target, measured, met_mark(o.met).into()]
}

fn budget_row(b: &BudgetUse) -> Vec<String> {
    vec![
        format!("{:.1}", b.allowed_bad),
        b.bad.to_string(),
        opt(b.consumed_pct, |c| format!("{c:.1}%")),
        opt(b.remaining_pct, |c| format!("{c:.1}%")),
        opt(b.burn_rate, |r| format!("{r:.2}x")),
    ]
}

/// Requests, availability, p95, p99, burn rate, met — from an analysed window.
fn window_cells(w: &WindowAnalysis) -> Vec<String> {
    let met = if w.objectives.iter().any(|o| o.binding) {
        // A stage with its own targets: judge by those.
        let binding: Vec<_> = w.objectives.iter().filter(|o| o.binding).collect();
        if binding.iter().any(|o| o.met == Some(false)) {
            NOT_MET
        } else if binding.iter().all(|o| o.met == Some(true)) {
            MET
        } else {
            NO_DATA
        }
    } else {
        met_mark(w.met)
    };
    vec![
        w.requests.to_string(),
        opt(w.availability, format_availability),
        opt(w.p95_ms, format_ms),
        opt(w.p99_ms, format_ms),
        opt(w.budget.as_ref().and_then(|b| b.burn_rate), |r| {
            format!("{r:.2}x")
        }),
        met.to_string(),
    ]
}
