//! `slolab collect` over real HTTP on port 0: shards' results files (from real
//! `slolab load --save` runs) POSTed, the status, idempotent re-POSTs, bad
//! index / body / size, and the merge once all arrived. `merge` is the
//! collector's process contract (`PROGRAM merge SHARD... -o OUT`); here PROGRAM
//! is a stand-in script (`--merge-cmd`) that records how it was called and
//! merges only the one-shard case (the merge of one shard is that shard), while
//! the report is rendered by the real `slolab report`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::support::{get, http_server, post, slolab, wait_until, SLOLAB};

const STAND_IN: &str = r#"#!/bin/sh
echo "$@" >> "$(dirname "$0")/merge-calls"
[ "$1" = merge ] || exit 2
shift
out=""
n=0
first=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out="$2"; shift 2 ;;
        *) n=$((n + 1)); [ -z "$first" ] && first="$1"; shift ;;
    esac
done
if [ "$n" -ne 1 ]; then
    echo "INCOMPLETE: the stand-in merges one shard only, got $n" >&2
    exit 1
fi
cp "$first" "$out"
"#;

struct Collector {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Collector {
    fn start(shards: u32, extra: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), shards, extra)
    }

    /// A collector on `dir` (its `out/` may hold shards of an earlier one).
    fn start_in(dir: tempfile::TempDir, shards: u32, extra: &[&str]) -> Self {
        let script = dir.path().join("merge-stand-in");
        std::fs::write(&script, STAND_IN).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = slolab()
            .args(["collect", "--listen", "127.0.0.1:0", "--shards"])
            .arg(shards.to_string())
            .arg("--out")
            .arg(dir.path().join("out"))
            .arg("--merge-cmd")
            .arg(&script)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("collect exited").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining, so that the collector never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url, dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn status(&self) -> serde_json::Value {
        let (code, _, body) = get(&self.url, "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn merge_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("merge-calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real results file: `slolab load` against a local server, `requests` requests.
fn shard_results(dir: &Path, name: &str, requests: u32) -> Vec<u8> {
    let server = http_server();
    let path = dir.join(name);
    let out = slolab()
        .args(["load", "-n", &requests.to_string(), "-c", "2", "--save"])
        .arg(&path)
        .arg(format!("http://{}/", server.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(path).unwrap()
}

#[test]
fn shards_arrive_are_checked_and_the_merge_runs_once_all_are_in() {
    let c = Collector::start(3, &[]);
    let work = tempfile::tempdir().unwrap();
    let a = shard_results(work.path(), "a.json", 20);
    let b = shard_results(work.path(), "b.json", 30);

    let (code, _, body) = post(&c.url, "/shards/1", &a);
    assert_eq!(code, 201, "{body}");
    let s = c.status();
    assert_eq!(s["expected"], 3);
    assert_eq!(s["received"], serde_json::json!([1]));
    assert_eq!(s["missing"], serde_json::json!([0, 2]));
    assert_eq!(s["merged"], false);
    let (code, _, body) = get(&c.url, "/report.html");
    assert_eq!(code, 404);
    assert!(body.contains("waiting for shards [0, 2]"), "{body}");

    // Bad requests change nothing.
    let (code, _, body) = post(&c.url, "/shards/3", &a);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no shard 3"), "{body}");
    let (code, _, body) = post(&c.url, "/shards/one", &a);
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = post(&c.url, "/shards/0", b"{\"schema_version\": 1}");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("not a slolab results file"), "{body}");
    let (code, _, _) = post(&c.url, "/shards/0", b"not json");
    assert_eq!(code, 422);
    assert_eq!(c.status()["received"], serde_json::json!([1]));
    assert!(!c.out().join("shard-0.json").exists());

    // The same shard again: stored once, nothing changes.
    let (code, _, _) = post(&c.url, "/shards/1", &a);
    assert_eq!(code, 200);
    assert_eq!(std::fs::read(c.out().join("shard-1.json")).unwrap(), a);

    assert_eq!(post(&c.url, "/shards/0", &a).0, 201);
    assert!(
        c.merge_calls().is_empty(),
        "merged before all shards arrived"
    );
    assert_eq!(post(&c.url, "/shards/2", &b).0, 201);
    wait_until("the merge to fail", || c.status().get("error").is_some());
    let s = c.status();
    assert_eq!(s["missing"], serde_json::json!([]));
    assert_eq!(s["merged"], false);
    let error = s["error"].as_str().unwrap();
    assert!(error.contains("merge failed (exit 1)"), "{error}");
    assert!(error.contains("INCOMPLETE"), "{error}");
    let out = c.out();
    let shard = |i: u32| out.join(format!("shard-{i}.json")).display().to_string();
    assert_eq!(
        c.merge_calls(),
        [format!(
            "merge {} {} {} -o {}",
            shard(0),
            shard(1),
            shard(2),
            out.join("results.json").display()
        )]
    );
    let (code, _, body) = get(&c.url, "/results.json");
    assert_eq!(code, 404);
    assert!(body.contains("INCOMPLETE"), "{body}");

    // A re-POST of the same shard does not merge again; a changed one does.
    assert_eq!(post(&c.url, "/shards/2", &b).0, 200);
    assert_eq!(c.merge_calls().len(), 1);
    assert_eq!(post(&c.url, "/shards/2", &a).0, 200);
    wait_until("a second merge", || c.merge_calls().len() == 2);
}

#[test]
fn the_merged_results_and_report_are_served() {
    let c = Collector::start(1, &["--max-body-mib", "1"]);
    let work = tempfile::tempdir().unwrap();
    let a = shard_results(work.path(), "a.json", 20);
    let too_big = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(post(&c.url, "/shards/0", &too_big).0, 413);

    assert_eq!(post(&c.url, "/shards/0", &a).0, 201);
    wait_until("the merge", || c.status()["merged"] == true);
    let (code, headers, body) = get(&c.url, "/results.json");
    assert_eq!(code, 200);
    assert_eq!(
        crate::support::header(&headers, "content-type"),
        Some("application/json")
    );
    assert_eq!(body.as_bytes(), a.as_slice());
    let (code, _, body) = get(&c.url, "/report.html");
    assert_eq!(code, 200);
    assert!(body.contains("<html"), "{body}");
    assert!(c.out().join("report.html").exists());
    // Idempotent: the same results again leave the merge as it was.
    assert_eq!(post(&c.url, "/shards/0", &a).0, 200);
    assert_eq!(c.status()["merged"], true);
    assert_eq!(c.merge_calls().len(), 1);
}

/// The shard's side: `slolab run --post-results` as the Indexed Job runs it.
#[test]
fn a_run_posts_its_results_to_the_collector() {
    let c = Collector::start(1, &[]);
    let server = http_server();
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("shard.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"shard\"\nurl = \"http://{}\"\n[load]\nconnections = 2\n\
             [[load.stage]]\nduration = \"1s\"\nrate = 20\n[[load.request]]\npath = \"/\"\n",
            server.addr
        ),
    )
    .unwrap();
    let run = |index: Option<&str>| {
        let mut cmd = std::process::Command::new(SLOLAB);
        cmd.arg("run")
            .arg(&profile)
            .arg("--out")
            .arg(work.path().join("runs"))
            .arg("--post-results")
            .arg(format!("{}/shards", c.url))
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some(i) = index {
            cmd.env("JOB_COMPLETION_INDEX", i);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("JOB_COMPLETION_INDEX is not set"),
        "{stderr}"
    );

    let out = run(Some("0"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("results posted to"), "{stderr}");
    wait_until("the merge", || c.status()["merged"] == true);
}

/// A collector restarted on the same directory (its pod's emptyDir survives a
/// container restart) picks up the shards already there and merges.
#[test]
fn a_restarted_collector_keeps_the_shards_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let a = shard_results(dir.path(), "a.json", 20);
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out/shard-0.json"), &a).unwrap();
    let c = Collector::start_in(dir, 1, &[]);
    wait_until("the merge", || c.status()["merged"] == true);
    assert_eq!(c.status()["received"], serde_json::json!([0]));
    assert_eq!(get(&c.url, "/results.json").2.as_bytes(), a.as_slice());
}
