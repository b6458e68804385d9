//! Every profile shipped in profiles/ passes `--dry-run`, and the plan it prints
//! is complete (stages, request mix, fault plan, SLOs) and the same for the same seed.

use std::path::PathBuf;

use crate::support::run_slolab;

fn profiles() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_profile_passes_dry_run_with_a_full_plan() {
    let all = profiles();
    assert!(all.len() >= 10, "profiles/: {all:?}");
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} must start with a comment saying what it shows",
            path.display()
        );
        let out = run_slolab(&["run", "--dry-run", path.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", path.display());
        for section in [
            "stages (t = seconds from the load start)",
            "request mix",
            "SLOs:",
            "stack:",
        ] {
            assert!(
                stdout.contains(section),
                "{}: no {section:?} in\n{stdout}",
                path.display()
            );
        }
        if text.contains("[[chaos]]") {
            assert!(
                stdout.contains("fault plan (t = from the load start)"),
                "{}:\n{stdout}",
                path.display()
            );
        }
    }
}

#[test]
fn dry_run_shows_absolute_times_and_is_deterministic_per_seed() {
    let run = |seed: &str| {
        let out = run_slolab(&[
            "run",
            "--dry-run",
            "profiles/challenge-01.toml",
            "--seed",
            seed,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run("7");
    assert_eq!(a, run("7"));
    // base 8 s, spike 6 s from 8 s, after from 14 s to 20 s.
    assert!(a.contains("8.0s ..    14.0s  spike"), "{a}");
    assert!(a.contains("14.0s ..    20.0s  after"), "{a}");
    assert!(a.contains("stage spike"), "{a}");

    let quick = run_slolab(&["run", "--dry-run", "profiles/quickstart.toml"]);
    let quick = String::from_utf8_lossy(&quick.stdout);
    assert!(
        quick.contains("8.000s") && quick.contains("kill") && quick.contains("api-2"),
        "{quick}"
    );
}

#[test]
fn set_overrides_are_checked_like_the_file() {
    let out = run_slolab(&[
        "run",
        "--dry-run",
        "profiles/nginx-vs-builtin.toml",
        "--set",
        "stack.gateway=builtin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The stack table's `gateway` row shows the override.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells == ["gateway", "builtin"]
        }),
        "{stdout}"
    );

    let out = run_slolab(&[
        "run",
        "--dry-run",
        "profiles/quickstart.toml",
        "--set",
        "load.stage[1].duration=5s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chaos[1].at") && stderr.contains("not before the end"),
        "{stderr}"
    );
}

/// A profile with no `seed` and a monkey-mode entry: the case where `run` and
/// `chaos plan` once chose different default seeds and horizons.
const SEEDLESS_MONKEY: &str = r#"# seedless monkey mode
name = "seedless-monkey"
[stack]
instances = 3
cache = "redis"
[load]
model = "open"
[[load.stage]]
duration = "40s"
rate = 50
[[load.request]]
path = "/api/v1/tasks"
[[chaos]]
every = "4s"
jitter = "1s"
probability = 0.6
for = "1s"
fault = "pause"
target = "api-random"
[[chaos]]
at = "20s"
fault = "kill"
target = "api-2"
"#;

/// `slolab run --dry-run` and `slolab chaos plan --dry-run` expand a profile's
/// faults through one pipeline, so they print the same fault plan.
#[test]
fn run_and_chaos_plan_print_the_same_fault_plan() {
    let dir = tempfile::tempdir().unwrap();
    let monkey = dir.path().join("seedless-monkey.toml");
    std::fs::write(&monkey, SEEDLESS_MONKEY).unwrap();
    let no_stack = dir.path().join("no-stack");
    let mut all = profiles();
    all.push(monkey);
    for path in all {
        let p = path.to_str().unwrap();
        let run = run_slolab(&["run", "--dry-run", p]);
        assert!(
            run.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("[stack]") {
            continue; // an external `url` target: no components, no faults
        }
        let plan = run_slolab(&[
            "chaos",
            "plan",
            "--dry-run",
            "--run-dir",
            no_stack.to_str().unwrap(),
            p,
        ]);
        assert!(
            plan.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&plan.stderr)
        );
        let run_out = String::from_utf8_lossy(&run.stdout);
        let plan_out = String::from_utf8_lossy(&plan.stdout);
        assert!(plan_out.starts_with("chaos plan: seed "), "{p}: {plan_out}");
        assert!(
            run_out.contains(&*plan_out),
            "{p}: `chaos plan` printed\n{plan_out}\nwhich `run --dry-run` does not:\n{run_out}"
        );
    }
}
