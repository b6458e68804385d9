//! Summaries of a finished run: hey's text layout (plus p99.9/p99.99, availability
//! and pacer warnings) and a compact JSON object for scripts.

use std::fmt::Write as _;

use serde_json::json;

use crate::outcome::Outcome;
use crate::plan::Model;
use crate::record::Phases;
use crate::results::{LatencySummary, Results};

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// hey's report, section for section: Summary, Response time histogram, Latency
/// distribution, Details, Status code distribution, Error distribution — with
/// p99.9/p99.99, an Availability line, and what the open-model pacer saw.
pub fn hey_text(r: &Results) -> String {
    let t = &r.totals;
    let l = &t.latency;
    let mut o = String::new();
    if r.run.interrupted {
        o.push_str("\nInterrupted: the numbers below cover the part of the run that happened.\n");
    }
    o.push_str("\nSummary:\n");
    let _ = writeln!(o, "  Total:\t{:.4} secs", r.run.duration_s);
    let _ = writeln!(o, "  Slowest:\t{:.4} secs", secs(l.max_us));
    let _ = writeln!(o, "  Fastest:\t{:.4} secs", secs(l.min_us));
    let _ = writeln!(o, "  Average:\t{:.4} secs", l.mean_us / 1e6);
    let _ = writeln!(o, "  Requests/sec:\t{:.4}", t.rps);
    let _ = write!(
        o,
        "  Availability:\t{:.4}% ({} good / {} valid; bad: {})",
        t.availability * 100.0,
        t.good,
        t.good + t.bad,
        bad_words(r)
    );
    match diagnosis(r) {
        Some(hint) => {
            let _ = writeln!(o, " — {hint}");
        }
        None => o.push('\n'),
    }
    let responses: u64 = t.status_codes.values().sum();
    if t.bytes_received > 0 {
        o.push_str("  \n");
        let _ = writeln!(o, "  Total data:\t{} bytes", t.bytes_received);
        let _ = writeln!(
            o,
            "  Size/request:\t{} bytes",
            t.bytes_received / responses.max(1)
        );
    }
    o.push_str("\nResponse time histogram:\n");
    o.push_str(&histogram_text(r));
    o.push_str("\n\nLatency distribution:\n");
    let labels = [
        ("10", 10.0),
        ("25", 25.0),
        ("50", 50.0),
        ("75", 75.0),
        ("90", 90.0),
        ("95", 95.0),
        ("99", 99.0),
        ("99.9", 99.9),
        ("99.99", 99.99),
    ];
    if l.count > 0 {
        if let Ok(h) = r.total_histogram() {
            for (label, q) in labels {
                let _ = writeln!(
                    o,
                    "  {label}% in {:.4} secs",
                    secs(h.value_at_quantile(q / 100.0))
                );
            }
        }
    }
    let phases: Phases = r
        .extra
        .get("phases")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    o.push_str("\nDetails (average, fastest, slowest):\n");
    let n = phases.count.max(1) as f64;
    for (name, p) in [
        ("DNS+dialup", &phases.connect),
        ("DNS-lookup", &Default::default()),
        ("req write", &phases.write),
        ("resp wait", &phases.wait),
        ("resp read", &phases.read),
    ] {
        let p: &crate::record::PhaseStat = p;
        let _ = writeln!(
            o,
            "  {name}:\t{:.4} secs, {:.4} secs, {:.4} secs",
            p.sum_us as f64 / n / 1e6,
            secs(p.min_us),
            secs(p.max_us)
        );
    }
    o.push_str("\nStatus code distribution:\n");
    for (code, n) in &t.status_codes {
        let _ = writeln!(o, "  [{code}]\t{n} responses");
    }
    if let Some(name) = &r.plan.track_header {
        let _ = writeln!(o, "\nResponses by {name}:");
        for (value, n) in &t.by_header {
            let _ = writeln!(o, "  [{value}]\t{n} responses");
        }
        let without = responses.saturating_sub(t.by_header.values().sum());
        if without > 0 {
            let _ = writeln!(o, "  (no {name})\t{without} responses");
        }
    }
    let errors: Vec<(Outcome, u64)> = Outcome::ALL
        .iter()
        .filter(|o| !o.is_response())
        .filter_map(|o| {
            let n = t.outcomes.get(o.name()).copied().unwrap_or(0);
            (n > 0).then_some((*o, n))
        })
        .collect();
    if !errors.is_empty() {
        o.push_str("\nError distribution:\n");
        for (outcome, n) in errors {
            let _ = writeln!(o, "  [{n}]\t{} ({})", outcome.describe(), outcome.name());
        }
    }
    if let Some(p) = &r.pacer {
        o.push_str("\nSchedule (open model; latency counts from each request's scheduled time):\n");
        let _ = writeln!(o, "  Scheduled:\t{}", p.scheduled);
        let _ = writeln!(o, "  Sent:\t{}", p.sent);
        let _ = writeln!(
            o,
            "  Late sends:\t{} (more than {:.4} secs after schedule)",
            p.late_sends,
            secs(p.late_threshold_us)
        );
        let _ = writeln!(
            o,
            "  Pacer lag:\tp99 {:.4} secs, max {:.4} secs",
            secs(p.p99_lag_us),
            secs(p.max_lag_us)
        );
        let s = &t.service_time;
        let _ = writeln!(
            o,
            "  Service time:\tp50 {:.4} secs, p99 {:.4} secs (from the actual send)",
            secs(s.percentile("p50").unwrap_or(0)),
            secs(s.percentile("p99").unwrap_or(0))
        );
        if let Some(behind) = p.behind() {
            let _ = writeln!(o, "\nWARNING: {behind}.");
        }
    }
    o
}

/// Why nothing worked, when the cause is usually the setup: no good request
/// at all, and the most common way requests ended has a hint (a refused
/// connect: nothing listening; a failed TLS handshake: https to a plain port).
pub fn diagnosis(r: &Results) -> Option<&'static str> {
    let t = &r.totals;
    if t.good > 0 || t.requests == 0 {
        return None;
    }
    let count = |o: &Outcome| t.outcomes.get(o.name()).copied().unwrap_or(0);
    // The first of the most common, in `Outcome::ALL` order (max_by_key takes the last).
    let top = Outcome::ALL
        .iter()
        .rev()
        .max_by_key(|o| count(o))
        .filter(|o| count(o) > 0)?;
    top.hint()
}

fn bad_words(r: &Results) -> String {
    let mut parts = Vec::new();
    if r.plan.bad.status_5xx {
        parts.push("5xx");
    }
    if r.plan.bad.status_4xx {
        parts.push("4xx");
    } else if r.plan.bad.status_429 {
        parts.push("429");
    }
    parts.push("transport failures and timeouts");
    parts.join(", ")
}

/// hey's 11-bar histogram from the fastest to the slowest response.
fn histogram_text(r: &Results) -> String {
    let l = &r.totals.latency;
    let Ok(h) = r.total_histogram() else {
        return String::new();
    };
    if l.count == 0 {
        return String::new();
    }
    let (fast, slow) = (l.min_us as f64, l.max_us as f64);
    let step = (slow - fast) / 10.0;
    let bounds: Vec<f64> = (0..=10)
        .map(|i| {
            if i == 10 {
                slow
            } else {
                fast + step * i as f64
            }
        })
        .collect();
    let mut counts = [0u64; 11];
    for v in h.iter_recorded() {
        let value = h.median_equivalent(v.value_iterated_to()) as f64;
        let i = bounds.iter().position(|b| value <= *b).unwrap_or(10);
        counts[i] += v.count_at_value();
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut o = String::new();
    for (b, c) in bounds.iter().zip(counts) {
        let bar = "■".repeat(((c * 40 + max / 2) / max) as usize);
        let _ = writeln!(o, "  {:4.3} [{c}]\t|{bar}", b / 1e6);
    }
    o.pop();
    o
}

fn latency_ms(s: &LatencySummary) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("min".into(), json!(s.min_us as f64 / 1e3));
    m.insert("mean".into(), json!(s.mean_us / 1e3));
    m.insert("max".into(), json!(s.max_us as f64 / 1e3));
    for (k, v) in &s.percentiles_us {
        m.insert(k.clone(), json!(*v as f64 / 1e3));
    }
    serde_json::Value::Object(m)
}

/// The `--json` machine summary: totals, percentiles in milliseconds, pacer.
pub fn json(r: &Results) -> serde_json::Value {
    let t = &r.totals;
    json!({
        "schema_version": r.schema_version,
        "model": match r.plan.model { Model::Closed { .. } => "closed", Model::Open { .. } => "open" },
        "interrupted": r.run.interrupted,
        "duration_s": r.run.duration_s,
        "requests": t.requests,
        "rps": t.rps,
        "good": t.good,
        "bad": t.bad,
        "availability": t.availability,
        "diagnosis": diagnosis(r),
        "outcomes": t.outcomes,
        "status_codes": t.status_codes,
        "bytes_received": t.bytes_received,
        "latency_ms": latency_ms(&t.latency),
        "service_time_ms": latency_ms(&t.service_time),
        "by_header": t.by_header,
        "pacer": r.pacer,
    })
}
