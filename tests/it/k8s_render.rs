//! `slolab k8s render`: the manifests for a fixed start time are exactly the
//! golden files under tests/golden/k8s-render/ (`UPDATE_GOLDEN=1` rewrites
//! them after an intended change), the stream on stdout is the same objects,
//! and bad input exits 1 before anything is written. The schema check is
//! ci/test.sh's (`kubernetes-validate --strict`).

use std::path::{Path, PathBuf};

use crate::support::{run_slolab, slolab};

const START: &str = "2026-01-01T12:00:00Z";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/k8s-render")
}

/// `render profiles/challenge-01.toml --shards 3` at START, into `dir` (or
/// stdout), with `extra` flags.
fn render(dir: Option<&Path>, extra: &[&str]) -> std::process::Output {
    let mut cmd = slolab();
    cmd.args([
        "k8s",
        "render",
        "profiles/challenge-01.toml",
        "--shards",
        "3",
    ])
    .args([
        "--start-at",
        START,
        "--image",
        "registry.example/slolab:test",
    ])
    .args(extra);
    if let Some(dir) = dir {
        cmd.arg("-o").arg(dir);
    }
    cmd.output().unwrap()
}

fn render_into(dir: &Path, extra: &[&str]) -> std::process::Output {
    render(Some(dir), extra)
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_manifests_match_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_into(dir.path(), &["--namespace", "load"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("start at {START}")), "{stderr}");
    let rendered = files(dir.path());
    let golden = golden_dir();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        std::fs::create_dir_all(&golden).unwrap();
        for (name, text) in &rendered {
            std::fs::write(golden.join(name), text).unwrap();
        }
    }
    assert_eq!(
        rendered,
        files(&golden),
        "the manifests changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    let job = &rendered
        .iter()
        .find(|(n, _)| n == "30-shards-job.yaml")
        .unwrap()
        .1;
    for must in [
        "completionMode: Indexed",
        "completions: 3",
        "parallelism: 3",
        "backoffLimit: 0",
        "action: FailJob",
        "restartPolicy: Never",
        "subdomain: slolab-challenge-01-shards",
        "--start-at=2026-01-01T12:00:00Z",
        "--post-results=http://slolab-challenge-01-collect:8080/shards",
        "/profile/challenge-01.toml",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ] {
        assert!(job.contains(must), "no {must:?} in\n{job}");
    }
}

#[test]
fn stdout_carries_the_same_objects_as_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    assert!(render_into(dir.path(), &[]).status.success());
    let joined: Vec<String> = files(dir.path()).into_iter().map(|(_, t)| t).collect();
    let out = render(None, &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), joined.join("---\n"));
}

#[test]
fn required_spread_and_resources_are_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_into(
        dir.path(),
        &[
            "--spread",
            "required",
            "--cpu",
            "2",
            "--memory",
            "1Gi",
            "--cpu-limit",
            "3",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = std::fs::read_to_string(dir.path().join("30-shards-job.yaml")).unwrap();
    assert!(
        job.contains("requiredDuringSchedulingIgnoredDuringExecution"),
        "{job}"
    );
    assert!(!job.contains("preferredDuringScheduling"), "{job}");
    assert!(
        job.contains("cpu: '3'") || job.contains("cpu: \"3\""),
        "{job}"
    );
    assert!(job.contains("memory: 1Gi"), "{job}");
}

#[test]
fn the_start_time_defaults_to_a_few_minutes_from_now() {
    let out = run_slolab(&[
        "k8s",
        "render",
        "profiles/challenge-01.toml",
        "--shards",
        "2",
        "--start-in",
        "2m",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let at = stdout
        .split("--start-at=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no --start-at in\n{stdout}"));
    let at = chrono::DateTime::parse_from_rfc3339(at.trim_matches(['\'', '"'])).unwrap();
    let lead = at.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((100..=120).contains(&lead), "starts in {lead} s");
}

/// (exit code, stderr) of a render that must fail, and nothing written.
fn render_fails(profile: &Path, shards: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = slolab()
        .args(["k8s", "render"])
        .arg(profile)
        .args(["--shards", shards, "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!out_dir.exists(), "wrote manifests for bad input");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_exits_1_with_a_clear_message() {
    let good = PathBuf::from("profiles/challenge-01.toml");
    let (code, stderr) = render_fails(&good, "0");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--shards 0"), "{stderr}");

    let (code, stderr) = render_fails(Path::new("profiles/no-such.toml"), "3");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("profiles/no-such.toml"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "url = \"http://127.0.0.1:1\"\n[load]\nmodel = \"open\"\nconections = 5\n",
    )
    .unwrap();
    let (code, stderr) = render_fails(&bad, "3");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4:", bad.display())),
        "expected file:line in {stderr}"
    );
    assert!(stderr.contains("conections"), "{stderr}");

    let (code, stderr) = render_fails(&good, "three");
    assert_eq!(code, 1, "{stderr}");
}
