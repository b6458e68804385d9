//! `slolab report` end to end: a synthetic experiment results file (the fixture the
//! unit tests use) rendered by the real binary in each format.
//!
//! Set `SLOLAB_KEEP_REPORTS=DIR` to keep the rendered reports for a look in a browser.

#[path = "../src/report/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

fn slolab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slolab"))
}

fn keep(path: &Path) {
    if let Ok(dir) = std::env::var("SLOLAB_KEEP_REPORTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, PathBuf::from(dir).join(path.file_name().unwrap())).unwrap();
    }
}

fn write_experiment(dir: &Path) -> PathBuf {
    let path = dir.join("results.json");
    fixture::experiment(42).write(&path).unwrap();
    keep(&path);
    path
}

#[test]
fn html_report_is_self_contained_with_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let out = dir.path().join("report.html");
    let st = slolab()
        .args(["report", "--format", "html", "--out"])
        .arg(&out)
        .arg(&results)
        .status()
        .unwrap();
    // The fixture's kill costs 30 requests of 14 000: under 99.9 %.
    assert_eq!(st.code(), Some(3));
    keep(&out);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 5, "one chart per section");
    assert_eq!(html.matches("</svg>").count(), 5);
    assert!(html.contains("kill api-2"));
    assert!(html.contains("latency redis 200ms"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link"));
}

#[test]
fn markdown_and_text_reports_show_verdict_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let md = slolab()
        .args(["report", "--format", "md"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(md.status.code(), Some(3));
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(md.contains("SLO NOT met"), "{md}");
    assert!(
        md.contains("| Objective | Target | Measured | Met |"),
        "{md}"
    );
    assert!(md.contains("| :--- |"), "{md}");
    assert!(md.contains("| spike |"), "{md}");
    assert!(md.contains("| kill api-2 |"), "{md}");

    let text = slolab().args(["report"]).arg(&results).output().unwrap();
    assert_eq!(text.status.code(), Some(3));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("Objectives (whole run)"), "{text}");
    assert!(text.contains("availability"), "{text}");
    assert!(text.contains("╭"), "{text}");
}

#[test]
fn slo_flags_rejudge_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let results = write_experiment(dir.path());
    let out = slolab()
        .args(["report", "--slo", "availability=99%", "--slo", "p99=1s"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("SLO met ✓"));

    let bad = slolab()
        .args(["report", "--slo", "p95=fast"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err.contains("p95"), "{err}");
}

/// A real `slolab load --save` run against a tiny HTTP server in this test, then
/// every format of `slolab report` on the saved file: measurements, no verdict.
#[test]
fn reports_a_real_load_run() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                loop {
                    // Read one request head (no bodies: GET only), answer, keep alive.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let body = "ok";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Served-By: api-1\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("load.json");
    let st = slolab()
        .args(["load", "-n", "200", "-c", "4", "--save"])
        .arg(&saved)
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let text = slolab().arg("report").arg(&saved).output().unwrap();
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("No SLO given"), "{text}");
    assert!(text.contains("│ 200 "), "200 requests measured: {text}");

    let md = slolab()
        .args(["report", "--format", "md"])
        .arg(&saved)
        .output()
        .unwrap();
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("### Measurements") && md.contains("| 200 |"),
        "{md}"
    );

    let out = dir.path().join("load.html");
    let st = slolab()
        .args(["report", "--format", "html", "-o"])
        .arg(&out)
        .arg(&saved)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!html.contains("<section id=\"objectives\">"));

    // With objectives given on the command line, the same run gets a verdict.
    let judged = slolab()
        .args(["report", "--slo", "availability=99%", "--slo", "p99=10s"])
        .arg(&saved)
        .output()
        .unwrap();
    assert_eq!(judged.status.code(), Some(0));
    assert!(String::from_utf8(judged.stdout)
        .unwrap()
        .contains("SLO met ✓ (2 objectives)"));
}

#[test]
fn unreadable_results_are_a_tool_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, "{\"schema_version\": 1}").unwrap();
    let out = slolab().arg("report").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("results.json"));
    let missing = slolab()
        .arg("report")
        .arg(dir.path().join("nope.json"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}
