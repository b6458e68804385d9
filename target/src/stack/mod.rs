//! The Supervisor: brings the whole stack up as real processes (PostgreSQL, Redis,
//! N API instances re-executing our binary, the gateway), each behind a fault
//! proxy, seeds it, keeps it running under a restart policy, and takes it down
//! in order (gateway first, database last) — with no process left behind.

mod assemble;
pub mod component;
pub mod control;
pub mod probe;
mod registry;
pub mod spec;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chaos::ComponentKind;
use tokio::task::JoinHandle;

use crate::process::ProcessError;

use assemble::assemble;
pub use control::{ComponentStatus, ControlRoutes};
pub use registry::{pid_alive, Registry};
pub use spec::{CacheKind, DbKind, GatewayKind, RestartPolicy, StackSpec};
pub use state::{default_run_dir, ComponentInfo, ControlInfo, StackState};

/// The environment variable through which instances and the gateway get the
/// shared JWT secret (kept off command lines, which `ps` shows).
pub const JWT_SECRET_ENV: &str = "SLOLAB_JWT_SECRET";
/// The admin account the stack seeds and prints a token for.
pub const ADMIN_USER: &str = "admin";
/// Lifetime of the printed admin token.
const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Attempts at an instance port that another process grabbed first.
const PORT_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("starting {name}: {source}")]
    Launch {
        name: String,
        #[source]
        source: ProcessError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no running stack: cannot read {path} ({source}); start one with `slolab stack up`")]
    NoState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the stack in {} is not running (pid {pid} is gone); start one with `slolab stack up`", run_dir.display())]
    NotRunning { run_dir: PathBuf, pid: u32 },
    #[error("{path} is not a valid stack state file: {message}")]
    BadState { path: PathBuf, message: String },
    #[error("a stack is already running from {run_dir} (pid {pid}); stop it with `slolab stack down` or use another run dir")]
    AlreadyRunning { pid: u32, run_dir: PathBuf },
    #[error("fault proxy for {name}: {source}")]
    Proxy {
        name: String,
        #[source]
        source: chaos::ProxyError,
    },
    #[error("preparing the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the gateway port {port} is in use; pick another with --port (0 = any free port)")]
    PortInUse { port: u16 },
    #[error("no component named `{0}`")]
    UnknownComponent(String),
    #[error("{0}")]
    Internal(String),
}

/// Starts stacks. See [`Supervisor::start`].
#[derive(Debug)]
pub struct Supervisor;

/// A running stack. `stop()` (or drop) takes it down; nothing survives it.
pub struct Stack {
    registry: Arc<Registry>,
    state: StackState,
    control_stop: Option<tokio::sync::oneshot::Sender<()>>,
    monitors: Vec<JoinHandle<()>>,
    stopped: bool,
    // Dropped after the processes are stopped (field order): the cluster's files.
    _postgres_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("url", &self.state.url)
            .field("run_dir", &self.state.run_dir)
            .finish()
    }
}

impl Supervisor {
    /// Bring up `spec`, re-executing `bin` (normally `std::env::current_exe()`) as
    /// `slolab serve api|gateway` for the instances and the builtin gateway.
    pub async fn start(spec: StackSpec, bin: PathBuf) -> Result<Stack, StackError> {
        Supervisor::start_with(spec, bin, None).await
    }

    /// As [`Supervisor::start`], with extra routes on the control endpoint.
    pub async fn start_with(
        spec: StackSpec,
        bin: PathBuf,
        routes: Option<ControlRoutes>,
    ) -> Result<Stack, StackError> {
        let run_dir = spec.run_dir.clone().unwrap_or_else(default_run_dir);
        let log_dir = run_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|source| StackError::Io {
            what: format!("creating {}", log_dir.display()),
            source,
        })?;
        if let Ok(existing) = StackState::read(&run_dir) {
            if existing.is_live() && existing.pid != std::process::id() {
                return Err(StackError::AlreadyRunning {
                    pid: existing.pid,
                    run_dir,
                });
            }
        }
        let registry = Arc::new(Registry::new());
        let mut postgres_dir = None;
        let assembled = assemble(
            &spec,
            &bin,
            &run_dir,
            &log_dir,
            &registry,
            &mut postgres_dir,
        )
        .await;
        let (url, admin_token, admin_password) = match assembled {
            Ok(v) => v,
            Err(e) => {
                let r = registry.clone();
                let _ = tokio::task::spawn_blocking(move || r.stop_all()).await;
                return Err(e);
            }
        };

        let token = control::new_token();
        let mut router = control::router(registry.clone());
        if let Some(routes) = routes {
            router = router.merge(routes(registry.clone() as Arc<dyn chaos::Components>));
        }
        let (control_addr, control_stop) = control::serve(control::protect(router, token.clone()))
            .await
            .map_err(|source| StackError::Io {
                what: "starting the control endpoint".into(),
                source,
            })?;
        let state = StackState {
            pid: std::process::id(),
            url,
            run_dir: run_dir.clone(),
            log_dir,
            admin_token,
            admin_user: ADMIN_USER.to_string(),
            admin_password,
            control: ControlInfo {
                addr: control_addr,
                token,
            },
            components: registry.infos(),
            spec: spec.clone(),
        };
        let mut stack = Stack {
            registry: registry.clone(),
            state: state.clone(),
            control_stop: Some(control_stop),
            monitors: Vec::new(),
            stopped: false,
            _postgres_dir: postgres_dir,
        };
        state.write(&run_dir)?;
        *registry.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((run_dir, state));
        if let RestartPolicy::OnFailure { delay } = spec.restart {
            for c in registry
                .lock()
                .iter()
                .filter(|c| matches!(c.kind, ComponentKind::Api | ComponentKind::Gateway))
            {
                stack.monitors.push(tokio::spawn(
                    registry.clone().monitor(c.name.clone(), delay),
                ));
            }
        }
        tracing::info!(url = %stack.state.url, "stack ready");
        Ok(stack)
    }
}

impl Stack {
    /// The gateway's base URL.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    pub fn admin_token(&self) -> &str {
        &self.state.admin_token
    }

    pub fn run_dir(&self) -> &Path {
        &self.state.run_dir
    }

    pub fn log_dir(&self) -> &Path {
        &self.state.log_dir
    }

    pub fn control(&self) -> &ControlInfo {
        &self.state.control
    }

    /// What the state file says (components as of now).
    pub fn state(&self) -> StackState {
        StackState {
            components: self.registry.infos(),
            ..self.state.clone()
        }
    }

    /// The components, for the chaos injector and tests.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Every running component's pid.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.registry.pids()
    }

    /// Stop everything (gateway first, database last), by pid, gracefully then
    /// forcefully; remove the state file. Blocking; idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for monitor in self.monitors.drain(..) {
            monitor.abort();
        }
        if let Some(tx) = self.control_stop.take() {
            let _ = tx.send(());
        }
        self.registry.stop_all();
        // Only our own state file: another stack may have taken the run dir since.
        if StackState::read(&self.state.run_dir)
            .is_ok_and(|s| s.pid == self.state.pid && s.control == self.state.control)
        {
            let _ = std::fs::remove_file(StackState::path_in(&self.state.run_dir));
        }
        tracing::info!("stack stopped");
    }

    /// [`Stack::stop`] off the async threads.
    pub async fn shutdown(mut self) {
        let _ = tokio::task::spawn_blocking(move || self.stop()).await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
