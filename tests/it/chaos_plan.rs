//! `slolab chaos` without a stack: `plan --dry-run` prints the same plan byte for
//! byte for the same seed, another seed another plan, and a bad entry is a clear
//! error (exit 1); bad command lines are refused in the command line's spelling.

use crate::support::slolab;

const PROFILE: &str = r#"
name = "plan-test"
seed = 42
[stack]
instances = 3
cache = "redis"
[[load.stage]]
duration = "30s"
rate = 100
[[chaos]]
at = "12s"
fault = "kill"
target = "api-2"
[[chaos]]
every = "4s"
jitter = "1s"
probability = 0.6
for = "1s"
fault = "pause"
target = "api-random"
"#;

fn plan(dir: &std::path::Path, file: &str, seed: Option<&str>) -> std::process::Output {
    let mut cmd = slolab();
    cmd.args(["chaos", "plan", "--dry-run", "--run-dir"])
        .arg(dir.join("no-stack"))
        .arg(dir.join(file));
    if let Some(s) = seed {
        cmd.args(["--seed", s]);
    }
    cmd.output().unwrap()
}

#[test]
fn dry_run_plans_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), PROFILE).unwrap();
    let a = plan(dir.path(), "p.toml", None);
    let b = plan(dir.path(), "p.toml", None);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(text.contains("seed 42"), "{text}");
    assert!(text.contains("12.000s") && text.contains("kill"), "{text}");
    let other = plan(dir.path(), "p.toml", Some("43"));
    assert_ne!(a.stdout, other.stdout);
}

#[test]
fn a_bad_entry_is_an_error_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = PROFILE.replace("target = \"api-2\"", "target = \"api-7\"");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let out = plan(dir.path(), "bad.toml", None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no component `api-7`"), "{err}");
}

/// `slolab chaos ARGS --run-dir <no stack>`: must fail with exit 1; its stderr.
fn refused(dir: &std::path::Path, args: &[&str]) -> String {
    let out = slolab()
        .arg("chaos")
        .args(args)
        .arg("--run-dir")
        .arg(dir.join("no-stack"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_errors_name_flags_and_profile_errors_name_keys() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["inject", "restart", "api-1"]);
    assert!(
        err.contains("restart needs `--for` (e.g. --for 5s"),
        "checked before looking for a stack, in flags: {err}"
    );
    let err = refused(dir.path(), &["inject", "kill", "api-1", "--latency", "5ms"]);
    assert!(err.contains("kill does not take `--latency`"), "{err}");

    let profile = PROFILE.replace("fault = \"kill\"", "fault = \"restart\"");
    std::fs::write(dir.path().join("restart.toml"), profile).unwrap();
    let out = plan(dir.path(), "restart.toml", None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("restart needs `for` (e.g. for = \"5s\""),
        "a profile keeps the TOML spelling: {err}"
    );
}

#[test]
fn revert_without_an_id_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(dir.path(), &["revert"]);
    assert!(
        err.contains("needs what to revert: a fault id") && err.contains("`--all`"),
        "{err}"
    );
    let err = refused(dir.path(), &["revert", "3", "--all"]);
    assert!(err.contains("--all"), "{err}");
}
