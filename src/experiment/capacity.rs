//! `[capacity]` checked: how `slolab capacity` searches this profile, when the
//! profile wants other than the defaults. Flags override each field.

use std::time::Duration;

use toml::Spanned;

use super::locate::Located;
use super::profile::{CapacitySection, HumanDuration, ProfileError};

/// `[capacity]` checked: each field the profile set (the command applies its
/// flags over them, then its defaults).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityProfile {
    pub start_rate: Option<f64>,
    pub max_rate: Option<f64>,
    pub growth: Option<f64>,
    pub resolution: Option<f64>,
    pub warmup: Option<Duration>,
    pub window: Option<Duration>,
    pub confirm: Option<Duration>,
    pub cooldown: Option<Duration>,
    pub instances: Vec<u32>,
}

impl CapacitySection {
    pub(super) fn validate(&self, at: &Located<'_>) -> Result<CapacityProfile, ProfileError> {
        let positive =
            |v: &Option<Spanned<f64>>, name: &str| -> Result<Option<f64>, ProfileError> {
                match v {
                    Some(s) if !(s.get_ref().is_finite() && *s.get_ref() > 0.0) => Err(at.error(
                        s.span(),
                        Some(&format!("capacity.{name}")),
                        "must be a positive number of requests per second",
                    )),
                    Some(s) => Ok(Some(*s.get_ref())),
                    None => Ok(None),
                }
            };
        let start_rate = positive(&self.start_rate, "start-rate")?;
        let max_rate = positive(&self.max_rate, "max-rate")?;
        if let (Some(lo), Some(hi), Some(span)) = (start_rate, max_rate, &self.max_rate) {
            if hi < lo {
                return Err(at.error(
                    span.span(),
                    Some("capacity.max-rate"),
                    &format!("is below start-rate ({lo})"),
                ));
            }
        }
        let growth = match &self.growth {
            Some(g) if !(*g.get_ref() > 1.0 && g.get_ref().is_finite()) => {
                return Err(at.error(
                    g.span(),
                    Some("capacity.growth"),
                    "must be more than 1 (2 doubles the rate each step)",
                ))
            }
            g => g.as_ref().map(|g| *g.get_ref()),
        };
        let resolution = match &self.resolution {
            Some(r) if !(*r.get_ref() > 0.0 && *r.get_ref() < 1.0) => {
                return Err(at.error(
                    r.span(),
                    Some("capacity.resolution"),
                    "must be a fraction between 0 and 1 (0.05 is 5 %)",
                ))
            }
            r => r.as_ref().map(|r| *r.get_ref()),
        };
        let d = |v: &Option<Spanned<HumanDuration>>| v.as_ref().map(|d| d.get_ref().0);
        for (v, name) in [(&self.window, "window"), (&self.confirm, "confirm")] {
            if let Some(s) = v.as_ref().filter(|s| s.get_ref().0.is_zero()) {
                return Err(at.error(
                    s.span(),
                    Some(&format!("capacity.{name}")),
                    "must be longer than zero",
                ));
            }
        }
        let instances = match &self.instances {
            Some(list) if list.get_ref().is_empty() || list.get_ref().contains(&0) => {
                return Err(at.error(
                    list.span(),
                    Some("capacity.instances"),
                    "must list instance counts of 1 or more, e.g. [1, 2, 4]",
                ))
            }
            Some(list) => list.get_ref().clone(),
            None => Vec::new(),
        };
        Ok(CapacityProfile {
            start_rate,
            max_rate,
            growth,
            resolution,
            warmup: d(&self.warmup),
            window: d(&self.window),
            confirm: d(&self.confirm),
            cooldown: d(&self.cooldown),
            instances,
        })
    }
}
