//! The experiment plan: a validated profile turned into concrete things to do —
//! the loadgen `LoadPlan`, stage windows on the load clock, the warm-up — and the
//! text `--dry-run` prints so a user sees exactly what a run would do.

use std::fmt::Write as _;
use std::time::Duration;

use loadgen::{LoadPlan, Model, RequestTemplate, Stage, Stop};

use crate::experiment::{Experiment, LoadShape, Request, TRACK_HEADER};
use verdict::record::StageWindow;

/// Everything a run will do, before it does it.
#[derive(Debug, Clone)]
pub struct ExperimentPlan {
    pub name: String,
    pub seed: u64,
    pub warmup: Duration,
    pub stages: Vec<StageWindow>,
    /// The measured load, against `base_url`.
    pub load: LoadPlan,
    pub base_url: String,
}

/// Where the load goes and with what credentials, known once the stack is up.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base_url: String,
    /// Substituted for `{token}` in paths, header values and bodies.
    pub token: Option<String>,
}

impl ExperimentPlan {
    pub fn build(exp: &Experiment, endpoint: &Endpoint) -> Self {
        let load = &exp.load;
        let base = endpoint.base_url.trim_end_matches('/').to_string();
        let requests = load
            .requests
            .iter()
            .map(|r| request_template(r, &base, endpoint.token.as_deref()))
            .collect();
        let (model, arrivals, stop, connections) = match &load.shape {
            LoadShape::Open {
                stages,
                arrivals,
                connections,
            } => (
                Model::Open {
                    stages: stages.clone(),
                },
                *arrivals,
                Stop::Stages,
                *connections,
            ),
            LoadShape::Closed { stop, connections } => (
                Model::Closed {
                    rate_per_worker: None,
                },
                loadgen::Arrivals::default(),
                stop.clone(),
                *connections,
            ),
        };
        let plan = LoadPlan {
            requests,
            model,
            arrivals,
            stop,
            connections,
            timeout: load.timeout,
            keepalive: load.keepalive,
            compression: false,
            follow_redirects: true,
            interval: load.interval,
            threads: 0,
            seed: exp.seed,
            track_header: Some(load.track_header.clone()),
            bad: exp.bad.clone(),
            io: Default::default(),
            transport: Default::default(),
            shard: None,
        };
        Self {
            name: exp.name.clone(),
            seed: exp.seed,
            warmup: load.warmup,
            stages: load.stages.clone(),
            load: plan,
            base_url: base,
        }
    }

    /// The unmeasured warm-up: the same request mix at the first stage's load,
    /// for `warmup`; `None` when it is turned off.
    pub fn warmup_plan(&self) -> Option<LoadPlan> {
        if self.warmup.is_zero() {
            return None;
        }
        let mut plan = self.load.clone();
        plan.seed = self.seed.wrapping_add(1);
        match &mut plan.model {
            Model::Open { stages } => {
                let rate = stages.first().map(|s| s.start_rate).unwrap_or(1.0);
                *stages = vec![Stage::steady(self.warmup, rate)];
                plan.stop = Stop::Stages;
            }
            Model::Closed { .. } => {
                plan.stop = Stop::Duration {
                    duration: self.warmup,
                };
            }
        }
        Some(plan)
    }

    /// The measured load's length when known up front (not for `requests = N`).
    pub fn duration(&self) -> Option<Duration> {
        match &self.load.stop {
            Stop::Requests { .. } => None,
            Stop::Duration { duration } => Some(*duration),
            Stop::Stages => match &self.load.model {
                Model::Open { stages } => Some(stages.iter().map(|s| s.duration).sum()),
                Model::Closed { .. } => None,
            },
        }
    }

    /// The `--dry-run` text: load, stages on the load clock, request mix.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = &self.load;
        let _ = writeln!(out, "experiment {:?} (seed {})", self.name, self.seed);
        let _ = writeln!(out, "target: {}", self.base_url);
        let model = match &p.model {
            Model::Open { .. } => format!(
                "open (arrival rate, {} arrivals; up to {} requests in flight)",
                p.arrivals, p.connections
            ),
            Model::Closed { .. } => format!("closed ({} connections)", p.connections),
        };
        let _ = writeln!(
            out,
            "load: {model}, timeout {}, interval {}, keep-alive {}",
            chaos::duration::format(p.timeout),
            chaos::duration::format(p.interval),
            if p.keepalive { "on" } else { "off" }
        );
        if self.warmup.is_zero() {
            let _ = writeln!(out, "warm-up: none");
        } else {
            let _ = writeln!(
                out,
                "warm-up: {} before t=0, not measured",
                chaos::duration::format(self.warmup)
            );
        }
        let _ = writeln!(out, "\nstages (t = seconds from the load start):");
        for s in &self.stages {
            let what = match (s.start_rate, s.end_rate, s.connections) {
                (Some(a), Some(b), _) if a == b => format!("{a} req/s"),
                (Some(a), Some(b), _) => format!("ramp {a} -> {b} req/s"),
                (_, _, Some(c)) => format!("{c} connections"),
                _ => String::new(),
            };
            let until = if s.end_s.is_finite() {
                format!("{:>7.1}s", s.end_s)
            } else {
                match &p.stop {
                    Stop::Requests { count } => format!("after {count} requests"),
                    _ => "end".into(),
                }
            };
            let _ = writeln!(
                out,
                "  {:>7.1}s .. {until}  {:<12} {what}",
                s.start_s, s.name
            );
        }
        if let Some(d) = self.duration() {
            let _ = writeln!(out, "  total {}", chaos::duration::format(d));
        }
        let total: u64 = p.requests.iter().map(|r| u64::from(r.weight)).sum();
        let _ = writeln!(
            out,
            "\nrequest mix (counted by {}):",
            self.load.track_header.as_deref().unwrap_or(TRACK_HEADER)
        );
        for r in &p.requests {
            let pct = 100.0 * f64::from(r.weight) / total.max(1) as f64;
            let _ = writeln!(out, "  {pct:>5.1}%  {:<6} {}", r.method, r.url);
            for (k, v) in &r.headers {
                let _ = writeln!(out, "                {k}: {v}");
            }
            if let Some(b) = &r.body {
                let _ = writeln!(out, "                body: {b}");
            }
        }
        let bad = &p.bad;
        let _ = writeln!(
            out,
            "\nbad outcomes: transport failures, timeouts{}{}{}",
            if bad.status_5xx { ", 5xx" } else { "" },
            if bad.status_429 { ", 429" } else { "" },
            if bad.status_4xx { ", 4xx" } else { "" },
        );
        out
    }
}

fn request_template(r: &Request, base: &str, token: Option<&str>) -> RequestTemplate {
    let subst = |s: &str| match token {
        Some(t) => s.replace("{token}", t),
        None => s.to_string(),
    };
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), subst(v)))
        .collect();
    if r.body.is_some()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    RequestTemplate {
        weight: r.weight,
        method: r.method.clone(),
        url: format!("{base}{}", subst(&r.path)),
        headers,
        body: r.body.as_deref().map(subst),
    }
}

/// The `--dry-run` text for the `[slo]` table.
pub fn render_slo(spec: Option<&verdict::slo::SloSpec>) -> String {
    let mut out = String::from("\nSLOs:\n");
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        out.push_str("  none (the run is measured and reported, and always exits 0)\n");
        return out;
    };
    let line = |out: &mut String,
                scope: &str,
                availability: Option<f64>,
                latency: &[verdict::slo::LatencyTarget]| {
        if let Some(a) = availability {
            let _ = writeln!(
                out,
                "  {scope:<16} availability >= {}",
                verdict::slo::format_availability(a)
            );
        }
        for t in latency {
            let _ = writeln!(
                out,
                "  {scope:<16} {} <= {}",
                t.key,
                chaos::duration::format(t.max)
            );
        }
    };
    line(&mut out, "whole run", spec.availability, &spec.latency);
    for st in &spec.stages {
        line(
            &mut out,
            &format!("stage {}", st.name),
            st.availability,
            &st.latency,
        );
    }
    if let Some(r) = spec.recovery {
        let _ = writeln!(
            out,
            "  {:<16} time to recover <= {} (sliding window {})",
            "each fault",
            chaos::duration::format(r),
            chaos::duration::format(spec.recovery_window)
        );
    }
    if !spec.latency.is_empty() || spec.stages.iter().any(|s| !s.latency.is_empty()) {
        let of = verdict::slo::latency_of_name(spec.latency_of);
        let judged = match spec.latency_of {
            loadgen::results::LatencyOf::Good => "good responses (errors' latency reported beside)",
            _ => "every response, good or bad",
        };
        let _ = writeln!(out, "  latency-of = {of:?}: latency judged on {judged}");
    }
    out
}
