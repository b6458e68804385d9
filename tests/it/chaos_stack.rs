//! `slolab chaos` against a real `slolab stack up` (3 API instances, builtin
//! gateway, restart on failure) under `slolab load`: kill, pause and latency are
//! injected through the CLI, revert by themselves, and nothing stays paused
//! after the stack goes down; `refuse redis` takes the cache away from an API
//! holding a pooled connection, and `stop redis --for` brings Redis back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{header, run_slolab, slolab, try_get, wait_until, PATIENCE};

fn ok(args: &[&str]) -> String {
    let out = run_slolab(args);
    assert!(
        out.status.success(),
        "slolab {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stack in the foreground; killed (and its children with it) on drop.
struct Stack {
    child: Child,
    dir: tempfile::TempDir,
}

impl Stack {
    fn up() -> Stack {
        Stack::up_with(&["--instances", "3"])
    }

    fn up_with(extra: &[&str]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let child = slolab()
            .args(["stack", "up", "--port", "0"])
            .args(extra)
            .args(["--restart", "on-failure:200ms", "--run-dir"])
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stack = Stack { child, dir };
        let deadline = Instant::now() + PATIENCE;
        while !stack.state_file().exists() {
            assert!(Instant::now() < deadline, "stack did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        stack
    }

    fn run_dir(&self) -> String {
        self.dir.path().join("run").display().to_string()
    }

    fn state_file(&self) -> std::path::PathBuf {
        self.dir.path().join("run").join("stack.json")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_file()).unwrap()).unwrap()
    }

    fn chaos(&self, args: &[&str]) -> String {
        let run_dir = self.run_dir();
        let mut all = vec!["chaos"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--run-dir", &run_dir]);
        ok(&all)
    }

    /// The pid `chaos list` shows for `name`.
    fn pid(&self, name: &str) -> Option<u32> {
        let list = self.chaos(&["list"]);
        list.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .and_then(|l| l.split('│').nth(3))
            .and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = run_slolab(&["stack", "down", "--run-dir", &self.run_dir()]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stopped(pid: u32) -> Option<bool> {
    chaos::ProcStat::read(pid).map(|stat| stat.stopped())
}

#[test]
fn faults_under_load_revert_and_the_run_completes() {
    let stack = Stack::up();
    let url = stack.state()["url"].as_str().unwrap().to_string();
    let load = slolab()
        .args(["load", "-z", "6s", "-c", "4", "-t", "5"])
        .arg(format!("{url}/healthz"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let api2 = stack.pid("api-2").unwrap();
    let api3 = stack.pid("api-3").unwrap();
    let out = stack.chaos(&["inject", "kill", "api-2"]);
    assert!(out.contains("kill"), "{out}");
    stack.chaos(&["inject", "pause", "api-3", "--for", "1s"]);
    assert_eq!(stopped(api3), Some(true), "api-3 is paused");
    stack.chaos(&[
        "inject",
        "latency",
        "api-1",
        "--latency",
        "200ms",
        "--for",
        "2s",
    ]);

    // The restart policy brings api-2 back under a new pid.
    wait_until("api-2 restarted", || {
        stack.pid("api-2").is_some_and(|p| p != api2)
    });
    // Timed faults revert by themselves.
    wait_until("faults expired", || {
        stack.chaos(&["list"]).contains("no faults in force")
    });
    assert_eq!(stopped(api3), Some(false), "api-3 resumed");

    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[200]"), "the run served requests: {text}");
}

#[test]
fn nonsense_is_refused_and_nothing_stays_paused_after_down() {
    let stack = Stack::up();
    let run_dir = stack.run_dir();
    for (args, expect) in [
        (vec!["inject", "pause", "api-9"], "no component `api-9`"),
        (vec!["inject", "explode", "api-1"], "unknown fault"),
        (
            vec!["inject", "reset", "api-1", "--toxicity", "1.5"],
            "toxicity",
        ),
        (vec!["inject", "pause", "api-1", "--for=-3s"], "negative"),
        (vec!["inject", "reset", "gateway"], "no fault proxy"),
    ] {
        let mut all = vec!["chaos"];
        all.extend(args.iter().copied());
        all.extend(["--run-dir", run_dir.as_str()]);
        let out = run_slolab(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(stack.chaos(&["list"]).contains("no faults in force"));

    // A pause with no end, then the stack goes away: the process must not be
    // left frozen.
    let api1 = stack.pid("api-1").unwrap();
    stack.chaos(&["inject", "pause", "api-1"]);
    assert_eq!(stopped(api1), Some(true));
    ok(&["stack", "down", "--run-dir", &run_dir]);
    wait_until("api-1 gone or running", || stopped(api1) != Some(true));
}

/// The "Slowest" line of `slolab load`'s summary, in seconds.
fn slowest(summary: &str) -> f64 {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("Slowest:"))
        .and_then(|v| v.trim().trim_end_matches("secs").trim().parse().ok())
        .unwrap_or_else(|| panic!("no Slowest line in {summary}"))
}

#[test]
fn redis_latency_shows_in_latency_not_availability() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("redis-server is required (ci/test.sh installs it)");
    }
    let stack = Stack::up_with(&["--instances", "1", "--cache", "redis"]);
    let url = stack.state()["url"].as_str().unwrap().to_string();
    stack.chaos(&[
        "inject",
        "latency",
        "redis",
        "--latency",
        "300ms",
        "--for",
        "60s",
    ]);
    let out = ok(&[
        "load",
        "-n",
        "20",
        "-c",
        "1",
        "-t",
        "10",
        &format!("{url}/api/v1/tasks"),
    ]);
    // Every read still succeeds (the cache fails open) ...
    assert!(out.contains("[200]\t20 responses"), "{out}");
    // ... but the requests that tried the slow cache waited out its timeout (50 ms).
    assert!(slowest(&out) >= 0.05, "{out}");
    let reverted = stack.chaos(&["revert", "--all"]);
    assert!(reverted.contains("latency"), "{reverted}");
    assert!(stack.chaos(&["list"]).contains("no faults in force"));
}

#[test]
fn pausing_postgres_times_reads_out_then_they_recover() {
    let stack = Stack::up_with(&["--instances", "1", "--db", "postgres"]);
    let url = stack.state()["url"].as_str().unwrap().to_string();
    let tasks = format!("{url}/api/v1/tasks");
    let healthy = ok(&["load", "-n", "3", "-c", "1", "-t", "10", &tasks]);
    assert!(healthy.contains("[200]\t3 responses"), "{healthy}");

    stack.chaos(&["inject", "pause", "postgres", "--for", "4s"]);
    // 4 requests × 0.5 s timeout fit inside the pause: none can be answered
    // from the database.
    let during = ok(&["load", "-n", "4", "-c", "1", "-t", "0.5", &tasks]);
    assert!(
        !during.contains("[200]"),
        "reads succeeded during the pause: {during}"
    );

    wait_until("pause expired", || {
        stack.chaos(&["list"]).contains("no faults in force")
    });
    let after = ok(&["load", "-n", "5", "-c", "1", "-t", "10", &tasks]);
    assert!(after.contains("[200]\t5 responses"), "no recovery: {after}");
}

/// The `X-Cache` header of one `GET {base}{path}` (fresh connection each time),
/// or why there is none.
fn x_cache(base: &str, path: &str) -> String {
    match try_get(base, path) {
        Ok((_, headers, body)) => header(&headers, "x-cache")
            .map(str::to_string)
            .unwrap_or_else(|| format!("no X-Cache in {headers:?} {body:?}")),
        Err(e) => format!("request failed: {e}"),
    }
}

fn require_redis() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("redis-server is required (ci/test.sh installs it)");
    }
}

#[test]
fn refusing_redis_cuts_the_pooled_connection_until_reverted() {
    require_redis();
    let stack = Stack::up_with(&["--instances", "1", "--cache", "redis"]);
    let url = stack.state()["url"].as_str().unwrap().to_string();
    let tasks = "/api/v1/tasks";
    // The instance holds one pooled connection to Redis through the proxy.
    wait_until("a cache hit", || x_cache(&url, tasks) == "HIT");

    // Far longer than the bounded wait below, so only the fault can end it.
    stack.chaos(&["inject", "refuse", "redis", "--for", "10m"]);
    // The pooled connection is cut and new ones are refused: reads go to the
    // database (`refuse-new` would leave the pooled connection serving HITs).
    wait_until("reads bypass the unreachable cache", || {
        x_cache(&url, tasks) == "BYPASS"
    });

    let reverted = stack.chaos(&["revert", "--all"]);
    assert!(reverted.contains("refuse"), "{reverted}");
    wait_until("the cache serves again", || x_cache(&url, tasks) == "HIT");
}

/// Whether the process on `port` answers a Redis PING (directly, not through
/// the fault proxy).
fn redis_answers(port: u64) -> bool {
    let ping = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port as u16))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    ping().unwrap_or(false)
}

#[test]
fn stop_for_starts_redis_again_and_revert_does_it_early() {
    require_redis();
    let stack = Stack::up_with(&["--instances", "1", "--cache", "redis"]);
    let port = stack.state()["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .and_then(|c| c["port"].as_u64())
        .expect("redis in the state file");
    let first = stack.pid("redis").expect("redis runs");
    assert!(redis_answers(port));

    let out = stack.chaos(&["inject", "stop", "redis", "--for", "3s"]);
    assert!(
        !out.contains("instant"),
        "a timed stop is a timed fault: {out}"
    );
    wait_until("the stop expired", || {
        stack.chaos(&["list"]).contains("no faults in force")
    });
    wait_until("redis answers again", || redis_answers(port));
    assert_ne!(stack.pid("redis"), Some(first), "a new process");

    // Ten minutes: only the revert can bring it back within the bounded wait.
    stack.chaos(&["inject", "stop", "redis", "--for", "10m"]);
    assert!(!redis_answers(port), "redis still answers during the stop");
    assert_eq!(stack.pid("redis"), None, "listed as down");
    let list = stack.chaos(&["list"]);
    let id = list
        .lines()
        .find(|l| l.contains(" stop ") && l.contains(" redis "))
        .and_then(|l| l.split('│').nth(1))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("no stop in force: {list}"));
    let out = stack.chaos(&["revert", &id]);
    assert!(out.contains("stop"), "{out}");
    wait_until("redis answers after the revert", || redis_answers(port));
    assert!(stack.chaos(&["list"]).contains("no faults in force"));
}
