//! The Supervisor: brings the whole stack up as real processes (PostgreSQL, Redis,
//! N API instances re-executing our binary, the gateway), each behind a fault
//! proxy, seeds it, keeps it running under a restart policy, and takes it down
//! in order (gateway first, database last) — with no process left behind.

pub mod component;
pub mod control;
pub mod probe;
pub mod spec;
pub mod state;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::{ComponentKind, FaultProxy, ProxyOptions};
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::auth::{JwtKey, Role};
use crate::gateway::{GatewayConfig, Upstream};
use crate::process::nginx::NginxOptions;
use crate::process::postgres::PostgresOptions;
use crate::process::redis::RedisOptions;
use crate::process::{free_port, ProcessError};
use crate::store::{DbConfig, Store};
use component::{launch, Component, Recipe, Running};

pub use control::{ComponentStatus, ControlRoutes};
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
    components: Mutex<Vec<Component>>,
    stopping: AtomicBool,
    changed: tokio::sync::Notify,
    /// The state file to keep current as pids change (set once the stack is up).
    state: Mutex<Option<(PathBuf, StackState)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("names", &self.names())
            .finish()
    }
}

impl Registry {
    fn new() -> Registry {
        Registry {
            components: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            state: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Component) -> R) -> Option<R> {
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
    fn persist(&self) {
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
    async fn monitor(self: Arc<Self>, name: String, delay: Duration) {
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
    fn stop_all(&self) {
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

/// Start every component in dependency order; returns (url, admin token, admin
/// password). On error the caller stops what was started.
async fn assemble(
    spec: &StackSpec,
    bin: &Path,
    run_dir: &Path,
    log_dir: &Path,
    registry: &Arc<Registry>,
    postgres_dir: &mut Option<tempfile::TempDir>,
) -> Result<(String, String, String), StackError> {
    let secret = control::new_token();
    let admin_password = control::new_token()[..20].to_string();
    let io = |what: String| move |source| StackError::Io { what, source };

    // The database: SQLite in the run dir, or a private PostgreSQL cluster. The
    // cluster lives in a temp dir (not the run dir) because the `postgres` user
    // must be able to reach it, which a private $XDG_RUNTIME_DIR does not allow.
    let (db_direct, api_db) = match spec.db {
        DbKind::Sqlite => {
            let path = run_dir.join("slolab.db");
            if !spec.keep_data {
                remove_sqlite_files(&path)?;
            }
            let arg = format!("sqlite:{}", path.display());
            (DbConfig::Sqlite { path }, arg)
        }
        DbKind::Postgres => {
            if spec.keep_data {
                tracing::warn!("keep-data applies to SQLite only: a PostgreSQL stack's cluster is new each time");
            }
            let dir = tempfile::Builder::new()
                .prefix("slolab-stack-pg-")
                .tempdir()
                .map_err(io("creating a temp dir for postgres".into()))?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("chmod {}", dir.path().display())))?;
            }
            let opts = PostgresOptions {
                data_dir: Some(dir.path().join("data")),
                log_file: Some(log_dir.join("postgres.log")),
                max_connections: (spec.instances as u32 * 12 + 20).max(100),
                ..PostgresOptions::default()
            };
            *postgres_dir = Some(dir);
            let front = add_component(
                registry,
                "postgres",
                ComponentKind::Postgres,
                Recipe::Postgres(opts),
                log_dir,
                spec,
            )
            .await?;
            let (direct, database) = registry
                .with("postgres", |c| (c.port, "slolab"))
                .expect("just added");
            (
                DbConfig::Postgres {
                    url: format!("postgres://postgres@127.0.0.1:{direct}/{database}"),
                },
                format!("postgres://postgres@{front}/{database}"),
            )
        }
    };
    let api_redis = match spec.cache {
        CacheKind::None => None,
        CacheKind::Redis => {
            let opts = RedisOptions {
                port: None,
                dir: Some(run_dir.join("redis")),
                log_file: Some(log_dir.join("redis.log")),
            };
            let front = add_component(
                registry,
                "redis",
                ComponentKind::Redis,
                Recipe::Redis(opts),
                log_dir,
                spec,
            )
            .await?;
            Some(format!("redis://{front}/"))
        }
    };

    // Migrate and seed once, before any instance starts, so instances do not race
    // each other through migrations.
    let store = Store::connect(&db_direct).await?;
    let admin = crate::store::ensure_admin(&store, ADMIN_USER, &admin_password).await?;
    if spec.seed_tasks > 0 {
        let summary = crate::store::seed(&store, spec.seed_users, spec.seed_tasks).await?;
        tracing::info!(?summary, "seeded");
    }
    store.close().await;

    let instances = (1..=spec.instance_count()).map(|i| {
        let name = format!("api-{i}");
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "api".into(),
            "--name".into(),
            name.clone().into(),
        ];
        args.extend(["--db".into(), api_db.clone().into()]);
        if let Some(redis) = &api_redis {
            args.extend(["--redis".into(), redis.clone().into()]);
        }
        if let Some(threads) = spec.api_threads {
            args.extend(["--threads".into(), threads.to_string().into()]);
        }
        let recipe = Recipe::Serve {
            bin: bin.to_path_buf(),
            args,
            env: vec![(JWT_SECRET_ENV.to_string(), secret.clone())],
            ready_path: "/readyz",
        };
        let registry = registry.clone();
        async move {
            add_component(&registry, &name, ComponentKind::Api, recipe, log_dir, spec)
                .await
                .map(|front| Upstream { name, addr: front })
        }
    });
    let upstreams: Vec<Upstream> = futures::future::try_join_all(instances).await?;

    let port = if spec.port == 0 {
        free_port().map_err(|source| StackError::Launch {
            name: "gateway".into(),
            source,
        })?
    } else {
        spec.port
    };
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Err(StackError::PortInUse { port });
    }
    let gateway_config = GatewayConfig {
        upstreams: upstreams.clone(),
        balance: spec.balance.clone(),
        ..GatewayConfig::default()
    };
    let recipe = match spec.gateway {
        GatewayKind::Builtin => {
            let path = run_dir.join("gateway.json");
            let json = serde_json::to_vec_pretty(&gateway_config)
                .map_err(|e| StackError::Internal(e.to_string()))?;
            std::fs::write(&path, json).map_err(io(format!("writing {}", path.display())))?;
            Recipe::Serve {
                bin: bin.to_path_buf(),
                args: vec![
                    "serve".into(),
                    "gateway".into(),
                    "--config".into(),
                    path.into(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}").into(),
                ],
                env: vec![(JWT_SECRET_ENV.to_string(), secret.clone())],
                ready_path: "/readyz",
            }
        }
        GatewayKind::Nginx => {
            let prefix = run_dir.join("nginx");
            std::fs::create_dir_all(&prefix)
                .map_err(io(format!("creating {}", prefix.display())))?;
            let conf = crate::gateway::nginx_conf(
                &upstreams,
                port,
                &prefix,
                &crate::gateway::NginxOptions::from_gateway(&gateway_config),
            );
            let path = prefix.join("nginx.conf");
            std::fs::write(&path, conf).map_err(io(format!("writing {}", path.display())))?;
            Recipe::Nginx(NginxOptions {
                prefix,
                config: path,
                port,
                log_file: Some(log_dir.join("gateway.log")),
            })
        }
    };
    launch_component(
        registry,
        "gateway",
        ComponentKind::Gateway,
        recipe,
        port,
        log_dir,
        false,
    )
    .await?;
    if spec.gateway == GatewayKind::Nginx {
        // nginx is ready when it listens; wait until it also reaches an instance.
        wait_through(crate::process::loopback(port)).await;
    }

    let admin_token =
        JwtKey::new(secret.as_bytes()).issue(&admin.id.to_string(), Role::Admin, ADMIN_TOKEN_TTL);
    Ok((
        format!("http://127.0.0.1:{port}"),
        admin_token,
        admin_password,
    ))
}

/// An earlier stack's SQLite database, with its write-ahead log and shared
/// memory files: a new stack starts from an empty database, not the last run's.
fn remove_sqlite_files(path: &Path) -> Result<(), StackError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => tracing::debug!(file = %file.display(), "removed an earlier stack's data"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StackError::Io {
                    what: format!(
                        "removing the earlier stack's database {} (keep it with --keep-data)",
                        file.display()
                    ),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Poll `GET /readyz` through a gateway until an instance answers (bounded).
async fn wait_through(addr: SocketAddr) {
    for _ in 0..100 {
        if let Ok((200, _)) = probe::http_get(addr, "/readyz", None).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Launch a component on a free port (retrying if another process takes it
/// first), register it with a fault proxy in front; returns the front address.
async fn add_component(
    registry: &Arc<Registry>,
    name: &str,
    kind: ComponentKind,
    recipe: Recipe,
    log_dir: &Path,
    spec: &StackSpec,
) -> Result<SocketAddr, StackError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port().map_err(|source| StackError::Launch {
            name: name.to_string(),
            source,
        })?;
        let recipe = with_port(recipe.clone(), port);
        match launch_component(
            registry,
            name,
            kind.clone(),
            recipe,
            port,
            log_dir,
            spec.fault_proxies,
        )
        .await
        {
            Err(StackError::Launch {
                source: ProcessError::AddrInUse { .. },
                ..
            }) if attempt < PORT_ATTEMPTS => {
                tracing::info!(component = name, port, "lost the race for a port; retrying");
            }
            other => return other,
        }
    }
}

/// The recipe pinned to `port`, so every restart reuses it.
fn with_port(recipe: Recipe, port: u16) -> Recipe {
    match recipe {
        Recipe::Serve {
            bin,
            mut args,
            env,
            ready_path,
        } => {
            args.extend(["--listen".into(), format!("127.0.0.1:{port}").into()]);
            Recipe::Serve {
                bin,
                args,
                env,
                ready_path,
            }
        }
        Recipe::Postgres(opts) => Recipe::Postgres(PostgresOptions {
            port: Some(port),
            ..opts
        }),
        Recipe::Redis(opts) => Recipe::Redis(RedisOptions {
            port: Some(port),
            ..opts
        }),
        Recipe::Nginx(opts) => Recipe::Nginx(NginxOptions { port, ..opts }),
    }
}

async fn launch_component(
    registry: &Arc<Registry>,
    name: &str,
    kind: ComponentKind,
    recipe: Recipe,
    port: u16,
    log_dir: &Path,
    proxied: bool,
) -> Result<SocketAddr, StackError> {
    let log = log_dir.join(format!("{name}.log"));
    let log = match &recipe {
        Recipe::Postgres(PostgresOptions {
            log_file: Some(l), ..
        })
        | Recipe::Redis(RedisOptions {
            log_file: Some(l), ..
        })
        | Recipe::Nginx(NginxOptions {
            log_file: Some(l), ..
        }) => l.clone(),
        _ => log,
    };
    let running = launch(name, &recipe, port, &log).await?;
    let front = if proxied {
        let options = ProxyOptions {
            name: name.to_string(),
            seed: 0,
        };
        let proxy = FaultProxy::start_with(
            crate::process::loopback(0),
            crate::process::loopback(port),
            options,
        )
        .await
        .map_err(|source| StackError::Proxy {
            name: name.to_string(),
            source,
        });
        match proxy {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || running.stop()).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let front_addr = front
        .as_ref()
        .map(FaultProxy::local_addr)
        .unwrap_or_else(|| crate::process::loopback(port));
    tracing::info!(component = name, pid = running.child().pid(), port, front = %front_addr, "ready");
    let mut components = registry.lock();
    components.push(Component {
        name: name.to_string(),
        kind,
        port,
        log,
        recipe,
        running: Some(running),
        front,
        held: false,
        generation: 0,
        restarts: 0,
    });
    // A stable order whatever finished starting first: database, cache, api-1..N, gateway.
    components.sort_by_key(|c| {
        let rank = match c.kind {
            ComponentKind::Postgres => 0,
            ComponentKind::Redis => 1,
            ComponentKind::Api => 2,
            ComponentKind::Other => 3,
            ComponentKind::Gateway => 4,
        };
        let index: usize = c
            .name
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (rank, index)
    });
    Ok(front_addr)
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
