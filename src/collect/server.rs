//! `slolab collect`: stores each shard's results file as it arrives (atomically,
//! a re-POST replaces it), merges once every index 0..N-1 is there by running
//! `slolab merge` (a process contract: the merge is the CLI's, not a copy of it),
//! renders the report, and serves both.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

/// What the collector is told at start.
#[derive(Debug, Clone)]
pub struct Collector {
    /// N: the shards are 0..N-1.
    pub expected: u32,
    pub dir: PathBuf,
    /// Run as `merge_cmd merge SHARD... -o results.json`.
    pub merge_cmd: PathBuf,
    /// Run as `report_cmd report results.json --format html -o report.html`.
    pub report_cmd: PathBuf,
    /// Larger bodies answer 413.
    pub max_body: usize,
}

#[derive(Clone)]
struct AppState(Arc<Shared>);

struct Shared {
    collector: Collector,
    progress: Mutex<Progress>,
    /// One merge at a time; a shard replaced meanwhile triggers another.
    merging: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Progress {
    received: BTreeSet<u32>,
    /// Bumped by every stored change: a merge is current only for its generation.
    generation: u64,
    merged: Option<u64>,
    error: Option<String>,
}

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub expected: u32,
    pub received: Vec<u32>,
    pub missing: Vec<u32>,
    pub merged: bool,
    /// Why the last merge or report failed (e.g. the run is INCOMPLETE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum CollectError {
    #[error("`{0}` is not a shard index (POST /shards/0, /shards/1, ...)")]
    BadIndex(String),
    #[error("no shard {index}: this run has {expected} (indices 0..{expected})")]
    NoSuchShard { index: u32, expected: u32 },
    #[error("not a slolab results file: {0}")]
    NotResults(String),
    #[error("not merged yet: {0}")]
    NotMerged(String),
    #[error("{0}")]
    Io(String),
}

impl IntoResponse for CollectError {
    fn into_response(self) -> Response {
        let status = match &self {
            CollectError::BadIndex(_) => StatusCode::BAD_REQUEST,
            CollectError::NoSuchShard { .. } | CollectError::NotMerged(_) => StatusCode::NOT_FOUND,
            CollectError::NotResults(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CollectError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

impl AppState {
    fn new(collector: Collector) -> Self {
        Self(Arc::new(Shared {
            collector,
            progress: Mutex::new(Progress::default()),
            merging: tokio::sync::Mutex::new(()),
        }))
    }

    fn shard_path(&self, index: u32) -> PathBuf {
        self.0.collector.dir.join(format!("shard-{index}.json"))
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding it leaves plain data, still consistent.
        self.0.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> Status {
        let p = self.progress();
        let expected = self.0.collector.expected;
        Status {
            expected,
            received: p.received.iter().copied().collect(),
            missing: (0..expected).filter(|i| !p.received.contains(i)).collect(),
            merged: p.merged == Some(p.generation),
            error: p.error.clone(),
        }
    }

    /// Shards a previous run of this container left in the directory (its
    /// emptyDir outlives a restart), so that they need not be POSTed again.
    fn recover(&self) {
        for index in 0..self.0.collector.expected {
            let path = self.shard_path(index);
            if loadgen::Results::read(&path).is_ok() {
                eprintln!("slolab collect: shard {index} found in {}", path.display());
                self.progress().received.insert(index);
            }
        }
    }
}

/// The collector's routes (the tests drive them over real HTTP on port 0).
fn app(state: AppState) -> Router {
    let limit = state.0.collector.max_body;
    Router::new()
        .route("/shards/{index}", post(receive))
        .route("/status", get(status))
        .route("/results.json", get(results))
        .route("/report.html", get(report))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    collector: Collector,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(collector);
    state.recover();
    tokio::spawn(merge_when_complete(state.clone()));
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(state.status())
}

/// `POST /shards/{index}`: 201 for a new shard, 200 for a replaced (or the
/// same) one; the body is the shard's results.json.
async fn receive(
    State(state): State<AppState>,
    UrlPath(index): UrlPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Status>), CollectError> {
    let expected = state.0.collector.expected;
    let index: u32 = index.parse().map_err(|_| CollectError::BadIndex(index))?;
    if index >= expected {
        return Err(CollectError::NoSuchShard { index, expected });
    }
    let name = format!("the body of POST /shards/{index}");
    let parsed =
        loadgen::Results::from_json(&name, &body).and_then(|r| r.total_histogram().map(|_| ()));
    parsed.map_err(|e| CollectError::NotResults(e.to_string()))?;

    let path = state.shard_path(index);
    let same = tokio::fs::read(&path).await.is_ok_and(|old| old == body);
    let known = state.progress().received.contains(&index);
    if same && known {
        return Ok((StatusCode::OK, Json(state.status())));
    }
    let write_to = path.clone();
    tokio::task::spawn_blocking(move || atomicfile::write_atomic(&write_to, &body))
        .await
        .map_err(|e| CollectError::Io(e.to_string()))?
        .map_err(|e| CollectError::Io(format!("cannot write {}: {e}", path.display())))?;
    let (new, complete) = {
        let mut p = state.progress();
        let new = p.received.insert(index);
        p.generation += 1;
        (new, p.received.len() == expected as usize)
    };
    eprintln!(
        "slolab collect: shard {index} {} ({} of {expected})",
        if new { "received" } else { "replaced" },
        state.progress().received.len()
    );
    if complete {
        tokio::spawn(merge_when_complete(state.clone()));
    }
    let code = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(state.status())))
}

async fn results(State(state): State<AppState>) -> Result<Response, CollectError> {
    merged_file(&state, "results.json", "application/json").await
}

async fn report(State(state): State<AppState>) -> Result<Response, CollectError> {
    merged_file(&state, "report.html", "text/html; charset=utf-8").await
}

async fn merged_file(
    state: &AppState,
    name: &str,
    content_type: &'static str,
) -> Result<Response, CollectError> {
    let status = state.status();
    if !status.merged {
        return Err(CollectError::NotMerged(match status.error {
            Some(e) => e,
            None if status.missing.is_empty() => "merging".into(),
            None => format!("waiting for shards {:?}", status.missing),
        }));
    }
    let path = state.0.collector.dir.join(name);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| CollectError::Io(format!("cannot read {}: {e}", path.display())))?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// Merges (and renders the report) when every shard is in and the stored set
/// has changed since the last merge; loops while shards keep being replaced.
async fn merge_when_complete(state: AppState) {
    let _one_at_a_time = state.0.merging.lock().await;
    loop {
        let generation = {
            let p = state.progress();
            let complete = p.received.len() == state.0.collector.expected as usize;
            if !complete || p.merged == Some(p.generation) {
                return;
            }
            p.generation
        };
        eprintln!("slolab collect: all shards in: merging");
        let outcome = merge_and_report(&state.0.collector).await;
        let mut p = state.progress();
        match outcome {
            Ok(()) => {
                p.merged = Some(generation);
                p.error = None;
                let dir = state.0.collector.dir.display();
                eprintln!("slolab collect: merged: {dir}/results.json, {dir}/report.html");
            }
            Err(e) => {
                eprintln!("slolab collect: {e}");
                p.error = Some(e);
            }
        }
        if p.generation == generation {
            return;
        }
    }
}

/// `slolab merge DIR/shard-0.json ... -o DIR/results.json`, then
/// `slolab report DIR/results.json --format html -o DIR/report.html`.
async fn merge_and_report(c: &Collector) -> Result<(), String> {
    let results = c.dir.join("results.json");
    let mut merge = tokio::process::Command::new(&c.merge_cmd);
    merge.arg("merge");
    for index in 0..c.expected {
        merge.arg(c.dir.join(format!("shard-{index}.json")));
    }
    merge.arg("-o").arg(&results);
    let out = run(&mut merge, "merge").await?;
    if !out.status.success() {
        return Err(failed("merge", &out));
    }
    let mut report = tokio::process::Command::new(&c.report_cmd);
    report
        .arg("report")
        .arg(&results)
        .args(["--format", "html", "-o"])
        .arg(c.dir.join("report.html"));
    let out = run(&mut report, "report").await?;
    // 3: an SLO was not met, 130: the run was interrupted; the report is
    // written either way and says so.
    match out.status.code() {
        Some(0 | 3 | 130) if c.dir.join("report.html").exists() => Ok(()),
        _ => Err(failed("report", &out)),
    }
}

async fn run(
    command: &mut tokio::process::Command,
    what: &str,
) -> Result<std::process::Output, String> {
    command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `{what}`: {e}"))
}

/// `merge failed (exit 1): <the last lines of its stderr>`.
fn failed(what: &str, out: &std::process::Output) -> String {
    let code = out
        .status
        .code()
        .map_or_else(|| "killed".to_string(), |c| format!("exit {c}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().rev().take(10).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    format!("{what} failed ({code}): {}", tail.join(" | "))
}
