//! The engine against real servers on port 0: exact counts, status classes,
//! bodies, keep-alive, redirects, every failure outcome, timeouts, interruption,
//! the open model's coordinated-omission correctness, and exact interval merging.

use std::sync::atomic::Ordering;
use std::time::Duration;

use loadgen::results::{decode_histogram, Results};
use loadgen::{Model, RequestTemplate, Stage, Stop};

use crate::support::*;

fn recorded(h: &hdrhistogram::Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

#[tokio::test]
async fn closed_model_sends_exactly_n_on_c_connections() {
    let s = hyper_server().await;
    let r = loadgen::run(closed_plan(&s.url("/"), 537, 7), never(), None)
        .await
        .unwrap();
    assert_eq!(r.totals.requests, 537);
    assert_eq!(outcome(&r, "2xx"), 537);
    assert_eq!(r.totals.status_codes[&200], 537);
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 537);
    assert_eq!(s.counters.connections.load(Ordering::SeqCst), 7);
    assert_eq!(r.totals.bytes_received, 537 * 5);
    assert_eq!(r.totals.latency.count, 537);
    assert_eq!(r.totals.availability, 1.0);
    assert!(!r.run.interrupted);
    assert!(r.pacer.is_none());
}

/// The same run on each backend asked for by name: the same counts, and the
/// results say which backend ran (io_uring is Linux-only).
#[tokio::test]
async fn each_backend_runs_the_same_plan_and_is_recorded() {
    let mut backends = vec![(loadgen::Io::Epoll, "epoll")];
    if cfg!(target_os = "linux") {
        backends.push((loadgen::Io::Uring, "uring"));
    }
    for (io, name) in backends {
        let s = hyper_server().await;
        let mut plan = closed_plan(&s.url("/"), 300, 3);
        plan.io = io;
        let r = loadgen::run(plan, never(), None).await.unwrap();
        assert_eq!(r.run.io.as_deref(), Some(name));
        assert_eq!(outcome(&r, "2xx"), 300, "{name}");
        assert_eq!(s.counters.requests.load(Ordering::SeqCst), 300, "{name}");
        assert_eq!(s.counters.connections.load(Ordering::SeqCst), 3, "{name}");
        assert_eq!(r.totals.bytes_received, 300 * 5, "{name}");
        assert_eq!(r.plan.io, io);
    }
}

/// `auto` picks by model: epoll back to back, io_uring when sends are paced.
#[tokio::test]
async fn auto_picks_the_backend_by_load_model() {
    let s = hyper_server().await;
    let mut closed = closed_plan(&s.url("/"), 20, 2);
    closed.io = loadgen::Io::Auto;
    let r = loadgen::run(closed, never(), None).await.unwrap();
    assert_eq!(r.run.io.as_deref(), Some("epoll"));
    if cfg!(target_os = "linux") {
        let mut open = open_plan(&s.url("/"), 200.0, 0.1, 2);
        open.io = loadgen::Io::Auto;
        let r = loadgen::run(open, never(), None).await.unwrap();
        assert_eq!(r.run.io.as_deref(), Some("uring"));
        assert_eq!(outcome(&r, "2xx"), 20);
    }
}

#[tokio::test]
async fn disabled_keepalive_opens_a_connection_per_request() {
    let s = hyper_server().await;
    let mut plan = closed_plan(&s.url("/"), 40, 4);
    plan.keepalive = false;
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(outcome(&r, "2xx"), 40);
    assert_eq!(s.counters.connections.load(Ordering::SeqCst), 40);
}

#[tokio::test]
async fn status_classes_and_codes_are_counted_by_weight_mix() {
    let s = hyper_server().await;
    let mut plan = closed_plan(&s.url("/"), 400, 4);
    plan.follow_redirects = false;
    plan.requests = ["/status/204", "/status/304", "/status/404", "/status/503"]
        .iter()
        .map(|p| RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: s.url(p),
            headers: vec![],
            body: None,
        })
        .collect();
    let r = loadgen::run(plan, never(), None).await.unwrap();
    let paths = s.counters.paths.lock().unwrap().clone();
    let served = |p: &str| paths.iter().filter(|x| x.as_str() == p).count() as u64;
    assert_eq!(r.totals.requests, 400);
    assert_eq!(outcome(&r, "2xx"), served("/status/204"));
    assert_eq!(outcome(&r, "3xx"), served("/status/304"));
    assert_eq!(outcome(&r, "4xx"), served("/status/404"));
    assert_eq!(outcome(&r, "5xx"), served("/status/503"));
    assert_eq!(r.totals.status_codes[&503], served("/status/503"));
    for class in ["2xx", "3xx", "4xx", "5xx"] {
        assert!(
            outcome(&r, class) > 0,
            "the seeded mix never picked {class}"
        );
    }
    // Only 5xx is bad by default.
    assert_eq!(r.totals.bad, outcome(&r, "5xx"));
}

#[tokio::test]
async fn chunked_bodies_are_read_fully_and_counted() {
    let s = hyper_server().await;
    let r = loadgen::run(closed_plan(&s.url("/chunked/10000"), 30, 3), never(), None)
        .await
        .unwrap();
    assert_eq!(outcome(&r, "2xx"), 30);
    assert_eq!(r.totals.bytes_received, 30 * 10000);
    // Reading the whole body is what lets the connection be reused.
    assert_eq!(s.counters.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn redirects_are_followed_unless_disabled() {
    let s = hyper_server().await;
    let r = loadgen::run(closed_plan(&s.url("/redirect"), 20, 2), never(), None)
        .await
        .unwrap();
    assert_eq!(r.totals.status_codes.get(&200), Some(&20));
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 40);

    let mut plan = closed_plan(&s.url("/redirect"), 20, 2);
    plan.follow_redirects = false;
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(r.totals.status_codes.get(&302), Some(&20));
    assert_eq!(outcome(&r, "3xx"), 20);
}

#[tokio::test]
async fn templates_expand_per_request_and_header_values_are_tracked() {
    let s = hyper_server().await;
    let mut plan = closed_plan(&s.url("/served?seq={seq}&page={rand:1..3}"), 60, 3);
    plan.track_header = Some("X-Served-By".into());
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(r.totals.by_header.get("a"), Some(&30));
    assert_eq!(r.totals.by_header.get("b"), Some(&30));
    let mut seqs: Vec<u64> = s
        .counters
        .paths
        .lock()
        .unwrap()
        .iter()
        .map(|p| {
            let q = p.split("seq=").nth(1).unwrap();
            q.split('&').next().unwrap().parse().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..60).collect::<Vec<_>>());
}

#[tokio::test]
async fn refused_connections_are_classified() {
    let url = format!("http://{}/", refused_addr());
    let r = loadgen::run(closed_plan(&url, 25, 5), never(), None)
        .await
        .unwrap();
    assert_eq!(outcome(&r, "connect_refused"), 25);
    assert_eq!(r.totals.bad, 25);
    assert_eq!(r.totals.availability, 0.0);
    assert_eq!(r.totals.latency.count, 0);
}

async fn misbehaving(how: Misbehaviour, timeout: Duration) -> Results {
    let (addr, _) = raw_server(how).await;
    let mut plan = closed_plan(&format!("http://{addr}/"), 12, 3);
    plan.timeout = timeout;
    loadgen::run(plan, never(), None).await.unwrap()
}

#[tokio::test]
async fn resets_are_classified() {
    let r = misbehaving(Misbehaviour::Reset, Duration::from_secs(20)).await;
    assert_eq!(outcome(&r, "reset"), 12, "{:?}", r.totals.outcomes);
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let r = misbehaving(Misbehaviour::Garbage, Duration::from_secs(20)).await;
    assert_eq!(outcome(&r, "protocol_error"), 12, "{:?}", r.totals.outcomes);
}

#[tokio::test]
async fn a_short_body_is_closed_early() {
    let r = misbehaving(Misbehaviour::ShortBody, Duration::from_secs(20)).await;
    assert_eq!(outcome(&r, "reset"), 12, "{:?}", r.totals.outcomes);
}

#[tokio::test]
async fn silence_is_a_request_timeout_and_the_run_ends() {
    let r = misbehaving(Misbehaviour::Silent, Duration::from_millis(200)).await;
    assert_eq!(
        outcome(&r, "request_timeout"),
        12,
        "{:?}",
        r.totals.outcomes
    );
    assert_eq!(r.totals.bad, 12);
}

#[tokio::test]
async fn a_connection_closed_after_a_response_is_retried_fresh() {
    let (addr, counters) = raw_server(Misbehaviour::CloseAfterResponse).await;
    let r = loadgen::run(
        closed_plan(&format!("http://{addr}/"), 30, 3),
        never(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(outcome(&r, "2xx"), 30, "{:?}", r.totals.outcomes);
    assert_eq!(counters.requests.load(Ordering::SeqCst), 30);
}

/// A listener whose accept queue is full and never drained: SYNs are dropped,
/// so connecting hangs until the timeout (loopback-only connect timeout).
#[tokio::test]
async fn a_full_backlog_is_a_connect_timeout() {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (backlog 0 still admits one; take a few to be sure).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let mut plan = closed_plan(&format!("http://{addr}/"), 2, 1);
    plan.timeout = Duration::from_millis(300);
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(outcome(&r, "connect_timeout"), 2, "{:?}", r.totals.outcomes);
    drop(sock);
}

#[tokio::test]
async fn shutdown_returns_partial_results() {
    let s = hyper_server().await;
    let mut plan = closed_plan(&s.url("/"), 1, 4);
    plan.stop = Stop::Duration {
        duration: Duration::from_secs(60),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let counters = s.counters.clone();
    tokio::spawn(async move {
        while counters.requests.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = tx.send(());
    });
    let r = loadgen::run(
        plan,
        async move {
            let _ = rx.await;
        },
        None,
    )
    .await
    .unwrap();
    assert!(r.run.interrupted);
    assert!(r.totals.requests >= 100);
    assert_eq!(
        r.totals.requests,
        s.counters.requests.load(Ordering::SeqCst)
    );
    assert!(r.run.duration_s < 60.0);
}

fn open_plan(url: &str, rate: f64, seconds: f64, connections: usize) -> loadgen::LoadPlan {
    let mut plan = closed_plan(url, 1, connections);
    plan.model = Model::Open {
        stages: vec![Stage::steady(Duration::from_secs_f64(seconds), rate)],
    };
    plan.stop = Stop::Stages;
    plan
}

/// The server stalls 500 ms once. The closed model sends nothing while it waits,
/// so only one sample is slow and p99 hides the stall; the open model keeps its
/// schedule, so every request scheduled during the stall shows the wait.
#[tokio::test]
async fn open_model_shows_a_stall_the_closed_model_hides() {
    let s = hyper_server().await;
    let closed = loadgen::run(closed_plan(&s.url("/stall"), 300, 1), never(), None)
        .await
        .unwrap();
    let stall_us = 500_000;
    assert!(closed.totals.latency.max_us >= stall_us);
    let closed_p99 = closed.totals.latency.percentile("p99").unwrap();

    let s = hyper_server().await;
    let open = loadgen::run(open_plan(&s.url("/stall"), 200.0, 1.5, 1), never(), None)
        .await
        .unwrap();
    assert_eq!(open.totals.requests, 300);
    let open_p99 = open.totals.latency.percentile("p99").unwrap();
    assert!(open_p99 >= stall_us * 8 / 10, "open p99 {open_p99}µs");
    assert!(open.totals.latency.percentile("p75").unwrap() > closed_p99);
    assert!(
        closed_p99 < open_p99 / 2,
        "closed p99 {closed_p99}µs vs open {open_p99}µs"
    );
    // The wait is the pacer's lag, and it is reported.
    let pacer = open.pacer.as_ref().unwrap();
    assert_eq!(pacer.scheduled, 300);
    assert_eq!(pacer.sent, 300);
    assert!(pacer.late_sends > 0);
    assert!(pacer.max_lag_us >= 400_000);
    assert!(pacer.fell_behind);
    // The summary says so in the words `slolab report` uses (one rule, one sentence).
    let behind = pacer
        .behind()
        .expect("the one rule agrees with fell_behind");
    let text = loadgen::summary::hey_text(&open);
    assert!(text.contains(&format!("WARNING: {behind}.")), "{text}");
    assert!(text.contains("include the wait"), "{text}");
    // Service time (from the actual send) does not include the queueing.
    let service_p75 = open.totals.service_time.percentile("p75").unwrap();
    assert!(service_p75 < open.totals.latency.percentile("p75").unwrap());
}

#[tokio::test]
async fn interval_histograms_merge_exactly_into_the_total() {
    let s = hyper_server().await;
    let mut plan = open_plan(&s.url("/"), 400.0, 0.8, 4);
    plan.interval = Duration::from_millis(100);
    let r = loadgen::run(plan, never(), None).await.unwrap();
    assert_eq!(r.totals.requests, 320);
    assert!(r.timeline.len() >= 8, "{} intervals", r.timeline.len());
    let mut merged = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut requests = 0;
    let mut scheduled = 0;
    for iv in &r.timeline {
        merged
            .add(decode_histogram(&iv.histogram).unwrap())
            .unwrap();
        requests += iv.requests;
        scheduled += iv.scheduled;
    }
    assert_eq!(requests, 320);
    assert_eq!(scheduled, 320);
    assert_eq!(recorded(&merged), recorded(&r.total_histogram().unwrap()));
    for w in r.timeline.windows(2) {
        assert!((w[1].start_s - w[0].start_s - 0.1).abs() < 1e-9);
    }
}

#[tokio::test]
async fn results_round_trip_through_the_file() {
    let s = hyper_server().await;
    let mut plan = open_plan(&s.url("/served"), 200.0, 0.3, 2);
    plan.track_header = Some("x-served-by".into());
    let r = loadgen::run(plan, never(), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/results.json");
    r.write(&path).unwrap();
    let back = Results::read(&path).unwrap();
    // serde_json (without its float_roundtrip feature) may read an f64 back one
    // ulp off; everything else must be identical.
    same_json(
        &serde_json::to_value(&back).unwrap(),
        &serde_json::to_value(&r).unwrap(),
        "$",
    );
    assert_eq!(back.timeline, r.timeline);
    assert_eq!(back.histogram, r.histogram);
    assert_eq!(back.plan, r.plan);
    assert_eq!(back.total_histogram().unwrap().len(), 60);
    let text = loadgen::summary::hey_text(&back);
    for section in [
        "Summary:",
        "Response time histogram:",
        "Latency distribution:",
        "99.9% in",
        "99.99% in",
        "Details (average, fastest, slowest):",
        "Status code distribution:",
        "[200]\t60 responses",
        "Availability:\t100.0000%",
        "Schedule (open model",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
    let json = loadgen::summary::json(&back);
    assert_eq!(json["requests"], 60);
    assert_eq!(json["model"], "open");
}

#[tokio::test]
async fn per_worker_rate_limits_the_closed_model() {
    let s = hyper_server().await;
    let mut plan = closed_plan(&s.url("/"), 1, 2);
    plan.model = Model::Closed {
        rate_per_worker: Some(20.0),
    };
    plan.stop = Stop::Duration {
        duration: Duration::from_millis(500),
    };
    let r = loadgen::run(plan, never(), None).await.unwrap();
    // 2 workers × 20/s × 0.5 s, the first send of each at once: at most 22.
    assert!(r.totals.requests <= 22, "{}", r.totals.requests);
    assert!(r.totals.requests >= 2);
}

#[tokio::test]
async fn bad_plans_are_refused_before_running() {
    let bad_url = closed_plan("http://127.0.0.1:1/a b", 10, 1);
    assert!(matches!(
        loadgen::run(bad_url, never(), None).await,
        Err(loadgen::LoadError::Url { .. })
    ));
    let zero = closed_plan("http://127.0.0.1:1/", 10, 0);
    assert!(loadgen::run(zero, never(), None).await.is_err());
    let mut no_stages = closed_plan("http://127.0.0.1:1/", 10, 1);
    no_stages.model = Model::Open { stages: vec![] };
    assert!(loadgen::run(no_stages, never(), None).await.is_err());
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{at}: {x} != {y}"
            );
        }
        (Object(x), Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                same_json(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_json(v, w, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[tokio::test]
async fn through_a_proxy_requests_go_in_absolute_form_redirects_too() {
    let s = hyper_server().await;
    let (proxy, lines) = forward_proxy().await;
    let mut plan = closed_plan(&s.url("/status/200?x=1"), 20, 2);
    plan.transport.proxy = Some(proxy.to_string());
    let r = loadgen::run(plan.clone(), never(), None).await.unwrap();
    assert_eq!(r.totals.outcomes["2xx"], 20);
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 20);
    let want = format!("GET http://{}/status/200?x=1 HTTP/1.1", s.addr);
    assert!(
        lines.lock().unwrap().iter().all(|l| *l == want),
        "{:?}",
        lines.lock().unwrap()
    );
    assert_eq!(lines.lock().unwrap().len(), 20);
    // The target itself saw origin form: the proxy did its job, not the client.
    assert!(s
        .counters
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/status/200?x=1"));

    // A same-origin redirect is followed through the proxy as well.
    lines.lock().unwrap().clear();
    plan.requests[0].url = s.url("/redirect");
    plan.stop = Stop::Requests { count: 4 };
    let r = loadgen::run(plan.clone(), never(), None).await.unwrap();
    assert_eq!(r.totals.status_codes[&200], 4);
    let seen = lines.lock().unwrap().clone();
    assert_eq!(seen.len(), 8, "{seen:?}");
    for target in ["/redirect", "/status/200"] {
        let line = format!("GET http://{}{target} HTTP/1.1", s.addr);
        assert_eq!(seen.iter().filter(|l| **l == line).count(), 4, "{seen:?}");
    }

    // https through a proxy would need CONNECT: refused before the run, by name.
    plan.requests[0].url = format!("https://{}/", s.addr);
    let e = loadgen::validate(&plan).unwrap_err().to_string();
    assert!(e.contains("CONNECT") && e.contains("https://"), "{e}");
    plan.requests[0].url = s.url("/");
    plan.transport.proxy = Some("no-port.test".into());
    let e = loadgen::validate(&plan).unwrap_err().to_string();
    assert!(e.contains("no-port.test") && e.contains("-x"), "{e}");
}

/// Shards of one plan add up to the whole run: a closed `-n` is dealt k mod N
/// and the connections ⌈c/N⌉ or ⌊c/N⌋ each; the open model's arrivals (here
/// Poisson, from the one seed) are dealt k mod N from the same schedule.
#[tokio::test]
async fn shards_add_up_to_the_whole_run() {
    let s = hyper_server().await;
    for (index, connections) in [3, 2, 2].into_iter().enumerate() {
        let mut plan = closed_plan(&s.url("/"), 537, 7);
        plan.shard = Some(loadgen::Shard {
            index: index as u32,
            count: 3,
        });
        let before = s.counters.connections.load(Ordering::SeqCst);
        let r = loadgen::run(plan, never(), None).await.unwrap();
        assert_eq!(r.totals.requests, 179, "shard {index}");
        let opened = s.counters.connections.load(Ordering::SeqCst) - before;
        assert_eq!(opened, connections, "shard {index}");
    }
    assert_eq!(s.counters.requests.load(Ordering::SeqCst), 537);

    let mut plan = open_plan(&s.url("/"), 400.0, 1.0, 4);
    plan.arrivals = loadgen::Arrivals::Poisson;
    let whole = loadgen::run(plan.clone(), never(), None).await.unwrap();
    let scheduled = whole.pacer.as_ref().unwrap().scheduled;
    let (mut sum_scheduled, mut sum_requests) = (0, 0);
    for index in 0..2 {
        let mut shard = plan.clone();
        shard.shard = Some(loadgen::Shard { index, count: 2 });
        let r = loadgen::run(shard, never(), None).await.unwrap();
        let p = r.pacer.as_ref().unwrap();
        assert_eq!(
            p.scheduled,
            (scheduled + 1 - index as u64) / 2,
            "shard {index}"
        );
        sum_scheduled += p.scheduled;
        sum_requests += r.totals.requests;
    }
    assert_eq!(sum_scheduled, scheduled);
    assert_eq!(sum_requests, whole.totals.requests);
}
