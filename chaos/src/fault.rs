//! Faults as users ask for them (`FaultRequest`: a name, a target, flat parameters)
//! and as the injector applies them (`Fault`), with every check done on the way
//! from one to the other — so nonsense is refused before anything is injected.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::toxic::{Direction, Toxic};

/// Every fault name, in the order help texts list them.
pub const FAULT_NAMES: &[&str] = &[
    "kill",
    "stop",
    "pause",
    "restart",
    "latency",
    "bandwidth",
    "reset",
    "blackhole",
    "refuse",
    "refuse-new",
    "slow-close",
    "limit-data",
];

/// A fault as the CLI, the control endpoint and schedules spell it: flat and
/// optional, so one shape serves `--latency 200ms` and `latency = "200ms"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FaultRequest {
    pub fault: String,
    pub target: String,
    /// How long the fault lasts before it is reverted; none = until reverted.
    #[serde(
        rename = "for",
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    #[serde(flatten)]
    pub params: FaultParams,
}

/// The parameters of network faults, all optional; which ones a fault needs is
/// checked by [`Fault::from_request`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FaultParams {
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
    pub jitter: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Bandwidth in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// limit-data: bytes before the connection is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// slow-close: how long the close is held back.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
    /// Fraction of connections affected, 0.0..=1.0 (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f64>,
}

impl FaultParams {
    /// The names of the parameters that are set, for "does not apply" errors.
    fn set_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                v.push(name)
            }
        };
        add(self.latency.is_some(), "latency");
        add(self.jitter.is_some(), "jitter");
        add(self.direction.is_some(), "direction");
        add(self.rate.is_some(), "rate");
        add(self.bytes.is_some(), "bytes");
        add(self.delay.is_some(), "delay");
        add(self.toxicity.is_some(), "toxicity");
        v
    }
}

impl std::fmt::Display for FaultParams {
    /// `latency=200ms jitter=20ms`, or `-` when none is set: for tables.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        let parts: Vec<String> = value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// A validated fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// SIGKILL the component's process; its restart policy decides what follows.
    Kill,
    /// Not `held` (no `for`): SIGTERM, a graceful stop; the restart policy decides
    /// what follows. `held` (with `for`): held down through the supervisor for
    /// that long, then started again — like `restart`, revertible the same way.
    Stop { held: bool },
    /// SIGSTOP, then SIGCONT on revert.
    Pause,
    /// Down (through the supervisor) for the fault's duration, then started again.
    Restart,
    /// A toxic on the fault proxy in front of the component.
    Network { toxic: Toxic, toxicity: f64 },
}

/// How the user spelled the request, so an error names a parameter the way it
/// was written: `for = "5s"` in a profile (and the control endpoint's JSON keys),
/// `--for 5s` on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spelling {
    /// TOML / JSON keys: `latency = "200ms"`.
    #[default]
    Keys,
    /// Command-line flags: `--latency 200ms`.
    Flags,
}

impl Spelling {
    /// A parameter's name as written: `` `for` `` or `` `--for` ``.
    pub fn name(self, param: &str) -> String {
        match self {
            Spelling::Keys => format!("`{param}`"),
            Spelling::Flags => format!("`--{param}`"),
        }
    }

    /// A parameter with a value as written: `for = "5s"` or `--for 5s`.
    pub fn example(self, param: &str, value: &Example) -> String {
        match (self, value) {
            (Spelling::Keys, Example::Text(v)) => format!("{param} = \"{v}\""),
            (Spelling::Keys, Example::Number(v)) => format!("{param} = {v}"),
            (Spelling::Flags, Example::Text(v)) => format!("--{param} {v}"),
            (Spelling::Flags, Example::Number(v)) => format!("--{param} {v}"),
        }
    }

    fn names(self, params: &[&str]) -> String {
        params
            .iter()
            .map(|p| self.name(p))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An example value in an error: text is quoted in TOML, numbers are not.
#[derive(Clone, Debug, PartialEq)]
pub enum Example {
    Text(&'static str),
    Number(u64),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("unknown fault `{0}`; known faults: {list}", list = FAULT_NAMES.join(", "))]
    UnknownFault(String),
    #[error(
        "{fault} needs {name} (e.g. {example}{note})",
        name = spelling.name(param),
        example = spelling.example(param, example),
    )]
    Missing {
        fault: &'static str,
        param: &'static str,
        example: Example,
        /// Said after the example, e.g. ": how long the component stays down".
        note: &'static str,
        spelling: Spelling,
    },
    #[error("{fault} does not take {names}", names = spelling.names(params))]
    DoesNotApply {
        fault: &'static str,
        params: Vec<&'static str>,
        spelling: Spelling,
    },
    #[error(
        "kill is instantaneous (the restart policy brings the component back); {name} does not apply — use stop, restart or pause for a timed outage",
        name = spelling.name("for")
    )]
    KillIsInstant { spelling: Spelling },
    #[error("toxicity must be within 0.0..=1.0, got {0}")]
    Toxicity(f64),
    #[error("{0}")]
    Invalid(String),
    #[error("no component `{target}`; components: {known}")]
    UnknownTarget { target: String, known: String },
    #[error("`{target}` has no fault proxy in front of it, so {fault} cannot apply (network faults need a proxied component)")]
    NoProxy { target: String, fault: String },
    #[error("`{target}` has no running process")]
    NoProcess { target: String },
}

impl Fault {
    /// Check a request's fault name and parameters and build the fault, with
    /// errors in the keys' spelling (profiles, the control endpoint). The target
    /// is checked separately, against the components of the moment.
    pub fn from_request(req: &FaultRequest) -> Result<Fault, FaultError> {
        Fault::from_request_spelled(req, Spelling::Keys)
    }

    /// [`Fault::from_request`], with errors that name parameters as `spelling`
    /// writes them (the CLI passes [`Spelling::Flags`]).
    pub fn from_request_spelled(
        req: &FaultRequest,
        spelling: Spelling,
    ) -> Result<Fault, FaultError> {
        let p = &req.params;
        let name = FAULT_NAMES
            .iter()
            .find(|n| **n == req.fault)
            .copied()
            .ok_or_else(|| FaultError::UnknownFault(req.fault.clone()))?;
        let allowed: &[&str] = match name {
            "kill" | "stop" | "pause" | "restart" => &[],
            "latency" => &["latency", "jitter", "direction", "toxicity"],
            "bandwidth" => &["rate", "direction", "toxicity"],
            "limit-data" => &["bytes", "direction", "toxicity"],
            "slow-close" => &["delay", "toxicity"],
            _ => &["toxicity"],
        };
        let stray: Vec<&str> = p
            .set_names()
            .into_iter()
            .filter(|n| !allowed.contains(n))
            .collect();
        if !stray.is_empty() {
            return Err(FaultError::DoesNotApply {
                fault: name,
                params: stray,
                spelling,
            });
        }
        if name == "kill" && req.duration.is_some() {
            return Err(FaultError::KillIsInstant { spelling });
        }
        if name == "restart" && req.duration.is_none() {
            return Err(FaultError::Missing {
                fault: "restart",
                param: "for",
                example: Example::Text("5s"),
                note: ": how long the component stays down",
                spelling,
            });
        }
        let toxicity = p.toxicity.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&toxicity) || toxicity.is_nan() {
            return Err(FaultError::Toxicity(toxicity));
        }
        let direction = p.direction.unwrap_or_default();
        let missing = |param, example, note| FaultError::Missing {
            fault: name,
            param,
            example,
            note,
            spelling,
        };
        let toxic = match name {
            "kill" => return Ok(Fault::Kill),
            "stop" => {
                return Ok(Fault::Stop {
                    held: req.duration.is_some(),
                })
            }
            "pause" => return Ok(Fault::Pause),
            "restart" => return Ok(Fault::Restart),
            "latency" => Toxic::Latency {
                latency: p
                    .latency
                    .ok_or_else(|| missing("latency", Example::Text("200ms"), ""))?,
                jitter: p.jitter.unwrap_or_default(),
                direction,
            },
            "bandwidth" => Toxic::Bandwidth {
                rate: p
                    .rate
                    .ok_or_else(|| missing("rate", Example::Number(10000), ": bytes per second"))?,
                direction,
            },
            "limit-data" => Toxic::LimitData {
                bytes: p
                    .bytes
                    .ok_or_else(|| missing("bytes", Example::Number(1024), ""))?,
                direction,
            },
            "slow-close" => Toxic::SlowClose {
                delay: p
                    .delay
                    .ok_or_else(|| missing("delay", Example::Text("2s"), ""))?,
            },
            "reset" => Toxic::Reset,
            "blackhole" => Toxic::Blackhole,
            "refuse" => Toxic::Refuse,
            "refuse-new" => Toxic::RefuseNew,
            _ => unreachable!("every name in FAULT_NAMES is matched"),
        };
        toxic
            .validate()
            .map_err(|e| FaultError::Invalid(e.to_string()))?;
        Ok(Fault::Network { toxic, toxicity })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Stop { .. } => "stop",
            Fault::Pause => "pause",
            Fault::Restart => "restart",
            Fault::Network { toxic, .. } => toxic.name(),
        }
    }
}

/// Whether `name` is picked by `pattern`: an exact name, or a `*` glob such as
/// `api-*` (`*` matches any run of characters).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

/// For `X-random`, the glob of its candidates (`X-*`); `None` for other patterns.
pub fn random_pool(pattern: &str) -> Option<String> {
    pattern.strip_suffix("-random").map(|p| format!("{p}-*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fault: &str) -> FaultRequest {
        FaultRequest {
            fault: fault.into(),
            target: "api-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn builds_each_fault() {
        assert_eq!(Fault::from_request(&req("kill")), Ok(Fault::Kill));
        assert_eq!(Fault::from_request(&req("pause")), Ok(Fault::Pause));
        let mut r = req("latency");
        r.params.latency = Some(Duration::from_millis(200));
        r.params.toxicity = Some(0.5);
        assert_eq!(
            Fault::from_request(&r),
            Ok(Fault::Network {
                toxic: Toxic::Latency {
                    latency: Duration::from_millis(200),
                    jitter: Duration::ZERO,
                    direction: Direction::Downstream
                },
                toxicity: 0.5
            })
        );
        assert_eq!(Fault::from_request(&req("reset")).unwrap().name(), "reset");
    }

    #[test]
    fn refuses_nonsense_with_a_clear_error() {
        let e = Fault::from_request(&req("explode")).unwrap_err();
        assert!(e.to_string().contains("unknown fault `explode`"), "{e}");
        assert!(e.to_string().contains("limit-data"), "{e}");

        let mut r = req("reset");
        r.params.toxicity = Some(1.5);
        assert_eq!(Fault::from_request(&r), Err(FaultError::Toxicity(1.5)));

        let e = Fault::from_request(&req("latency")).unwrap_err();
        assert!(e.to_string().contains("needs `latency`"), "{e}");

        let mut r = req("kill");
        r.params.latency = Some(Duration::from_millis(1));
        assert!(matches!(
            Fault::from_request(&r),
            Err(FaultError::DoesNotApply { .. })
        ));

        let e = Fault::from_request(&req("restart")).unwrap_err();
        assert!(e.to_string().contains("needs `for`"), "{e}");
    }

    #[test]
    fn errors_spell_parameters_as_the_user_wrote_them() {
        let keys = |r: &FaultRequest| Fault::from_request(r).unwrap_err().to_string();
        let flags = |r: &FaultRequest| {
            Fault::from_request_spelled(r, Spelling::Flags)
                .unwrap_err()
                .to_string()
        };
        let restart = req("restart");
        assert_eq!(
            keys(&restart),
            "restart needs `for` (e.g. for = \"5s\": how long the component stays down)"
        );
        assert_eq!(
            flags(&restart),
            "restart needs `--for` (e.g. --for 5s: how long the component stays down)"
        );
        let bandwidth = req("bandwidth");
        assert!(keys(&bandwidth).contains("(e.g. rate = 10000: bytes per second)"));
        assert!(flags(&bandwidth).contains("needs `--rate` (e.g. --rate 10000: bytes per second)"));
        let mut kill = req("kill");
        kill.params.latency = Some(Duration::from_millis(1));
        kill.params.jitter = Some(Duration::from_millis(1));
        assert_eq!(keys(&kill), "kill does not take `latency`, `jitter`");
        assert_eq!(flags(&kill), "kill does not take `--latency`, `--jitter`");
        kill.params = FaultParams::default();
        kill.duration = Some(Duration::from_secs(3));
        assert!(
            keys(&kill).contains("`for` does not apply"),
            "{}",
            keys(&kill)
        );
        assert!(
            flags(&kill).contains("`--for` does not apply"),
            "{}",
            flags(&kill)
        );
    }

    #[test]
    fn stop_is_held_down_only_with_a_duration() {
        assert_eq!(
            Fault::from_request(&req("stop")),
            Ok(Fault::Stop { held: false })
        );
        let mut timed = req("stop");
        timed.duration = Some(Duration::from_secs(3));
        assert_eq!(Fault::from_request(&timed), Ok(Fault::Stop { held: true }));
        assert_eq!(
            Fault::from_request(&req("refuse-new")),
            Ok(Fault::Network {
                toxic: Toxic::RefuseNew,
                toxicity: 1.0
            })
        );
    }

    #[test]
    fn negative_durations_are_refused_when_parsed() {
        let e = serde_json::from_str::<FaultRequest>(
            r#"{"fault":"pause","target":"redis","for":"-5s"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("negative duration"), "{e}");
        let e =
            serde_json::from_str::<FaultRequest>(r#"{"fault":"pause","target":"redis","bogus":1}"#)
                .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn patterns() {
        assert!(matches("api-*", "api-2"));
        assert!(!matches("api-*", "gateway"));
        assert!(matches("redis", "redis"));
        assert!(!matches("redis", "redis-2"));
        assert_eq!(random_pool("api-random").as_deref(), Some("api-*"));
        assert_eq!(random_pool("api-2"), None);
    }
}
