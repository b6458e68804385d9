//! Experiment profiles: the strict TOML a user writes, parsed so that every
//! mistake — unknown field, wrong type, impossible value — is reported as
//! `FILE:LINE:COL: field: what is wrong`, before anything is started.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;
use verdict::record::StageWindow;

/// A profile as written. Strictness lives here (`deny_unknown_fields`), the
/// cross-field checks in [`Profile::validate`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// Names the results directory; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Seeds the request mix, `{rand:a..b}` and the chaos plan (`--seed` overrides).
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

/// A profile that parsed and passed every check, with the text it came from so
/// later checks (against the chaos plan) can still point at lines.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub path: PathBuf,
    pub text: String,
    pub profile: Profile,
    /// The load as validation proved it: what the planner builds from.
    pub shape: LoadShape,
    /// The keys the `[stack]` table sets itself, so "did the user set the
    /// port?" is a field, not a re-read of the text (the parsed `StackSection` fills defaults).
    stack_keys: Vec<String>,
}

/// Seed used when neither `--seed` nor the profile gives one, so that runs of
/// the same profile are comparable by default.
pub const DEFAULT_SEED: u64 = 1;

/// Open model's in-flight cap when the profile gives none.
pub const DEFAULT_OPEN_CONNECTIONS: usize = 100;

/// A load model with exactly the fields it needs, produced by validation so
/// that nothing downstream meets a stage without its rate or its stop.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadShape {
    /// Open model: stages of offered rate, at most `connections` in flight.
    Open {
        stages: Vec<loadgen::Stage>,
        connections: usize,
    },
    /// Closed model: `connections` workers until `stop`.
    Closed {
        stop: loadgen::Stop,
        connections: usize,
    },
}

impl LoadedProfile {
    pub fn read(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<Self, ProfileError> {
        let profile: Profile = toml::from_str(&text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            Located::new(path, &text).error(span, None, e.message().trim())
        })?;
        let shape = profile.validate(&Located::new(path, &text))?;
        let stack_keys = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| Some(t.get("stack")?.as_table()?.keys().cloned().collect()))
            .unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            text,
            profile,
            shape,
            stack_keys,
        })
    }

    /// Applies `--set FIELD=VALUE` overrides (`stack.gateway=builtin`,
    /// `load.stage[1].duration=5s`; arrays of tables counted from 1 as in error
    /// messages) and checks the result as strictly as the file. VALUE is read as
    /// TOML, else taken as a string.
    pub fn with_overrides(self, sets: &[String]) -> Result<Self, ProfileError> {
        if sets.is_empty() {
            return Ok(self);
        }
        let mut doc: toml::Table = toml::from_str(&self.text).expect("parsed before");
        for set in sets {
            let bad = |message: String| ProfileError::Override {
                set: set.clone(),
                message,
            };
            let (field, value) = set
                .split_once('=')
                .ok_or_else(|| bad("expected FIELD=VALUE".into()))?;
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            set_field(&mut doc, field.trim(), value).map_err(bad)?;
        }
        let text = toml::to_string(&doc).expect("a table serialises");
        let path = PathBuf::from(format!("{} (with --set)", self.path.display()));
        // Lines of the regenerated text would mislead; name the overrides instead.
        let mut loaded = Self::parse(&path, text).map_err(|e| match e {
            ProfileError::Invalid { field, message, .. } => ProfileError::Override {
                set: sets.join(" --set "),
                message: format!("{field}: {message}"),
            },
            other => other,
        })?;
        loaded.path = self.path;
        Ok(loaded)
    }

    /// True when the profile's `[stack]` table sets `key` itself (rather than
    /// leaving it to the supervisor's default).
    pub fn stack_sets(&self, key: &str) -> bool {
        self.stack_keys.iter().any(|k| k == key)
    }

    /// The seed a run uses: `--seed`, else the profile's, else [`DEFAULT_SEED`].
    pub fn seed(&self, flag: Option<u64>) -> u64 {
        flag.or(self.profile.seed).unwrap_or(DEFAULT_SEED)
    }

    /// The profile's name: `name`, else the file stem.
    pub fn name(&self) -> String {
        self.profile.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "profile".into())
        })
    }

    pub fn locate(&self) -> Located<'_> {
        Located::new(&self.path, &self.text)
    }
}

/// Sets `a.b[2].c` (1-based array index) in a TOML document, creating tables
/// on the way but never array entries.
fn set_field(doc: &mut toml::Table, field: &str, value: toml::Value) -> Result<(), String> {
    let segments: Vec<&str> = field.split('.').collect();
    let mut table = doc;
    for (i, seg) in segments.iter().enumerate() {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => {
                let n: usize = rest
                    .strip_suffix(']')
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("bad index in `{seg}` (write e.g. stage[1])"))?;
                (k, Some(n))
            }
            None => (*seg, None),
        };
        let last = i + 1 == segments.len();
        if last && index.is_none() {
            table.insert(key.to_string(), value);
            return Ok(());
        }
        let entry = table
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let next = match (entry, index) {
            (toml::Value::Array(items), Some(n)) => {
                let len = items.len();
                items
                    .get_mut(n - 1)
                    .ok_or_else(|| format!("`{key}` has {len} entries, not {n}"))?
            }
            (v, None) => v,
            (_, Some(_)) => return Err(format!("`{key}` is not an array of tables")),
        };
        if last {
            *next = value;
            return Ok(());
        }
        table = next
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    Ok(())
}

/// Turns byte spans of one profile's text into located errors.
pub struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Located<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// An error at `span`. `field` names the field when the caller knows it;
    /// otherwise it is read off the text (the table header and key at the span).
    pub fn error(&self, span: Range<usize>, field: Option<&str>, message: &str) -> ProfileError {
        // Errors raised by a whole table's deserialiser (e.g. `[slo]`) carry the
        // table's span; point at the key the message names when it is in there.
        let span = refine_to_key(self.text, span, message);
        let (line, col) = line_col(self.text, span.start);
        let field = field
            .map(str::to_string)
            .unwrap_or_else(|| field_at(self.text, span.start));
        // Library errors often start with their own scope ("slo: ..."); the
        // field path already says it.
        let mut message = message;
        for seg in field.split('.') {
            message = message.strip_prefix(&format!("{seg}: ")).unwrap_or(message);
        }
        ProfileError::Invalid {
            path: self.path.display().to_string(),
            line,
            col,
            field,
            message: message.to_string(),
        }
    }
}

/// Narrows a table-wide span to the `key = ...` line of a key the message names
/// (in backticks, or as `key = "value"`), when exactly that key is in the table.
fn refine_to_key(text: &str, span: Range<usize>, message: &str) -> Range<usize> {
    let end = span.end.min(text.len());
    if span.start >= end {
        return span;
    }
    let mut candidates: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    candidates.extend(
        message
            .split(" = ")
            .next()
            .and_then(|s| s.rsplit([' ', ':']).next()),
    );
    let mut pos = span.start;
    for line in text[span.start..end].split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if candidates.iter().any(|c| !c.is_empty() && *c == key) {
            let indent = line.len() - line.trim_start().len();
            return start + indent..start + indent + key.len();
        }
    }
    span
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted path of the field at a byte offset, read off the text: the last
/// table header before it (arrays of tables indexed from 1, as users count) and
/// the key of the `key = value` line it sits on.
pub fn field_at(text: &str, offset: usize) -> String {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let mut header = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut key: Option<String> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        if start > offset {
            break;
        }
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            *n += 1;
            header = format!("{name}[{n}]");
            key = None;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = name.trim().to_string();
            key = None;
        } else if let Some(eq) = line.find('=') {
            let k = line[..eq].trim();
            if !k.is_empty() && !k.starts_with('#') && !k.contains(['"', '{', ',']) {
                key = Some(k.to_string());
            }
        }
    }
    match (header.is_empty(), key) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{header}.{k}"),
        (_, None) if header.is_empty() => "(top level)".into(),
        (_, None) => header,
    }
}

impl Profile {
    /// Stage windows on the load clock. A closed run stopped by a request count has
    /// an open end (`f64::INFINITY`) until the run has measured it.
    pub fn stage_windows(&self) -> Vec<StageWindow> {
        let mut t = 0.0;
        self.load
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.get_ref();
                let len = s
                    .duration
                    .as_ref()
                    .map(|d| d.get_ref().0.as_secs_f64())
                    .unwrap_or(f64::INFINITY);
                let w = StageWindow {
                    name: s.name.clone().unwrap_or_else(|| format!("stage-{}", i + 1)),
                    start_s: t,
                    end_s: t + len,
                    start_rate: s.rate.as_ref().map(|r| *r.get_ref()),
                    end_rate: s.ramp_to.as_ref().or(s.rate.as_ref()).map(|r| *r.get_ref()),
                    connections: s.connections.as_ref().map(|c| *c.get_ref()),
                };
                t += len;
                w
            })
            .collect()
    }

    /// Cross-field and range checks serde cannot express, and the load's shape
    /// they prove. Chaos targets and `at` times are checked by building the
    /// chaos plan.
    pub fn validate(&self, at: &Located<'_>) -> Result<LoadShape, ProfileError> {
        match (&self.url, &self.stack) {
            (Some(url), Some(_)) => {
                return Err(at.error(
                    url.span(),
                    Some("url"),
                    "give either `url` (an external target) or `[stack]`, not both",
                ))
            }
            (Some(url), None) => check_url(url, at)?,
            (None, _) => {}
        }
        if self.url.is_some() {
            if let Some(first) = self.chaos.first() {
                return Err(at.error(
                    first.span(),
                    Some("chaos"),
                    "faults need the bundled stack: an external `url` target has no components to inject into; use `[stack]`",
                ));
            }
        }
        let shape = self.load.validate(at)?;
        if self.stack.is_some() {
            let seed = self.seed.unwrap_or(DEFAULT_SEED);
            self.chaos_plan(seed, &self.component_names(), at)?;
        }
        if let Some(slo) = &self.slo {
            let names: Vec<String> = self.stage_windows().into_iter().map(|w| w.name).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            slo.get_ref()
                .check_stage_names(&names)
                .map_err(|e| at.error(slo.span(), Some("slo.stage"), &e.to_string()))?;
        }
        if self.url.is_some() {
            for r in &self.load.requests {
                let r = r.get_ref();
                let uses_token = r.path.get_ref().contains("{token}")
                    || r.body.as_deref().is_some_and(|b| b.contains("{token}"))
                    || r.headers.values().any(|v| v.contains("{token}"));
                if uses_token {
                    return Err(at.error(
                        r.path.span(),
                        Some("load.request"),
                        "`{token}` is the bundled stack's admin token; an external `url` target has none (write the token itself)",
                    ));
                }
            }
        }
        Ok(shape)
    }

    /// The components the profile's stack will have, by the supervisor's names:
    /// what `[[chaos]]` targets may name.
    pub fn component_names(&self) -> Vec<String> {
        self.stack
            .as_ref()
            .map(|s| s.get_ref().component_names())
            .unwrap_or_default()
    }

    /// The `[[chaos]]` entries expanded with `seed` into a concrete plan over
    /// `names`, every entry checked (fault, parameters, target, `at` within the
    /// load) and located in the file when wrong.
    pub fn chaos_plan(
        &self,
        seed: u64,
        names: &[String],
        at: &Located<'_>,
    ) -> Result<chaos::Plan, ProfileError> {
        self.chaos_plan_within(seed, names, self.load_duration(), at)
    }

    /// [`Self::chaos_plan`] over a given load length (`chaos plan --duration`).
    pub fn chaos_plan_within(
        &self,
        seed: u64,
        names: &[String],
        total: Option<Duration>,
        at: &Located<'_>,
    ) -> Result<chaos::Plan, ProfileError> {
        let entries: Vec<ChaosEntry> = self.chaos.iter().map(|e| e.get_ref().clone()).collect();
        for (i, entry) in self.chaos.iter().enumerate() {
            if let (Some(t), Some(total)) = (entry.get_ref().at, total) {
                if t >= total {
                    return Err(at.error(
                        entry.span(),
                        Some(&format!("chaos[{}].at", i + 1)),
                        &format!(
                            "`at` = {} is not before the end of the load ({}): the fault would never fire",
                            chaos::duration::format(t),
                            chaos::duration::format(total)
                        ),
                    ));
                }
            }
        }
        let total = chaos::Plan::horizon(total);
        chaos::Plan::expand(&entries, seed, total, names).map_err(|e| {
            let chaos::ScheduleError::Entry { index, reason, .. } = &e;
            let span = self
                .chaos
                .get(index.saturating_sub(1))
                .map(|s| s.span())
                .unwrap_or(0..0);
            // Point at the key the problem is about when the reason says which.
            let first_word = reason.split_whitespace().next().unwrap_or("");
            let key = if reason.contains("component") {
                "target"
            } else if reason.contains("fault `") {
                "fault"
            } else if ["toxicity", "probability", "latency", "jitter", "every"]
                .contains(&first_word)
            {
                first_word
            } else {
                ""
            };
            let span = refine_to_key(at.text, span, &format!("`{key}`"));
            let field = if key.is_empty() {
                format!("chaos[{index}]")
            } else {
                format!("chaos[{index}].{key}")
            };
            at.error(span, Some(&field), reason)
        })
    }

    /// Which outcomes count as bad: the `[slo]` table's, else the default.
    pub fn bad_policy(&self) -> loadgen::BadPolicy {
        self.slo
            .as_ref()
            .map(|s| s.get_ref().bad.clone())
            .unwrap_or_default()
    }

    /// Total measured load duration when it is known up front (stages with a
    /// duration); `None` for a closed run stopped by a request count.
    pub fn load_duration(&self) -> Option<Duration> {
        let mut total = Duration::ZERO;
        for s in &self.load.stages {
            total += s.get_ref().duration.as_ref()?.get_ref().0;
        }
        Some(total)
    }
}

fn check_url(url: &Spanned<String>, at: &Located<'_>) -> Result<(), ProfileError> {
    let u = url.get_ref();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(at.error(
            url.span(),
            Some("url"),
            &format!("{u:?} is not an http:// or https:// URL with a host"),
        )),
    }
}

impl LoadSection {
    fn validate(&self, at: &Located<'_>) -> Result<LoadShape, ProfileError> {
        if self.stages.is_empty() {
            return Err(at.error(
                0..0,
                Some("load.stage"),
                "no `[[load.stage]]`: give at least one stage (open: duration + rate; closed: connections + duration or requests)",
            ));
        }
        if self.requests.is_empty() {
            return Err(at.error(
                0..0,
                Some("load.request"),
                "no `[[load.request]]`: give at least one request (e.g. path = \"/health\")",
            ));
        }
        if self.timeout.get_ref().0.is_zero() {
            return Err(at.error(
                self.timeout.span(),
                Some("load.timeout"),
                "must be more than 0",
            ));
        }
        if self.interval.get_ref().0 < Duration::from_millis(100) {
            return Err(at.error(
                self.interval.span(),
                Some("load.interval"),
                "must be at least 100ms",
            ));
        }
        if let Some(c) = &self.connections {
            if *c.get_ref() == 0 {
                return Err(at.error(c.span(), Some("load.connections"), "must be at least 1"));
            }
            if self.model == LoadModel::Closed {
                return Err(at.error(
                    c.span(),
                    Some("load.connections"),
                    "closed model: give `connections` on the stage",
                ));
            }
        }
        if self.model == LoadModel::Closed && self.stages.len() > 1 {
            return Err(at.error(
                self.stages[1].span(),
                Some("load.stage[2]"),
                "the closed model runs one stage (hey's -c with -n or -z); use model = \"open\" for staged load",
            ));
        }
        let stage = |i: usize| (self.stages[i].get_ref(), i + 1, self.stages[i].span());
        let shape = match self.model {
            LoadModel::Open => LoadShape::Open {
                stages: (0..self.stages.len())
                    .map(|i| {
                        let (s, n, span) = stage(i);
                        s.validate_open(n, span, at)
                    })
                    .collect::<Result<_, _>>()?,
                connections: self
                    .connections
                    .as_ref()
                    .map(|c| *c.get_ref())
                    .unwrap_or(DEFAULT_OPEN_CONNECTIONS),
            },
            LoadModel::Closed => {
                let (s, n, span) = stage(0);
                let (stop, connections) = s.validate_closed(n, span, at)?;
                LoadShape::Closed { stop, connections }
            }
        };
        if self
            .requests
            .iter()
            .all(|r| *r.get_ref().weight.get_ref() == 0)
        {
            let first = &self.requests[0];
            return Err(at.error(
                first.get_ref().weight.span(),
                Some("load.request[1].weight"),
                "every request has weight 0: at least one must be more than 0",
            ));
        }
        for (i, r) in self.requests.iter().enumerate() {
            r.get_ref().validate(i + 1, at)?;
        }
        Ok(shape)
    }
}

impl StageSpec {
    /// Either model: a stage's duration, when given, is more than zero.
    fn check_duration(&self, e: &StageErrors<'_, '_>) -> Result<(), ProfileError> {
        match &self.duration {
            Some(d) if d.get_ref().0.is_zero() => {
                Err(e.at(d.span(), "duration", "must be more than 0"))
            }
            _ => Ok(()),
        }
    }

    /// An open-model stage: a duration and a rate (and perhaps a ramp).
    fn validate_open(
        &self,
        n: usize,
        span: Range<usize>,
        at: &Located<'_>,
    ) -> Result<loadgen::Stage, ProfileError> {
        let e = StageErrors { n, at };
        self.check_duration(&e)?;
        let Some(d) = &self.duration else {
            return Err(e.at(span, "duration", "open-model stage needs a `duration`"));
        };
        let Some(rate) = &self.rate else {
            return Err(e.at(
                span,
                "rate",
                "open-model stage needs a `rate` (requests per second)",
            ));
        };
        for (name, r) in [("rate", Some(rate)), ("ramp-to", self.ramp_to.as_ref())] {
            if let Some(r) = r {
                let v = *r.get_ref();
                if !(v.is_finite() && v > 0.0) {
                    return Err(e.at(
                        r.span(),
                        name,
                        &format!("must be more than 0 requests per second (got {v})"),
                    ));
                }
            }
        }
        let closed_only = "only for the closed model (model = \"closed\")";
        e.forbid(
            "connections",
            self.connections.as_ref().map(|c| c.span()),
            closed_only,
        )?;
        e.forbid(
            "requests",
            self.requests.as_ref().map(|c| c.span()),
            closed_only,
        )?;
        let start_rate = *rate.get_ref();
        Ok(loadgen::Stage {
            duration: d.get_ref().0,
            start_rate,
            end_rate: self
                .ramp_to
                .as_ref()
                .map(|r| *r.get_ref())
                .unwrap_or(start_rate),
        })
    }

    /// The closed model's one stage: connections, and requests or a duration.
    fn validate_closed(
        &self,
        n: usize,
        span: Range<usize>,
        at: &Located<'_>,
    ) -> Result<(loadgen::Stop, usize), ProfileError> {
        let e = StageErrors { n, at };
        self.check_duration(&e)?;
        let Some(c) = &self.connections else {
            return Err(e.at(
                span,
                "connections",
                "closed-model stage needs `connections`",
            ));
        };
        if *c.get_ref() == 0 {
            return Err(e.at(c.span(), "connections", "must be at least 1"));
        }
        let stop = match (&self.duration, &self.requests) {
            (None, None) => {
                return Err(e.at(
                    span,
                    "requests",
                    "closed-model stage needs `requests` (hey's -n) or `duration` (hey's -z)",
                ))
            }
            (Some(d), Some(_)) => {
                return Err(e.at(
                    d.span(),
                    "duration",
                    "give `requests` or `duration`, not both",
                ))
            }
            (None, Some(r)) => {
                if *r.get_ref() < *c.get_ref() as u64 {
                    return Err(e.at(r.span(), "requests", &format!("{} requests cannot keep {} connections busy: requests must be at least connections (as hey's -n >= -c)", r.get_ref(), c.get_ref())));
                }
                loadgen::Stop::Requests {
                    count: *r.get_ref(),
                }
            }
            (Some(d), None) => loadgen::Stop::Duration {
                duration: d.get_ref().0,
            },
        };
        let open_only = "only for the open model (model = \"open\")";
        e.forbid("rate", self.rate.as_ref().map(|c| c.span()), open_only)?;
        e.forbid(
            "ramp-to",
            self.ramp_to.as_ref().map(|c| c.span()),
            open_only,
        )?;
        Ok((stop, *c.get_ref()))
    }
}

/// Errors of one stage, named `load.stage[N].FIELD` (N from 1, as users count).
struct StageErrors<'a, 'b> {
    n: usize,
    at: &'a Located<'b>,
}

impl StageErrors<'_, '_> {
    fn at(&self, span: Range<usize>, name: &str, why: &str) -> ProfileError {
        self.at
            .error(span, Some(&format!("load.stage[{}].{name}", self.n)), why)
    }

    /// An error when a field that this model does not take is present.
    fn forbid(
        &self,
        name: &str,
        present: Option<Range<usize>>,
        why: &str,
    ) -> Result<(), ProfileError> {
        present.map_or(Ok(()), |span| Err(self.at(span, name, why)))
    }
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

impl RequestSpec {
    fn validate(&self, n: usize, at: &Located<'_>) -> Result<(), ProfileError> {
        let field = |f: &str| format!("load.request[{n}].{f}");
        let method = self.method.get_ref();
        if !METHODS.contains(&method.as_str()) {
            return Err(at.error(
                self.method.span(),
                Some(&field("method")),
                &format!(
                    "unknown HTTP method {method:?} (one of {})",
                    METHODS.join(", ")
                ),
            ));
        }
        let path = self.path.get_ref();
        let bad = if !path.starts_with('/') {
            Some("must start with `/` (it is joined to the target's base URL)")
        } else if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            Some("must not contain spaces or control characters (percent-encode them)")
        } else if path.contains('#') {
            Some("must not contain a fragment (`#`): it is never sent")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(at.error(
                self.path.span(),
                Some(&field("path")),
                &format!("{path:?} {why}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LoadedProfile {
        LoadedProfile::parse(Path::new("p.toml"), text.to_string()).unwrap()
    }

    const REQUEST: &str = "[[load.request]]\npath = \"/health\"\n";

    #[test]
    fn validation_yields_the_load_shape_with_every_default_resolved() {
        let open = parse(&format!(
            "[[load.stage]]\nduration = \"5s\"\nrate = 100\nramp-to = 300\n{REQUEST}"
        ));
        assert_eq!(
            open.shape,
            LoadShape::Open {
                stages: vec![loadgen::Stage {
                    duration: Duration::from_secs(5),
                    start_rate: 100.0,
                    end_rate: 300.0,
                }],
                connections: DEFAULT_OPEN_CONNECTIONS,
            }
        );
        assert_eq!(
            open.seed(None),
            DEFAULT_SEED,
            "a seedless profile runs on seed 1"
        );
        assert_eq!(open.seed(Some(9)), 9);
        assert!(!open.stack_sets("port"));

        let closed = parse(&format!(
            "seed = 4\n[stack]\nport = 9000\n[load]\nmodel = \"closed\"\n[[load.stage]]\nconnections = 3\nrequests = 30\n{REQUEST}"
        ));
        assert_eq!(
            closed.shape,
            LoadShape::Closed {
                stop: loadgen::Stop::Requests { count: 30 },
                connections: 3,
            }
        );
        assert_eq!(closed.seed(None), 4);
        assert!(closed.stack_sets("port") && !closed.stack_sets("instances"));
    }

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('"').unwrap()), (2, 6));
    }

    #[test]
    fn field_at_reads_headers_and_keys() {
        let text = "name = \"x\"\n[load]\nmodel = \"open\"\n[[load.stage]]\nrate = 1\n[[load.stage]]\nrate = -1\n";
        assert_eq!(field_at(text, 2), "name");
        assert_eq!(field_at(text, text.find("model").unwrap()), "load.model");
        assert_eq!(
            field_at(text, text.find("-1").unwrap()),
            "load.stage[2].rate"
        );
        assert_eq!(
            field_at(text, text.find("[[load").unwrap()),
            "load.stage[1]"
        );
    }
}
