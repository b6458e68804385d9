//! The supervisor end to end, against the real `slolab` binary: a postgres+redis
//! stack up and down with no process left, the embedded default through
//! `slolab stack up|status|down`, the restart policy, and no orphans after SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use target::stack::{
    pid_alive, CacheKind, DbKind, RestartPolicy, StackSpec, StackState, Supervisor,
};

const BIN: &str = env!("CARGO_BIN_EXE_slolab");
/// Generous: the test machine is shared; these bound a hang, they are not SLOs.
const PATIENCE: Duration = Duration::from_secs(90);

fn run_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slolab-stack-test-")
        .tempdir()
        .unwrap()
}

fn spec(run_dir: &Path) -> StackSpec {
    StackSpec {
        port: 0,
        run_dir: Some(run_dir.to_path_buf()),
        ..StackSpec::default()
    }
}

/// A blocking GET returning (status, headers lowercased, body).
fn get(url: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut stream = TcpStream::connect(addr).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_stack_comes_up_serves_and_leaves_no_process() {
    let dir = run_dir();
    let spec = StackSpec {
        db: DbKind::Postgres,
        cache: CacheKind::Redis,
        seed_tasks: 5,
        ..spec(dir.path())
    };
    let stack = Supervisor::start(spec, PathBuf::from(BIN))
        .await
        .expect("stack starts");
    let pids = stack.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["postgres", "redis", "api-1", "api-2", "gateway"]);

    // Every component reports healthy; instances, redis and postgres sit behind proxies.
    let status = stack.registry().status().await;
    for c in &status {
        assert_eq!(c.health, "healthy", "{c:?}");
        if c.kind != "gateway" {
            assert!(c.front.is_some_and(|f| f.port() != c.port), "{c:?}");
        }
    }
    let state = StackState::read(dir.path()).expect("state file");
    assert_eq!(state.url, stack.url());
    assert_eq!(state.components.len(), 5);

    // Seeded tasks come back through gateway → proxy → instance → proxy → postgres,
    // spread over both instances.
    let url = stack.url().to_string();
    let served_by = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (code, headers, body) = get(&url, "/api/v1/tasks");
            assert_eq!(code, 200, "{body}");
            assert!(body.contains("\"total\":5"), "{body}");
            seen.push(header(&headers, "x-served-by").unwrap().to_string());
        }
        seen
    })
    .await
    .unwrap();
    assert!(served_by.contains(&"api-1".to_string()), "{served_by:?}");
    assert!(served_by.contains(&"api-2".to_string()), "{served_by:?}");

    // Chaos `restart` of the database: held down, then back on the same port with
    // the same data, and the instances reconnect through their proxy.
    let registry = stack.registry();
    let port_before = registry
        .infos()
        .iter()
        .find(|c| c.name == "postgres")
        .unwrap()
        .port;
    registry.stop_component("postgres").await.unwrap();
    registry.start_component("postgres").await.unwrap();
    let pg = registry
        .infos()
        .into_iter()
        .find(|c| c.name == "postgres")
        .unwrap();
    assert_eq!(pg.port, port_before);
    // Every instance's /readyz pings the database through its proxy (a cached
    // task list alone would not prove the reconnection).
    let started = Instant::now();
    while !registry
        .status()
        .await
        .iter()
        .all(|c| c.health == "healthy")
    {
        assert!(started.elapsed() < PATIENCE, "instances never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = stack.url().to_string();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "tasks to be served again after the database restart",
            || {
                let (code, _, body) = get(&url, "/api/v1/tasks");
                code == 200 && body.contains("\"total\":5")
            },
        )
    })
    .await
    .unwrap();

    let mut pids = pids;
    pids.extend(stack.pids());
    stack.shutdown().await;
    for (name, pid) in pids {
        assert!(!pid_alive(pid), "{name} (pid {pid}) survived stop");
    }
    assert!(
        !StackState::path_in(dir.path()).exists(),
        "state file removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_brings_a_killed_instance_back_on_the_same_port() {
    let dir = run_dir();
    let spec = StackSpec {
        instances: 1,
        restart: RestartPolicy::OnFailure {
            delay: Duration::from_millis(100),
        },
        ..spec(dir.path())
    };
    let stack = Supervisor::start(spec, PathBuf::from(BIN))
        .await
        .expect("stack starts");
    let registry = stack.registry();
    let before = registry
        .infos()
        .into_iter()
        .find(|c| c.name == "api-1")
        .unwrap();
    let old_pid = before.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let r = registry.clone();
    let after = tokio::task::spawn_blocking(move || {
        let mut found = None;
        wait_until("api-1 to come back", || {
            found = r
                .infos()
                .into_iter()
                .find(|c| c.name == "api-1" && c.restarts == 1 && c.pid.is_some());
            found.is_some()
        });
        found.unwrap()
    })
    .await
    .unwrap();
    assert_ne!(after.pid, Some(old_pid));
    assert_eq!(after.port, before.port, "same port");
    assert_eq!(after.front, before.front, "same proxy in front");
    let status = registry.status().await;
    assert!(status.iter().all(|c| c.health == "healthy"), "{status:?}");
    // The state file follows the new pid.
    let state = StackState::read(dir.path()).unwrap();
    let api = state.components.iter().find(|c| c.name == "api-1").unwrap();
    assert_eq!(api.pid, after.pid);

    // A deliberate stop (chaos `restart`, first half) is held down, not restarted.
    registry.stop_component("api-1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(registry
        .infos()
        .iter()
        .any(|c| c.name == "api-1" && c.pid.is_none()));
    registry.start_component("api-1").await.unwrap();
    assert!(registry
        .infos()
        .iter()
        .any(|c| c.name == "api-1" && c.pid.is_some()));

    let pids = stack.pids();
    stack.shutdown().await;
    for (name, pid) in pids {
        assert!(!pid_alive(pid), "{name} (pid {pid}) survived stop");
    }
}

/// `slolab stack up` as a child; returns it once it printed its URL.
fn stack_up(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["stack", "up", "--port", "0", "--run-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("stack up exited before printing its URL")
            .unwrap();
        if let Some(url) = line.strip_prefix("slolab stack is up: ") {
            break url.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

#[test]
fn embedded_default_stack_up_status_down() {
    let dir = run_dir();
    let (mut up, url) = stack_up(dir.path(), &[]);
    let (code, headers, body) = get(&url, "/api/v1/tasks");
    assert_eq!(code, 200, "{body}");
    assert!(header(&headers, "x-served-by").is_some_and(|s| s.starts_with("api-")));
    let state = StackState::read(dir.path()).unwrap();
    assert_eq!(state.pid, up.id());
    assert_eq!(state.spec.db, DbKind::Sqlite);
    assert!(dir.path().join("slolab.db").exists());
    assert!(state.log_dir.join("api-1.log").exists());

    // A second stack on the same run dir is refused, leaving the first alone.
    let second = Command::new(BIN)
        .args(["stack", "up", "--port", "0", "--run-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("already running"), "{message}");

    let status = Command::new(BIN)
        .args(["stack", "status", "--run-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    for name in ["api-1", "api-2", "gateway"] {
        assert!(table.contains(name), "{table}");
    }
    assert_eq!(table.matches("healthy").count(), 3, "{table}");

    let down = Command::new(BIN)
        .args(["stack", "down", "--run-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(up.wait().unwrap().success());
    for c in &state.components {
        assert!(
            !pid_alive(c.pid.unwrap()),
            "{} survived `stack down`",
            c.name
        );
    }
    assert!(!StackState::path_in(dir.path()).exists());
}

#[test]
fn no_child_survives_a_sigkill_of_stack_up() {
    let dir = run_dir();
    let (mut up, _url) = stack_up(dir.path(), &["--instances", "1"]);
    let state = StackState::read(dir.path()).unwrap();
    let pids: Vec<(String, u32)> = state
        .components
        .iter()
        .map(|c| (c.name.clone(), c.pid.unwrap()))
        .collect();
    assert_eq!(pids.len(), 2);
    up.kill().unwrap(); // SIGKILL: no chance to clean up
    up.wait().unwrap();
    for (name, pid) in pids {
        wait_until(
            &format!("{name} (pid {pid}) to die with its parent"),
            || !pid_alive(pid),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_gateway_balances_over_the_instances_and_stops() {
    let dir = run_dir();
    let spec = StackSpec {
        gateway: target::stack::GatewayKind::Nginx,
        ..spec(dir.path())
    };
    let stack = Supervisor::start(spec, PathBuf::from(BIN))
        .await
        .expect("stack starts");
    assert!(dir.path().join("nginx/nginx.conf").exists());
    let url = stack.url().to_string();
    let served_by = tokio::task::spawn_blocking(move || {
        (0..4)
            .map(|_| {
                let (code, headers, body) = get(&url, "/api/v1/tasks");
                assert_eq!(code, 200, "{body}");
                header(&headers, "x-served-by").unwrap().to_string()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(served_by.iter().any(|s| s == "api-1"), "{served_by:?}");
    assert!(served_by.iter().any(|s| s == "api-2"), "{served_by:?}");
    let pids = stack.pids();
    assert_eq!(pids.len(), 3);
    stack.shutdown().await;
    for (name, pid) in pids {
        assert!(!pid_alive(pid), "{name} (pid {pid}) survived stop");
    }
}
