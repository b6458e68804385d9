//! The `experiment` section an experiment adds to the loadgen results file: the
//! profile, where each stage and fault sat on the load's clock, and the SLO
//! analysis — everything `slolab report` needs to redraw a run without rerunning it.

use serde::{Deserialize, Serialize};

/// Key of the section in `Results::extra`.
pub const SECTION_KEY: &str = "experiment";

/// Written by `slolab run` under the top-level `experiment` key of results.json.
/// All times are seconds from the load start (the clock of `Results::timeline`);
/// the unmeasured warm-up happens before 0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub struct ExperimentSection {
    /// The profile's name (its `name`, or the file stem).
    pub name: String,
    /// The parsed profile, as JSON, so a report can show exactly what ran.
    pub profile: serde_json::Value,
    pub profile_path: String,
    /// The seed actually used (`--seed` overrides the profile's).
    pub seed: u64,
    /// Length of the unmeasured warm-up before the load clock started.
    pub warmup_s: f64,
    /// What was under load: the bundled stack (and its shape) or an external URL.
    pub target: TargetInfo,
    pub stages: Vec<StageWindow>,
    /// Every fault the chaos plan injected, in injection order.
    pub faults: Vec<FaultRecord>,
    /// The SLO analysis (`crate::slo::SloAnalysis` serialised); `null` when the
    /// run was too short to analyse.
    #[serde(default)]
    pub slo: serde_json::Value,
    /// True when Ctrl-C ended the run early; the numbers cover what ran.
    pub interrupted: bool,
}

/// What the load was sent to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub struct TargetInfo {
    /// Base URL the request paths were joined to.
    pub url: String,
    /// The `[stack]` table as JSON when slolab started the stack; `null` for `url = ...`.
    #[serde(default)]
    pub stack: serde_json::Value,
    /// Component names of the started stack (`gateway`, `api-1`, ..., `redis`, `postgres`).
    #[serde(default)]
    pub components: Vec<String>,
}

/// One load stage on the load clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub struct StageWindow {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Open model: requests/s at the start and end of the stage (equal: steady).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_rate: Option<f64>,
    /// Closed model: concurrent connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

/// One injected fault on the load clock: from injection to revert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub struct FaultRecord {
    /// Short label for tables and chart shading, e.g. `kill api-2`.
    pub label: String,
    /// The fault's kind (`kill`, `latency`, ...).
    pub fault: String,
    /// The component it hit (a concrete name, after `api-random` was resolved).
    pub target: String,
    /// The fault's parameters as the profile gave them (latency, toxicity, ...).
    #[serde(default)]
    pub params: serde_json::Value,
    /// When the plan scheduled it and when it actually went in.
    pub planned_s: f64,
    pub start_s: f64,
    /// When it was reverted; `None` for faults with nothing to revert (kill) or
    /// a run that ended before the revert.
    #[serde(default)]
    pub end_s: Option<f64>,
    /// Set when the injection failed; the run goes on and the report says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
