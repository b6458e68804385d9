//! One component of the stack — how to launch it (again, on the same port and
//! data), the process while it runs, and the fault proxy its clients go through.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chaos::{ComponentKind, FaultProxy};
use nix::sys::signal::Signal;

use super::{probe, StackError};
use crate::process::nginx::{Nginx, NginxOptions};
use crate::process::postgres::{Postgres, PostgresOptions};
use crate::process::redis::{Redis, RedisOptions};
use crate::process::{open_log, ChildProcess, READY_TIMEOUT};

/// SIGTERM lets an instance drain (its own grace is 10 s); then SIGKILL.
pub const SERVE_STOP_GRACE: Duration = Duration::from_secs(15);

/// How to start a component, kept so that a restart reuses port and data.
#[derive(Debug, Clone)]
pub enum Recipe {
    /// `slolab serve ...` (an API instance or the builtin gateway), ready when
    /// `GET ready_path` answers 200.
    Serve {
        bin: PathBuf,
        args: Vec<OsString>,
        env: Vec<(String, String)>,
        ready_path: &'static str,
    },
    Postgres(PostgresOptions),
    Redis(RedisOptions),
    Nginx(NginxOptions),
}

/// The live process behind a component. Dropping a launcher handle stops it.
#[derive(Debug)]
pub enum Running {
    Serve(ChildProcess),
    Postgres(Postgres),
    Redis(Redis),
    Nginx(Nginx),
}

impl Running {
    pub fn child(&self) -> &ChildProcess {
        match self {
            Running::Serve(c) => c,
            Running::Postgres(p) => p.child(),
            Running::Redis(r) => r.child(),
            Running::Nginx(n) => n.child(),
        }
    }

    /// Stop gracefully, then forcefully (blocking: call off the async threads).
    pub fn stop(self) {
        match self {
            Running::Serve(c) => {
                c.stop(Signal::SIGTERM, SERVE_STOP_GRACE);
            }
            // Their Drop does the kind-specific graceful stop.
            other => drop(other),
        }
    }
}

pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    /// Where the process listens.
    pub port: u16,
    pub log: PathBuf,
    pub recipe: Recipe,
    pub running: Option<Running>,
    /// The fault proxy in front of `port`, if the stack has proxies.
    pub front: Option<FaultProxy>,
    /// Stopped on purpose (chaos `stop`, or the stack is stopping): the restart
    /// policy leaves it down.
    pub held: bool,
    /// Bumped on every deliberate stop/start, so a monitor can tell an exit it
    /// caused from a crash.
    pub generation: u64,
    pub restarts: u32,
}

impl Component {
    pub fn addr(&self) -> SocketAddr {
        crate::process::loopback(self.port)
    }

    /// The address clients should use: the proxy if there is one.
    pub fn front_addr(&self) -> SocketAddr {
        self.front
            .as_ref()
            .map(FaultProxy::local_addr)
            .unwrap_or_else(|| self.addr())
    }

    pub fn pid(&self) -> Option<u32> {
        self.running
            .as_ref()
            .map(|r| r.child())
            .filter(|c| c.is_running())
            .map(ChildProcess::pid)
    }

    pub fn kind_name(&self) -> &'static str {
        kind_name(&self.kind)
    }
}

pub fn kind_name(kind: &ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Api => "api",
        ComponentKind::Gateway => "gateway",
        ComponentKind::Redis => "redis",
        ComponentKind::Postgres => "postgres",
        ComponentKind::Other => "other",
    }
}

/// Start a component from its recipe and wait until it is ready.
pub async fn launch(
    name: &str,
    recipe: &Recipe,
    port: u16,
    log: &Path,
) -> Result<Running, StackError> {
    let failed = |source: crate::process::ProcessError| StackError::Launch {
        name: name.to_string(),
        source,
    };
    match recipe.clone() {
        Recipe::Serve {
            bin,
            args,
            env,
            ready_path,
        } => {
            let (out, err) = open_log(log).map_err(failed)?;
            let mut command = Command::new(&bin);
            command
                .args(&args)
                .envs(env)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            let child = ChildProcess::spawn(name, command).map_err(failed)?;
            wait_http_ready(
                name,
                &child,
                crate::process::loopback(port),
                ready_path,
                log,
            )
            .await?;
            Ok(Running::Serve(child))
        }
        Recipe::Postgres(opts) => {
            blocking(name, move || Postgres::start(opts).map(Running::Postgres)).await
        }
        Recipe::Redis(opts) => blocking(name, move || Redis::start(opts).map(Running::Redis)).await,
        Recipe::Nginx(opts) => blocking(name, move || Nginx::start(opts).map(Running::Nginx)).await,
    }
}

async fn blocking(
    name: &str,
    start: impl FnOnce() -> Result<Running, crate::process::ProcessError> + Send + 'static,
) -> Result<Running, StackError> {
    tokio::task::spawn_blocking(start)
        .await
        .map_err(|e| StackError::Internal(format!("launching {name}: {e}")))?
        .map_err(|source| StackError::Launch {
            name: name.to_string(),
            source,
        })
}

async fn wait_http_ready(
    name: &str,
    child: &ChildProcess,
    addr: SocketAddr,
    path: &str,
    log: &Path,
) -> Result<(), StackError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(status) = child.try_status() {
            return Err(StackError::Launch {
                name: name.to_string(),
                source: crate::process::ProcessError::exited_early(name, status, log),
            });
        }
        if let Ok((200, _)) = probe::http_get(addr, path, None).await {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            child.stop(Signal::SIGKILL, Duration::from_secs(1));
            return Err(StackError::Launch {
                name: name.to_string(),
                source: crate::process::ProcessError::NotReady {
                    name: name.to_string(),
                    waited: started.elapsed(),
                    log: log.display().to_string(),
                    tail: crate::process::log_tail(log),
                },
            });
        }
        tokio::select! {
            _ = child.exited() => {}
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
