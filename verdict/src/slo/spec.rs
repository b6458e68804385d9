//! The `[slo]` table: what the user asks for (availability, latency ceilings,
//! recovery, per-stage targets), parsed and checked once, and written back the same way.

use super::*;

/// Length of the sliding window that decides recovery when the profile says nothing.
pub const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SloError {
    #[error("slo: {0}")]
    Invalid(String),
    #[error("slo: {0}")]
    Results(#[from] ResultsError),
}

pub(crate) fn invalid(msg: impl Into<String>) -> SloError {
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
pub(crate) struct RawSloSpec {
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
pub(crate) struct RawStageSlo {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    availability: Option<String>,
    #[serde(flatten)]
    latency: BTreeMap<String, serde_json::Value>,
}

pub(crate) const SLO_FIELDS: &str =
    "availability, bad, recovery, recovery-window, latency-of, stage, \
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
                        serde_json::Value::String(chaos::duration::format(t.max)),
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
            recovery: s.recovery.map(chaos::duration::format),
            recovery_window: Some(chaos::duration::format(s.recovery_window)),
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

pub(crate) fn parse_latency_map(
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

pub(crate) fn parse_duration(field: &str, s: &str) -> Result<Duration, SloError> {
    let d = chaos::duration::parse(s).map_err(|e| invalid(format!("{field} = {s:?}: {e}")))?;
    if d.is_zero() {
        return Err(invalid(format!("{field} = {s:?}: must be more than zero")));
    }
    Ok(d)
}

pub(crate) fn parse_bad(list: &[String]) -> Result<BadPolicy, SloError> {
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
pub(crate) fn parse_latency_of(s: &str) -> Result<LatencyOf, SloError> {
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

pub(crate) fn format_availability_target(a: f64) -> String {
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

    pub(crate) fn run_objectives(&self) -> Vec<Objective> {
        objectives(self.availability, &self.latency)
    }
}
