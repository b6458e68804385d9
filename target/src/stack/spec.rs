//! `StackSpec`: what stack to bring up — shared by `slolab stack up` flags and the
//! `[stack]` section of an experiment profile, hence serde with kebab-case and
//! unknown fields rejected.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::gateway::Balance;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StackSpec {
    /// API instances behind the gateway. Default 2.
    pub instances: usize,
    /// Default `sqlite` (embedded: needs nothing installed).
    pub db: DbKind,
    /// Default `none`.
    pub cache: CacheKind,
    /// Default `builtin`.
    pub gateway: GatewayKind,
    /// Default `round-robin`.
    pub balance: Balance,
    /// The gateway's port on 127.0.0.1; 0 picks a free one. Default 8080.
    pub port: u16,
    /// Tasks seeded at start (spread over `seed-users` users). Default 0.
    pub seed_tasks: usize,
    /// Users seeded when tasks are. Default 10.
    pub seed_users: usize,
    /// What happens when an instance exits unexpectedly. Default `never`.
    pub restart: RestartPolicy,
    /// Where logs, the state file and the SQLite database go. Default
    /// `$XDG_RUNTIME_DIR/slolab`, else `/tmp/slolab-$UID/stack`.
    pub run_dir: Option<PathBuf>,
    /// Put a fault proxy in front of every instance, Redis and PostgreSQL so
    /// network faults can be injected. Default true; off for pure benchmarks.
    pub fault_proxies: bool,
    /// Tokio worker threads per API instance (default: one per core).
    pub api_threads: Option<usize>,
    /// Reopen the SQLite database an earlier stack left in the run dir instead
    /// of starting from an empty one. Default false: every stack starts fresh, as
    /// a PostgreSQL stack always does (its cluster lives in a new temp dir).
    pub keep_data: bool,
}

impl StackSpec {
    /// API instances the supervisor starts: at least one, since a gateway with
    /// no upstream serves nothing.
    pub fn instance_count(&self) -> usize {
        self.instances.max(1)
    }

    /// The components this stack will have, by the names the supervisor gives
    /// them and chaos targets use: the one list every planner and the
    /// supervisor agree on.
    pub fn component_names(&self) -> Vec<String> {
        let mut names = vec!["gateway".to_string()];
        names.extend((1..=self.instance_count()).map(|i| format!("api-{i}")));
        if self.cache == CacheKind::Redis {
            names.push("redis".into());
        }
        if self.db == DbKind::Postgres {
            names.push("postgres".into());
        }
        names
    }
}

impl Default for StackSpec {
    fn default() -> Self {
        StackSpec {
            instances: 2,
            db: DbKind::Sqlite,
            cache: CacheKind::None,
            gateway: GatewayKind::Builtin,
            balance: Balance::RoundRobin,
            port: 8080,
            seed_tasks: 0,
            seed_users: 10,
            restart: RestartPolicy::default(),
            run_dir: None,
            fault_proxies: true,
            api_threads: None,
            keep_data: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheKind {
    None,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayKind {
    Builtin,
    Nginx,
}

/// Like an orchestrator's: `never`, or `on-failure` (restart after a delay, on the
/// same port and data, when a component exits without being asked to).
/// Written `"never"`, `"on-failure"` (1 s delay) or `"on-failure:250ms"`.
/// The default is `on-failure`, as an orchestrator's is: a crashed or killed
/// instance comes back; a scenario that wants it to stay dead says `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    Never,
    OnFailure { delay: Duration },
}

pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::OnFailure {
            delay: DEFAULT_RESTART_DELAY,
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "never" => Ok(RestartPolicy::Never),
            None if s == "on-failure" => Ok(RestartPolicy::OnFailure {
                delay: DEFAULT_RESTART_DELAY,
            }),
            Some(("on-failure", delay)) => humantime::parse_duration(delay.trim())
                .map(|delay| RestartPolicy::OnFailure { delay })
                .map_err(|e| format!("bad restart delay `{delay}`: {e}")),
            _ => Err(format!(
                "unknown restart policy `{s}`; expected `never`, `on-failure` or `on-failure:DELAY` (e.g. on-failure:500ms)"
            )),
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        p.to_string()
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::Never => f.write_str("never"),
            RestartPolicy::OnFailure { delay } => {
                write!(f, "on-failure:{}", humantime::format_duration(*delay))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_needs_nothing_installed() {
        let spec: StackSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, StackSpec::default());
        assert_eq!(spec.instances, 2);
        assert_eq!(spec.db, DbKind::Sqlite);
        assert_eq!(spec.cache, CacheKind::None);
        assert_eq!(spec.port, 8080);
        assert!(!spec.keep_data, "a new stack starts with fresh data");
    }

    #[test]
    fn parses_a_profile_section_in_kebab_case() {
        let spec: StackSpec = serde_json::from_str(
            r#"{"instances":4,"db":"postgres","cache":"redis","gateway":"nginx",
                "balance":"least-connections","seed-tasks":100,"restart":"on-failure:250ms",
                "keep-data":true}"#,
        )
        .unwrap();
        assert_eq!(spec.instances, 4);
        assert_eq!(spec.db, DbKind::Postgres);
        assert_eq!(spec.cache, CacheKind::Redis);
        assert_eq!(spec.gateway, GatewayKind::Nginx);
        assert_eq!(spec.balance, Balance::LeastConnections);
        assert_eq!(spec.seed_tasks, 100);
        assert!(spec.keep_data);
        assert_eq!(
            spec.restart,
            RestartPolicy::OnFailure {
                delay: Duration::from_millis(250)
            }
        );
        let err = serde_json::from_str::<StackSpec>(r#"{"instancez":4}"#).unwrap_err();
        assert!(err.to_string().contains("instancez"), "{err}");
    }

    #[test]
    fn restart_policy_round_trips_and_rejects_nonsense() {
        for s in ["never", "on-failure:250ms", "on-failure:1s"] {
            let p: RestartPolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            "on-failure".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure {
                delay: DEFAULT_RESTART_DELAY
            }
        );
        assert!("always".parse::<RestartPolicy>().is_err());
        assert!("on-failure:soon".parse::<RestartPolicy>().is_err());
    }
}
