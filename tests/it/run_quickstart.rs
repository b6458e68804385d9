//! `slolab run` end to end through the binary against the real bundled stack:
//! the quickstart scenario as shipped, an SLO that breaks (exit 3), and Ctrl-C
//! (exit 130, and no verdict anywhere).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::slolab;

/// The one run directory under OUT/NAME/.
fn run_dir(out: &Path, name: &str) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// The words of `s`, lower-cased: "met" as a word, not inside "method".
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn experiment(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["experiment"].clone()
}

#[test]
fn quickstart_runs_end_to_end_and_exit_code_matches_the_verdict() {
    let out = tempfile::tempdir().unwrap();
    let status = slolab()
        .args(["run", "profiles/quickstart.toml", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    let dir = run_dir(out.path(), "quickstart");
    for f in ["results.json", "report.md", "report.html"] {
        assert!(
            dir.join(f).is_file(),
            "{f} missing in {}: {stderr}",
            dir.display()
        );
    }
    assert!(
        dir.join("stack/logs").is_dir(),
        "stack logs kept with the run"
    );
    let logs = format!("component logs in {}", dir.join("stack/logs").display());
    assert!(stderr.contains(&logs), "the kept logs are named: {stderr}");
    assert!(
        stderr.contains("⚡ kill api-2 @"),
        "the fault shown as it fires: {stderr}"
    );
    let exp = experiment(&dir);
    let met = exp["slo"]["met"].as_bool().expect("an SLO verdict");
    assert_eq!(
        status.status.code(),
        Some(if met { 0 } else { 3 }),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("SLO"), "terminal report printed: {stdout}");

    // The kill happened, on the load's clock, and the profile and stages are there.
    let faults = exp["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["label"], "kill api-2");
    assert!(faults[0]["error"].is_null(), "{faults:?}");
    let start = faults[0]["start_s"].as_f64().unwrap();
    assert!((7.0..9.0).contains(&start), "injected at {start}");
    // One clock: the plan's offset is carried exactly (no wall-clock re-parse
    // rounding it to a millisecond), and the injection is stamped on the same
    // origin, so it can never appear before its planned time.
    assert_eq!(faults[0]["planned_s"], 8.0, "{faults:?}");
    assert!(start >= 8.0, "stamped before its plan: {start}");
    assert_eq!(exp["stages"][0]["name"], "steady");
    assert_eq!(exp["stages"][0]["end_s"], 20.0);
    assert_eq!(exp["profile"]["stack"]["instances"], 2);
    assert_eq!(exp["seed"], 42);
    assert!(!exp["interrupted"].as_bool().unwrap());
}

#[test]
fn a_broken_slo_exits_3() {
    // One instance, killed and restarted after 1 s: an outage a 99.9 % SLO cannot absorb.
    let out = tempfile::tempdir().unwrap();
    let status = slolab()
        .args([
            "run",
            "profiles/service-down.toml",
            "--set",
            "load.stage[1].duration=6s",
            "--set",
            "chaos[1].at=2s",
            "--set",
            "load.warmup=1s",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    let dir = run_dir(out.path(), "service-down");
    let exp = experiment(&dir);
    assert_eq!(exp["slo"]["met"], false, "{stderr}");
    assert_eq!(status.status.code(), Some(3), "{stderr}");
    assert!(dir.join("report.md").is_file() && dir.join("report.html").is_file());
}

#[test]
fn ctrl_c_stops_everything_and_still_writes_what_was_measured() {
    let out = tempfile::tempdir().unwrap();
    let mut child = slolab()
        .args([
            "run",
            "profiles/quickstart.toml",
            "--set",
            "load.warmup=0s",
            "--out",
        ])
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on its own thread so the report never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let report = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("stack up at") {
            break;
        }
    }
    // Let some load be measured (no warm-up), then interrupt — before the kill
    // planned at 8 s, whose recovery therefore cannot be judged.
    std::thread::sleep(std::time::Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    let dir = run_dir(out.path(), "quickstart");
    let exp = experiment(&dir);
    assert_eq!(exp["interrupted"], true);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert!(results["totals"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(results["run"]["interrupted"], true);

    // No verdict: not in the results, the terminal, the Markdown or the HTML.
    let stdout = report.join().unwrap();
    assert_eq!(exp["slo"]["verdict"], "interrupted", "{}", exp["slo"]);
    assert_eq!(exp["slo"]["met"], false);
    let no_verdict = "interrupted — incomplete, no verdict";
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for (name, doc) in [("stdout", &stdout), ("report.md", &md)] {
        assert!(doc.contains(no_verdict), "{name}: {doc}");
        assert!(!words(doc).contains(&"met".to_string()), "{name}: {doc}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains(&format!("<p class=\"verdict none\">SLO: {no_verdict}")),
        "{html}"
    );
    // The stylesheet's `.met` class is the only "met" on the page.
    let body = &html[html.find("</style>").expect("a stylesheet")..];
    assert!(!words(body).contains(&"met".to_string()), "{body}");

    // The kill that never fired is listed, not silently dropped.
    let kill = exp["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"] == "kill api-2")
        .unwrap_or_else(|| panic!("{}", exp["faults"]));
    assert!(
        kill["error"].as_str().unwrap().contains("interrupted"),
        "{kill}"
    );
    assert!(
        md.contains("kill api-2") && md.contains("not judged"),
        "{md}"
    );
}
