//! `slolab capacity` against real HTTP servers on port 0 whose capacity is known
//! by construction: the search must find it, name what broke, and say when the
//! generator rather than the server was the limit.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use std::process::Command;

use crate::support::slolab;

/// How a test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// `workers` threads each hold a request for `service`: capacity is
    /// workers / service, whatever the offered rate.
    Workers { workers: usize, service: Duration },
    /// Fast (5 ms) below `rate` req/s of arrivals over the last second; past it,
    /// slow (150 ms) or a fast 503.
    PastRate { rate: usize, fail: bool },
    /// Every request takes `service`, with no limit on concurrency.
    Fixed { service: Duration },
}

struct Server {
    addr: SocketAddr,
    /// Total time spent serving, µs, and requests served (workers mode): the
    /// true mean service time, so the true capacity is known exactly.
    busy_us: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

type Job = (TcpStream, Instant);

fn server(b: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let busy_us = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let arrivals = Arc::new(Mutex::new(VecDeque::<Instant>::new()));
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    if let Behaviour::Workers { workers, service } = b {
        for _ in 0..workers {
            let (rx, busy, served) = (rx.clone(), busy_us.clone(), served.clone());
            std::thread::spawn(move || loop {
                let job = rx.lock().unwrap().recv();
                let Ok((mut stream, _)) = job else { return };
                let t0 = Instant::now();
                std::thread::sleep(service);
                busy.fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                served.fetch_add(1, Ordering::Relaxed);
                let _ = respond(&mut stream, 200);
            });
        }
    }
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let (tx, arrivals) = (tx.clone(), arrivals.clone());
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                while read_request(&mut s) {
                    match b {
                        Behaviour::Workers { .. } => {
                            let Ok(w) = s.try_clone() else { return };
                            if tx.send((w, Instant::now())).is_err() {
                                return;
                            }
                        }
                        Behaviour::PastRate { rate, fail } => {
                            let now = Instant::now();
                            let recent = {
                                let mut a = arrivals.lock().unwrap();
                                a.push_back(now);
                                while a.front().is_some_and(|t| now - *t > Duration::from_secs(1)) {
                                    a.pop_front();
                                }
                                a.len()
                            };
                            let over = recent > rate;
                            let status = if over && fail { 503 } else { 200 };
                            let wait = if over && !fail { 150 } else { 5 };
                            std::thread::sleep(Duration::from_millis(wait));
                            if respond(&mut s, status).is_err() {
                                return;
                            }
                        }
                        Behaviour::Fixed { service } => {
                            std::thread::sleep(service);
                            if respond(&mut s, 200).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        busy_us,
        served,
    }
}

/// Reads one request head (the tests send no bodies); false at EOF.
fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

fn respond(s: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    s.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
        )
        .as_bytes(),
    )
}

/// A profile against `addr` with `extra` appended ([slo], [capacity], ...).
fn profile(dir: &Path, addr: SocketAddr, connections: usize, extra: &str) -> PathBuf {
    let p = dir.join("cap.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"cap\"\nurl = \"http://{addr}\"\n[load]\nconnections = {connections}\n\
             interval = \"500ms\"\ntimeout = \"5s\"\n[[load.stage]]\nduration = \"5s\"\nrate = 100\n\
             [[load.request]]\npath = \"/work\"\n{extra}"
        ),
    )
    .unwrap();
    p
}

struct Found {
    code: Option<i32>,
    json: serde_json::Value,
    stderr: String,
}

fn capacity(dir: &Path, profile: &Path, args: &[&str]) -> Found {
    let out = slolab()
        .arg("capacity")
        .arg(profile)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}); stderr:\n{stderr}"));
    Found {
        code: out.status.code(),
        json,
        stderr,
    }
}

/// A test server behaving as `b`, and a profile against it (`connections` in
/// flight, `extra` appended).
fn served(b: Behaviour, connections: usize, extra: &str) -> (Server, tempfile::TempDir, PathBuf) {
    let s = server(b);
    let dir = tempfile::tempdir().unwrap();
    let p = profile(dir.path(), s.addr, connections, extra);
    (s, dir, p)
}

/// [`served`] by a server that answers every request after `service_ms`,
/// however many at once.
fn fixed(service_ms: u64, connections: usize, extra: &str) -> (Server, tempfile::TempDir, PathBuf) {
    let service = Duration::from_millis(service_ms);
    served(Behaviour::Fixed { service }, connections, extra)
}

/// The search's directory under `DIR/out/cap`.
fn search_dir(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("out/cap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("capacity-")
        })
        .expect("a capacity-* directory")
}

fn search(f: &Found) -> &serde_json::Value {
    &f.json["searches"][0]
}

#[test]
fn the_interval_contains_a_known_capacity_within_ten_percent() {
    // 4 workers × 16 ms: about 250 req/s.
    let (s, dir, p) = served(
        Behaviour::Workers {
            workers: 4,
            service: Duration::from_millis(16),
        },
        64,
        "[slo]\navailability = \"99%\"\np95 = \"80ms\"\n\
         [capacity]\nstart-rate = 60\nwarmup = \"1s\"\nwindow = \"3s\"\nconfirm = \"5s\"\ncooldown = \"500ms\"\n",
    );
    // A machine too busy to keep the generator's schedule (other tests run
    // beside this one) makes the search say "generator-bound" — the honest
    // answer, not a capacity: search again once when it does.
    let mut f = capacity(dir.path(), &p, &[]);
    if search(&f)["outcome"] == "generator_bound" {
        eprintln!(
            "generator-bound on a busy machine; searching again:\n{}",
            f.stderr
        );
        f = capacity(dir.path(), &p, &[]);
    }
    let truth = 4.0
        / (s.busy_us.load(Ordering::Relaxed) as f64
            / 1e6
            / s.served.load(Ordering::Relaxed) as f64);
    let a = search(&f);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert_eq!(a["outcome"], "found", "{}", f.stderr);
    let lo = a["interval_rps"][0].as_f64().unwrap();
    let hi = a["interval_rps"][1].as_f64().unwrap();
    // The truth is measured from the server's own service times; 2 % of slack
    // for what a mean over the whole search cannot see.
    assert!(
        lo <= truth * 1.02 && truth * 0.98 <= hi,
        "[{lo}, {hi}] misses the true capacity {truth:.1}\n{}",
        f.stderr
    );
    assert!(
        lo >= truth * 0.9 && hi <= truth * 1.1,
        "[{lo}, {hi}] is not within 10 % of {truth:.1}\n{}",
        f.stderr
    );
    let probes = a["probes"].as_array().unwrap();
    // The answer ends on a confirmation (re-probed once when the first disagreed,
    // which a search landing right at the knee may do).
    let last = probes.last().unwrap()["kind"].as_str().unwrap();
    assert!(last == "confirm" || last == "reprobe", "ended on {last}");
    // Files: the record, both reports.
    let run = PathBuf::from(f.json["dir"].as_str().unwrap());
    for f in ["capacity.json", "report.md", "report.html"] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("chart not drawn"));
    assert_renders_in_chromium(&run.join("report.html"));

    // compare: the same search is the same; one whose interval fell below by
    // more than the resolution is a regression (exit 4).
    let same = compare(&run, &run);
    assert_eq!(same.0, Some(0), "{}", same.1);
    assert!(same.1.contains("no capacity regression"), "{}", same.1);
    let mut head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("capacity.json")).unwrap()).unwrap();
    let answer = &mut head["searches"][0]["answer"];
    answer["last_pass_rps"] = (lo * 0.5).into();
    answer["first_fail_rps"] = (lo * 0.55).into();
    let fell = dir.path().join("fell.json");
    std::fs::write(&fell, head.to_string()).unwrap();
    let worse = compare(&run, &fell);
    assert_eq!(worse.0, Some(4), "{}", worse.1);
    assert!(worse.1.contains("worse"), "{}", worse.1);
}

/// Opens the page in headless Chromium (no network, fresh profile) and checks
/// the screenshot holds drawn charts: a page that failed to render, or whose
/// SVGs were dropped, is a near-blank image a few kB in size.
fn assert_renders_in_chromium(page: &Path) {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("chromium is required for the report's browser check (ci/test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("report.png");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,1800",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1200, 1800));
    assert!(png.len() > 60_000, "a near-blank page: {} bytes", png.len());
}

fn compare(base: &Path, head: &Path) -> (Option<i32>, String) {
    let out = slolab().arg("compare").args([base, head]).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn ctrl_c_writes_the_probes_so_far_and_exits_130() {
    let (_server, dir, p) = fixed(2, 50, "[slo]\np95 = \"100ms\"\n[capacity]\nwarmup = \"500ms\"\nwindow = \"2s\"\ncooldown = \"100ms\"\n");
    let child = slolab()
        .arg("capacity")
        .arg(&p)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--start-rate", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first probe (2.5 s) ends, the second is under way.
    std::thread::sleep(Duration::from_millis(3800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let run = search_dir(dir.path());
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(rec["interrupted"], true);
    let probes = rec["searches"][0]["probes"].as_array().unwrap();
    assert!(probes.len() >= 2, "{stderr}");
    assert_eq!(probes[0]["verdict"], "pass");
    assert_eq!(probes.last().unwrap()["verdict"], "interrupted");
    assert_eq!(rec["searches"][0]["answer"]["outcome"], "interrupted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("capacity between"),
        "an interrupted search concludes nothing: {stdout}"
    );
}

/// Searches a server that degrades past 300 req/s (slow, or failing fast) and
/// returns the binding objective's name.
fn binding_past_300(fail: bool) -> String {
    let (_server, dir, p) = served(
        Behaviour::PastRate { rate: 300, fail },
        200,
        "[slo]\navailability = \"99%\"\np95 = \"100ms\"\n\
         [capacity]\nstart-rate = 100\nresolution = 0.3\nwarmup = \"1s\"\nwindow = \"2s\"\ncooldown = \"1200ms\"\n",
    );
    let f = capacity(dir.path(), &p, &[]);
    let a = search(&f);
    assert_eq!(a["outcome"], "found", "{}", f.stderr);
    let hi = a["interval_rps"][1].as_f64().unwrap();
    assert!(hi <= 400.0 + 1e-9, "{}", f.stderr);
    let binding = a["binding"]["name"].as_str().unwrap().to_string();
    eprintln!("binding {binding}\n{}", f.stderr);
    binding
}

#[test]
fn latency_past_a_known_rate_binds_on_the_latency_objective() {
    assert!(binding_past_300(false).starts_with("p95 at "));
}

#[test]
fn errors_past_a_known_rate_bind_on_availability() {
    assert!(binding_past_300(true).starts_with("availability at "));
}

#[test]
fn a_connection_cap_that_limits_the_generator_is_generator_bound() {
    // 20 ms each, any number at once: the server takes thousands per second,
    // but 2 connections carry at most 100.
    let s = server(Behaviour::Fixed {
        service: Duration::from_millis(20),
    });
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        s.addr,
        2,
        "[slo]\np95 = \"100ms\"\n\
         [capacity]\nstart-rate = 40\nwarmup = \"1s\"\nwindow = \"2s\"\ncooldown = \"200ms\"\n",
    );
    let f = capacity(dir.path(), &p, &[]);
    let a = search(&f);
    assert_eq!(a["outcome"], "generator_bound", "{}", f.stderr);
    assert!(a["summary"].as_str().unwrap().contains("generator-bound"));
    assert_eq!(f.code, Some(0));
}

#[test]
fn a_start_rate_that_fails_exits_3_and_bad_input_exits_1() {
    let (_server, dir, p) = fixed(
        30,
        50,
        "[slo]\np95 = \"10ms\"\n[capacity]\nwarmup = \"500ms\"\nwindow = \"2s\"\n",
    );
    let f = capacity(dir.path(), &p, &["--start-rate", "50"]);
    assert_eq!(f.code, Some(3), "{}", f.stderr);
    assert_eq!(search(&f)["outcome"], "below_start");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("window = \"2s\"", "window = \"2s\"\ngrowth = 0.5"),
    )
    .unwrap();
    let out = slolab().args(["capacity"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("capacity.growth"),
        "{err}"
    );
    let out = slolab()
        .args(["capacity"])
        .arg(&p)
        .args(["--instances", "1,2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instances needs a stack profile"));
}

#[test]
fn with_chaos_each_probe_fires_the_faults_in_its_window_and_is_judged_with_them() {
    // The embedded stack (SQLite, builtin gateway), 300 ms on the wire to the
    // gateway's API for 2 s of every window: p95 ≤ 100 ms holds at rest and
    // breaks under the fault. A tenth of the mix writes, so each probe gets a
    // fresh stack.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chaos.toml");
    std::fs::write(
        &p,
        "name = \"cap-chaos\"\n[stack]\ninstances = 1\n[load]\ninterval = \"500ms\"\n\
         [[load.stage]]\nduration = \"60s\"\nrate = 20\n[[load.request]]\nweight = 9\npath = \"/api/v1/tasks\"\n\
         [[load.request]]\nmethod = \"POST\"\npath = \"/api/v1/tasks\"\n\
         headers = { Authorization = \"Bearer {token}\", Idempotency-Key = \"{uuid}\" }\n\
         body = '{\"title\":\"t {seq}\",\"status\":\"todo\"}'\n\
         [[chaos]]\nat = \"1s\"\nfor = \"2s\"\nfault = \"latency\"\ntarget = \"api-1\"\nlatency = \"300ms\"\n\
         [[chaos]]\nat = \"30s\"\nfault = \"kill\"\ntarget = \"api-1\"\n\
         [slo]\np95 = \"100ms\"\n\
         [capacity]\nwarmup = \"500ms\"\nwindow = \"3s\"\ncooldown = \"200ms\"\nmax-rate = 40\n",
    )
    .unwrap();
    let at_rest = capacity(dir.path(), &p, &[]);
    assert_eq!(
        search(&at_rest)["outcome"],
        "above_max",
        "{}",
        at_rest.stderr
    );
    // The mix writes: every probe got a stack of its own (its logs kept apart).
    let logs = |probe: usize| {
        std::path::PathBuf::from(at_rest.json["dir"].as_str().unwrap())
            .join(format!("probe-{probe}/stack/logs"))
    };
    assert!(logs(1).is_dir() && logs(2).is_dir(), "{}", at_rest.stderr);
    assert_eq!(
        at_rest.stderr.matches("stack up at").count(),
        2,
        "{}",
        at_rest.stderr
    );

    let faulted = capacity(dir.path(), &p, &["--with-chaos"]);
    assert_eq!(faulted.code, Some(3), "{}", faulted.stderr);
    let a = search(&faulted);
    assert_eq!(a["outcome"], "below_start", "{}", faulted.stderr);
    assert!(a["binding"]["name"]
        .as_str()
        .unwrap()
        .starts_with("p95 at "));
    let run = std::fs::read_dir(dir.path().join("out/cap-chaos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("capacity.json").is_file())
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(
                &std::fs::read_to_string(p.join("capacity.json")).unwrap(),
            )
            .unwrap()
        })
        .find(|r| r["with_chaos"] == true)
        .expect("the --with-chaos search's record");
    let faults = run["searches"][0]["probes"][0]["faults"]
        .as_array()
        .unwrap();
    // Only the fault within the 3 s window fired, 1 s after the window began.
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["fault"], "latency");
    let planned = faults[0]["planned_s"].as_f64().unwrap();
    assert!((planned - 1.5).abs() < 1e-9, "planned at {planned}");
    assert!(
        faults[0]["end_s"].as_f64().is_some(),
        "reverted: {faults:?}"
    );
}

#[test]
fn a_search_that_fails_mid_way_still_writes_its_record_and_exits_1() {
    // The gateway's port is taken: the stack cannot start for the first probe.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cap.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"cap\"\n[stack]\ninstances = 1\nport = {port}\n[load]\ninterval = \"500ms\"\n\
             [[load.stage]]\nduration = \"5s\"\nrate = 20\n[[load.request]]\npath = \"/health\"\n\
             [slo]\np95 = \"100ms\"\n[capacity]\nwindow = \"2s\"\n"
        ),
    )
    .unwrap();
    let out = slolab()
        .arg("capacity")
        .arg(&p)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the probes measured so far are in"),
        "{stderr}"
    );
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(search_dir(dir.path()).join("capacity.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["searches"][0]["answer"]["outcome"], "aborted");
    drop(taken);
}
