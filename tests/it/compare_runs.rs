//! `slolab compare` end to end: real `slolab load --save` runs against a real
//! HTTP server on port 0 in this test, then the verdicts and exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{http_server_with, slolab, Answers};

/// A server on port 0 that answers after `delay`, with 500 to every
/// `fail_every`-th request; its URL.
fn upstream(delay: Duration, fail_every: Option<u64>) -> String {
    let server = http_server_with(Answers {
        delay,
        fail_every,
        ..Default::default()
    });
    format!("http://{}/tasks", server.addr)
}

/// A short open-model run: 2 s at 400 requests/s in 200 ms intervals.
fn load(url: &str, connections: &str, save: &Path) {
    let out = slolab()
        .args(["load", "-z", "2s", "--rate", "400", "-c", connections])
        .args(["--interval", "200ms", "-t", "5"])
        .arg("--save")
        .arg(save)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slolab load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn compare(args: &[&Path], extra: &[&str]) -> Output {
    slolab()
        .arg("compare")
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

fn code_and_text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

/// A verdict, not an error: 0 (no regression, perhaps unconfirmed) or 4, and
/// the verdict line says which. What the verdict is, on a real server, depends
/// on how busy the machine is; the statistics are tested on constructed
/// histograms (src/compare/stats.rs), these tests are the plumbing.
fn assert_verdict(code: i32, stdout: &str, stderr: &str) {
    let last = stdout.lines().last().unwrap_or_default();
    match code {
        0 => assert!(
            last.contains("no regression") || last.contains("no confirmed regression"),
            "{stdout}"
        ),
        4 => assert!(last.starts_with("REGRESSION in"), "{stdout}"),
        _ => panic!("exit {code}, not a verdict:\n{stdout}\n{stderr}"),
    }
}

#[test]
fn compare_reads_files_and_directories_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = upstream(Duration::ZERO, None);
    let runs: Vec<PathBuf> = [
        "base/1/results.json",
        "head/1/results.json",
        "base/2/results.json",
        "head/2/results.json",
    ]
    .iter()
    .map(|n| {
        let p = path(dir.path(), n);
        load(&server, "20", &p);
        p
    })
    .collect();

    let (code, stdout, stderr) = code_and_text(&compare(&[&runs[0], &runs[1]], &[]));
    assert_verdict(code, &stdout, &stderr);
    for metric in ["p50", "p95", "p99", "p99.9", "availability", "throughput"] {
        assert!(stdout.contains(metric), "{metric} missing:\n{stdout}");
    }
    assert!(stdout.contains("one run on a side"), "{stdout}");

    // Directories: both runs of a side pooled, and the count reported.
    let (base, head) = (dir.path().join("base"), dir.path().join("head"));
    let out = compare(&[&base, &head], &["--format", "json"]);
    let (code, stdout, stderr) = code_and_text(&out);
    assert!(code == 0 || code == 4, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["base"]["runs"], 2);
    assert_eq!(json["head"]["runs"], 2);
    assert_eq!(
        json["regressions"].as_array().unwrap().is_empty(),
        code == 0,
        "{stdout}"
    );
    assert_eq!(json["metrics"][0]["metric"], "p50");

    let (code, md, _) = code_and_text(&compare(&[&base, &head], &["--format", "md"]));
    assert!(code == 0 || code == 4, "{md}");
    assert!(md.starts_with("### slolab compare: "), "{md}");
    assert!(md.contains("| metric"), "{md}");
    assert!(
        md.lines()
            .any(|l| l.starts_with("|--") || l.starts_with("|:-") || l.starts_with("| --")),
        "{md}"
    );
}

#[test]
fn a_20ms_delay_shows_as_a_slower_head_and_swapped_as_better() {
    let dir = tempfile::tempdir().unwrap();
    let fast = upstream(Duration::ZERO, None);
    let slow = upstream(Duration::from_millis(20), None);
    let (base, head) = (path(dir.path(), "base.json"), path(dir.path(), "head.json"));
    load(&fast, "20", &base);
    load(&slow, "20", &head);

    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &[]));
    assert_verdict(code, &stdout, &stderr);
    let json: serde_json::Value =
        serde_json::from_slice(&compare(&[&base, &head], &["--format", "json"]).stdout).unwrap();
    let p50 = &json["metrics"][0];
    assert_eq!(p50["metric"], "p50");
    assert!(p50["change"].as_f64().unwrap() > 0.0, "{p50}");
    assert_ne!(p50["verdict"], "better", "{p50}");

    // Swapped, the same runs are never a regression.
    let (code, stdout, _) = code_and_text(&compare(&[&head, &base], &[]));
    assert_eq!(code, 0, "{stdout}");
}

/// A base and a head run against one server, with these connection counts.
fn same_server_runs(dir: &Path, base_conns: &str, head_conns: &str) -> (PathBuf, PathBuf) {
    let server = upstream(Duration::ZERO, None);
    let (base, head) = (path(dir, "base.json"), path(dir, "head.json"));
    load(&server, base_conns, &base);
    load(&server, head_conns, &head);
    (base, head)
}

/// Rewrites a results file's JSON in place.
fn edit(file: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(file, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn interrupted_runs_are_left_out_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = same_server_runs(dir.path(), "20", "20");
    edit(&head, |v| v["run"]["interrupted"] = true.into());

    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &[]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("every head run was interrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("--include-interrupted"), "{stderr}");

    let (code, stdout, stderr) =
        code_and_text(&compare(&[&base, &head], &["--include-interrupted"]));
    assert_verdict(code, &stdout, &stderr);
    assert!(stdout.contains("was interrupted and is pooled"), "{stdout}");
}

#[test]
fn an_intended_difference_is_declared_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = same_server_runs(dir.path(), "20", "20");
    for (file, gateway) in [(&base, "nginx"), (&head, "builtin")] {
        edit(file, |v| {
            v["experiment"] = serde_json::json!({
                "name": "nginx-vs-builtin",
                "profile": { "name": "nginx-vs-builtin", "stack": { "gateway": gateway, "instances": 4 } },
            })
        });
    }
    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &[]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stack.gateway: \"nginx\" → \"builtin\""),
        "{stderr}"
    );
    assert!(stderr.contains("--allow stack.gateway"), "{stderr}");
    assert!(!stderr.contains("instances"), "only what differs: {stderr}");

    let (code, stdout, stderr) =
        code_and_text(&compare(&[&base, &head], &["--allow", "stack.gateway"]));
    assert_verdict(code, &stdout, &stderr);
    assert!(
        stdout.contains("intended difference (--allow): stack.gateway"),
        "{stdout}"
    );
}

#[test]
fn availability_falling_to_99_percent_is_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = upstream(Duration::ZERO, None);
    let failing = upstream(Duration::ZERO, Some(100));
    let (base, head) = (path(dir.path(), "base.json"), path(dir.path(), "head.json"));
    load(&healthy, "20", &base);
    load(&failing, "20", &head);

    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &["--format", "json"]));
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json["regressions"]
            .as_array()
            .unwrap()
            .contains(&"availability".into()),
        "{stdout}"
    );
    let availability = json["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "availability")
        .unwrap();
    assert_eq!(availability["base"], 1.0);
    let head_availability = availability["head"].as_f64().unwrap();
    assert!(
        (0.985..=0.995).contains(&head_availability),
        "{availability}"
    );
}

#[test]
fn runs_with_a_different_load_shape_are_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = same_server_runs(dir.path(), "20", "10");

    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &[]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("not comparable"), "{stderr}");
    assert!(stderr.contains("plan.connections: 20 → 10"), "{stderr}");

    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &["--force"]));
    assert_ne!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("compared anyway (--force): plan.connections"),
        "{stdout}"
    );
}

#[test]
fn bad_inputs_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = path(dir.path(), "not.json");
    std::fs::write(&not_json, "hello").unwrap();
    let not_results = path(dir.path(), "other.json");
    std::fs::write(&not_results, r#"{"schema_version": 1, "tool": {}}"#).unwrap();
    let future = path(dir.path(), "future.json");
    std::fs::write(&future, r#"{"schema_version": 99}"#).unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let missing = dir.path().join("missing.json");

    for (a, b, says) in [
        (&missing, &not_json, "missing.json"),
        (&not_json, &not_json, "not a slolab results file"),
        (&not_results, &not_results, "not a slolab results file"),
        (&future, &future, "schema version 99"),
        (&empty_dir, &not_json, "no results.json under"),
    ] {
        let (code, stdout, stderr) = code_and_text(&compare(&[a, b], &[]));
        assert_eq!(code, 1, "{a:?} {b:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{a:?} {b:?}: {stderr}");
    }
    let (code, _, stderr) = code_and_text(&compare(&[&not_json], &[]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("give both BASE and HEAD"), "{stderr}");
}

/// A results file written by an earlier main (4ab4633, `slolab run
/// profiles/nginx-vs-builtin.toml`) still renders in every format and compares.
#[test]
fn a_results_file_from_an_earlier_main_renders_and_compares() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("verdict/tests/data/results-4ab4633.json");
    for format in ["text", "md", "html"] {
        let out = slolab()
            .args(["report", "--format", format])
            .arg(&old)
            .output()
            .unwrap();
        let (code, stdout, stderr) = code_and_text(&out);
        assert_eq!(code, 0, "{format}: {stderr}");
        assert!(stdout.contains("nginx-vs-builtin"), "{format}: {stdout}");
        assert!(!stdout.contains("could not be read"), "{format}: {stdout}");
    }
    let (code, stdout, stderr) = code_and_text(&compare(&[&old, &old], &[]));
    assert_verdict(code, &stdout, &stderr);
    assert!(
        stdout.contains("the same file is on both sides"),
        "{stdout}"
    );
    assert!(stdout.contains("time to recover"), "{stdout}");
}

/// A section this version cannot read is said, not silently dropped.
#[test]
fn an_unreadable_experiment_section_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = same_server_runs(dir.path(), "20", "20");
    edit(&head, |v| {
        v["experiment"] = serde_json::json!({ "faults": "not a list" })
    });
    let (code, stdout, stderr) = code_and_text(&compare(&[&base, &head], &[]));
    assert_verdict(code, &stdout, &stderr);
    assert!(
        stdout.contains("its experiment section could not be read"),
        "{stdout}"
    );
}
