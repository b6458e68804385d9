//! The report's content as plain tables, built once and printed three ways
//! (terminal, Markdown, HTML) so the formats can never disagree on a number.

use loadgen::results::LatencySummary;

use super::Report;
use crate::slo::{
    format_availability, format_ms, format_value, BudgetUse, ObjectiveResult, WindowAnalysis,
};

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

/// The verdict in one line, e.g. "SLO met ✓ (3 objectives)".
pub fn verdict_line(report: &Report) -> String {
    match &report.analysis {
        None => "No SLO given: measurements only.".to_string(),
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
    let section = report.results.extra.get(super::EXPERIMENT_KEY)?;
    let target = section.get("target");
    let stack = target
        .and_then(|t| t.get("stack"))
        .filter(|s| s.is_object())
        .or_else(|| {
            section
                .get("profile")?
                .get("stack")
                .filter(|s| s.is_object())
        });
    let Some(stack) = stack else {
        let url = target.and_then(|t| t.get("url")?.as_str())?;
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
    if let Some(p) = r.pacer.as_ref().filter(|p| p.fell_behind) {
        w.push(format!(
            "The load generator fell behind its schedule ({} of {} sends late, worst lag {}): \
             the target saw less load than planned.",
            p.late_sends,
            p.sent,
            format_ms(p.max_lag_us as f64 / 1e3)
        ));
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

/// Failed objectives, one per line (empty when met).
pub fn failures(report: &Report) -> Vec<String> {
    report
        .analysis
        .as_ref()
        .map(|a| a.failures.clone())
        .unwrap_or_default()
}

pub fn sections(report: &Report) -> Vec<Section> {
    let mut out = Vec::new();
    if let Some(a) = &report.analysis {
        let mut s = Section::new(
            SectionId::Objectives,
            "Objectives (whole run)",
            &["Objective", "Target", "Measured", "Met"],
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
        // Outcomes that never happened are noise in a table.
        let mut rows: Vec<_> = t.outcomes.iter().filter(|(_, n)| **n > 0).collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (name, n) in rows {
            s.rows.push(vec![
                name.clone(),
                n.to_string(),
                format!("{:.2}%", *n as f64 / total * 100.0),
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
                "Met",
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
        let mut s = Section::new(
            SectionId::Faults,
            "Faults",
            &[
                "Fault",
                "Injected",
                "Reverted",
                "Availability during",
                "p99 during",
                "Availability after",
                "Time to recover",
                "Met",
            ],
        );
        let analysed = &report.windows.faults;
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
                    row.push(match a.time_to_recover_s {
                        Some(t) => secs(t),
                        None if a.during.objectives.is_empty() => NO_DATA.into(),
                        None => "did not recover".into(),
                    });
                    row.push(met_mark(a.recovery.as_ref().and_then(|r| r.met)).into());
                }
                None => row.extend([NO_DATA; 5].map(String::from)),
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
        let mut s = Section::new(
            SectionId::Instances,
            "Requests per instance",
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

fn max_of(l: &LatencySummary) -> String {
    if l.count == 0 {
        NO_DATA.into()
    } else {
        format_ms(l.max_us as f64 / 1e3)
    }
}

fn objective_row(o: &ObjectiveResult) -> Vec<String> {
    let op = match o.kind {
        crate::slo::ObjectiveKind::Availability => "≥",
        _ => "≤",
    };
    let measured = match (o.measured, o.kind) {
        (Some(m), k) => format_value(k, m),
        (None, crate::slo::ObjectiveKind::Recovery) => "did not recover".into(),
        (None, _) => "no data".into(),
    };
    vec![
        o.objective.clone(),
        format!("{op} {}", format_value(o.kind, o.target)),
        measured,
        met_mark(o.met).into(),
    ]
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
