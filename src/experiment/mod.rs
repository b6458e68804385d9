//! An experiment, from the text a user wrote to the value every command runs:
//! profile text → [`Profile`] (as written, every value located) → [`Experiment`]
//! (validated, typed, every default resolved once). `run`, `run --dry-run`,
//! `chaos plan` and `capacity` all take an [`Experiment`], so they agree on the
//! seed, the horizon of the fault plan and the component names.
//!
//! - `profile`: the strict TOML layer (all spans kept, for error messages);
//! - `locate`: byte spans to `FILE:LINE:COL: FIELD: MESSAGE`;
//! - `overrides`: `--set FIELD=VALUE`;
//! - `validate`: the checks serde cannot express, and what they prove.

mod capacity;
mod locate;
mod overrides;
mod profile;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::capacity::CapacityProfile;
pub use self::locate::Located;
pub use self::profile::{Profile, ProfileError};
use target::stack::StackSpec;
use verdict::record::StageWindow;

/// Seed used when neither `--seed` nor the profile gives one, so that runs of
/// the same profile are comparable by default.
pub const DEFAULT_SEED: u64 = 1;

/// Open model's in-flight cap when the profile gives none.
pub const DEFAULT_OPEN_CONNECTIONS: usize = 100;

/// Header the API sets on every response; counting it shows how the gateway
/// spread the load. The tracked header when `[load] track-header` is not given.
pub const TRACK_HEADER: &str = verdict::report::INSTANCE_HEADER;

/// A profile that parsed and passed every check, with each default resolved.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// `name`, else the file's stem: names the results directory.
    pub name: String,
    /// The profile file it came from.
    pub path: PathBuf,
    /// `--seed`, else the profile's, else [`DEFAULT_SEED`].
    pub seed: u64,
    pub target: Target,
    pub load: Load,
    /// The `[[chaos]]` entries expanded with `seed` over the stack's components
    /// and the load's length ([`chaos::Plan::horizon`]); empty for a `url` target.
    pub chaos: chaos::Plan,
    /// The `[slo]` table; `None` when the profile has none (or an empty one).
    pub slo: Option<verdict::slo::SloSpec>,
    /// Which outcomes count as bad (the `[slo]` table's, else the default).
    pub bad: loadgen::BadPolicy,
    /// `[capacity]`: how `slolab capacity` searches (flags override).
    pub capacity: CapacityProfile,
    /// The profile as written (after `--set`), recorded with the results.
    pub profile: Profile,
    text: String,
}

/// What the load goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// `url = ...`: somebody else's system; nothing to start, no faults.
    Url(String),
    /// The bundled stack: the profile's `[stack]`, or the default one.
    Stack(StackTarget),
}

#[derive(Debug, Clone)]
pub struct StackTarget {
    pub spec: StackSpec,
    /// The profile names the gateway's port (else `run` takes a free one).
    pub port_set: bool,
    /// The profile names the run dir (else the stack runs in the run's staging dir).
    pub run_dir_set: bool,
    /// The supervisor's names for the stack's components: what faults may target.
    pub components: Vec<String>,
}

/// `[load]` with every default resolved.
#[derive(Debug, Clone)]
pub struct Load {
    pub shape: LoadShape,
    /// Unmeasured load at the first stage's rate before t = 0 (zero: none).
    pub warmup: Duration,
    pub timeout: Duration,
    pub interval: Duration,
    pub keepalive: bool,
    /// The response header counted per interval.
    pub track_header: String,
    /// The stages on the load clock (a closed run stopped by a request count has
    /// an open end, `f64::INFINITY`, until the run has measured it).
    pub stages: Vec<StageWindow>,
    pub requests: Vec<Request>,
}

/// A load model with exactly the fields it needs, produced by validation so
/// that nothing downstream meets a stage without its rate or its stop.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadShape {
    /// Open model: stages of offered rate, arrivals spaced by `arrivals`, at
    /// most `connections` in flight.
    Open {
        stages: Vec<loadgen::Stage>,
        arrivals: loadgen::Arrivals,
        connections: usize,
    },
    /// Closed model: `connections` workers until `stop`.
    Closed {
        stop: loadgen::Stop,
        connections: usize,
    },
}

/// One entry of the request mix, checked (method known, path absolute).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub weight: u32,
    pub method: String,
    /// Joined to the target's base URL; may hold `{seq}`, `{rand:A..B}`,
    /// `{uuid}` and `{token}`.
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

impl Experiment {
    /// Reads, overrides (`--set`) and validates a profile; `seed` is `--seed`.
    pub fn read(path: &Path, sets: &[String], seed: Option<u64>) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if sets.is_empty() {
            return Self::parse(path, text, seed);
        }
        // Check the file as written first, so its own mistakes point at its lines.
        Self::parse(path, text.clone(), seed)?;
        let text = overrides::apply(&text, sets)?;
        // Lines of the regenerated text would mislead; name the overrides instead.
        let shown = PathBuf::from(format!("{} (with --set)", path.display()));
        let mut exp = Self::parse(&shown, text, seed).map_err(|e| match e {
            ProfileError::Invalid { field, message, .. } => ProfileError::Override {
                set: sets.join(" --set "),
                message: format!("{field}: {message}"),
            },
            other => other,
        })?;
        exp.path = path.to_path_buf();
        Ok(exp)
    }

    /// Parses and validates profile text (`path` names it in errors).
    pub fn parse(path: &Path, text: String, seed: Option<u64>) -> Result<Self, ProfileError> {
        let at = Located::new(path, &text);
        let profile: Profile = toml::from_str(&text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at.error(span, None, e.message().trim())
        })?;
        let seed = seed.or(profile.seed).unwrap_or(DEFAULT_SEED);
        let target = match &profile.url {
            Some(url) => Target::Url(url.get_ref().trim_end_matches('/').to_string()),
            None => {
                let spec = profile
                    .stack
                    .as_ref()
                    .map(|s| s.get_ref().clone())
                    .unwrap_or_default();
                // "Did the user set it?" is read once, here: the parsed spec
                // has the supervisor's defaults filled in.
                let keys: Vec<String> = toml::from_str::<toml::Table>(&text)
                    .ok()
                    .and_then(|t| Some(t.get("stack")?.as_table()?.keys().cloned().collect()))
                    .unwrap_or_default();
                let sets = |k: &str| keys.iter().any(|key| key == k);
                Target::Stack(StackTarget {
                    components: spec.component_names(),
                    port_set: sets("port"),
                    run_dir_set: sets("run-dir"),
                    spec,
                })
            }
        };
        let checked = profile.validate(seed, &target, &at)?;
        let capacity = match &profile.capacity {
            Some(c) => c.validate(&at)?,
            None => CapacityProfile::default(),
        };
        let l = &profile.load;
        let load = Load {
            shape: checked.shape,
            warmup: l.warmup.get_ref().0,
            timeout: l.timeout.get_ref().0,
            interval: l.interval.get_ref().0,
            keepalive: l.keepalive,
            track_header: l
                .track_header
                .clone()
                .unwrap_or_else(|| TRACK_HEADER.to_string()),
            stages: profile.stage_windows(),
            requests: checked.requests,
        };
        let slo = profile
            .slo
            .as_ref()
            .map(|s| s.get_ref().clone())
            .filter(|s| !s.is_empty());
        let bad = profile
            .slo
            .as_ref()
            .map(|s| s.get_ref().bad.clone())
            .unwrap_or_default();
        Ok(Self {
            name: profile.name.clone().unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "profile".into())
            }),
            path: path.to_path_buf(),
            seed,
            target,
            load,
            chaos: checked.chaos,
            slo,
            bad,
            capacity,
            profile,
            text,
        })
    }

    /// The stack this experiment starts, if it starts one.
    pub fn stack(&self) -> Option<&StackTarget> {
        match &self.target {
            Target::Stack(s) => Some(s),
            Target::Url(_) => None,
        }
    }

    /// Total measured load duration when it is known up front (stages with a
    /// duration); `None` for a closed run stopped by a request count.
    pub fn load_duration(&self) -> Option<Duration> {
        self.profile.load_duration()
    }

    /// The fault plan for other component names or another load length than the
    /// profile's own (`chaos plan` against a running stack, `--duration`),
    /// checked and located like [`Experiment::chaos`].
    pub fn chaos_plan_for(
        &self,
        names: &[String],
        total: Option<Duration>,
    ) -> Result<chaos::Plan, ProfileError> {
        self.profile.chaos_plan_within(
            self.seed,
            names,
            total,
            &Located::new(&self.path, &self.text),
        )
    }
}

#[cfg(test)]
mod tests;
