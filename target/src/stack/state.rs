//! `stack.json`, the running stack's address book: how `slolab stack status|down`,
//! `slolab chaos` and experiment runs find the gateway, the processes and the
//! control endpoint (with its token, hence mode 0600).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StackError, StackSpec};

pub const STATE_FILE: &str = "stack.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StackState {
    /// The supervising process (`slolab stack up`): `stack down` signals it.
    pub pid: u32,
    /// The gateway's URL: where load goes.
    pub url: String,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// An HS256 token of the seeded admin user.
    pub admin_token: String,
    pub admin_user: String,
    pub admin_password: String,
    pub control: ControlInfo,
    pub components: Vec<ComponentInfo>,
    pub spec: StackSpec,
}

/// The loopback control endpoint: `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlInfo {
    pub addr: SocketAddr,
    pub token: String,
}

impl ControlInfo {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentInfo {
    pub name: String,
    /// `api`, `gateway`, `redis` or `postgres`.
    pub kind: String,
    /// None while the component is stopped.
    pub pid: Option<u32>,
    /// Where the process itself listens.
    pub port: u16,
    /// Where its clients connect: the fault proxy in front of it, if any.
    pub front: Option<SocketAddr>,
    pub log: PathBuf,
    /// Times the restart policy (or a chaos `restart`) started it again.
    pub restarts: u32,
}

/// `$XDG_RUNTIME_DIR/slolab`, else `/tmp/slolab-$UID/stack`.
pub fn default_run_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("slolab"),
        None => PathBuf::from(format!("/tmp/slolab-{}", nix::unistd::getuid())).join("stack"),
    }
}

impl StackState {
    pub fn path_in(run_dir: &Path) -> PathBuf {
        run_dir.join(STATE_FILE)
    }

    /// Read `stack.json` from `run_dir`.
    pub fn read(run_dir: &Path) -> Result<StackState, StackError> {
        let path = Self::path_in(run_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| StackError::NoState {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| StackError::BadState {
            path,
            message: e.to_string(),
        })
    }

    /// Write atomically (temp file + rename) with mode 0600: readers never see half
    /// a file, and only we can read the tokens.
    pub fn write(&self, run_dir: &Path) -> Result<(), StackError> {
        let path = Self::path_in(run_dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| StackError::BadState {
            path: path.clone(),
            message: e.to_string(),
        })?;
        atomicfile::write_atomic_mode(&path, &json, 0o600).map_err(|source| StackError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    }

    /// Read `stack.json` and require its `stack up` process to be alive.
    pub fn read_live(run_dir: &Path) -> Result<StackState, StackError> {
        let state = Self::read(run_dir)?;
        if !state.is_live() {
            return Err(StackError::NotRunning {
                run_dir: run_dir.to_path_buf(),
                pid: state.pid,
            });
        }
        Ok(state)
    }

    /// Whether the supervising process of this state is still alive.
    pub fn is_live(&self) -> bool {
        super::pid_alive(self.pid)
    }
}
