//! `slolab load` — a drop-in for hey (same flags, defaults and report), plus an
//! open model (`--rate`, `--stage`), `--json`, `--save` and a timeline interval.
//! Flags become a `LoadPlan`; the loadgen library does the rest.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use loadgen::{BadPolicy, LoadPlan, Model, RequestTemplate, Stage, Stop};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Durations are like 10s, 500ms, 1m. Stages: 20s@500 (steady) or 10s@100..1000 (linear ramp).\n\
Latency in the open model (--rate/--stage) counts from each request's scheduled time;\n\
--arrivals poisson schedules those times as a Poisson process (seeded by --seed) instead of evenly.\n\
hey's one-dash spellings work too: -host, -cpus, -h2, -disable-keepalive, -disable-compression, -disable-redirects."
)]
pub struct LoadArgs {
    /// The URL to load (http:// or https://; certificates are not verified, like hey).
    pub url: String,
    /// Number of requests to run (closed model; with --rate: the stop).
    #[arg(short = 'n')]
    pub requests: Option<u64>,
    /// Number of workers to run concurrently (open model: most requests in flight).
    #[arg(short = 'c', default_value_t = 50)]
    pub concurrency: usize,
    /// Rate limit, in queries per second (QPS) per worker. Default: no limit.
    #[arg(short = 'q')]
    pub qps: Option<f64>,
    /// Duration of application to send requests; when given, -n is ignored (e.g. -z 10s, -z 3m).
    #[arg(short = 'z', value_parser = chaos::duration::parse_positive)]
    pub duration: Option<Duration>,
    /// HTTP method.
    #[arg(short = 'm', default_value = "GET")]
    pub method: String,
    /// Custom HTTP header, repeatable: -H "Accept: text/html" -H "Content-Type: application/xml".
    #[arg(short = 'H')]
    pub headers: Vec<String>,
    /// HTTP Accept header (wins over an Accept given with -H, as in hey).
    #[arg(short = 'A')]
    pub accept: Option<String>,
    /// HTTP Host header (hey's -host); the connection still goes to the URL's host.
    #[arg(long = "host")]
    pub host: Option<String>,
    /// HTTP request body.
    #[arg(short = 'd')]
    pub body: Option<String>,
    /// HTTP request body from a file.
    #[arg(short = 'D')]
    pub body_file: Option<PathBuf>,
    /// Content-type.
    #[arg(short = 'T', default_value = "text/html")]
    pub content_type: String,
    /// Basic authentication, username:password.
    #[arg(short = 'a')]
    pub auth: Option<String>,
    /// User-Agent (default: slolab/VERSION).
    #[arg(short = 'U')]
    pub user_agent: Option<String>,
    /// Timeout for each request in seconds; 0 for no timeout.
    #[arg(short = 't', default_value_t = 20.0)]
    pub timeout: f64,
    /// Output type: "csv" prints a row per response instead of the summary.
    #[arg(short = 'o')]
    pub output: Option<String>,
    /// Disable compression (no Accept-Encoding: gzip).
    #[arg(long = "disable-compression")]
    pub disable_compression: bool,
    /// Disable keep-alive: a new TCP connection per request.
    #[arg(long = "disable-keepalive")]
    pub disable_keepalive: bool,
    /// Disable following of HTTP redirects.
    #[arg(long = "disable-redirects")]
    pub disable_redirects: bool,
    /// Open model: schedule R requests per second in total, whatever the responses.
    #[arg(long = "rate")]
    pub rate: Option<f64>,
    /// Open model stage, repeatable, run in order: DURATION@RATE or DURATION@FROM..TO.
    #[arg(long = "stage", value_parser = parse_stage)]
    pub stages: Vec<Stage>,
    /// Open model (--rate/--stage): how arrivals are spaced at the rate [default: uniform].
    #[arg(long = "arrivals", value_enum, value_name = "ARRIVALS")]
    pub arrivals: Option<ArrivalsArg>,
    /// Print a JSON summary on stdout instead of the text report.
    #[arg(long = "json")]
    pub json: bool,
    /// Write the full results (schema v1 JSON) to this file, atomically.
    #[arg(long = "save")]
    pub save: Option<PathBuf>,
    /// Timeline bucket width.
    #[arg(long = "interval", default_value = "1s", value_parser = chaos::duration::parse_positive)]
    pub interval: Duration,
    /// Generator threads (0: one per core); hey's -cpus is the same setting.
    #[arg(long = "threads", visible_alias = "cpus", default_value_t = 0)]
    pub threads: usize,
    /// I/O backend: auto (io_uring for paced sends, --rate/--stage/-q, where the kernel
    /// allows it; else epoll), epoll or uring.
    #[arg(long = "io", default_value = "auto")]
    pub io: loadgen::Io,
    /// Seed for `{rand:A..B}` and `{uuid}` templates in the URL, headers and body,
    /// and for --arrivals poisson.
    #[arg(long = "seed", default_value_t = 1)]
    pub seed: u64,
    /// HTTP proxy address as host:port: http:// requests go to it in absolute form.
    #[arg(short = 'x')]
    pub proxy: Option<String>,
    /// HTTP/2: by ALPN over https://, prior knowledge (h2c) over http:// (hey: -h2).
    /// Runs on hyper's client over epoll; redirects are not followed.
    #[arg(long = "h2")]
    pub http2: bool,
    /// Count responses by the value of this header (e.g. X-Served-By).
    #[arg(long = "track-header")]
    pub track_header: Option<String>,
    #[command(flatten)]
    pub sharding: crate::shard::ShardArgs,
}

/// `--arrivals`: loadgen's [`loadgen::Arrivals`] as clap lists it in --help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalsArg {
    /// Evenly spaced, exactly at the rate (reproducible, the gentlest load).
    Uniform,
    /// A Poisson process at the rate, drawn from --seed: bursty like real
    /// traffic, so queues build at a lower rate than with uniform arrivals.
    Poisson,
}

impl From<ArrivalsArg> for loadgen::Arrivals {
    fn from(a: ArrivalsArg) -> Self {
        match a {
            ArrivalsArg::Uniform => loadgen::Arrivals::Uniform,
            ArrivalsArg::Poisson => loadgen::Arrivals::Poisson,
        }
    }
}

/// hey's multi-letter flags, spelled with one dash as hey (Go's `flag`) spells
/// them, and the spelling clap knows them by.
const HEY_LONG: [(&str, &str); 6] = [
    ("-disable-keepalive", "--disable-keepalive"),
    ("-disable-compression", "--disable-compression"),
    ("-disable-redirects", "--disable-redirects"),
    ("-host", "--host"),
    ("-cpus", "--cpus"),
    ("-h2", "--h2"),
];

/// hey spells its long flags with one dash (`-disable-keepalive`, `-host`,
/// `-cpus 2`); clap wants two, and would read `-host` as `-h` (help) and
/// `-cpus` as `-c pus`. Rewrites those exactly, only after the `load`
/// subcommand and never in a flag's value; any other one-dash word that is
/// not a short flag with its value attached (`-n5`) is refused by name.
pub fn hey_spellings(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    use clap::Args as _;
    let cmd = LoadArgs::augment_args(clap::Command::new("load"));
    let takes_value = |a: &clap::Arg| a.get_action().takes_values();
    let short_with_value: Vec<char> = cmd
        .get_arguments()
        .filter(|a| takes_value(a))
        .filter_map(|a| a.get_short())
        .collect();
    // `-h` and the global `-v` (count) take no value and may be bunched (`-vv`).
    let mut short_bare: Vec<char> = cmd
        .get_arguments()
        .filter(|a| !takes_value(a))
        .filter_map(|a| a.get_short())
        .collect();
    short_bare.extend(['h', 'v']);
    let long_with_value: Vec<String> = cmd
        .get_arguments()
        .filter(|a| takes_value(a))
        .flat_map(|a| {
            let mut names: Vec<String> =
                a.get_long().into_iter().map(|l| format!("--{l}")).collect();
            names.extend(
                a.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(|l| format!("--{l}")),
            );
            names
        })
        .collect();

    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    for a in args.by_ref() {
        let is_load = a == "load";
        out.push(a);
        if is_load {
            break;
        }
    }
    let mut value_next = false;
    for a in args.by_ref() {
        let Some(s) = a.to_str() else {
            value_next = false;
            out.push(a);
            continue;
        };
        if std::mem::take(&mut value_next) || !s.starts_with('-') || s == "-" {
            out.push(a);
            continue;
        }
        if s == "--" {
            out.push(a);
            break;
        }
        if s.starts_with("--") {
            value_next = !s.contains('=') && long_with_value.iter().any(|l| l == s);
            out.push(a);
            continue;
        }
        let (name, inline) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        if let Some((_, long)) = HEY_LONG.iter().find(|(hey, _)| *hey == name) {
            value_next = inline.is_none() && long_with_value.iter().any(|l| l == long);
            out.push(OsString::from(match inline {
                Some(v) => format!("{long}={v}"),
                None => long.to_string(),
            }));
            continue;
        }
        let mut chars = s[1..].chars();
        let first = chars.next().unwrap_or('-');
        let rest = chars.as_str();
        if short_with_value.contains(&first) {
            // `-n` then its value, or the value attached: `-n5`, `-z10s`, `-t0.5`.
            value_next = rest.is_empty();
            if rest.is_empty() || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push(a);
                continue;
            }
        } else if s[1..].chars().all(|c| short_bare.contains(&c)) {
            out.push(a);
            continue;
        }
        return Err(format!(
            "unknown flag {name:?} after `load` (hey's long flags are -host, -cpus, -h2, \
             -disable-keepalive, -disable-compression, -disable-redirects; a short flag's value \
             goes after a space, e.g. -m POST)"
        ));
    }
    out.extend(args);
    Ok(out)
}

fn parse_rate(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
}

/// `20s@500` (steady) or `10s@100..1000` (ramp).
pub fn parse_stage(s: &str) -> Result<Stage, String> {
    let bad = || {
        format!("bad --stage {s:?}: expected DURATION@RATE or DURATION@FROM..TO, e.g. 20s@500 or 10s@100..1000")
    };
    let (d, r) = s.split_once('@').ok_or_else(bad)?;
    let duration = chaos::duration::parse_positive(d).map_err(|_| bad())?;
    let (start_rate, end_rate) = match r.split_once("..") {
        Some((a, b)) => (
            parse_rate(a).ok_or_else(bad)?,
            parse_rate(b).ok_or_else(bad)?,
        ),
        None => {
            let r = parse_rate(r).ok_or_else(bad)?;
            (r, r)
        }
    };
    Ok(Stage {
        duration,
        start_rate,
        end_rate,
    })
}

/// Turns hey's flags into a plan; every mistake is one sentence.
pub fn plan(args: &LoadArgs) -> anyhow::Result<LoadPlan> {
    if args.concurrency < 1 {
        bail!("-c cannot be smaller than 1");
    }
    if args.requests == Some(0) {
        bail!("-n cannot be smaller than 1");
    }
    if let Some(o) = &args.output {
        if o != "csv" {
            bail!("-o {o:?}: the only supported output type is csv");
        }
    }
    if args.body.is_some() && args.body_file.is_some() {
        bail!("use -d or -D, not both");
    }
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        bail!("-t must be a number of seconds (0 for no timeout)");
    }
    if args.rate.is_some() && !args.stages.is_empty() {
        bail!("use --rate or --stage, not both");
    }
    if args.qps.is_some() && (args.rate.is_some() || !args.stages.is_empty()) {
        bail!("-q limits each worker of the closed model; with --rate/--stage the rate is already set");
    }
    let open = args.rate.is_some() || !args.stages.is_empty();
    if let (Some(a), false) = (args.arrivals, open) {
        let a = loadgen::Arrivals::from(a);
        bail!("--arrivals {a} spaces the open model's arrivals: give --rate or --stage with it");
    }
    if let Some(q) = args.qps {
        if !(q.is_finite() && q >= 0.0) {
            bail!("-q must be a non-negative number");
        }
    }
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Some(b.clone()),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read -D file {}", path.display()))?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("-D file {} is not UTF-8 text", path.display()))?,
            )
        }
        (None, None) => None,
    };
    let mut headers = vec![("Content-Type".to_string(), args.content_type.clone())];
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .filter(|(n, _)| !n.trim().is_empty() && !n.trim().contains(' '))
            .with_context(|| format!("bad -H {h:?}: expected \"Name: value\""))?;
        let name = name.trim();
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_string(), value.trim().to_string()));
    }
    if let Some(accept) = &args.accept {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("accept"));
        headers.push(("Accept".into(), accept.clone()));
    }
    if let Some(host) = &args.host {
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            bail!("-host {host:?}: expected a host name, optionally with :port");
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        headers.push(("Host".into(), host.clone()));
    }
    if let Some(ua) = &args.user_agent {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("user-agent"));
        headers.push(("User-Agent".into(), ua.clone()));
    }
    if let Some(a) = &args.auth {
        if !a.contains(':') {
            bail!("-a must be username:password");
        }
        headers.push(("Authorization".into(), loadgen::basic_auth(a)));
    }
    let arrivals = args.arrivals.map(Into::into).unwrap_or_default();
    let (model, stop) = if open {
        let (stages, stop) = match args.rate {
            Some(r) => {
                // One steady stage long enough for the stop to end the run.
                let (d, stop) = match (args.duration, args.requests) {
                    (Some(d), _) => (d, Stop::Duration { duration: d }),
                    (None, n) => {
                        let count = n.unwrap_or(200) as f64;
                        // Poisson arrivals in count/rate seconds number count ± √count:
                        // room for 10σ more, so the count ends the run, as it does
                        // with uniform arrivals.
                        let room = match arrivals {
                            loadgen::Arrivals::Uniform => 0.0,
                            loadgen::Arrivals::Poisson => 10.0 * count.sqrt() + 10.0,
                        };
                        let d = Duration::from_secs_f64((count + room) / r);
                        (
                            d,
                            Stop::Requests {
                                count: count as u64,
                            },
                        )
                    }
                };
                (vec![Stage::steady(d, r)], stop)
            }
            None => {
                let stop = match (args.duration, args.requests) {
                    (Some(d), _) => Stop::Duration { duration: d },
                    (None, Some(n)) => Stop::Requests { count: n },
                    (None, None) => Stop::Stages,
                };
                (args.stages.clone(), stop)
            }
        };
        (Model::Open { stages }, stop)
    } else {
        let n = args.requests.unwrap_or(200);
        if args.duration.is_none() && n < args.concurrency as u64 {
            bail!("-n cannot be less than -c");
        }
        let stop = match args.duration {
            Some(d) => Stop::Duration { duration: d },
            None => Stop::Requests { count: n },
        };
        let q = args.qps.filter(|q| *q > 0.0);
        (Model::Closed { rate_per_worker: q }, stop)
    };
    let plan = LoadPlan {
        requests: vec![RequestTemplate {
            weight: 1,
            method: args.method.to_ascii_uppercase(),
            url: args.url.clone(),
            headers,
            body,
        }],
        model,
        arrivals,
        stop,
        connections: args.concurrency,
        timeout: if args.timeout == 0.0 {
            Duration::from_secs(24 * 3600)
        } else {
            Duration::from_secs_f64(args.timeout)
        },
        keepalive: !args.disable_keepalive,
        compression: !args.disable_compression,
        follow_redirects: !args.disable_redirects,
        interval: args.interval,
        threads: args.threads,
        seed: args.seed,
        track_header: args.track_header.clone(),
        bad: BadPolicy::default(),
        io: args.io,
        transport: loadgen::Transport {
            proxy: args.proxy.clone(),
            http2: args.http2,
        },
        shard: None,
    };
    loadgen::validate(&plan)?;
    Ok(plan)
}

pub fn main(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let sharding = args.sharding.resolve(&args.url)?;
    let mut plan = plan(&args)?;
    let mut shard = None;
    if let Some(sharding) = &sharding {
        if args.save.is_none() {
            bail!(
                "shard {} measures a part of the run for `slolab merge`: give --save FILE",
                sharding.shard
            );
        }
        plan.shard = Some(sharding.shard);
        loadgen::validate(&plan)?;
        let (origin, record) = sharding.prepare()?;
        if let Some(clock) = &record.clock {
            eprintln!(
                "slolab load: shard {} starts at {} (clock {:+.1} ms ± {:.1} ms from {})",
                sharding.shard,
                record.start_at,
                clock.offset_ms,
                clock.uncertainty_ms,
                clock.reference
            );
        }
        shard = Some((origin, record));
    }
    let runtime = loadgen::runtime(plan.threads)?;
    let origin = shard.as_ref().map(|(origin, _)| *origin);
    let mut results = runtime.block_on(drive(plan, origin, &args))?;
    if let Some((_, record)) = shard {
        results.shard = Some(record);
    }
    if let Some(path) = &args.save {
        results.write(path)?;
    }
    if args.output.is_none() {
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&loadgen::summary::json(&results))?
            )?;
        } else {
            write!(out, "{}", loadgen::summary::hey_text(&results))?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the plan; t = 0 at `origin` when given (a shard's agreed start).
async fn drive(
    plan: LoadPlan,
    origin: Option<std::time::Instant>,
    args: &LoadArgs,
) -> anyhow::Result<loadgen::Results> {
    let shutdown = async {
        crate::shutdown::signal_received().await;
    };
    let (progress_tx, bar) = if std::io::stderr().is_terminal() && !args.json {
        let (tx, rx) = tokio::sync::watch::channel(loadgen::Progress::default());
        (Some(tx), Some(tokio::spawn(progress_bar(rx, plan.clone()))))
    } else {
        (None, None)
    };
    let results = if args.output.is_some() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<loadgen::RequestRow>(4096);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            writeln!(out, "{}", loadgen::RequestRow::CSV_HEADER)?;
            while let Some(row) = rx.blocking_recv() {
                writeln!(out, "{}", row.to_csv())?;
            }
            out.flush()
        });
        let results = loadgen::run_with_rows(plan, origin, shutdown, progress_tx, tx).await?;
        writer.await.context("the CSV writer stopped")??;
        results
    } else if let Some(origin) = origin {
        loadgen::run_from(plan, origin, shutdown, progress_tx).await?
    } else {
        loadgen::run(plan, shutdown, progress_tx).await?
    };
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    Ok(results)
}

/// A progress bar on stderr (only when it is a terminal): ends when the run does.
async fn progress_bar(mut rx: tokio::sync::watch::Receiver<loadgen::Progress>, plan: LoadPlan) {
    let len = match plan.stop {
        Stop::Requests { count } => Some(count),
        _ => None,
    };
    let bar = crate::progress::bar(
        len,
        "{spinner} {elapsed_precise} {wide_bar} {pos} requests  {msg}",
    );
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        bar.set_position(p.requests);
        bar.set_message(format!(
            "{} | stage {}",
            crate::progress::status(&p),
            p.stage + 1
        ));
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse() {
        let s = parse_stage("20s@500").unwrap();
        assert_eq!(s, Stage::steady(Duration::from_secs(20), 500.0));
        let s = parse_stage("10s@100..1000").unwrap();
        assert_eq!((s.start_rate, s.end_rate), (100.0, 1000.0));
        for bad in ["20s", "@5", "x@5", "1s@-1", "1s@a..b", "0s@5"] {
            assert!(parse_stage(bad).is_err(), "{bad}");
        }
    }

    fn spell(args: &[&str]) -> Result<Vec<String>, String> {
        let args = args.iter().map(OsString::from).collect();
        hey_spellings(args).map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn hey_single_dash_flags_are_rewritten_after_load_only() {
        let out = spell(&[
            "slolab",
            "load",
            "-disable-keepalive",
            "-n",
            "5",
            "http://x/",
        ]);
        assert_eq!(out.unwrap()[2..4], ["--disable-keepalive", "-n"]);
        // Before `load` (a global flag) nothing is touched.
        let out = spell(&["slolab", "-host", "load", "http://x/"]).unwrap();
        assert_eq!(out[1], "-host");
    }

    #[test]
    fn hey_spellings_are_exact() {
        let ok = |args: &[&str], want: &[&str]| {
            let mut full = vec!["slolab", "load"];
            full.extend_from_slice(args);
            let out = spell(&full).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(out[2..], *want, "{args:?}");
        };
        // Not `-c pus` nor `-h` (help): the whole word is the flag.
        ok(&["-cpus", "2", "u"], &["--cpus", "2", "u"]);
        ok(&["-host", "a.test", "u"], &["--host", "a.test", "u"]);
        ok(&["-host=a.test", "u"], &["--host=a.test", "u"]);
        ok(&["-h2", "u"], &["--h2", "u"]);
        // Short flags, with their value after a space or attached.
        ok(
            &["-n5", "-c", "2", "-z10s", "u"],
            &["-n5", "-c", "2", "-z10s", "u"],
        );
        ok(
            &["-A", "text/html", "-vv", "u"],
            &["-A", "text/html", "-vv", "u"],
        );
        // A value is never rewritten, even when it looks like a hey flag.
        ok(
            &["-d", "-host", "-H", "-cpus: 1", "u"],
            &["-d", "-host", "-H", "-cpus: 1", "u"],
        );
        ok(&["--stage", "-cpus", "u"], &["--stage", "-cpus", "u"]);
        ok(&["--", "-host"], &["--", "-host"]);
        for bad in ["-hots", "-cpu", "-mPOST", "-disable-keepalives", "-xproxy"] {
            let err = spell(&["slolab", "load", bad, "u"]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
