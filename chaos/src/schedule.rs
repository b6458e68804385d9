//! Schedules: the `[[chaos]]` entries of a profile — at a time, or monkey mode
//! (`every` ± `jitter`, with a probability) — expanded from a seed into a
//! concrete `Plan` with absolute offsets. Same seed, same plan, byte for byte.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fault::{self, Fault, FaultError, FaultParams, FaultRequest};
use crate::toxic::{splitmix64, Direction};

/// One `[[chaos]]` table. Either `at` alone (one fault at that offset), or
/// `every` (monkey mode: from `at`, default 0, until `until`, default the run's
/// end, every `every` ± `jitter`, each time with `probability`).
///
/// `jitter` is the *timing* jitter in monkey mode and the latency jitter
/// otherwise; `latency-jitter` always means the latency jitter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleEntry {
    pub fault: String,
    pub target: String,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<Duration>,
    #[serde(
        rename = "for",
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("chaos entry {index} ({fault} on {target}): {reason}")]
    Entry {
        index: usize,
        fault: String,
        target: String,
        reason: String,
    },
}

impl ScheduleEntry {
    /// The fault this entry injects, target still as written.
    pub fn request(&self) -> Result<FaultRequest, String> {
        let latency_jitter = match (self.every, self.jitter, self.latency_jitter) {
            (None, Some(_), Some(_)) => {
                return Err("give `jitter` or `latency-jitter`, not both".into())
            }
            (None, j, lj) => lj.or(j),
            (Some(_), _, lj) => lj,
        };
        Ok(FaultRequest {
            fault: self.fault.clone(),
            target: self.target.clone(),
            duration: self.duration,
            params: FaultParams {
                latency: self.latency,
                jitter: latency_jitter,
                direction: self.direction,
                rate: self.rate,
                bytes: self.bytes,
                delay: self.delay,
                toxicity: self.toxicity,
            },
        })
    }

    fn check(&self) -> Result<FaultRequest, String> {
        let req = self.request()?;
        Fault::from_request(&req).map_err(|e| e.to_string())?;
        match (self.at, self.every) {
            (None, None) => return Err("needs `at` (a time) or `every` (monkey mode)".into()),
            (_, Some(every)) => {
                if every.is_zero() {
                    return Err("`every` must be more than 0s".into());
                }
                if self.jitter.is_some_and(|j| j > every) {
                    return Err("`jitter` must not exceed `every`".into());
                }
                if let Some(p) = self.probability {
                    if !(0.0..=1.0).contains(&p) || p.is_nan() {
                        return Err(format!("probability must be within 0.0..=1.0, got {p}"));
                    }
                }
            }
            (Some(_), None) => {
                if self.probability.is_some() || self.until.is_some() {
                    return Err("`probability` and `until` belong to monkey mode (`every`)".into());
                }
            }
        }
        Ok(req)
    }
}

/// One fault application in a plan: when, and exactly what on which component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedFault {
    #[serde(with = "crate::duration")]
    pub at: Duration,
    pub request: FaultRequest,
}

/// A concrete, seeded expansion of a schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub seed: u64,
    #[serde(with = "crate::duration")]
    pub total: Duration,
    pub faults: Vec<PlannedFault>,
}

impl Plan {
    /// How far a schedule is expanded: the load's length when it has one; else
    /// (a closed run stopped by a request count) an hour, since faults after the
    /// load ends never fire. Every planner uses this one rule.
    pub fn horizon(load: Option<Duration>) -> Duration {
        load.unwrap_or(Duration::from_secs(3600))
    }

    /// Expand `entries` for a run of length `total` over the components `names`
    /// (for `api-*` and `api-random`). Every entry is checked; the first problem
    /// is reported with the entry's index (1-based, as in the file).
    pub fn expand(
        entries: &[ScheduleEntry],
        seed: u64,
        total: Duration,
        names: &[String],
    ) -> Result<Plan, ScheduleError> {
        let mut faults: Vec<(Duration, usize, PlannedFault)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let index = i + 1;
            let err = |reason: String| ScheduleError::Entry {
                index,
                fault: entry.fault.clone(),
                target: entry.target.clone(),
                reason,
            };
            let req = entry.check().map_err(err)?;
            // A stream per entry: adding an entry never shifts another's draws.
            let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(seed ^ splitmix64(index as u64)));
            let mut times = Vec::new();
            match entry.every {
                None => times.push(entry.at.unwrap_or_default()),
                Some(every) => {
                    let until = entry.until.unwrap_or(total).min(total);
                    let jitter = entry.jitter.unwrap_or_default();
                    let probability = entry.probability.unwrap_or(1.0);
                    let mut tick = entry.at.unwrap_or_default() + every;
                    while tick < until {
                        let offset = if jitter.is_zero() {
                            0
                        } else {
                            let j = jitter.as_millis() as i64;
                            rng.gen_range(-j..=j)
                        };
                        let at_ms = (tick.as_millis() as i64 + offset).max(0) as u64;
                        let fire = rng.gen_bool(probability);
                        if fire && at_ms < until.as_millis() as u64 {
                            times.push(Duration::from_millis(at_ms));
                        }
                        tick += every;
                    }
                }
            }
            for at in times {
                for target in
                    resolve(&req.target, names, &mut rng).map_err(|e| err(e.to_string()))?
                {
                    let mut request = req.clone();
                    request.target = target;
                    faults.push((at, faults.len(), PlannedFault { at, request }));
                }
            }
        }
        faults.sort_by_key(|(at, order, _)| (*at, *order));
        Ok(Plan {
            seed,
            total,
            faults: faults.into_iter().map(|(_, _, f)| f).collect(),
        })
    }
}

fn resolve(
    pattern: &str,
    names: &[String],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<String>, FaultError> {
    let unknown = || FaultError::UnknownTarget {
        target: pattern.into(),
        known: names.join(", "),
    };
    if let Some(pool) = fault::random_pool(pattern) {
        let candidates: Vec<&String> = names.iter().filter(|n| fault::matches(&pool, n)).collect();
        if candidates.is_empty() {
            return Err(unknown());
        }
        return Ok(vec![candidates[rng.gen_range(0..candidates.len())].clone()]);
    }
    let picked: Vec<String> = names
        .iter()
        .filter(|n| fault::matches(pattern, n))
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(unknown());
    }
    Ok(picked)
}

fn millis(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

impl fmt::Display for Plan {
    /// The `--dry-run` table: absolute offsets, concrete targets, parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos plan: seed {}, {} fault(s) within {}",
            self.seed,
            self.faults.len(),
            millis(self.total)
        )?;
        writeln!(
            f,
            "{:>10}  {:>9}  {:<11}  {:<10}  params",
            "at", "for", "fault", "target"
        )?;
        for p in &self.faults {
            let r = &p.request;
            writeln!(
                f,
                "{:>10}  {:>9}  {:<11}  {:<10}  {}",
                millis(p.at),
                r.duration.map(millis).unwrap_or_else(|| "-".into()),
                r.fault,
                r.target,
                r.params
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Profile {
        chaos: Vec<ScheduleEntry>,
    }

    fn names() -> Vec<String> {
        ["api-1", "api-2", "api-3", "gateway", "redis", "postgres"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    const PROFILE: &str = r#"
        [[chaos]]
        at = "12s"
        fault = "kill"
        target = "api-2"

        [[chaos]]
        at = "25s"
        for = "5s"
        fault = "latency"
        target = "redis"
        latency = "200ms"
        jitter = "20ms"

        [[chaos]]
        every = "5s"
        jitter = "2s"
        probability = 0.5
        for = "1s"
        fault = "pause"
        target = "api-random"
    "#;

    fn plan(seed: u64) -> Plan {
        let p: Profile = toml::from_str(PROFILE).unwrap();
        Plan::expand(&p.chaos, seed, Duration::from_secs(60), &names()).unwrap()
    }

    #[test]
    fn same_seed_same_plan_byte_for_byte() {
        let a = plan(42).to_string();
        let b = plan(42).to_string();
        assert_eq!(a, b);
        assert_ne!(
            a,
            plan(43).to_string(),
            "monkey mode must depend on the seed"
        );
        assert!(a.contains("12.000s"), "{a}");
        assert!(a.contains("latency=200ms"), "{a}");
        assert!(a.contains("jitter=20ms"), "{a}");
    }

    #[test]
    fn monkey_mode_stays_in_window_and_sorted() {
        let p = plan(7);
        let times: Vec<Duration> = p.faults.iter().map(|f| f.at).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
        for f in p.faults.iter().filter(|f| f.request.fault == "pause") {
            assert!(f.at < Duration::from_secs(60));
            assert!(f.request.target.starts_with("api-"), "{}", f.request.target);
        }
    }

    #[test]
    fn globs_expand_to_every_match() {
        let e: Profile = toml::from_str(
            r#"[[chaos]]
            at = "1s"
            fault = "kill"
            target = "api-*""#,
        )
        .unwrap();
        let p = Plan::expand(&e.chaos, 1, Duration::from_secs(10), &names()).unwrap();
        let targets: Vec<&str> = p.faults.iter().map(|f| f.request.target.as_str()).collect();
        assert_eq!(targets, ["api-1", "api-2", "api-3"]);
    }

    #[test]
    fn bad_entries_name_their_index_and_reason() {
        let bad = |toml_text: &str| {
            let p: Profile = toml::from_str(toml_text).unwrap();
            Plan::expand(&p.chaos, 1, Duration::from_secs(10), &names())
                .unwrap_err()
                .to_string()
        };
        let e = bad("[[chaos]]\nat = \"1s\"\nfault = \"kill\"\ntarget = \"api-9\"");
        assert!(
            e.contains("entry 1") && e.contains("no component `api-9`"),
            "{e}"
        );
        let e =
            bad("[[chaos]]\nat = \"1s\"\nfault = \"reset\"\ntarget = \"redis\"\ntoxicity = 1.5");
        assert!(e.contains("toxicity"), "{e}");
        let e = bad("[[chaos]]\nfault = \"kill\"\ntarget = \"redis\"");
        assert!(e.contains("needs `at`"), "{e}");
        let e = bad("[[chaos]]\nat = \"1s\"\nfault = \"nuke\"\ntarget = \"redis\"");
        assert!(e.contains("unknown fault"), "{e}");
        let parse = toml::from_str::<Profile>(
            "[[chaos]]\nat = \"-1s\"\nfault = \"kill\"\ntarget = \"redis\"",
        );
        assert!(parse.unwrap_err().to_string().contains("negative duration"));
        let parse = toml::from_str::<Profile>(
            "[[chaos]]\nat = \"1s\"\nfault = \"kill\"\ntarget = \"redis\"\nlatencyy = \"1s\"",
        );
        assert!(parse.unwrap_err().to_string().contains("latencyy"));
    }
}
