//! What an analysis finds: objectives met or not, budgets, per-window and per-fault
//! results, the verdict. Serialised into the run record, read back by `report`.

use super::*;

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
