//! Experiment profiles as written: the strict TOML a user writes, parsed so
//! that every mistake — unknown field, wrong type, impossible value — is
//! reported as `FILE:LINE:COL: field: what is wrong`, before anything is started.
//! Every value keeps its span for those messages; [`super::Experiment`] is what
//! the rest of slolab reads.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;

/// A profile as written. Strictness lives here (`deny_unknown_fields`), the
/// cross-field checks in [`Profile::validate`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// Names the results directory; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Seeds the request mix, `{rand:a..b}`, Poisson arrivals and the chaos plan
    /// (`--seed` overrides).
    #[serde(default)]
    pub seed: Option<u64>,
    /// An external target instead of `[stack]` (no faults can be injected into it).
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub stack: Option<Spanned<StackSection>>,
    pub load: LoadSection,
    #[serde(default)]
    pub chaos: Vec<Spanned<ChaosEntry>>,
    #[serde(default)]
    pub slo: Option<Spanned<SloSection>>,
    /// How `slolab capacity` searches this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacitySection>,
}

/// `[load]`: the model, its stages and the request mix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadSection {
    #[serde(default)]
    pub model: LoadModel,
    /// Unmeasured load before the first stage (caches, connection pools, JIT-free
    /// but still cold). `"0s"` turns it off.
    #[serde(default = "default_warmup")]
    pub warmup: Spanned<HumanDuration>,
    /// Per-request timeout, connect included.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<HumanDuration>,
    /// Open model: most requests in flight at once (beyond it sends are late).
    #[serde(default)]
    pub connections: Option<Spanned<usize>>,
    /// Open model: how arrivals are spaced at the stages' rate, `"uniform"`
    /// (evenly; the default) or `"poisson"` (a Poisson process drawn from the seed).
    #[serde(default)]
    pub arrivals: Option<Spanned<loadgen::Arrivals>>,
    /// Timeline bucket width; SLO windows are measured in these buckets.
    #[serde(default = "default_interval")]
    pub interval: Spanned<HumanDuration>,
    #[serde(default = "default_true")]
    pub keepalive: bool,
    /// Response header whose values are counted per interval and drawn over
    /// time: `X-Served-By` (the default) shows how the gateway spread the load
    /// and when an instance dropped out; `X-Cache` shows hits turning to
    /// BYPASS/MISS when the cache is faulted.
    #[serde(default)]
    pub track_header: Option<String>,
    #[serde(rename = "stage", default)]
    pub stages: Vec<Spanned<StageSpec>>,
    #[serde(rename = "request", default)]
    pub requests: Vec<Spanned<RequestSpec>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LoadModel {
    /// Arrival rate (wrk2/k6): requests are scheduled whatever the responses do.
    #[default]
    Open,
    /// hey's model: `connections` workers sending back to back.
    Closed,
}

/// `[[load.stage]]`. Open model: `duration` + `rate` (+ `ramp-to` for a linear
/// ramp). Closed model: `connections` + `duration` or `requests` (hey's -z / -n).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub duration: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub ramp_to: Option<Spanned<f64>>,
    #[serde(default)]
    pub connections: Option<Spanned<usize>>,
    #[serde(default)]
    pub requests: Option<Spanned<u64>>,
}

/// `[[load.request]]`: one entry of the weighted request mix. `path` is joined to
/// the target's base URL; `path`, header values and `body` may use `{seq}`,
/// `{rand:A..B}`, `{uuid}` and `{token}` (the stack's admin JWT).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequestSpec {
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
    #[serde(default = "default_method")]
    pub method: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// `[capacity]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CapacitySection {
    /// First rate probed, req/s.
    #[serde(default)]
    pub start_rate: Option<Spanned<f64>>,
    /// The search never offers more, req/s.
    #[serde(default)]
    pub max_rate: Option<Spanned<f64>>,
    /// Factor between rates while growing (> 1).
    #[serde(default)]
    pub growth: Option<Spanned<f64>>,
    /// Bisection stops when the interval is this narrow, as a fraction (0.05).
    #[serde(default)]
    pub resolution: Option<Spanned<f64>>,
    #[serde(default)]
    pub warmup: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub window: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub confirm: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub cooldown: Option<Spanned<HumanDuration>>,
    /// Instance counts to search (stack profiles), for the scalability fit.
    #[serde(default)]
    pub instances: Option<Spanned<Vec<u32>>>,
}

/// The profile's `[stack]`: the supervisor's own spec, so the profile can say
/// anything `slolab stack up` can.
pub type StackSection = target::stack::StackSpec;
/// One `[[chaos]]` entry: the chaos crate's schedule entry.
pub type ChaosEntry = chaos::schedule::ScheduleEntry;
/// The `[slo]` table: the SLO analysis' own spec.
pub type SloSection = verdict::slo::SloSpec;

fn default_warmup() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(2)))
}
fn default_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(10)))
}
fn default_interval() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(1)))
}
fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_method() -> Spanned<String> {
    Spanned::new(0..0, "GET".to_string())
}
fn default_true() -> bool {
    true
}

/// A duration written as a humantime string (`"20s"`, `"250ms"`, `"1m 30s"`).
/// Parsing inside deserialisation lets toml attach the value's location to the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        chaos::duration::deserialize(d).map(HumanDuration)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        chaos::duration::serialize(&self.0, s)
    }
}

/// A profile mistake, located: `FILE:LINE:COL: FIELD: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--set {set}: {message}")]
    Override { set: String, message: String },
    #[error("{path}:{line}:{col}: {field}: {message}")]
    Invalid {
        path: String,
        line: usize,
        col: usize,
        /// Dotted path of the offending field, e.g. `load.stage[2].rate`.
        field: String,
        message: String,
    },
}
