//! What one capacity search runs with, resolved once: each setting from its
//! flag, else the profile's `[capacity]`, else the default; the instance counts;
//! the plateau objectives; whether each probe gets a fresh stack.

use std::time::Duration;

use anyhow::bail;
use verdict::capacity::{self, SearchSettings};
use verdict::slo::SloSpec;

use super::{CapacityArgs, Fresh};
use crate::experiment::{Experiment, LoadShape, Target};

pub const DEFAULT_GROWTH: f64 = 2.0;
pub const DEFAULT_RESOLUTION: f64 = 0.05;
pub const DEFAULT_MAX_RATE: f64 = 1e6;
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(2);
/// A probe passes only if it achieved this share of the offered rate.
pub const MIN_ACHIEVED: f64 = 0.97;
/// Start rate for a profile without an open-model stage to take one from.
const FALLBACK_START: f64 = 10.0;

/// Everything the search needs, resolved once: flags over `[capacity]` over defaults.
pub(super) struct Setup {
    pub(super) exp: Experiment,
    pub(super) settings: SearchSettings,
    /// `None`: the URL target (or the stack at its profile's count).
    pub(super) instances: Vec<Option<u32>>,
    pub(super) spec: SloSpec,
    pub(super) connections: usize,
    /// The profile's arrival spacing (a closed profile's probes are uniform).
    pub(super) arrivals: loadgen::Arrivals,
    pub(super) target_rate: Option<f64>,
    pub(super) with_chaos: bool,
    /// A fresh stack before each probe.
    pub(super) fresh: bool,
    /// The share of the request mix that writes (see [`write_share`]).
    pub(super) write_share: f64,
}

impl Setup {
    pub(super) fn resolve(a: &CapacityArgs) -> anyhow::Result<Self> {
        let exp = Experiment::read(&a.profile, &a.set, a.seed)?;
        let c = &exp.capacity;
        let (first_rate, connections, arrivals) = match &exp.load.shape {
            LoadShape::Open {
                stages,
                connections,
                arrivals,
            } => (
                stages.first().map(|s| s.start_rate),
                *connections,
                *arrivals,
            ),
            LoadShape::Closed { connections, .. } => {
                (None, *connections, loadgen::Arrivals::default())
            }
        };
        let start_rate = a
            .start_rate
            .or(c.start_rate)
            .or(first_rate.filter(|r| *r > 0.0))
            .unwrap_or(FALLBACK_START);
        let max_rate = a.max_rate.or(c.max_rate).unwrap_or(DEFAULT_MAX_RATE);
        if max_rate < start_rate {
            bail!("the maximum rate ({max_rate}) is below the start rate ({start_rate})");
        }
        let growth = a.growth.or(c.growth).unwrap_or(DEFAULT_GROWTH);
        if !(growth > 1.0 && growth.is_finite()) {
            bail!("--growth {growth}: must be more than 1");
        }
        let window = a.window.or(c.window).unwrap_or(DEFAULT_WINDOW);
        let interval = exp.load.interval;
        if window < interval * 4 {
            bail!(
                "the window ({}) must hold at least 4 of the profile's intervals ({} each) \
                 to tell a growing queue from a steady one",
                chaos::duration::format(window),
                chaos::duration::format(interval)
            );
        }
        let settings = SearchSettings {
            start_rate,
            growth,
            resolution: a.resolution.or(c.resolution).unwrap_or(DEFAULT_RESOLUTION),
            max_rate,
            warmup_s: a
                .warmup
                .or(c.warmup)
                .unwrap_or(DEFAULT_WARMUP)
                .as_secs_f64(),
            window_s: window.as_secs_f64(),
            confirm_s: a.confirm.or(c.confirm).unwrap_or(window * 2).as_secs_f64(),
            cooldown_s: a
                .cooldown
                .or(c.cooldown)
                .unwrap_or(DEFAULT_COOLDOWN)
                .as_secs_f64(),
            min_achieved: MIN_ACHIEVED,
        };
        let counts = if a.instances.is_empty() {
            c.instances.clone()
        } else {
            a.instances.clone()
        };
        if counts.contains(&0) {
            bail!("--instances: every count must be 1 or more");
        }
        let instances = match &exp.target {
            Target::Url(_) if !counts.is_empty() => {
                bail!("--instances needs a stack profile: a `url` target's instances are not ours to change")
            }
            Target::Url(_) => vec![None],
            Target::Stack(s) if counts.is_empty() => vec![Some(s.spec.instances as u32)],
            Target::Stack(_) => {
                let mut v = counts;
                v.sort_unstable();
                v.dedup();
                v.into_iter().map(Some).collect()
            }
        };
        if a.target_rate.is_some() && instances.len() < 2 {
            bail!(
                "--target-rate plans from a scalability fit: give --instances with 2 or more \
                 counts (e.g. --instances 1,2,4)"
            );
        }
        if a.with_chaos {
            match &exp.target {
                Target::Url(_) => bail!(
                    "--with-chaos needs a stack profile: faults cannot be injected into a `url` target"
                ),
                Target::Stack(_) if exp.chaos.faults.is_empty() => bail!(
                    "--with-chaos: the profile has no [[chaos]] faults to fire"
                ),
                Target::Stack(_) => {}
            }
            let window = Duration::from_secs_f64(settings.window_s);
            if !exp.chaos.faults.iter().any(|f| f.at < window) {
                bail!(
                    "--with-chaos: no fault of the profile is planned within the {} window \
                     (offsets count from the window's start); lengthen --window",
                    chaos::duration::format(window)
                );
            }
        }
        let write_share = write_share(&exp);
        let fresh = match (a.fresh, &exp.target) {
            (Fresh::Always, Target::Url(_)) => {
                bail!("--fresh always needs a stack profile: a `url` target is not ours to restart")
            }
            (_, Target::Url(_)) | (Fresh::Never, _) => false,
            (Fresh::Always, _) => true,
            (Fresh::Auto, _) => write_share > 0.0,
        };
        let spec = exp
            .slo
            .as_ref()
            .map(|s| capacity::plateau_spec(s, a.with_chaos))
            .unwrap_or_default();
        Ok(Self {
            settings,
            instances,
            spec,
            connections,
            arrivals,
            target_rate: a.target_rate,
            with_chaos: a.with_chaos,
            fresh,
            write_share,
            exp,
        })
    }

    /// The experiment at `n` instances (the profile re-read with the override, so
    /// every derived value — component names, fault plan — agrees).
    pub(super) fn at(&self, a: &CapacityArgs, n: Option<u32>) -> anyhow::Result<Experiment> {
        match n {
            Some(n)
                if self
                    .exp
                    .stack()
                    .is_some_and(|s| s.spec.instances != n as usize) =>
            {
                let mut sets = a.set.clone();
                sets.push(format!("stack.instances={n}"));
                Ok(Experiment::read(&a.profile, &sets, a.seed)?)
            }
            _ => Ok(self.exp.clone()),
        }
    }
}

/// The share of the request mix (by weight) that writes: methods other than
/// GET and HEAD.
fn write_share(exp: &Experiment) -> f64 {
    let total: u32 = exp.load.requests.iter().map(|r| r.weight).sum();
    let writes: u32 = exp
        .load
        .requests
        .iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .map(|r| r.weight)
        .sum();
    if total == 0 {
        0.0
    } else {
        f64::from(writes) / f64::from(total)
    }
}
