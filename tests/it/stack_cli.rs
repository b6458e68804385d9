//! The supervisor end to end, against the real `slolab` binary: a postgres+redis
//! stack up and down with no process left, the embedded default through
//! `slolab stack up|status|down`, the restart policy, no orphans after SIGKILL,
//! fresh data per stack, and the binary's own messages (help, errors).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use target::stack::{
    pid_alive, CacheKind, DbKind, RestartPolicy, StackSpec, StackState, Supervisor,
};

use crate::support::{get, header, slolab, wait_until, PATIENCE, SLOLAB};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_stack_comes_up_serves_and_leaves_no_process() {
    let dir = run_dir();
    let spec = StackSpec {
        db: DbKind::Postgres,
        cache: CacheKind::Redis,
        seed_tasks: 5,
        ..spec(dir.path())
    };
    let stack = Supervisor::start(spec, PathBuf::from(SLOLAB))
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
    let stack = Supervisor::start(spec, PathBuf::from(SLOLAB))
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

/// A `slolab stack up` child that a failing assertion does not leave running:
/// dropped while alive, it gets SIGTERM (so it stops its components) and is reaped.
struct Up(Child);

impl std::ops::Deref for Up {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Up {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

/// `slolab stack up` as a child; returns it once it printed its URL.
fn stack_up(dir: &Path, extra: &[&str]) -> (Up, String) {
    stack_up_with(dir, extra, &[])
}

/// [`stack_up`] with environment variables (the components inherit them).
fn stack_up_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Up, String) {
    let mut child = slolab()
        .args(["stack", "up", "--port", "0", "--run-dir"])
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
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
    (Up(child), url)
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
    let second = slolab()
        .args(["stack", "up", "--port", "0", "--run-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("already running"), "{message}");

    let status = slolab()
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

    let down = slolab()
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
    let stack = Supervisor::start(spec, PathBuf::from(SLOLAB))
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

fn stack_down(dir: &Path) -> std::process::Output {
    slolab()
        .args(["stack", "down", "--run-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// The `"total":N` of the task list (wherever the envelope puts it).
fn task_total(url: &str) -> u64 {
    let (code, _, body) = get(url, "/api/v1/tasks");
    assert_eq!(code, 200, "{body}");
    let (_, rest) = body
        .split_once("\"total\":")
        .unwrap_or_else(|| panic!("no total in {body}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no total in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stack_starts_with_fresh_data_unless_asked_to_keep_it() {
    let dir = run_dir();
    let seeded = StackSpec {
        instances: 1,
        seed_tasks: 3,
        ..spec(dir.path())
    };
    let stack = Supervisor::start(seeded, PathBuf::from(SLOLAB))
        .await
        .expect("stack starts");
    let url = stack.url().to_string();
    assert_eq!(
        tokio::task::spawn_blocking(move || task_total(&url))
            .await
            .unwrap(),
        3
    );
    stack.shutdown().await;

    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // --keep-data reopens the earlier stack's database. RUST_LOG reaches the
        // components, so their log files have lines to check for colour codes.
        let (mut up, url) = stack_up_with(
            &path,
            &["--instances", "1", "--keep-data"],
            &[("RUST_LOG", "info")],
        );
        assert_eq!(task_total(&url), 3, "kept");
        let log = std::fs::read_to_string(path.join("logs/api-1.log")).unwrap();
        assert!(log.contains("INFO"), "the instance logged: {log}");
        assert!(!log.contains('\x1b'), "ANSI codes in a log file: {log:?}");
        assert!(stack_down(&path).status.success());
        assert!(up.wait().unwrap().success());

        // Without it, the same run dir starts empty.
        let (mut up, url) = stack_up(&path, &["--instances", "1"]);
        assert_eq!(task_total(&url), 0, "an earlier stack's tasks are gone");
        assert!(stack_down(&path).status.success());
        assert!(up.wait().unwrap().success());

        // Down again, with nothing running: nothing to do, and that is success.
        let again = stack_down(&path);
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert_eq!(again.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains("no stack is running"), "{stdout}");
    })
    .await
    .unwrap();
}

#[test]
fn stack_down_in_a_dir_that_never_had_a_stack_succeeds() {
    let dir = run_dir();
    let down = stack_down(&dir.path().join("never-used"));
    let stdout = String::from_utf8_lossy(&down.stdout);
    assert_eq!(
        down.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(stdout.contains("no stack is running in"), "{stdout}");
}

#[test]
fn help_lists_every_exit_code() {
    let help = slolab().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    let codes: Vec<&str> = text
        .split_once("Exit codes:")
        .unwrap_or_else(|| panic!("no exit code table: {text}"))
        .1
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(codes, ["0", "1", "3", "4", "5", "130"], "{text}");
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = run_dir();
    let out = slolab().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "names the path: {stderr}"
    );
    assert_eq!(stderr.matches("Is a directory").count(), 1, "{stderr}");
}
