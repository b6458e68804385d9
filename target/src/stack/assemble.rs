//! Assembly: every component's recipe, launched in dependency order on free
//! ports behind its fault proxy, so `Supervisor::start` reads as one call.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chaos::{ComponentKind, FaultProxy, ProxyOptions};

use super::{
    component, control, probe, CacheKind, DbKind, GatewayKind, Registry, StackError, StackSpec,
    ADMIN_TOKEN_TTL, ADMIN_USER, JWT_SECRET_ENV, PORT_ATTEMPTS,
};
use crate::auth::{JwtKey, Role};
use crate::gateway::{GatewayConfig, Upstream};
use crate::process::nginx::NginxOptions;
use crate::process::postgres::PostgresOptions;
use crate::process::redis::RedisOptions;
use crate::process::{free_port, ProcessError};
use crate::store::{DbConfig, Store};
use component::{launch, Component, Recipe};

/// Start every component in dependency order; returns (url, admin token, admin
/// password). On error the caller stops what was started.
pub(super) async fn assemble(
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
