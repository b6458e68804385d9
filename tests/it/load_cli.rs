//! `slolab load` as a user runs it: hey's command line against a real HTTP server
//! on port 0, bad input (one line, exit 1), --json/--save/-o csv, and Ctrl-C
//! (SIGINT to the child) leaving a partial summary and a results file.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{http_server, slolab};

/// `slolab load ARGS`.
fn load(args: &[&str]) -> std::process::Output {
    slolab()
        .arg("load")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn hey_command_line_prints_heys_sections() {
    let s = http_server();
    let url = format!("http://{}/tasks", s.addr);
    let out = load(&["-n", "200", "-c", "20", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "Summary:",
        "  Requests/sec:",
        "Response time histogram:",
        "Latency distribution:",
        "  99% in",
        "  99.9% in",
        "  99.99% in",
        "Details (average, fastest, slowest):",
        "Status code distribution:",
        "  [200]\t200 responses",
        "  Availability:\t100.0000%",
    ] {
        assert!(stdout.contains(section), "missing {section:?} in\n{stdout}");
    }
    assert!(!stdout.contains("Error distribution:"));
    assert_eq!(s.requests.load(Ordering::SeqCst), 200);
    assert_eq!(s.connections.load(Ordering::SeqCst), 20);
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let cases: [(&[&str], &str); 12] = [
        (&["not a url"], "invalid URL"),
        (&["http://127.0.0.1:1/a b"], "invalid URL"),
        (&["--no-such-flag", "http://127.0.0.1:1/"], "--no-such-flag"),
        (&["-c", "0", "http://127.0.0.1:1/"], "-c"),
        (
            &["-n", "5", "-c", "10", "http://127.0.0.1:1/"],
            "-n cannot be less than -c",
        ),
        (
            &["-D", "/nonexistent/body", "http://127.0.0.1:1/"],
            "-D file",
        ),
        (&["--stage", "5x@3", "http://127.0.0.1:1/"], "--stage"),
        (&["--stage", "5s", "http://127.0.0.1:1/"], "--stage"),
        (&["--io", "kqueue", "http://127.0.0.1:1/"], "--io"),
        (&["-h2", "--io", "uring", "http://127.0.0.1:1/"], "-h2"),
        (&["-x", "proxy.test", "http://127.0.0.1:1/"], "-x"),
        (&["-x", "127.0.0.1:1", "https://127.0.0.1:1/"], "CONNECT"),
    ];
    for (args, needle) in cases {
        let out = load(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn json_summary_and_saved_results_for_the_open_model() {
    let s = http_server();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("results.json");
    let url = format!("http://{}/", s.addr);
    let out = load(&[
        "--rate",
        "400",
        "-n",
        "120",
        "-c",
        "4",
        "--json",
        "--save",
        save.to_str().unwrap(),
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"], 120);
    assert_eq!(v["model"], "open");
    assert_eq!(v["pacer"]["scheduled"], 120);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["schema_version"], 1);
    assert_eq!(saved["totals"]["requests"], 120);
    assert_eq!(saved["run"]["interrupted"], false);
}

#[test]
fn csv_output_streams_a_row_per_response() {
    let s = http_server();
    let url = format!("http://{}/", s.addr);
    let out = load(&["-n", "30", "-c", "3", "-o", "csv", &url]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset");
    assert_eq!(lines.len(), 31);
    for row in &lines[1..] {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 8, "{row}");
        assert_eq!(fields[6], "200");
    }
}

#[test]
fn heys_single_dash_long_flags_work() {
    let s = http_server();
    let url = format!("http://{}/fail", s.addr);
    let out = load(&["-n", "12", "-c", "3", "-disable-keepalive", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.connections.load(Ordering::SeqCst), 12);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[503]\t12 responses"), "{stdout}");
    assert!(stdout.contains("Availability:\t0.0000%"), "{stdout}");
}

#[test]
fn sigint_prints_a_partial_summary_and_still_saves() {
    let s = http_server();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("partial.json");
    let url = format!("http://{}/", s.addr);
    let child = slolab()
        .args([
            "load",
            "-z",
            "60s",
            "-c",
            "2",
            "--save",
            save.to_str().unwrap(),
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the run to be under way (bounded), then Ctrl-C it.
    for _ in 0..600 {
        if s.requests.load(Ordering::SeqCst) >= 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.requests.load(Ordering::SeqCst) >= 50,
        "the run never started"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Interrupted"), "{stdout}");
    assert!(stdout.contains("Status code distribution:"), "{stdout}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["run"]["interrupted"], true);
    let n = saved["totals"]["requests"].as_u64().unwrap();
    assert!(n >= 50);
    assert!(saved["run"]["duration_s"].as_f64().unwrap() < 60.0);
}

#[test]
fn heys_accept_host_and_cpus_flags_reach_the_wire_and_the_plan() {
    let s = http_server();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("r.json");
    let url = format!("http://{}/", s.addr);
    let out = load(&[
        "-n",
        "6",
        "-c",
        "2",
        "-cpus",
        "1",
        "-host",
        "api.example.test",
        "-A",
        "application/json",
        "-H",
        "Accept: text/plain",
        "--save",
        save.to_str().unwrap(),
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heads = s.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 6);
    for head in &heads {
        let lines: Vec<&str> = head.lines().collect();
        assert!(lines.contains(&"host: api.example.test"), "{head}");
        // -A wins over -H "Accept: …", and there is exactly one Accept.
        assert!(lines.contains(&"accept: application/json"), "{head}");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("accept:")).count(),
            1,
            "{head}"
        );
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["plan"]["threads"], 1);
}

#[test]
fn an_unknown_one_dash_flag_is_named_not_read_as_help() {
    for bad in ["-hots", "-cpu", "-disable-keepalives"] {
        let out = load(&[bad, "http://127.0.0.1:1/"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{bad} printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("unknown flag \"{bad}\"")),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn track_header_counts_are_in_the_text_summary() {
    let s = http_server();
    let url = format!("http://{}/cache", s.addr);
    let out = load(&["-n", "10", "-c", "2", "--track-header", "X-Cache", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\nResponses by X-Cache:\n  [HIT]\t5 responses\n  [MISS]\t5 responses\n"),
        "{stdout}"
    );
    // A header some responses lack: those are counted too.
    let url = format!("http://{}/", s.addr);
    let out = load(&["-n", "4", "-c", "1", "--track-header", "X-Cache", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Responses by X-Cache:\n  (no X-Cache)\t4 responses"),
        "{stdout}"
    );
}

#[test]
fn a_dead_target_and_https_to_plain_http_say_why() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = load(&["-n", "6", "-c", "2", &format!("http://{dead}/")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Availability:"))
        .unwrap();
    assert!(line.contains("0.0000%"), "{line}");
    assert!(
        line.ends_with("connection refused: is the server up?"),
        "{line}"
    );

    let s = http_server();
    let out = load(&[
        "-n",
        "4",
        "-c",
        "2",
        "-t",
        "5",
        "--json",
        &format!("https://{}/", s.addr),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcomes"]["tls_handshake"], 4, "{v}");
    assert!(
        v["diagnosis"]
            .as_str()
            .unwrap()
            .contains("TLS handshake failed"),
        "{v}"
    );
    let out = load(&["-n", "4", "-c", "2", &format!("https://{}/", s.addr)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("TLS handshake failed (tls_handshake)"),
        "{stdout}"
    );
    // A working target gets no hint.
    let out = load(&["-n", "4", "-c", "2", &format!("http://{}/", s.addr)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Availability:"))
        .unwrap();
    assert!(line.ends_with("transport failures and timeouts)"), "{line}");
}

#[test]
fn poisson_arrivals_are_saved_with_the_plan_and_keep_the_rate() {
    let s = http_server();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("results.json");
    let url = format!("http://{}/", s.addr);
    let out = load(&[
        "--rate",
        "300",
        "-z",
        "2s",
        "-c",
        "10",
        "--arrivals",
        "poisson",
        "--seed",
        "5",
        "--save",
        save.to_str().unwrap(),
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(saved["plan"]["arrivals"], "poisson");
    // 600 expected, σ ≈ 24.5: 20 % is about 5σ.
    let scheduled = saved["pacer"]["scheduled"].as_u64().unwrap();
    assert!(scheduled.abs_diff(600) < 120, "scheduled {scheduled}");
    let per_interval: u64 = saved["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| iv["scheduled"].as_u64().unwrap())
        .sum();
    assert_eq!(per_interval, scheduled, "the intervals add up to the total");
    let sent = saved["pacer"]["sent"].as_u64().unwrap();
    assert!(sent.abs_diff(scheduled) <= 2, "sent {sent} of {scheduled}");
    assert_eq!(s.requests.load(Ordering::SeqCst), sent);
}

#[test]
fn arrivals_without_a_rate_or_unknown_exit_1() {
    let out = load(&[
        "--arrivals",
        "poisson",
        "-n",
        "5",
        "-c",
        "1",
        "http://127.0.0.1:1/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("give --rate or --stage"), "{stderr}");
    // clap names the values it takes.
    let out = load(&[
        "--rate",
        "10",
        "--arrivals",
        "bursty",
        "http://127.0.0.1:1/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("possible values: uniform, poisson"),
        "{stderr}"
    );
}
