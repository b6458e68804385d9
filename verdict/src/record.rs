//! The run record's `experiment` section: the profile, where each stage and
//! fault sat on the load's clock, and the SLO analysis. One type, written by
//! `run` and read by `report` and `compare`, so the three cannot drift apart.

use std::collections::BTreeMap;

use loadgen::Results;
use serde::{Deserialize, Serialize};

/// Key of the section in `Results::extra`: the one place it is spelled.
pub const SECTION_KEY: &str = "experiment";

/// Written by `slolab run` under the top-level `experiment` key of results.json.
/// All times are seconds from the load start (the clock of `Results::timeline`);
/// the unmeasured warm-up happens before 0.
///
/// Lenient on purpose: every field defaults and unknown fields are kept, so a
/// file from an older or newer runner still reads (and writes back whole).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", default)]
pub struct ExperimentSection {
    /// The profile's name (its `name`, or the file stem).
    pub name: String,
    /// The parsed profile, as JSON, so a report can show exactly what ran.
    pub profile: serde_json::Value,
    pub profile_path: String,
    /// The seed actually used (`--seed` overrides the profile's); absent in
    /// files from before it was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
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
    /// Fields this version does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ExperimentSection {
    /// The section of a results file: `None` for a plain load run, an error
    /// when it is there but is not a section.
    pub fn of(results: &Results) -> Result<Option<Self>, serde_json::Error> {
        results
            .extra
            .get(SECTION_KEY)
            .map(Self::deserialize)
            .transpose()
    }

    /// Stores the section in a results file, replacing any there.
    pub fn store(&self, results: &mut Results) -> Result<(), serde_json::Error> {
        results
            .extra
            .insert(SECTION_KEY.to_string(), serde_json::to_value(self)?);
        Ok(())
    }

    /// The stored SLO analysis, when there is one.
    pub fn analysis(&self) -> Option<Result<crate::slo::SloAnalysis, serde_json::Error>> {
        (!self.slo.is_null()).then(|| crate::slo::SloAnalysis::deserialize(&self.slo))
    }
}

/// What the load was sent to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", default)]
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

impl FaultRecord {
    /// What one injection event did, for the fault the plan had at `planned`
    /// (the event's offsets are on the load's clock).
    pub fn injected(planned: &chaos::PlannedFault, event: &chaos::FaultEvent) -> Self {
        Self {
            label: format!("{} {}", event.fault, event.target),
            fault: event.fault.clone(),
            target: event.target.clone(),
            params: serde_json::to_value(&event.params).unwrap_or_default(),
            planned_s: planned.at.as_secs_f64(),
            start_s: event.start.offset_s,
            end_s: event.end.map(|s| s.offset_s),
            error: event.error.clone(),
        }
    }

    /// A planned fault that never went in, and why: the report lists it and the
    /// SLO analysis judges no recovery for it.
    pub fn not_injected(planned: &chaos::PlannedFault, error: String) -> Self {
        let at = planned.at.as_secs_f64();
        let req = &planned.request;
        Self {
            label: format!("{} {}", req.fault, req.target),
            fault: req.fault.clone(),
            target: req.target.clone(),
            params: serde_json::Value::Null,
            planned_s: at,
            start_s: at,
            end_s: None,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results file written by main at 4ab4633 (`slolab run
    /// profiles/nginx-vs-builtin.toml`): the section reads whole, its analysis
    /// too, and it writes back without losing a field.
    #[test]
    fn a_results_file_from_an_earlier_main_reads_and_round_trips() {
        let text = include_str!("../tests/data/results-4ab4633.json");
        let results: Results = serde_json::from_str(text).unwrap();
        let section = ExperimentSection::of(&results).unwrap().unwrap();
        assert_eq!(section.name, "nginx-vs-builtin");
        assert_eq!(section.seed, Some(6));
        assert_eq!(section.target.components.len(), 6, "{:?}", section.target);
        assert_eq!(section.faults.len(), 1);
        assert_eq!(section.faults[0].label, "kill api-3");
        assert!(section.analysis().unwrap().unwrap().met);
        let mut again = results.clone();
        section.store(&mut again).unwrap();
        assert_eq!(again.extra[SECTION_KEY], results.extra[SECTION_KEY]);
    }

    #[test]
    fn unknown_fields_are_kept_and_missing_ones_default() {
        let v = serde_json::json!({ "name": "x", "from_the_future": [1, 2] });
        let s = ExperimentSection::deserialize(&v).unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.seed, None);
        assert!(s.faults.is_empty());
        assert_eq!(
            serde_json::to_value(&s).unwrap()["from_the_future"],
            v["from_the_future"]
        );
    }
}
