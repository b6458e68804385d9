//! The injector against real processes and proxies: pause and its expiry, kill
//! over a glob, restart and timed stop through the trait, toxics through the
//! proxy, checks that refuse before injecting, the revert guard, and the control
//! routes.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chaos::{
    ComponentKind, FaultProxy, FaultRequest, InjectError, Injector, InjectorOptions, ProcStat,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::{wait_stopped, LocalComponents};

fn request(fault: &str, target: &str) -> FaultRequest {
    FaultRequest {
        fault: fault.into(),
        target: target.into(),
        ..Default::default()
    }
}

fn injector(components: Arc<LocalComponents>, ledger: &std::path::Path) -> Arc<Injector> {
    Injector::new(
        components,
        InjectorOptions {
            seed: 1,
            ledger_dir: Some(ledger.to_path_buf()),
            origin: None,
        },
    )
    .unwrap()
    .0
}

#[tokio::test]
async fn pause_for_a_duration_then_resumes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_process("postgres", ComponentKind::Postgres);
    let pid = components.pid("postgres").unwrap();
    let inj = injector(components.clone(), dir.path());

    let mut req = request("pause", "postgres");
    req.duration = Some(Duration::from_millis(300));
    let events = inj.inject(&req).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(wait_stopped(pid, true), "not stopped");
    let ledger = std::fs::read_to_string(inj.ledger_path().unwrap()).unwrap();
    assert!(ledger.contains("resume"), "{ledger}");

    // Expiry: wait (bounded) for the revert.
    for _ in 0..1000 {
        if inj.active().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(inj.active().is_empty());
    assert!(wait_stopped(pid, false), "still stopped after expiry");
    let event = &inj.events()[0];
    let (start, end) = (event.start, event.end.unwrap());
    assert!(end.offset_s - start.offset_s >= 0.3, "{event:?}");
    assert!(!std::fs::read_to_string(inj.ledger_path().unwrap())
        .unwrap()
        .contains("resume"));
}

#[tokio::test]
async fn kill_on_a_glob_kills_every_match() {
    let dir = tempfile::tempdir().unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_process("api-1", ComponentKind::Api);
    components.add_process("api-2", ComponentKind::Api);
    components.add_process("gateway", ComponentKind::Gateway);
    let inj = injector(components.clone(), dir.path());
    let events = inj.inject(&request("kill", "api-*")).await.unwrap();
    let targets: Vec<&str> = events.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["api-1", "api-2"]);
    assert_eq!(components.wait("api-1").signal(), Some(9));
    assert_eq!(components.wait("api-2").signal(), Some(9));
    let gw = components.pid("gateway").unwrap();
    assert!(ProcStat::read(gw).is_some(), "gateway must be untouched");
    assert!(events.iter().all(|e| e.end == Some(e.start)));
}

#[tokio::test]
async fn random_target_is_seeded() {
    let pick = |seed| async move {
        let components = Arc::new(LocalComponents::default());
        for i in 1..=5 {
            components.add_pid(&format!("api-{i}"), std::process::id());
        }
        let (inj, _) = Injector::new(
            components,
            InjectorOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let mut picks = Vec::new();
        for _ in 0..6 {
            let (_, targets) = inj.check(&request("pause", "api-random")).unwrap();
            picks.push(targets[0].name.clone());
        }
        picks
    };
    assert_eq!(pick(9).await, pick(9).await);
}

#[tokio::test]
async fn restart_holds_the_component_down_then_starts_it() {
    let components = Arc::new(LocalComponents::default());
    components.add_process("redis", ComponentKind::Redis);
    let first = components.pid("redis").unwrap();
    let (inj, _) = Injector::new(components.clone(), InjectorOptions::default()).unwrap();
    let mut req = request("restart", "redis");
    req.duration = Some(Duration::from_secs(60));
    let event = inj.inject(&req).await.unwrap().remove(0);
    assert_eq!(components.pid("redis"), None, "down during the fault");
    inj.revert(event.id).await.unwrap();
    let second = components.pid("redis").expect("started again");
    assert_ne!(first, second);
    assert_eq!(components.starts("redis"), 2);
}

#[tokio::test]
async fn stop_for_a_duration_holds_down_then_starts_and_reverts_early() {
    let dir = tempfile::tempdir().unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_process("redis", ComponentKind::Redis);
    let first = components.pid("redis").unwrap();
    let inj = injector(components.clone(), dir.path());

    let mut req = request("stop", "redis");
    req.duration = Some(Duration::from_millis(300));
    let event = inj.inject(&req).await.unwrap().remove(0);
    assert_eq!(event.end, None, "a timed stop is not instantaneous");
    assert_eq!(components.pid("redis"), None, "down during the fault");
    let ledger = std::fs::read_to_string(inj.ledger_path().unwrap()).unwrap();
    assert!(ledger.contains("\"start\""), "revertible: {ledger}");
    for _ in 0..1000 {
        if inj.active().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(inj.active().is_empty(), "the stop did not expire");
    let second = components.pid("redis").expect("started again on expiry");
    assert_ne!(first, second);
    assert_eq!(components.starts("redis"), 2);

    // Revert before the expiry: started again now.
    req.duration = Some(Duration::from_secs(600));
    let event = inj.inject(&req).await.unwrap().remove(0);
    assert_eq!(components.pid("redis"), None);
    let reverted = inj.revert(event.id).await.unwrap();
    assert!(reverted.end.is_some());
    assert!(components.pid("redis").is_some(), "revert starts it again");
    assert_eq!(components.starts("redis"), 3);
    assert!(!std::fs::read_to_string(inj.ledger_path().unwrap())
        .unwrap()
        .contains("\"start\""));

    // Without a duration, stop stays a signal: SIGTERM, nothing to revert.
    let event = inj
        .inject(&request("stop", "redis"))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(event.end, Some(event.start));
    assert_eq!(components.wait("redis").signal(), Some(15));
    assert!(inj.active().is_empty());
}

#[tokio::test]
async fn network_faults_go_through_the_proxy_and_revert() {
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        crate::support::echo_server().await,
    )
    .await
    .unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_proxy("redis", proxy.handle());
    let (inj, _) = Injector::new(components, InjectorOptions::default()).unwrap();
    let mut req = request("latency", "redis");
    req.params.latency = Some(Duration::from_millis(200));
    let event = inj.inject(&req).await.unwrap().remove(0);
    assert_eq!(proxy.toxics().len(), 1);
    assert_eq!(inj.active().len(), 1);
    inj.revert(event.id).await.unwrap();
    assert!(proxy.toxics().is_empty());
    assert!(matches!(
        inj.revert(event.id).await,
        Err(InjectError::NotActive(_))
    ));
}

#[tokio::test]
async fn nonsense_is_refused_before_anything_is_injected() {
    let components = Arc::new(LocalComponents::default());
    components.add_process("api-1", ComponentKind::Api);
    let pid = components.pid("api-1").unwrap();
    let (inj, _) = Injector::new(components, InjectorOptions::default()).unwrap();

    let e = inj.inject(&request("pause", "api-9")).await.unwrap_err();
    assert!(e.to_string().contains("no component `api-9`"), "{e}");
    assert!(e.to_string().contains("api-1"), "lists the known: {e}");
    let e = inj.inject(&request("latency", "api-1")).await.unwrap_err();
    assert!(e.to_string().contains("needs `latency`"), "{e}");
    let mut req = request("reset", "api-1");
    req.params.toxicity = Some(1.5);
    let e = inj.inject(&req).await.unwrap_err();
    assert!(e.to_string().contains("toxicity"), "{e}");
    let e = inj.inject(&request("reset", "api-1")).await.unwrap_err();
    assert!(e.to_string().contains("no fault proxy"), "{e}");
    let e = inj.inject(&request("melt", "api-1")).await.unwrap_err();
    assert!(e.to_string().contains("unknown fault"), "{e}");

    assert!(inj.events().is_empty());
    assert!(!ProcStat::read(pid).unwrap().stopped());
}

#[tokio::test]
async fn the_guard_reverts_on_panic() {
    let components = Arc::new(LocalComponents::default());
    components.add_process("api-1", ComponentKind::Api);
    let pid = components.pid("api-1").unwrap();
    let (inj, _) = Injector::new(components.clone(), InjectorOptions::default()).unwrap();
    inj.inject(&request("pause", "api-1")).await.unwrap();
    assert!(wait_stopped(pid, true));
    let inj2 = inj.clone();
    let run = tokio::spawn(async move {
        let _guard = inj2.guard();
        panic!("the experiment blew up");
    });
    assert!(run.await.unwrap_err().is_panic());
    assert!(wait_stopped(pid, false), "the guard did not resume");
    assert!(inj.active().is_empty());
    assert!(inj.events()[0].end.is_some());
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn control_routes_inject_list_and_revert() {
    let dir = tempfile::tempdir().unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_process("api-1", ComponentKind::Api);
    let pid = components.pid("api-1").unwrap();
    let app = chaos::control::installer(InjectorOptions {
        seed: 3,
        ledger_dir: Some(dir.path().into()),
        origin: None,
    })(components.clone());

    let (status, body) = call(
        &app,
        "POST",
        "/faults",
        r#"{"fault":"pause","target":"api-1","for":"1m"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let events: Vec<chaos::FaultEvent> = serde_json::from_str(&body).unwrap();
    assert!(wait_stopped(pid, true));

    let (status, body) = call(&app, "GET", "/faults", "").await;
    assert_eq!(status, StatusCode::OK);
    let view: chaos::control::FaultsView = serde_json::from_str(&body).unwrap();
    assert_eq!(view.active.len(), 1);
    assert_eq!(view.components[0].name, "api-1");

    let (status, body) = call(
        &app,
        "POST",
        "/faults",
        r#"{"fault":"pause","target":"nope"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("no component `nope`"), "{body}");

    let (status, _) = call(&app, "DELETE", &format!("/faults/{}", events[0].id), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(wait_stopped(pid, false));
    let (status, _) = call(&app, "DELETE", &format!("/faults/{}", events[0].id), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    call(
        &app,
        "POST",
        "/faults",
        r#"{"fault":"pause","target":"api-1"}"#,
    )
    .await;
    assert!(wait_stopped(pid, true));
    let (status, body) = call(&app, "DELETE", "/faults", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("api-1"));
    assert!(wait_stopped(pid, false));
}

/// One clock: a runner hands the injector the load's origin (here a moment in
/// the future, as `slolab run` does) and fires a fault at a planned offset from
/// it; the event's start is stamped on that same origin: it lies between two
/// readings of the origin's clock taken around the injection (no timing bound:
/// only the order of readings of one clock), and so at or after the planned offset.
#[tokio::test]
async fn events_are_stamped_on_the_origin_the_runner_gives() {
    let dir = tempfile::tempdir().unwrap();
    let components = Arc::new(LocalComponents::default());
    components.add_process("api-1", ComponentKind::Api);
    let origin = tokio::time::Instant::now() + Duration::from_millis(50);
    let (inj, _) = Injector::new(
        components.clone(),
        InjectorOptions {
            seed: 1,
            ledger_dir: Some(dir.path().to_path_buf()),
            origin: Some(origin),
        },
    )
    .unwrap();
    let at = Duration::from_millis(120);
    tokio::time::sleep_until(origin + at).await;
    let before = origin.elapsed().as_secs_f64();
    let mut req = request("pause", "api-1");
    req.duration = Some(Duration::from_secs(60));
    let events = inj.inject(&req).await.unwrap();
    let after = origin.elapsed().as_secs_f64();
    let start = &events[0].start;
    assert!(before >= at.as_secs_f64());
    assert!(
        before <= start.offset_s && start.offset_s <= after,
        "stamped {} s from the origin, read {before}..{after} s around the injection",
        start.offset_s
    );
    // The wall stamp is the origin's wall time plus the same offset: two stamps
    // of one event never disagree about where it lies.
    let revert = inj.revert_all().await;
    let end = revert[0].end.as_ref().unwrap();
    let wall_gap = (end.wall - start.wall).num_microseconds().unwrap() as f64 / 1e6;
    assert!((wall_gap - (end.offset_s - start.offset_s)).abs() < 1e-5);
}
