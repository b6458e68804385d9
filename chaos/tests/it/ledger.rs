//! Never left behind: a runner SIGKILLed while a process is paused leaves a
//! ledger, and the next start SIGCONTs that process — but never a pid that now
//! names a different process; one killed while a component is held down by a
//! timed stop has the next start start it again.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chaos::ledger::{Ledger, ProcessId, Revert};
use chaos::{FaultRequest, Injector, InjectorOptions};

use crate::support::{sleeper, wait_stopped, LocalComponents};

const CHILD_ENV: &str = "CHAOS_LEDGER_TEST_CHILD";

/// The runner half of the crash test, run in a subprocess by
/// `crashed_run_is_reverted_at_next_start`: pauses the victim for a minute,
/// says so, then waits to be killed. Ignored unless asked for explicitly.
#[tokio::test]
#[ignore = "spawned by crashed_run_is_reverted_at_next_start"]
async fn child_runner_pauses_then_waits() {
    let spec = std::env::var(CHILD_ENV).expect("run by the parent test");
    let (dir, pid) = spec.split_once(':').unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_pid("victim", pid.parse().unwrap());
    let (injector, _) = Injector::new(
        components,
        InjectorOptions {
            ledger_dir: Some(dir.into()),
            ..Default::default()
        },
    )
    .unwrap();
    injector
        .inject(&FaultRequest {
            fault: "pause".into(),
            target: "victim".into(),
            duration: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .await
        .unwrap();
    println!("PAUSED");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

const HOLD_ENV: &str = "CHAOS_LEDGER_TEST_HOLD";

/// The runner half of `a_crash_mid_stop_does_not_leave_the_component_down`:
/// stops `redis` for a minute (held down, a `start` in the ledger), says so,
/// then waits to be killed.
#[tokio::test]
#[ignore = "spawned by a_crash_mid_stop_does_not_leave_the_component_down"]
async fn child_runner_holds_down_then_waits() {
    let dir = std::env::var(HOLD_ENV).expect("run by the parent test");
    let components = Arc::new(LocalComponents::default());
    components.add_process("redis", chaos::ComponentKind::Redis);
    let (injector, _) = Injector::new(
        components.clone(),
        InjectorOptions {
            ledger_dir: Some(dir.into()),
            ..Default::default()
        },
    )
    .unwrap();
    injector
        .inject(&FaultRequest {
            fault: "stop".into(),
            target: "redis".into(),
            duration: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(components.pid("redis"), None);
    println!("HELD");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_crash_mid_stop_does_not_leave_the_component_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ledger::child_runner_holds_down_then_waits",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    let held = lines.any(|l| l.map(|l| l.contains("HELD")).unwrap_or(false));
    assert!(held, "the runner never stopped its component");
    // The crash: the expiry that would start it again never runs.
    runner.kill().unwrap();
    runner.wait().unwrap();

    // The next start's supervisor finds `redis` down (as the stop left it) ...
    let components = Arc::new(LocalComponents::default());
    components.add_process("redis", chaos::ComponentKind::Redis);
    chaos::Components::stop(components.as_ref(), "redis")
        .await
        .unwrap();
    assert_eq!(components.pid("redis"), None);
    // ... and the next injector starts it again from the dead run's ledger.
    let (_injector, recovery) = Injector::new(
        components.clone(),
        InjectorOptions {
            ledger_dir: Some(dir.path().into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(recovery.held_down, ["redis"]);
    for _ in 0..1000 {
        if components.pid("redis").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        components.pid("redis").is_some(),
        "still down after the next start"
    );
    assert_eq!(components.starts("redis"), 2);
}

#[test]
fn crashed_run_is_reverted_at_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut victim = sleeper();
    let pid = victim.id();
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ledger::child_runner_pauses_then_waits",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{pid}", dir.path().display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    let paused = lines.any(|l| l.map(|l| l.contains("PAUSED")).unwrap_or(false));
    assert!(paused, "the runner never paused the victim");
    assert!(wait_stopped(pid, true));

    // The crash: no Drop, no guard, no expiry runs.
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert!(wait_stopped(pid, true), "still paused after the crash");

    let recovery = Ledger::recover(dir.path()).unwrap();
    assert_eq!(recovery.resumed, vec![pid]);
    assert!(wait_stopped(pid, false), "the next start must resume it");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the dead run's ledger is gone"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn a_recycled_pid_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let mut victim = sleeper();
    let pid = victim.id();
    chaos::process::pause(pid).unwrap();
    assert!(wait_stopped(pid, true));
    // A ledger from a dead owner that recorded this pid with another start
    // time: the pid has been reused by a process chaos never touched.
    let real = ProcessId::of(pid).unwrap();
    let entry = serde_json::json!({
        "owner": { "pid": 1, "start_time": u64::MAX },
        "entries": [{
            "id": 1, "fault": "pause", "target": "x",
            "started": "2026-01-01T00:00:00Z",
            "revert": Revert::Resume { processes: vec![ProcessId { pid, start_time: real.start_time + 1 }] },
        }]
    });
    std::fs::write(
        dir.path().join("chaos-ledger-999999.json"),
        entry.to_string(),
    )
    .unwrap();
    let recovery = Ledger::recover(dir.path()).unwrap();
    assert!(recovery.resumed.is_empty());
    assert_eq!(recovery.gone, 1);
    assert!(is_stopped(pid), "a stranger's process was resumed");
    chaos::process::resume(pid).unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
}

fn is_stopped(pid: u32) -> bool {
    chaos::ProcStat::read(pid).unwrap().stopped()
}

#[test]
fn a_live_owners_ledger_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::create(dir.path()).unwrap();
    let mut victim = sleeper();
    let pid = victim.id();
    chaos::process::pause(pid).unwrap();
    assert!(wait_stopped(pid, true));
    ledger
        .record(chaos::ledger::LedgerEntry {
            id: 1,
            fault: "pause".into(),
            target: "x".into(),
            started: chrono::Utc::now(),
            revert: Revert::Resume {
                processes: vec![ProcessId::of(pid).unwrap()],
            },
        })
        .unwrap();
    // We are alive: another start must not revert our faults.
    let recovery = Ledger::recover(dir.path()).unwrap();
    assert!(recovery.resumed.is_empty());
    assert!(is_stopped(pid));
    assert!(ledger.path().exists());
    chaos::process::resume(pid).unwrap();
    ledger.remove(1).unwrap();
    drop(ledger);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    victim.kill().unwrap();
    victim.wait().unwrap();
}
