//! Sharded runs end to end: `slolab load --shard I/N --start-at T` processes
//! against one real server (and, as root, on hosts of their own: network
//! namespaces on a bridge), then `slolab merge`; and what a shard refuses (a
//! start in the past, a skewed clock, a missing index variable).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};

use loadgen::Results;

use crate::support::{http_server, http_server_with, run_slolab, slolab, Answers};

/// An RFC 3339 time `secs` from now on this machine's clock.
fn start_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn shard(url: &str, i: u32, n: u32, start: &str, save: &Path) -> Child {
    slolab()
        .args(["load", "--rate", "200", "-n", "400", "-c", "6", "--json"])
        .args(["--shard", &format!("{i}/{n}"), "--start-at", start])
        .arg("--save")
        .arg(save)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a shard")
}

fn merge(args: &[&Path], out: &Path) -> std::process::Output {
    let mut c = slolab();
    c.arg("merge").args(args).arg("-o").arg(out);
    c.output().expect("run slolab merge")
}

#[test]
fn three_shards_merge_into_the_single_run_schedule() {
    let server = http_server();
    let url = format!("http://{}/t/{{seq}}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let start = start_in(8);
    let files: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("shard-{i}.json")))
        .collect();
    let children: Vec<Child> = (0..3)
        .map(|i| shard(&url, i, 3, &start, &files[i as usize]))
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "shard {i}: {stderr}");
        assert!(
            stderr.contains(&format!("shard {i}/3 starts at")),
            "{stderr}"
        );
    }
    let shards: Vec<Results> = files.iter().map(|f| Results::read(f).unwrap()).collect();
    for (i, r) in shards.iter().enumerate() {
        let record = r.shard.as_ref().expect("a shard records itself");
        assert_eq!((record.index, record.count), (i as u32, 3));
        let clock = record.clock.as_ref().expect("the clock was checked");
        // The server runs on this machine's clock.
        assert!(
            clock.offset_ms.abs() <= clock.uncertainty_ms + 5.0,
            "{clock:?}"
        );
        assert!(clock.uncertainty_ms <= 600.0, "{clock:?}");
        // 400 arrivals dealt round-robin: 134, 133, 133.
        let want = if i == 0 { 134 } else { 133 };
        assert_eq!(r.pacer.as_ref().unwrap().scheduled, want, "shard {i}");
        // t = 0 of every shard is the agreed start.
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        let off = (at(&r.run.started_at) - at(&start))
            .num_milliseconds()
            .abs();
        assert!(off <= 50, "shard {i} started {off} ms off the start");
    }

    let merged_path = dir.path().join("merged.json");
    let out = merge(
        &files.iter().map(|f| f.as_path()).collect::<Vec<_>>(),
        &merged_path,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 of 3 shards"), "{stdout}");
    let merged = Results::read(&merged_path).unwrap();
    let sum: u64 = shards.iter().map(|r| r.totals.requests).sum();
    assert_eq!(merged.totals.requests, sum);
    let pacer = merged.pacer.as_ref().unwrap();
    // The single run's schedule: 400 arrivals at 200/s.
    assert_eq!(pacer.scheduled, 400);
    assert_eq!(
        merged.timeline.iter().map(|iv| iv.scheduled).sum::<u64>(),
        400
    );
    assert_eq!(
        merged.timeline.iter().map(|iv| iv.requests).sum::<u64>(),
        sum
    );
    assert!(!merged.run.interrupted);
    assert_eq!(merged.shards.as_ref().unwrap().merged.len(), 3);

    // Every {seq} the server saw is unique, and together they are 0..n as
    // from one generator.
    let seqs: Vec<u64> = server
        .heads
        .lock()
        .unwrap()
        .iter()
        .filter_map(|h| h.strip_prefix("get /t/"))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a {{seq}} was sent twice");
    assert_eq!(unique, (0..seqs.len() as u64).collect(), "{unique:?}");
    assert_eq!(seqs.len() as u64, sum);

    // `report` reads the merged file as any results file.
    let out = run_slolab(&["report", merged_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A shard missing: merged and marked, exit 5 (INCOMPLETE), never a silent merge.
    let partial = dir.path().join("partial.json");
    let out = merge(&[files[0].as_path(), files[2].as_path()], &partial);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("INCOMPLETE: shard 1 of 3 missing"),
        "{stderr}"
    );
    let r = Results::read(&partial).unwrap();
    assert!(r.run.interrupted);
    assert_eq!(
        r.shards.unwrap().incomplete.as_deref(),
        Some("shard 1 of 3 missing")
    );

    // The same index twice: refused.
    let out = merge(
        &[files[0].as_path(), files[0].as_path(), files[1].as_path()],
        &partial,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shard 0 is given twice"), "{stderr}");
}

#[test]
fn shards_of_different_runs_are_refused() {
    let server = http_server();
    let url = format!("http://{}/", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let start = start_in(6);
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let c1 = shard(&url, 0, 2, &start, &a);
    // Shard 1 of another plan: -c 8 instead of 6.
    let c2 = slolab()
        .args(["load", "--rate", "200", "-n", "400", "-c", "8", "--json"])
        .args(["--shard", "1/2", "--start-at", &start, "--save"])
        .arg(&b)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for c in [c1, c2] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = merge(&[a.as_path(), b.as_path()], &dir.path().join("m.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("plan.connections: 6 → 8"), "{stderr}");
    assert!(!dir.path().join("m.json").exists());
}

/// `slolab load` of a small open-model shard with `args`, saving to `save`,
/// which must refuse (exit 1); its stderr.
fn refused(url: &str, save: &str, args: &[&str]) -> String {
    let out = slolab()
        .args(["load", "--rate", "10", "-z", "1s", "--save", save])
        .args(args)
        .arg(url)
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!Path::new(save).exists(), "{stderr}");
    stderr
}

#[test]
fn a_shard_refuses_a_past_start_a_skewed_clock_and_a_missing_index() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("s.json");
    let save = save.to_str().unwrap();
    let server = http_server();
    let url = format!("http://{}/", server.addr);
    let sent = || server.requests.load(std::sync::atomic::Ordering::SeqCst);

    let past = ["--shard", "0/2", "--start-at", "2020-01-01T00:00:00Z"];
    let stderr = refused(&url, save, &past);
    assert!(stderr.contains("is in the past"), "{stderr}");
    assert_eq!(sent(), 0);

    // A reference whose clock is 10 s ahead.
    let skewed = http_server_with(Answers {
        clock_skew_s: 10,
        ..Default::default()
    });
    let reference = format!("http://{}/", skewed.addr);
    let start = start_in(4);
    let skew = [
        "--shard",
        "0/2",
        "--start-at",
        &start,
        "--clock-ref",
        &reference,
    ];
    let stderr = refused(&url, save, &skew);
    assert!(stderr.contains("beyond --max-skew 1s"), "{stderr}");
    assert!(stderr.contains("behind the clock of"), "{stderr}");
    assert!(stderr.contains(&reference), "{stderr}");
    assert_eq!(sent(), 0);

    // --shards N without the Indexed Job's variable.
    let stderr = refused(&url, save, &["--shards", "3", "--start-at", &start_in(30)]);
    assert!(stderr.contains("JOB_COMPLETION_INDEX"), "{stderr}");
}

/// The results.json under `dir` (a run's directory tree).
fn results_under(dir: &Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "results.json") {
                return p;
            }
        }
    }
    panic!("no results.json under {}", dir.display());
}

#[test]
fn run_shards_have_no_verdict_and_their_merge_is_judged() {
    let server = http_server();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("sharded.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"sharded\"\nurl = \"http://{}\"\n[load]\nconnections = 4\nwarmup = \"1s\"\n\
             [[load.stage]]\nduration = \"2s\"\nrate = 100\n[[load.request]]\npath = \"/\"\n\
             [slo]\navailability = \"99%\"\np99 = \"2s\"\n",
            server.addr
        ),
    )
    .unwrap();
    let start = start_in(8);
    let children: Vec<Child> = (0..2)
        .map(|i| {
            slolab()
                .arg("run")
                .arg(&profile)
                .arg("--out")
                .arg(dir.path().join(format!("out-{i}")))
                .args(["--shard", &format!("{i}/2"), "--start-at", &start])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "shard {i}/2 done; merge the shards for the SLO verdict"
            )),
            "{stdout}"
        );
    }
    let files: Vec<_> = (0..2)
        .map(|i| results_under(&dir.path().join(format!("out-{i}"))))
        .collect();
    for f in &files {
        let r = Results::read(f).unwrap();
        let section = verdict::record::ExperimentSection::of(&r).unwrap().unwrap();
        assert!(section.slo.is_null(), "a shard is not judged alone");
        assert_eq!(r.pacer.as_ref().unwrap().scheduled, 100);
    }
    let merged_path = dir.path().join("merged.json");
    let out = merge(&[files[0].as_path(), files[1].as_path()], &merged_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SLO met"), "{stdout}");
    let merged = Results::read(&merged_path).unwrap();
    assert_eq!(merged.pacer.as_ref().unwrap().scheduled, 200);
    let section = verdict::record::ExperimentSection::of(&merged)
        .unwrap()
        .unwrap();
    assert!(section.analysis().unwrap().unwrap().met);
}

/// Network namespaces for a multi-host run on one machine: each host its own
/// namespace and address, joined by veth pairs to a bridge. Removed on drop,
/// whatever the test did.
struct Hosts {
    bridge: String,
    namespaces: Vec<String>,
    subnet: String,
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Hosts {
    /// `n` namespaces on a bridge; host `i` has the address `subnet.(10 + i)`
    /// and this machine `subnet.1`.
    fn new(n: usize) -> Result<Self, String> {
        let tag = format!("sl{}", std::process::id() % 100_000);
        let subnet = format!("10.231.{}", std::process::id() % 250);
        let mut hosts = Hosts {
            bridge: format!("{tag}br"),
            namespaces: Vec::new(),
            subnet,
            children: Vec::new(),
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"])?;
        let gateway = format!("{}.1/24", hosts.subnet);
        ip(&["addr", "add", &gateway, "dev", &hosts.bridge])?;
        ip(&["link", "set", &hosts.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            hosts.namespaces.push(ns.clone());
            let (inner, outer) = (format!("{tag}v{i}"), format!("{tag}p{i}"));
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["link", "set", &outer, "master", &hosts.bridge, "up"])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            let addr = format!("{}/24", hosts.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 10 + i)
    }

    /// `program args` run in host `i`'s namespace.
    fn command(&self, i: usize, program: &str) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.namespaces[i], program]);
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Two shards on two hosts (network namespaces) drive a target on a third,
/// started together with one --start-at; the merge adds up to the plan.
#[test]
fn shards_on_namespaced_hosts_merge_into_the_plan() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: the namespaced target is python3's http.server, and python3 is missing"
        );
        return;
    }
    let mut hosts = match Hosts::new(3) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: cannot set up network namespaces here: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let target = hosts.addr(0);
    let server = hosts
        .command(0, "python3")
        .args(["-m", "http.server", "8080", "--bind", &target])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hosts.children.push(server);
    let url = format!("http://{target}:8080/");
    crate::support::wait_until("the namespaced target", || {
        std::net::TcpStream::connect((target.as_str(), 8080)).is_ok()
    });

    let start = start_in(8);
    let files: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("s{i}.json")))
        .collect();
    let shards: Vec<Child> = (0..2)
        .map(|i| {
            hosts
                .command(i + 1, crate::support::SLOLAB)
                .args(["load", "--rate", "100", "-n", "200", "-c", "4", "--json"])
                .args(["--shard", &format!("{i}/2"), "--start-at", &start])
                .arg("--save")
                .arg(&files[i])
                .arg(&url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in shards.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "shard {i}: {stderr}");
    }
    let merged_path = dir.path().join("merged.json");
    let out = merge(&[files[0].as_path(), files[1].as_path()], &merged_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = Results::read(&merged_path).unwrap();
    assert_eq!(merged.pacer.as_ref().unwrap().scheduled, 200);
    assert_eq!(merged.totals.requests, 200);
    assert_eq!(merged.totals.good, 200, "{:?}", merged.totals.outcomes);
}
