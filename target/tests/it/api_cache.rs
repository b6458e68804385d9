//! Redis cache-aside against a real redis-server: hits, misses, O(1)
//! invalidation on writes, and fail-open when the test kills or freezes Redis.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use target::process::redis::{Redis, RedisOptions};

use crate::support::api::{sqlite_config, Harness, Reply};

async fn start_redis(port: Option<u16>) -> Redis {
    tokio::task::spawn_blocking(move || {
        Redis::start(RedisOptions {
            port,
            ..RedisOptions::default()
        })
        .expect("start a private redis-server")
    })
    .await
    .unwrap()
}

async fn cached_harness(redis: &Redis) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(dir.path(), "api-test");
    config.redis_url = Some(redis.url());
    let h = Harness::with_config(config, None).await;
    (h, dir)
}

/// Repeats a GET until it is served with `X-Cache: want` (the cache fill runs
/// in the background, and the connection is made in the background).
async fn until_cache(h: &Harness, uri: &str, want: &str) -> Reply {
    for _ in 0..200 {
        let r = h.get(uri).await;
        if r.header("x-cache") == Some(want) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{uri} never answered X-Cache: {want}");
}

fn signal(redis: &Redis, sig: Signal) {
    kill(Pid::from_raw(redis.pid() as i32), sig).expect("signal redis by pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hit_and_every_write_invalidates() {
    let redis = start_redis(None).await;
    let (h, _dir) = cached_harness(&redis).await;
    let id = h.task(json!({"title": "cache me"})).await;
    let uri = format!("/api/v1/tasks/{id}");

    let miss = until_cache(&h, &uri, "MISS").await;
    let hit = until_cache(&h, &uri, "HIT").await;
    assert_eq!(hit.status, StatusCode::OK);
    assert_eq!(hit.body["data"], miss.body["data"]);

    let patched = h
        .admin(Method::PATCH, &uri, json!({"title": "changed"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let after = h.get(&uri).await;
    assert_eq!(
        after.header("x-cache"),
        Some("MISS"),
        "the write bumped the generation"
    );
    assert_eq!(
        after.body["data"]["title"], "changed",
        "never the stale entry"
    );

    let list_uri = "/api/v1/tasks?sort=-id&per_page=5";
    until_cache(&h, list_uri, "HIT").await;
    h.task(json!({"title": "second"})).await;
    let fresh = h.get(list_uri).await;
    assert_eq!(fresh.header("x-cache"), Some("MISS"));
    assert_eq!(fresh.body["meta"]["total"], 2);
    let hit = until_cache(&h, list_uri, "HIT").await;
    assert_eq!(
        hit.body["meta"]["total"], 2,
        "total is cached with the page"
    );
    assert_eq!(hit.body["data"], fresh.body["data"]);

    let del = h.admin_delete(&uri).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get(&uri).await.status, StatusCode::NOT_FOUND);

    let metrics = h.get("/metrics").await.text;
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("api_cache_hits_total{"))
        .unwrap();
    assert!(!hits.ends_with(" 0"), "{hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_open_and_a_restarted_one_is_used_again() {
    let redis = start_redis(None).await;
    let port = redis.port();
    let (h, _dir) = cached_harness(&redis).await;
    let id = h.task(json!({"title": "outage"})).await;
    let uri = format!("/api/v1/tasks/{id}");
    until_cache(&h, &uri, "HIT").await;

    signal(&redis, Signal::SIGKILL);
    drop(redis);
    for _ in 0..5 {
        let r = h.get(&uri).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "served from the database: {}",
            r.text
        );
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
    }
    let r = h
        .admin(
            Method::PATCH,
            &uri,
            json!({"title": "written during the outage"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "writes work without the cache");
    assert_eq!(h.get("/api/v1/tasks").await.status, StatusCode::OK);
    let metrics = h.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("api_cache_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );

    let _redis = start_redis(Some(port)).await;
    let back = until_cache(&h, &uri, "HIT").await;
    assert_eq!(back.body["data"]["title"], "written during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_a_timeout_not_an_outage() {
    let redis = start_redis(None).await;
    let (h, _dir) = cached_harness(&redis).await;
    let id = h.task(json!({"title": "frozen"})).await;
    let uri = format!("/api/v1/tasks/{id}");
    until_cache(&h, &uri, "HIT").await;

    signal(&redis, Signal::SIGSTOP);
    let frozen = async {
        for _ in 0..5 {
            let r = h.get(&uri).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.header("x-cache"), Some("BYPASS"));
        }
    };
    // A generous bound: without per-call timeouts these would hang forever.
    let finished = tokio::time::timeout(Duration::from_secs(30), frozen).await;
    signal(&redis, Signal::SIGCONT);
    finished.expect("requests complete while redis is frozen");
    until_cache(&h, &uri, "HIT").await;
}

#[tokio::test]
async fn without_redis_reads_say_bypass() {
    let h = Harness::sqlite().await;
    let id = h.task(json!({"title": "no cache"})).await;
    let r = h.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(
        h.get("/api/v1/tasks").await.header("x-cache"),
        Some("BYPASS")
    );
}
