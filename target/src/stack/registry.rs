//! The registry of a running stack's components: the one shared record of their
//! pids and proxies that the monitors, the control endpoint and chaos all read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{ComponentKind, FaultProxy};
use futures::future::BoxFuture;

use super::{component, probe, ComponentInfo, ComponentStatus, StackError, StackState};
use component::{launch, Component, Running};

/// Alive and not a zombie (a zombie is dead, just not yet reaped by its parent).
pub fn pid_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    chaos::ProcStat::read(pid).is_some_and(|stat| !stat.dead())
}

/// The components of a running stack, shared by the monitors, the control
/// endpoint and the chaos injector (through [`chaos::Components`]).
pub struct Registry {
    pub(super) components: Mutex<Vec<Component>>,
    pub(super) stopping: AtomicBool,
    pub(super) changed: tokio::sync::Notify,
    /// The state file to keep current as pids change (set once the stack is up).
    pub(super) state: Mutex<Option<(PathBuf, StackState)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .finish()
    }
}

impl Registry {
    pub(super) fn new() -> Registry {
        Registry {
            components: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            state: Mutex::new(None),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn with<R>(&self, name: &str, f: impl FnOnce(&mut Component) -> R) -> Option<R> {
        self.lock().iter_mut().find(|c| c.name == name).map(f)
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|c| c.name.clone()).collect()
    }

    /// The pids of every running component.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.lock()
            .iter()
            .filter_map(|c| c.pid().map(|p| (c.name.clone(), p)))
            .collect()
    }

    pub fn infos(&self) -> Vec<ComponentInfo> {
        self.lock()
            .iter()
            .map(|c| ComponentInfo {
                name: c.name.clone(),
                kind: c.kind_name().to_string(),
                pid: c.pid(),
                port: c.port,
                front: c.front.as_ref().map(FaultProxy::local_addr),
                log: c.log.clone(),
                restarts: c.restarts,
            })
            .collect()
    }

    /// Every component with a live health probe.
    pub async fn status(&self) -> Vec<ComponentStatus> {
        struct Row {
            name: String,
            kind: ComponentKind,
            pid: Option<u32>,
            exited: Option<String>,
            addr: SocketAddr,
            port: u16,
            front: Option<SocketAddr>,
            restarts: u32,
        }
        let rows: Vec<Row> = self
            .lock()
            .iter()
            .map(|c| Row {
                name: c.name.clone(),
                kind: c.kind.clone(),
                pid: c.pid(),
                exited: c
                    .running
                    .as_ref()
                    .and_then(|r| r.child().try_status())
                    .map(|s| s.to_string()),
                addr: c.addr(),
                port: c.port,
                front: c.front.as_ref().map(FaultProxy::local_addr),
                restarts: c.restarts,
            })
            .collect();
        let probes = rows.iter().map(|row| async move {
            if let Some(status) = &row.exited {
                return format!("exited ({status})");
            }
            if row.pid.is_none() {
                return "stopped".to_string();
            }
            match row.kind {
                ComponentKind::Api | ComponentKind::Gateway => {
                    match probe::http_get(row.addr, "/readyz", None).await {
                        Ok((200, _)) => "healthy".to_string(),
                        Ok((code, _)) => format!("unhealthy ({code})"),
                        Err(_) => "down".to_string(),
                    }
                }
                ComponentKind::Redis => {
                    let up = probe::redis_ping(row.addr).await;
                    (if up { "healthy" } else { "down" }).to_string()
                }
                _ => {
                    let up = probe::tcp_open(row.addr).await;
                    (if up { "healthy" } else { "down" }).to_string()
                }
            }
        });
        let health = futures::future::join_all(probes).await;
        rows.into_iter()
            .zip(health)
            .map(|(row, health)| ComponentStatus {
                name: row.name,
                kind: component::kind_name(&row.kind).to_string(),
                pid: row.pid,
                port: row.port,
                front: row.front,
                health,
                restarts: row.restarts,
            })
            .collect()
    }

    /// Rewrite the state file after pids changed.
    pub(super) fn persist(&self) {
        let infos = self.infos();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((run_dir, state)) = state.as_mut() {
            state.components = infos;
            if let Err(e) = state.write(run_dir) {
                tracing::warn!(error = %e, "could not update the state file");
            }
        }
    }

    /// Stop a component and hold it down (no restart policy) until
    /// [`Registry::start_component`].
    pub async fn stop_component(&self, name: &str) -> Result<(), StackError> {
        let running = self
            .with(name, |c| {
                c.held = true;
                c.generation += 1;
                c.running.take()
            })
            .ok_or_else(|| StackError::UnknownComponent(name.to_string()))?;
        self.changed.notify_waiters();
        if let Some(running) = running {
            tracing::info!(component = name, pid = running.child().pid(), "stopping");
            tokio::task::spawn_blocking(move || running.stop())
                .await
                .map_err(|e| StackError::Internal(format!("stopping {name}: {e}")))?;
        }
        self.persist();
        Ok(())
    }

    /// Start a component again on the same port and data (no-op if it runs).
    pub async fn start_component(&self, name: &str) -> Result<(), StackError> {
        let (recipe, port, log, running) = self
            .with(name, |c| {
                let running = c.running.as_ref().is_some_and(|r| r.child().is_running());
                (c.recipe.clone(), c.port, c.log.clone(), running)
            })
            .ok_or_else(|| StackError::UnknownComponent(name.to_string()))?;
        if running {
            return Ok(());
        }
        let fresh = launch(name, &recipe, port, &log).await?;
        let previous = self.with(name, |c| {
            c.held = false;
            c.generation += 1;
            c.restarts += 1;
            c.running.replace(fresh)
        });
        // A previous handle here is an exited process; dropping it is a no-op stop.
        drop(previous.flatten());
        self.changed.notify_waiters();
        self.persist();
        tracing::info!(component = name, "started again");
        Ok(())
    }

    /// Watches one component and applies the restart policy when it exits
    /// without being asked to.
    pub(super) async fn monitor(self: Arc<Self>, name: String, delay: Duration) {
        loop {
            let notified = self.changed.notified();
            let Some((child, generation, held)) = self.with(&name, |c| {
                (
                    c.running.as_ref().map(|r| r.child().clone()),
                    c.generation,
                    c.held,
                )
            }) else {
                return;
            };
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let child = match (child, held) {
                (Some(child), false) => child,
                // Held down or between launches: wait for a change.
                _ => {
                    notified.await;
                    continue;
                }
            };
            tokio::select! {
                status = child.exited() => {
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let deliberate = self.with(&name, |c| c.held || c.generation != generation).unwrap_or(true);
                    if deliberate {
                        continue;
                    }
                    tracing::warn!(component = %name, pid = child.pid(), %status, ?delay, "exited unexpectedly; restarting");
                    self.persist();
                }
                () = notified => continue,
            }
            tokio::time::sleep(delay).await;
            let still_down = self
                .with(&name, |c| !c.held && c.generation == generation)
                .unwrap_or(false);
            if self.stopping.load(Ordering::SeqCst) || !still_down {
                continue;
            }
            if let Err(e) = self.start_component(&name).await {
                tracing::error!(component = %name, error = %e, "restart failed; will retry");
                // The failed attempt leaves the old (exited) handle: the next loop
                // sees it exited at once and retries after `delay`.
            }
        }
    }

    /// Stop everything in order: gateway, instances, cache, database. Blocking.
    pub(super) fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        let rank = |kind: &ComponentKind| match kind {
            ComponentKind::Gateway => 0,
            ComponentKind::Api => 1,
            ComponentKind::Other => 2,
            ComponentKind::Redis => 3,
            ComponentKind::Postgres => 4,
        };
        let mut taken: Vec<(u8, String, Running)> = self
            .lock()
            .iter_mut()
            .filter_map(|c| {
                c.held = true;
                let r = c.running.take()?;
                Some((rank(&c.kind), c.name.clone(), r))
            })
            .collect();
        // Instances stop in parallel (each may drain for a while); tiers in order.
        for tier in 0..=4u8 {
            let (batch, rest): (Vec<_>, Vec<_>) =
                taken.into_iter().partition(|(rank, _, _)| *rank == tier);
            taken = rest;
            std::thread::scope(|scope| {
                for (_, name, running) in batch {
                    scope.spawn(move || {
                        tracing::debug!(component = %name, "stopping");
                        running.stop();
                    });
                }
            });
        }
        // Proxies last: nothing is left to talk through them.
        for c in self.lock().iter_mut() {
            c.front = None;
        }
    }
}

impl chaos::Components for Registry {
    fn names(&self) -> Vec<String> {
        Registry::names(self)
    }

    fn lookup(&self, name: &str) -> Option<chaos::Component> {
        self.with(name, |c| chaos::Component {
            name: c.name.clone(),
            kind: c.kind.clone(),
            pid: c.pid(),
            proxy: c.front.as_ref().map(FaultProxy::handle),
        })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), chaos::ComponentError>> {
        Box::pin(async move {
            self.stop_component(name)
                .await
                .map_err(|e| chaos::ComponentError(e.to_string()))
        })
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), chaos::ComponentError>> {
        Box::pin(async move {
            self.start_component(name)
                .await
                .map_err(|e| chaos::ComponentError(e.to_string()))
        })
    }
}
