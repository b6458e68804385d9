//! SLO analysis: the profile's `[slo]` table and the maths that turns a results
//! timeline into verdicts — over the whole run, per stage and per fault window, with
//! error budgets and time to recover. Percentiles always come from merged histograms.
//!
//! Definitions (also shown in the reports):
//! - *Window membership*: an interval `[s, s+d)` belongs to a window `[a, b)` when its
//!   midpoint does, so stages partition the timeline. A window too short to hold a
//!   midpoint (an instantaneous kill) takes the interval that contains `a`.
//! - *Latency objectives* judge the GOOD responses by default (`latency-of = "good"`),
//!   so that fast errors (a 503 in 0.3 ms) never pass for fast service; the same
//!   percentile of the bad responses is reported beside them. `latency-of = "all"`
//!   judges every response. Files without bad-response histograms judge all.
//! - *Time to recover*: `K = ceil(recovery-window / interval)` consecutive intervals
//!   form a sliding window. Starting with the interval that contains the injection, the
//!   first sliding window whose merged counts and histogram meet every run-level
//!   objective marks recovery (0 when the SLO never broke). The timeline cannot place
//!   recovery more finely than its interval (the resolution), so it is reported as a
//!   range: it happened during the interval before that window, i.e. between that
//!   interval's start and the window's start. Both are given from the injection and
//!   from the revert (the fault's end; the injection for a kill). The `recovery`
//!   objective judges the time after the revert — how long the service takes to come
//!   back once the fault is gone, not how long the profile held the fault — by the
//!   upper end of the range, so it is met only when recovery is proven within the
//!   limit. No complete window before the run ended: did not recover.
//! - *Interrupted runs* (Ctrl-C) have no verdict: objectives are measured over what ran
//!   ("so far"), and those that could not be judged are listed, never dropped.
//! - *Error budget* (SRE workbook): allowed bad = (1 − target) × valid; consumed % =
//!   bad / allowed; burn rate = (bad / valid) / (1 − target).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use loadgen::results::{new_histogram, Interval, LatencyOf, Results, ResultsError};
use loadgen::BadPolicy;
use serde::{Deserialize, Serialize};

/// Length of the sliding window that decides recovery when the profile says nothing.
pub const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SloError {
    #[error("slo: {0}")]
    Invalid(String),
    #[error("slo: {0}")]
    Results(#[from] ResultsError),
}

fn invalid(msg: impl Into<String>) -> SloError {
    SloError::Invalid(msg.into())
}

/// The `[slo]` table of a profile.
///
/// ```toml
/// [slo]
/// availability = "99.99%"   # good / valid over the run
/// p95 = "100ms"             # any pNN or pNN.N key: a latency ceiling
/// p99 = "250ms"
/// bad = ["5xx", "429"]      # statuses that count as bad; transport failures always do
/// recovery = "10s"          # each fault: time to recover at most this
/// recovery-window = "5s"    # sliding window that must meet the SLO again
/// latency-of = "good"       # latency objectives judge good responses ("all": every one)
/// [[slo.stage]]             # binding targets for one stage
/// name = "spike"
/// p95 = "300ms"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSloSpec", into = "RawSloSpec")]
pub struct SloSpec {
    /// Availability target as a fraction (0.9999 for "99.99%").
    pub availability: Option<f64>,
    /// Latency ceilings, by ascending percentile.
    pub latency: Vec<LatencyTarget>,
    /// Which statuses count as bad; the runner copies it into the load plan.
    pub bad: BadPolicy,
    pub stages: Vec<StageSlo>,
    /// Each fault must recover within this.
    pub recovery: Option<Duration>,
    pub recovery_window: Duration,
    /// Which responses latency objectives judge: `Good` (default) or `All`.
    pub latency_of: LatencyOf,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self {
            availability: None,
            latency: Vec::new(),
            bad: BadPolicy::default(),
            stages: Vec::new(),
            recovery: None,
            recovery_window: DEFAULT_RECOVERY_WINDOW,
            latency_of: LatencyOf::Good,
        }
    }
}

/// Binding objectives for one named stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSlo {
    pub name: String,
    pub availability: Option<f64>,
    pub latency: Vec<LatencyTarget>,
}

/// `p95 = "100ms"`: the 95th percentile must be at most 100 ms.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyTarget {
    /// The key as written and printed ("p95", "p99.9").
    pub key: String,
    /// 0 < percentile ≤ 100.
    pub percentile: f64,
    pub max: Duration,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawSloSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    availability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bad: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_of: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stage: Vec<RawStageSlo>,
    /// Latency keys; anything else here is an unknown field. (`deny_unknown_fields`
    /// does not combine with `flatten`, so the check is ours.)
    #[serde(flatten)]
    latency: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawStageSlo {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    availability: Option<String>,
    #[serde(flatten)]
    latency: BTreeMap<String, serde_json::Value>,
}

const SLO_FIELDS: &str = "availability, bad, recovery, recovery-window, latency-of, stage, \
     or a latency percentile such as p95";

impl TryFrom<RawSloSpec> for SloSpec {
    type Error = SloError;

    fn try_from(raw: RawSloSpec) -> Result<Self, SloError> {
        let availability = raw
            .availability
            .as_deref()
            .map(parse_availability)
            .transpose()?;
        let latency = parse_latency_map(&raw.latency, SLO_FIELDS)?;
        let bad = match &raw.bad {
            Some(list) => parse_bad(list)?,
            None => BadPolicy::default(),
        };
        let recovery = raw
            .recovery
            .as_deref()
            .map(|s| parse_duration("recovery", s))
            .transpose()?;
        let recovery_window = match raw.recovery_window.as_deref() {
            Some(s) => parse_duration("recovery-window", s)?,
            None => DEFAULT_RECOVERY_WINDOW,
        };
        let latency_of = match raw.latency_of.as_deref() {
            None => LatencyOf::Good,
            Some(s) => parse_latency_of(s)?,
        };
        let mut stages: Vec<StageSlo> = Vec::new();
        for s in raw.stage {
            if s.name.trim().is_empty() {
                return Err(invalid("[[slo.stage]] needs a non-empty `name`"));
            }
            if stages.iter().any(|o| o.name == s.name) {
                return Err(invalid(format!(
                    "[[slo.stage]] `{}` is given twice; merge its targets into one entry",
                    s.name
                )));
            }
            let st = StageSlo {
                availability: s
                    .availability
                    .as_deref()
                    .map(parse_availability)
                    .transpose()?,
                latency: parse_latency_map(
                    &s.latency,
                    "name, availability, or a latency percentile such as p95",
                )?,
                name: s.name,
            };
            if st.availability.is_none() && st.latency.is_empty() {
                return Err(invalid(format!(
                    "[[slo.stage]] `{}` has no targets: add availability or a pNN latency",
                    st.name
                )));
            }
            stages.push(st);
        }
        Ok(SloSpec {
            availability,
            latency,
            bad,
            stages,
            recovery,
            recovery_window,
            latency_of,
        })
    }
}

impl From<SloSpec> for RawSloSpec {
    fn from(s: SloSpec) -> Self {
        let latency_map = |l: &[LatencyTarget]| {
            l.iter()
                .map(|t| {
                    (
                        t.key.clone(),
                        serde_json::Value::String(format_duration(t.max)),
                    )
                })
                .collect()
        };
        let mut bad = Vec::new();
        if s.bad.status_5xx {
            bad.push("5xx".to_string());
        }
        if s.bad.status_4xx {
            bad.push("4xx".to_string());
        }
        if s.bad.status_429 {
            bad.push("429".to_string());
        }
        RawSloSpec {
            availability: s.availability.map(format_availability_target),
            bad: Some(bad),
            recovery: s.recovery.map(format_duration),
            recovery_window: Some(format_duration(s.recovery_window)),
            latency_of: Some(latency_of_name(s.latency_of).to_string()),
            stage: s
                .stages
                .iter()
                .map(|st| RawStageSlo {
                    name: st.name.clone(),
                    availability: st.availability.map(format_availability_target),
                    latency: latency_map(&st.latency),
                })
                .collect(),
            latency: latency_map(&s.latency),
        }
    }
}

/// "99.99%" → 0.9999. The percent sign is required so 0.999 and 99.9 cannot be confused.
pub fn parse_availability(s: &str) -> Result<f64, SloError> {
    let err = || {
        invalid(format!(
            "availability = {s:?}: expected a percentage such as \"99.9%\" (more than 0, at most 100)"
        ))
    };
    let num = s.trim().strip_suffix('%').ok_or_else(err)?.trim();
    let pct: f64 = num.parse().map_err(|_| err())?;
    if !(pct > 0.0 && pct <= 100.0) {
        return Err(err());
    }
    Ok(pct / 100.0)
}

/// "p95" → 95.0, "p99.9" → 99.9; `None` for anything that is not a percentile key.
pub fn parse_percentile_key(key: &str) -> Option<f64> {
    let num = key.strip_prefix('p')?;
    let mut parts = num.split('.');
    let int = parts.next()?;
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let q: f64 = num.parse().ok()?;
    (q > 0.0 && q <= 100.0).then_some(q)
}

fn parse_latency_map(
    map: &BTreeMap<String, serde_json::Value>,
    expected: &str,
) -> Result<Vec<LatencyTarget>, SloError> {
    let mut out = Vec::new();
    for (key, value) in map {
        let Some(percentile) = parse_percentile_key(key) else {
            return Err(invalid(format!(
                "unknown field `{key}`, expected {expected} (pNN with 0 < NN ≤ 100, e.g. p99.9)"
            )));
        };
        let Some(text) = value.as_str() else {
            return Err(invalid(format!(
                "{key} = {value}: expected a duration string such as \"100ms\""
            )));
        };
        let max = parse_duration(key, text)?;
        out.push(LatencyTarget {
            key: key.clone(),
            percentile,
            max,
        });
    }
    out.sort_by(|a, b| a.percentile.total_cmp(&b.percentile));
    Ok(out)
}

fn parse_duration(field: &str, s: &str) -> Result<Duration, SloError> {
    let d = chaos::duration::parse(s).map_err(|e| invalid(format!("{field} = {s:?}: {e}")))?;
    if d.is_zero() {
        return Err(invalid(format!("{field} = {s:?}: must be more than zero")));
    }
    Ok(d)
}

fn parse_bad(list: &[String]) -> Result<BadPolicy, SloError> {
    let mut policy = BadPolicy {
        status_5xx: false,
        status_429: false,
        status_4xx: false,
    };
    for item in list {
        match item.as_str() {
            "5xx" => policy.status_5xx = true,
            "4xx" => policy.status_4xx = true,
            "429" => policy.status_429 = true,
            other => {
                return Err(invalid(format!(
                    "bad = [.., {other:?}, ..]: expected \"5xx\", \"4xx\" or \"429\" \
                     (transport failures and timeouts always count as bad)"
                )))
            }
        }
    }
    Ok(policy)
}

/// `latency-of = "good" | "all"`. Judging a latency objective on the bad responses
/// alone would reward failing slowly, so "bad" is refused.
fn parse_latency_of(s: &str) -> Result<LatencyOf, SloError> {
    match s.trim() {
        "good" => Ok(LatencyOf::Good),
        "all" => Ok(LatencyOf::All),
        other => Err(invalid(format!(
            "latency-of = {other:?}: expected \"good\" (latency objectives judge good \
             responses only, the default) or \"all\" (every response, fast errors included)"
        ))),
    }
}

pub fn latency_of_name(of: LatencyOf) -> &'static str {
    match of {
        LatencyOf::Good => "good",
        LatencyOf::Bad => "bad",
        LatencyOf::All => "all",
    }
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn format_availability_target(a: f64) -> String {
    // Shortest form that round-trips ("99.99%", not "99.99000000000001%").
    let pct = a * 100.0;
    let mut s = format!("{pct:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s}%")
}

impl SloSpec {
    /// Builds a spec from `KEY=VALUE` pairs (`availability=99.9%`, `p95=100ms`),
    /// the form `slolab report --slo` takes.
    pub fn from_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Self, SloError> {
        let mut raw = RawSloSpec {
            availability: None,
            bad: None,
            recovery: None,
            recovery_window: None,
            latency_of: None,
            stage: Vec::new(),
            latency: BTreeMap::new(),
        };
        for pair in pairs {
            let pair = pair.as_ref();
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("{pair:?}: expected KEY=VALUE, e.g. p95=100ms")))?;
            let (k, v) = (k.trim(), v.trim().to_string());
            match k {
                "availability" => raw.availability = Some(v),
                "recovery" => raw.recovery = Some(v),
                "recovery-window" => raw.recovery_window = Some(v),
                "latency-of" => raw.latency_of = Some(v),
                "bad" => raw.bad = Some(v.split(',').map(|s| s.trim().to_string()).collect()),
                _ => {
                    raw.latency
                        .insert(k.to_string(), serde_json::Value::String(v));
                }
            }
        }
        raw.try_into()
    }

    /// True when the spec sets no objective at all.
    pub fn is_empty(&self) -> bool {
        self.availability.is_none()
            && self.latency.is_empty()
            && self.stages.is_empty()
            && self.recovery.is_none()
    }

    /// Every `[[slo.stage]]` must name a stage of the load; call with the stage names.
    pub fn check_stage_names(&self, stage_names: &[&str]) -> Result<(), SloError> {
        for st in &self.stages {
            if !stage_names.contains(&st.name.as_str()) {
                return Err(invalid(format!(
                    "[[slo.stage]] name = {:?} matches no load stage (stages: {})",
                    st.name,
                    stage_names.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn run_objectives(&self) -> Vec<Objective> {
        objectives(self.availability, &self.latency)
    }
}

/// Stages and faults are the run record's own types: the analysis reads what
/// the run wrote, not a copy of it.
pub use crate::record::{FaultRecord, StageWindow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// Target and measured are fractions (0.9999).
    Availability,
    /// Target and measured are milliseconds.
    Latency,
    /// Target and measured are seconds (time to recover).
    Recovery,
}

/// One objective checked over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveResult {
    /// "availability", "p95", "recovery".
    pub objective: String,
    pub kind: ObjectiveKind,
    pub target: f64,
    /// `None`: nothing to measure (no valid requests, no responses, did not recover).
    pub measured: Option<f64>,
    /// `None` when there was nothing to measure.
    pub met: Option<bool>,
    /// Counts towards the verdict (run-level objectives, `[[slo.stage]]` targets,
    /// recovery); the rest are shown for insight only.
    pub binding: bool,
    /// Latency objectives: which responses `measured` covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_of: Option<LatencyOf>,
    /// Latency objectives: the same percentile of the bad responses alone, ms
    /// (`None`: no bad response had a latency). Shown beside, never judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_ms: Option<f64>,
    /// Recovery: the lower end of the range the timeline places recovery in
    /// (`measured` is the upper end), and the interval that bounds it, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_s: Option<f64>,
}

/// Error budget use over a window (SRE workbook definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetUse {
    /// (1 − target) × valid.
    pub allowed_bad: f64,
    pub bad: u64,
    /// bad / allowed × 100; `None` when nothing was allowed (100 % target or no traffic).
    pub consumed_pct: Option<f64>,
    pub remaining_pct: Option<f64>,
    /// (bad / valid) / (1 − target): 1 spends the budget exactly over the window.
    pub burn_rate: Option<f64>,
}

/// Measurements and objectives over one span of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAnalysis {
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Timeline intervals merged for this window.
    pub intervals: usize,
    pub requests: u64,
    pub good: u64,
    pub bad: u64,
    /// good / (good + bad); `None` without valid requests.
    pub availability: Option<f64>,
    /// From the merged latency histogram, milliseconds.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub objectives: Vec<ObjectiveResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetUse>,
    /// Every objective met (`None`: none could be measured).
    pub met: Option<bool>,
}

/// One fault: while it was in, the recovery period after it, and time to recover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultAnalysis {
    pub label: String,
    pub start_s: f64,
    #[serde(default)]
    pub end_s: Option<f64>,
    /// From injection to revert (or the interval of an instantaneous fault).
    pub during: WindowAnalysis,
    /// The recovery window right after the revert.
    pub after: WindowAnalysis,
    /// Seconds from injection to the start of the first sliding window that meets
    /// the SLO (the upper end of the range recovery lies in); `None`: did not
    /// recover before the run ended.
    pub time_to_recover_s: Option<f64>,
    /// The lower end of that range: the start of the interval before that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_min_s: Option<f64>,
    /// Same moment, measured from the revert (0 when it recovered before the revert).
    #[serde(default)]
    pub recovered_after_revert_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_after_revert_min_s: Option<f64>,
    /// Width of the timeline intervals recovery was located with, seconds (0: unknown,
    /// a file from before it was recorded).
    #[serde(default)]
    pub resolution_s: f64,
    /// The `recovery` objective, when the spec has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<ObjectiveResult>,
}

/// What the run concluded. An interrupted run concludes nothing: its numbers cover
/// only what ran, and some objectives could not be judged at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    NotMet,
    Interrupted,
}

/// The whole answer: the verdict, and where the SLO held or broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloAnalysis {
    /// Every binding objective met, on a run that completed (false when interrupted).
    pub met: bool,
    /// `met`, `not_met` or `interrupted`; absent in files from before it was written
    /// (read them with [`SloAnalysis::verdict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// One line per binding objective that failed, for the verdict line (in an
    /// interrupted run: failed so far).
    pub failures: Vec<String>,
    /// Objectives an interrupted run could not judge (a stage never reached, a
    /// fault without a full recovery window after it), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unjudged: Vec<String>,
    pub run: WindowAnalysis,
    pub stages: Vec<WindowAnalysis>,
    pub faults: Vec<FaultAnalysis>,
    /// Sliding-window length used for time to recover, seconds.
    pub recovery_window_s: f64,
    /// Caveats the reader must know (bad-outcome policy mismatch, no traffic, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl SloAnalysis {
    pub fn verdict(&self) -> Verdict {
        match self.verdict {
            Some(v) => v,
            None if self.met => Verdict::Met,
            None => Verdict::NotMet,
        }
    }
}

#[derive(Debug, Clone)]
enum Objective {
    Availability(f64),
    Latency(LatencyTarget),
}

fn objectives(availability: Option<f64>, latency: &[LatencyTarget]) -> Vec<Objective> {
    availability
        .map(Objective::Availability)
        .into_iter()
        .chain(latency.iter().cloned().map(Objective::Latency))
        .collect()
}

/// Counts and merged histogram of a set of intervals.
struct WindowStats {
    intervals: usize,
    requests: u64,
    good: u64,
    bad: u64,
    /// The judged responses (good or all, per `latency-of`).
    latency: Histogram<u64>,
    latency_of: LatencyOf,
    /// The bad responses alone.
    bad_latency: Histogram<u64>,
}

/// Each interval's histograms, decoded once: the judged responses and the bad ones.
struct Histograms {
    judged: Vec<Histogram<u64>>,
    bad: Vec<Histogram<u64>>,
    of: LatencyOf,
}

impl Histograms {
    fn decode(timeline: &[Interval], of: LatencyOf) -> Result<Self, SloError> {
        let each = |of| {
            timeline
                .iter()
                .map(|iv| iv.latency_histogram(of))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            judged: each(of)?,
            bad: each(LatencyOf::Bad)?,
            of,
        })
    }
}

impl WindowStats {
    fn merge(timeline: &[Interval], hists: &Histograms, idx: &[usize]) -> Self {
        let mut s = WindowStats {
            intervals: idx.len(),
            requests: 0,
            good: 0,
            bad: 0,
            latency: new_histogram(),
            latency_of: hists.of,
            bad_latency: new_histogram(),
        };
        // Same bounds everywhere (new_histogram); an out-of-range value cannot
        // occur, and auto-resize covers foreign files.
        s.latency.auto(true);
        s.bad_latency.auto(true);
        for &i in idx {
            let iv = &timeline[i];
            s.requests += iv.requests;
            s.good += iv.good;
            s.bad += iv.bad;
            let _ = s.latency.add(&hists.judged[i]);
            let _ = s.bad_latency.add(&hists.bad[i]);
        }
        s
    }

    fn availability(&self) -> Option<f64> {
        let valid = self.good + self.bad;
        (valid > 0).then(|| self.good as f64 / valid as f64)
    }

    fn percentile_ms(&self, q: f64) -> Option<f64> {
        percentile_ms(&self.latency, q)
    }

    fn check(&self, o: &Objective, binding: bool) -> ObjectiveResult {
        match o {
            Objective::Availability(target) => {
                let measured = self.availability();
                ObjectiveResult {
                    objective: "availability".into(),
                    kind: ObjectiveKind::Availability,
                    target: *target,
                    measured,
                    met: measured.map(|m| m >= *target),
                    binding,
                    latency_of: None,
                    bad_ms: None,
                    measured_min: None,
                    resolution_s: None,
                }
            }
            Objective::Latency(t) => {
                let measured = self.percentile_ms(t.percentile);
                let target = t.max.as_secs_f64() * 1e3;
                ObjectiveResult {
                    objective: t.key.clone(),
                    kind: ObjectiveKind::Latency,
                    target,
                    measured,
                    met: measured.map(|m| m <= target),
                    binding,
                    latency_of: Some(self.latency_of),
                    bad_ms: percentile_ms(&self.bad_latency, t.percentile),
                    measured_min: None,
                    resolution_s: None,
                }
            }
        }
    }

    fn meets_all(&self, objectives: &[Objective]) -> bool {
        self.good + self.bad > 0
            && objectives
                .iter()
                .all(|o| self.check(o, false).met == Some(true))
    }

    fn budget(&self, target: Option<f64>) -> Option<BudgetUse> {
        let target = target?;
        let valid = self.good + self.bad;
        let allowed_bad = (1.0 - target) * valid as f64;
        let consumed_pct = (allowed_bad > 0.0).then(|| self.bad as f64 / allowed_bad * 100.0);
        Some(BudgetUse {
            allowed_bad,
            bad: self.bad,
            consumed_pct,
            remaining_pct: consumed_pct.map(|c| 100.0 - c),
            burn_rate: (valid > 0 && target < 1.0)
                .then(|| (self.bad as f64 / valid as f64) / (1.0 - target)),
        })
    }

    fn analysis(
        &self,
        label: &str,
        start_s: f64,
        end_s: f64,
        checks: Vec<ObjectiveResult>,
        availability_target: Option<f64>,
    ) -> WindowAnalysis {
        let met = if checks.iter().any(|c| c.met == Some(false)) {
            Some(false)
        } else if checks.is_empty() || checks.iter().any(|c| c.met.is_none()) {
            None
        } else {
            Some(true)
        };
        WindowAnalysis {
            label: label.to_string(),
            start_s,
            end_s,
            intervals: self.intervals,
            requests: self.requests,
            good: self.good,
            bad: self.bad,
            availability: self.availability(),
            p50_ms: self.percentile_ms(50.0),
            p95_ms: self.percentile_ms(95.0),
            p99_ms: self.percentile_ms(99.0),
            objectives: checks,
            budget: self.budget(availability_target),
            met,
        }
    }
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q / 100.0) as f64 / 1e3)
}

/// Seconds of `iv` that the run covered: the full width, except for the last
/// interval, which the run usually ends partway through (`run_s` is the run's
/// `run.duration_s`). Rates per interval divide by this; dividing by the width
/// makes the last point of every run dip toward zero, which reads as an outage.
pub fn covered_s(iv: &Interval, run_s: f64) -> f64 {
    let covered = (run_s - iv.start_s).min(iv.duration_s);
    // A run that ends before its own timeline (a file from another writer)
    // keeps the nominal width rather than a rate over a near-zero divisor.
    if covered > 0.0 {
        covered
    } else {
        iv.duration_s
    }
}

/// Intervals of `[a, b)` by midpoint; the one containing `a` when none qualifies.
fn window_indices(timeline: &[Interval], a: f64, b: f64) -> Vec<usize> {
    let by_mid: Vec<usize> = timeline
        .iter()
        .enumerate()
        .filter(|(_, iv)| {
            let mid = iv.start_s + iv.duration_s / 2.0;
            mid >= a && mid < b
        })
        .map(|(i, _)| i)
        .collect();
    if !by_mid.is_empty() {
        return by_mid;
    }
    timeline
        .iter()
        .position(|iv| iv.start_s <= a && a < iv.start_s + iv.duration_s)
        .into_iter()
        .collect()
}

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
                format_duration(spec.recovery_window)
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
struct Recovered {
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
fn recovery_point(
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

fn collect_failures(checks: &[ObjectiveResult], scope: &str, failures: &mut Vec<String>) {
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

/// How reports print a target or a measurement of this kind.
pub fn format_value(kind: ObjectiveKind, v: f64) -> String {
    match kind {
        ObjectiveKind::Availability => format_availability(v),
        ObjectiveKind::Latency => format_ms(v),
        ObjectiveKind::Recovery => format!("{v:.1} s"),
    }
}

/// 0.99991 → "99.991%": enough digits to tell 99.99 % from 99.9 %, no more.
pub fn format_availability(a: f64) -> String {
    let pct = a * 100.0;
    if pct >= 100.0 {
        "100%".into()
    } else if pct >= 99.0 {
        format!("{:.3}%", ((pct * 1000.0) + 1e-6).floor() / 1000.0)
    } else {
        format!("{:.2}%", ((pct * 100.0) + 1e-6).floor() / 100.0)
    }
}

pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

impl fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectiveKind::Availability => "availability",
            ObjectiveKind::Latency => "latency",
            ObjectiveKind::Recovery => "recovery",
        })
    }
}

#[cfg(test)]
mod tests {
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
        let e = spec_err(
            "[[stage]]\nname = \"a\"\np95 = \"1s\"\n[[stage]]\nname = \"a\"\np99 = \"1s\"",
        );
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
}
