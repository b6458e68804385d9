//! Sharded runs: which shard this generator is (`--shard I/N`, or `--shards N`
//! with the index an Indexed Job puts in `JOB_COMPLETION_INDEX`), the agreed
//! start every shard waits for (`--start-at`), and the clock check that refuses
//! to start when this machine's clock is too far from a reference's.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use loadgen::{ClockOffset, Shard, ShardRecord};

/// The variable a Kubernetes Indexed Job sets to each pod's index.
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
/// How far ahead `--start-at` may be: further is more likely a typo than a plan.
const MAX_LEAD: Duration = Duration::from_secs(3600);
/// At most this long is spent measuring the clock (and never past the start).
const CLOCK_BUDGET: Duration = Duration::from_secs(5);
/// Good enough: the measurement stops once the offset is known this closely.
const CLOCK_RESOLUTION_S: f64 = 0.05;

#[derive(Debug, Clone, clap::Args)]
pub struct ShardArgs {
    /// Run shard I of N (0-based): arrivals k ≡ I (mod N) of the open model's
    /// schedule, and an even share of the connections (-c) and of -n; the shards
    /// together send exactly the unsharded run. Needs --start-at.
    #[arg(long = "shard", value_name = "I/N", value_parser = parse_shard, conflicts_with = "shards")]
    pub shard: Option<Shard>,
    /// N shards, this one's index from $JOB_COMPLETION_INDEX (a Kubernetes
    /// Indexed Job sets it).
    #[arg(long = "shards", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: Option<u32>,
    /// The shards' common start, RFC 3339 (e.g. 2026-12-05T04:00:00Z), in the
    /// future and at most 1 h ahead: each shard waits for it, and its timeline's
    /// t = 0 is that instant, so interval k of every shard is the same second.
    #[arg(long = "start-at", value_name = "RFC3339")]
    pub start_at: Option<String>,
    /// Before starting, a shard measures its clock's offset from this http://
    /// URL's Date header and refuses to start beyond --max-skew [default: the
    /// target's origin].
    #[arg(long = "clock-ref", value_name = "URL")]
    pub clock_ref: Option<String>,
    /// The largest clock offset from --clock-ref a shard starts with.
    #[arg(long = "max-skew", value_name = "DURATION", default_value = "1s", value_parser = chaos::duration::parse_positive)]
    pub max_skew: Duration,
}

/// This generator's part of a sharded run, checked.
#[derive(Debug, Clone)]
pub struct Sharding {
    pub shard: Shard,
    pub start_at: DateTime<Utc>,
    pub clock_ref: String,
    pub max_skew: Duration,
}

/// `I/N`, as `--shard` takes it.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("bad --shard {s:?}: expected I/N with 0 ≤ I < N, e.g. 0/3");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u32 = i.trim().parse().map_err(|_| bad())?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// `--shards N`'s index: the variable's value, checked.
fn index_from(var: Option<String>, count: u32) -> anyhow::Result<Shard> {
    let Some(v) = var else {
        bail!(
            "--shards {count} takes this shard's index from {INDEX_VAR}, which is not set \
             (a Kubernetes Indexed Job sets it): set it, or give --shard I/{count}"
        );
    };
    match v.trim().parse::<u32>() {
        Ok(index) if index < count => Ok(Shard { index, count }),
        _ => bail!(
            "{INDEX_VAR}={v:?} is not a shard index for --shards {count}: expected 0 to {}",
            count - 1
        ),
    }
}

/// `--start-at`, in the future and not too far ahead.
fn parse_start(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(s)
        .with_context(|| {
            format!("--start-at {s:?} is not an RFC 3339 time (e.g. 2026-12-05T04:00:00Z)")
        })?
        .with_timezone(&Utc);
    let now_text = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    if at <= now {
        bail!(
            "--start-at {s} is in the past (this machine's clock says {now_text}): give a \
             time ahead, enough for every shard to start, e.g. \
             $(date -u -d '+30 sec' +%FT%TZ)"
        );
    }
    if (at - now).to_std().unwrap_or_default() > MAX_LEAD {
        bail!("--start-at {s} is more than 1h ahead of this machine's clock ({now_text})");
    }
    Ok(at)
}

impl ShardArgs {
    /// The sharding asked for, or `None` for a whole run. `target` is the URL
    /// whose origin is the default clock reference.
    pub fn resolve(&self, target: &str) -> anyhow::Result<Option<Sharding>> {
        let shard = match (self.shard, self.shards) {
            (Some(s), _) => s,
            (None, Some(n)) => index_from(std::env::var(INDEX_VAR).ok(), n)?,
            (None, None) => {
                if self.start_at.is_some() {
                    bail!("--start-at lines up the shards of one run: give --shard I/N or --shards N with it");
                }
                return Ok(None);
            }
        };
        let Some(start) = &self.start_at else {
            bail!(
                "shard {shard} needs --start-at: every shard waits for one agreed time so \
                 that their timelines line up for `slolab merge` (e.g. --start-at \
                 $(date -u -d '+30 sec' +%FT%TZ), the same for every shard)"
            );
        };
        let start_at = parse_start(start, Utc::now())?;
        let clock_ref = match &self.clock_ref {
            Some(u) => u.clone(),
            None => origin_of(target),
        };
        Ok(Some(Sharding {
            shard,
            start_at,
            clock_ref,
            max_skew: self.max_skew,
        }))
    }
}

/// `scheme://authority/` of a URL: where the default clock check asks for the
/// time (the load's own path may hold templates).
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{scheme}://{}/", &rest[..end])
        }
        None => url.to_string(),
    }
}

impl Sharding {
    /// Measures this clock against the reference and refuses a skew beyond the
    /// limit, naming both clocks. Then the instant of the start on this
    /// machine's monotonic clock: the load's t = 0.
    pub fn prepare(&self) -> anyhow::Result<(std::time::Instant, ShardRecord)> {
        let until_start = (self.start_at - Utc::now()).to_std().unwrap_or_default();
        let budget = CLOCK_BUDGET.min(until_start.saturating_sub(Duration::from_millis(500)));
        let clock = measure_offset(&self.clock_ref, budget)?;
        let offset = clock.offset_ms / 1e3;
        if offset.abs() > self.max_skew.as_secs_f64() {
            let now = Utc::now();
            let theirs = now + chrono::Duration::milliseconds(clock.offset_ms as i64);
            bail!(
                "this machine's clock ({}) is {:.3} s {} the clock of {} ({}, ± {:.3} s), \
                 beyond --max-skew {}: synchronise the clocks (NTP, chrony) or raise --max-skew",
                now.to_rfc3339_opts(SecondsFormat::Millis, true),
                offset.abs(),
                if offset > 0.0 { "behind" } else { "ahead of" },
                self.clock_ref,
                theirs.to_rfc3339_opts(SecondsFormat::Millis, true),
                clock.uncertainty_ms / 1e3,
                chaos::duration::format(self.max_skew)
            );
        }
        let now = Utc::now();
        let Ok(wait) = (self.start_at - now).to_std() else {
            bail!(
                "--start-at {} passed while this shard measured its clock (now {}): give a later time",
                self.start_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                now.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        };
        let origin = Instant::now() + wait;
        let record = ShardRecord {
            index: self.shard.index,
            count: self.shard.count,
            start_at: self.start_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            clock: Some(clock),
        };
        Ok((origin, record))
    }
}

/// Seconds since the Unix epoch on this machine's clock.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Bounds on the offset (reference − local, seconds) that HTTP `Date` samples
/// allow. A `Date` is the reference's time truncated to the second, taken
/// somewhere between our send (`t0`) and our receipt (`t1`), so each sample
/// says `date − t1 ≤ offset < date + 1 − t0`; samples aimed at the
/// reference's second boundary halve the interval, down to the round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    lo: f64,
    hi: f64,
}

impl Bounds {
    fn new(date: f64, t0: f64, t1: f64) -> Self {
        Self {
            lo: date - t1,
            hi: date + 1.0 - t0,
        }
    }

    /// Narrowed by another sample; a sample that contradicts the others (the
    /// reference's clock was stepped) starts over from it.
    fn with(self, other: Bounds) -> Self {
        let b = Bounds {
            lo: self.lo.max(other.lo),
            hi: self.hi.min(other.hi),
        };
        if b.lo > b.hi {
            other
        } else {
            b
        }
    }

    fn mid(&self) -> f64 {
        (self.lo + self.hi) / 2.0
    }

    fn width(&self) -> f64 {
        self.hi - self.lo
    }
}

/// Measures this machine's clock offset from `url`'s `Date` header: a first
/// sample bounds it within a second (plus the round trip), and each next one is
/// sent when the reference's clock should tick over by the current estimate,
/// halving the interval, until it is within [`CLOCK_RESOLUTION_S`], 8 samples,
/// or the time budget.
fn measure_offset(url: &str, budget: Duration) -> anyhow::Result<ClockOffset> {
    let deadline = Instant::now() + budget;
    let mut bounds: Option<Bounds> = None;
    let mut samples = 0u32;
    let mut rtt = 0.0f64;
    loop {
        if let Some(b) = bounds {
            if b.width() <= CLOCK_RESOLUTION_S || samples >= 8 {
                break;
            }
            // The next whole second of the reference, by the estimate, a
            // little ahead; the request should reach it just then.
            let now = unix_now();
            let tick = (now + b.mid() + 0.05).ceil();
            let send = tick - b.mid() - rtt / 2.0;
            let wait = Duration::from_secs_f64((send - now).max(0.0));
            if Instant::now() + wait + Duration::from_secs_f64(rtt) > deadline {
                break;
            }
            std::thread::sleep(wait);
        }
        let t0 = unix_now();
        let date = fetch_date(url)?;
        let t1 = unix_now();
        samples += 1;
        rtt = t1 - t0;
        let sample = Bounds::new(date, t0, t1);
        bounds = Some(bounds.map_or(sample, |b| b.with(sample)));
    }
    let b = bounds.expect("at least one sample");
    Ok(ClockOffset {
        reference: url.to_string(),
        offset_ms: b.mid() * 1e3,
        uncertainty_ms: b.width() / 2.0 * 1e3,
        samples,
    })
}

/// One `GET url`; the response's `Date` as seconds since the epoch.
fn fetch_date(url: &str) -> anyhow::Result<f64> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!(
            "the clock reference {url} is not an http:// URL: give --clock-ref with an http:// \
             URL that answers with a Date header"
        );
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = (&rest[..end], &rest[end..]);
    let path = if path.is_empty() { "/" } else { path };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let cannot = || format!("cannot read the time from the clock reference {url}");
    let addr = with_port
        .to_socket_addrs()
        .with_context(cannot)?
        .next()
        .with_context(cannot)?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(cannot)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: slolab-clock-check\r\nConnection: close\r\n\r\n"
    )
    .with_context(cannot)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = s.read(&mut buf).with_context(cannot)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let date = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.trim().to_string());
    let Some(date) = date else {
        bail!(
            "the clock reference {url} sent no Date header: give --clock-ref with a URL that does"
        );
    };
    let t = DateTime::parse_from_rfc2822(&date).with_context(|| {
        format!("the clock reference {url} sent a Date header that does not read: {date:?}")
    })?;
    Ok(t.timestamp() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse() {
        assert_eq!(parse_shard("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", "1/"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_index_comes_from_the_indexed_job_variable() {
        assert_eq!(
            index_from(Some("2".into()), 3).unwrap(),
            Shard { index: 2, count: 3 }
        );
        let err = index_from(None, 3).unwrap_err().to_string();
        assert!(
            err.contains("JOB_COMPLETION_INDEX") && err.contains("not set"),
            "{err}"
        );
        let err = index_from(Some("3".into()), 3).unwrap_err().to_string();
        assert!(err.contains("JOB_COMPLETION_INDEX=\"3\""), "{err}");
    }

    #[test]
    fn the_start_is_ahead_but_not_far() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(parse_start("2026-12-05T04:00:30Z", now).is_ok());
        assert!(parse_start("2026-12-05T05:00:30Z", now).is_err());
        let err = parse_start("2026-12-05T03:59:59Z", now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in the past"), "{err}");
        assert!(parse_start("tomorrow", now).is_err());
    }

    #[test]
    fn date_samples_aimed_at_the_tick_narrow_the_offset() {
        // The reference is 0.3 s ahead; requests take 2 ms each way.
        let offset = 0.3;
        let sample = |t0: f64| {
            let t1 = t0 + 0.004;
            let date = (t0 + 0.002 + offset).floor();
            Bounds::new(date, t0, t1)
        };
        let mut b = sample(1000.123);
        assert!(b.width() > 1.0 && b.lo <= offset && offset < b.hi);
        for _ in 0..6 {
            let tick = (1001.0 + b.mid()).ceil();
            b = b.with(sample(tick - b.mid() - 0.002));
            assert!(b.lo <= offset && offset < b.hi, "{b:?}");
        }
        assert!(b.width() < 0.03, "{b:?}");
        assert_eq!(origin_of("http://h:8080/t/{seq}?x"), "http://h:8080/");
    }
}
