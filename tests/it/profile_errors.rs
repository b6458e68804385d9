//! Profile mistakes are reported as `FILE:LINE:COL: FIELD: message` with exit 1,
//! before anything is started — one case per kind of mistake.

use crate::support::slolab;

const GOOD: &str = r#"name = "t"
[stack]
instances = 2
[load]
model = "open"
[[load.stage]]
duration = "5s"
rate = 10
[[load.request]]
weight = 1
path = "/api/v1/tasks"
[[chaos]]
at = "2s"
fault = "kill"
target = "api-2"
[slo]
availability = "99%"
p95 = "100ms"
"#;

/// Runs `--dry-run` on GOOD with `from` replaced by `to`; returns (exit code, stderr).
fn dry_run_with(from: &str, to: &str) -> (i32, String) {
    assert!(GOOD.contains(from), "{from:?} not in the base profile");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, GOOD.replacen(from, to, 1)).unwrap();
    let out = slolab()
        .args(["run", "--dry-run"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stderr = stderr.replace(&path.display().to_string(), "p.toml");
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_error(from: &str, to: &str, location: &str, detail: &str) {
    let (code, stderr) = dry_run_with(from, to);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("p.toml:{location}")),
        "expected p.toml:{location} in {stderr}"
    );
    assert!(stderr.contains(detail), "expected {detail:?} in {stderr}");
}

#[test]
fn the_base_profile_is_valid() {
    let (code, stderr) = dry_run_with("rate = 10", "rate = 10");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn unknown_field_names_the_field_and_its_line() {
    assert_error(
        "weight = 1",
        "wieght = 1",
        "10:1: load.request[1].wieght: unknown field `wieght`",
        "expected one of",
    );
}

#[test]
fn wrong_type_points_at_the_value() {
    assert_error(
        "rate = 10",
        "rate = \"fast\"",
        "8:8: load.stage[1].rate",
        "invalid type",
    );
}

#[test]
fn impossible_rate_and_duration() {
    assert_error(
        "rate = 10",
        "rate = 0",
        "8:8: load.stage[1].rate",
        "more than 0",
    );
    assert_error(
        "duration = \"5s\"",
        "duration = \"0s\"",
        "7:12: load.stage[1].duration",
        "more than 0",
    );
    assert_error(
        "duration = \"5s\"",
        "duration = \"5 fortnights\"",
        "7:12: load.stage[1].duration",
        "invalid duration",
    );
}

#[test]
fn all_weights_zero() {
    assert_error(
        "weight = 1",
        "weight = 0",
        "10:10: load.request[1].weight",
        "weight 0",
    );
}

#[test]
fn bad_url_path() {
    assert_error(
        "path = \"/api/v1/tasks\"",
        "path = \"api/v1/tasks\"",
        "11:8: load.request[1].path",
        "must start with `/`",
    );
}

#[test]
fn availability_over_100_percent() {
    assert_error(
        "availability = \"99%\"",
        "availability = \"101%\"",
        "17:1: slo.availability",
        "at most 100",
    );
}

#[test]
fn latency_of_is_good_or_all() {
    // Judging latency on the bad responses alone would reward failing slowly.
    assert_error(
        "p95 = \"100ms\"",
        "p95 = \"100ms\"\nlatency-of = \"bad\"",
        "19:1: slo.latency-of",
        "latency-of = \"bad\": expected \"good\"",
    );
    let (code, stderr) = dry_run_with("p95 = \"100ms\"", "p95 = \"100ms\"\nlatency-of = \"all\"");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn fault_after_the_load_ends() {
    assert_error(
        "at = \"2s\"",
        "at = \"9s\"",
        "13:1: chaos[1].at",
        "not before the end of the load",
    );
}

#[test]
fn chaos_target_missing_from_this_stack() {
    assert_error(
        "target = \"api-2\"",
        "target = \"redis\"",
        "15:1: chaos[1].target",
        "no component `redis`",
    );
}

#[test]
fn unknown_fault_and_bad_toxicity() {
    assert_error(
        "fault = \"kill\"",
        "fault = \"explode\"",
        "14:1: chaos[1].fault",
        "unknown fault `explode`",
    );
    assert_error(
        "fault = \"kill\"",
        "fault = \"latency\"\nlatency = \"10ms\"\ntoxicity = 1.5",
        "16:1: chaos[1].toxicity",
        "toxicity must be within 0.0..=1.0",
    );
}

#[test]
fn unknown_stack_option() {
    assert_error(
        "instances = 2",
        "instances = 2\ndatabase = \"pg\"",
        "4:1: stack.database",
        "unknown field `database`",
    );
}

#[test]
fn closed_model_needs_connections() {
    assert_error(
        "model = \"open\"",
        "model = \"closed\"",
        "6:1: load.stage[1].connections",
        "needs `connections`",
    );
}
