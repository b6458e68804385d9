//! The comparison as a person or a machine reads it: a text table for the
//! terminal, a Markdown table for a CI step summary or PR comment, and JSON.

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Alignment, Style};

use super::stats::{Finding, Metric, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Md,
    Json,
}

#[derive(Debug, Serialize)]
pub struct SideSummary {
    pub runs: usize,
    pub files: Vec<String>,
    pub commits: Vec<String>,
    pub requests: u64,
    pub intervals: usize,
}

#[derive(Debug, Serialize)]
pub struct Method {
    pub confidence_pct: f64,
    pub threshold_pct: f64,
    pub min_latency_change_ms: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// One row. Units: latency µs, availability a fraction, throughput requests/s,
/// time to recover s. `interval` bounds head − base; `*_pct` are relative to base.
#[derive(Debug, Serialize)]
pub struct MetricRow {
    pub metric: &'static str,
    pub unit: &'static str,
    pub base: Option<f64>,
    pub head: Option<f64>,
    pub change: Option<f64>,
    pub change_pct: Option<f64>,
    pub interval: Option<[f64; 2]>,
    pub interval_pct: Option<[f64; 2]>,
    pub tolerance: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub base: SideSummary,
    pub head: SideSummary,
    pub method: Method,
    pub metrics: Vec<MetricRow>,
    /// Names of the metrics that got worse; non-empty means exit 4.
    pub regressions: Vec<&'static str>,
    /// Metrics that look worse but a single run per side cannot confirm (exit 0).
    pub unconfirmed: Vec<&'static str>,
    pub warnings: Vec<String>,
}

impl MetricRow {
    pub fn new(f: &Finding) -> Self {
        let relative = f.metric != Metric::Availability;
        let pct = |d: f64| {
            f.base
                .filter(|b| relative && *b > 0.0)
                .map(|b| d / b * 100.0)
        };
        Self {
            metric: f.metric.name(),
            unit: unit(f.metric),
            base: f.base,
            head: f.head,
            change: f.change(),
            change_pct: f.change().and_then(pct),
            interval: f.interval.map(|(lo, hi)| [lo, hi]),
            interval_pct: f.interval.and_then(|(lo, hi)| Some([pct(lo)?, pct(hi)?])),
            tolerance: f.tolerance,
            verdict: f.verdict,
        }
    }

    fn metric_of(&self) -> Metric {
        *Metric::ALL
            .iter()
            .find(|m| m.name() == self.metric)
            .expect("rows come from Metric::ALL")
    }

    fn cells(&self, bold_worse: bool) -> [String; 6] {
        let m = self.metric_of();
        let value = |v: Option<f64>| v.map_or("—".into(), |v| format_value(m, v));
        let delta = |abs: f64, pct: Option<f64>| match (m, pct) {
            (Metric::Availability, _) => format!("{:+.3} pp", abs * 100.0),
            (_, Some(p)) => format!("{p:+.1} %"),
            (_, None) => format_delta(m, abs),
        };
        let change = self
            .change
            .map_or("—".into(), |c| delta(c, self.change_pct));
        let interval = self.interval.map_or("—".into(), |[lo, hi]| {
            let pcts = self.interval_pct.map(|[a, b]| (a, b));
            format!(
                "{} … {}",
                delta(lo, pcts.map(|p| p.0)),
                delta(hi, pcts.map(|p| p.1))
            )
        });
        let verdict = match (self.verdict, bold_worse) {
            (Verdict::Worse, true) => "**worse**".to_string(),
            (Verdict::Worse, false) => "WORSE".to_string(),
            (v, _) => v.as_str().to_string(),
        };
        [
            self.metric.to_string(),
            value(self.base),
            value(self.head),
            change,
            interval,
            verdict,
        ]
    }
}

fn unit(m: Metric) -> &'static str {
    match m {
        Metric::Latency(_) => "us",
        Metric::Availability => "fraction",
        Metric::Throughput => "requests/s",
        Metric::TimeToRecover => "s",
    }
}

fn format_value(m: Metric, v: f64) -> String {
    match m {
        Metric::Latency(_) => format_us(v),
        Metric::Availability => format!("{:.3} %", v * 100.0),
        Metric::Throughput => format!("{v:.1}/s"),
        Metric::TimeToRecover => format!("{v:.2} s"),
    }
}

fn format_delta(m: Metric, d: f64) -> String {
    let sign = if d < 0.0 { "-" } else { "+" };
    format!("{sign}{}", format_value(m, d.abs()))
}

fn format_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

impl Report {
    fn header(&self) -> [String; 6] {
        [
            "metric".into(),
            "base".into(),
            "head".into(),
            "change".into(),
            format!("{} % interval", self.method.confidence_pct),
            "verdict".into(),
        ]
    }

    fn table(&self, markdown: bool) -> String {
        let mut b = Builder::default();
        b.push_record(self.header());
        for row in &self.metrics {
            b.push_record(row.cells(markdown));
        }
        let mut t = b.build();
        if markdown {
            t.with(Style::markdown());
        } else {
            t.with(Style::rounded());
        }
        t.modify(Columns::new(1..5), Alignment::right());
        t.to_string()
    }

    fn side_line(name: &str, s: &SideSummary) -> String {
        let commits = if s.commits.is_empty() {
            String::new()
        } else {
            format!(", commit {}", s.commits.join(" "))
        };
        format!(
            "{name}: {} run{}, {} requests, {} intervals{commits}",
            s.runs,
            if s.runs == 1 { "" } else { "s" },
            s.requests,
            s.intervals
        )
    }

    fn method_line(&self) -> String {
        let m = &self.method;
        format!(
            "worse = the whole {} % bootstrap interval of head − base lies beyond the noise threshold \
             ({} %; latency changes under {} ms never count; {} resamples, seed {})",
            m.confidence_pct, m.threshold_pct, m.min_latency_change_ms, m.resamples, m.seed
        )
    }

    fn verdict_line(&self) -> String {
        if self.regressions.is_empty() && !self.unconfirmed.is_empty() {
            format!(
                "no confirmed regression ({} unconfirmed: rerun with several runs per side)",
                self.unconfirmed.join(", ")
            )
        } else if self.regressions.is_empty() {
            "no regression".into()
        } else {
            format!("REGRESSION in {}", self.regressions.join(", "))
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&Self::side_line("base", &self.base));
        out.push('\n');
        out.push_str(&Self::side_line("head", &self.head));
        out.push('\n');
        out.push_str(&self.table(false));
        out.push('\n');
        out.push_str(&self.method_line());
        out.push('\n');
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out.push_str(&self.verdict_line());
        out.push('\n');
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### slolab compare: {}\n\n", self.verdict_line());
        out.push_str(&format!(
            "{}  \n{}\n\n",
            Self::side_line("**base**", &self.base),
            Self::side_line("**head**", &self.head)
        ));
        out.push_str(&self.table(true));
        out.push_str(&format!("\n\n_{}_\n", self.method_line()));
        if !self.warnings.is_empty() {
            out.push('\n');
            for w in &self.warnings {
                out.push_str(&format!("- ⚠️ {w}\n"));
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises") + "\n"
    }
}
