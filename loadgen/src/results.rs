//! The results file, schema v1: what a run measured, in a form that later runs,
//! shards, SLO reports and `slolab compare` can read back and merge exactly.
//!
//! Every field is documented for users in `results/README.md`; keep the two in step.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::LoadPlan;

/// Bumped on any change a v1 reader could misread. Additive fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// Percentiles every summary carries, in the order they are printed.
pub const PERCENTILES: [(&str, f64); 7] = [
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot read results file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write results file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a slolab results file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has schema version {found}; this slolab reads version {SCHEMA_VERSION}")]
    Version { path: String, found: u32 },
    #[error("corrupt serialised histogram: {0}")]
    Histogram(String),
}

/// A whole run. Writers that know more (the experiment runner) add their own
/// top-level sections; readers that do not know them keep them in `extra`, so a
/// read-modify-write never drops data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub schema_version: u32,
    pub tool: Tool,
    pub run: RunMeta,
    pub plan: LoadPlan,
    pub totals: Totals,
    /// Open model only: how well the generator kept to its schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacer: Option<PacerStats>,
    pub timeline: Vec<Interval>,
    /// Total latency histogram (µs), HdrHistogram V2+DEFLATE, base64.
    pub histogram: String,
    /// Total service-time histogram (µs, from the actual send), same encoding.
    pub service_histogram: String,
    /// Latency of the bad responses only (µs), same encoding; empty when there
    /// were none (and in files written before it existed). Good = `histogram` − this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bad_histogram: String,
    /// A shard's file (`--shard I/N`): which shard, its start, its clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// A merged file (`slolab merge`): the shards it adds up, and whether
    /// any was missing or cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<MergedShards>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One shard of a distributed run, as that shard recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRecord {
    pub index: u32,
    pub count: u32,
    /// The agreed start, RFC 3339 UTC: t = 0 of every shard's timeline.
    pub start_at: String,
    /// This generator's clock against a reference, measured before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockOffset>,
}

/// How far a generator's clock was from a reference's (its HTTP `Date`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClockOffset {
    /// The URL whose `Date` header was the reference.
    pub reference: String,
    /// Reference minus local clock, milliseconds (positive: this clock is behind).
    pub offset_ms: f64,
    /// The true offset lies within `offset_ms ± uncertainty_ms`.
    pub uncertainty_ms: f64,
    /// Requests the measurement took.
    pub samples: u32,
}

/// What a merged file was merged from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedShards {
    pub count: u32,
    pub start_at: String,
    /// The shards merged, by index, with the host each ran on.
    pub merged: Vec<MergedShard>,
    /// Why the run is INCOMPLETE (a shard missing or interrupted); absent when
    /// all `count` shards ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedShard {
    #[serde(flatten)]
    pub shard: ShardRecord,
    pub host: Host,
    pub interrupted: bool,
    /// The file it was read from.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// Wall time from the first send to the last completion, seconds.
    pub duration_s: f64,
    /// `git rev-parse HEAD` of the working directory, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub host: Host,
    /// True when the run was stopped early (Ctrl-C); the numbers cover what ran.
    pub interrupted: bool,
    /// The I/O backend the workers ran on (`uring` or `epoll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub max_us: u64,
    pub stddev_us: f64,
    /// Keys from [`PERCENTILES`] ("p50" … "p99.99").
    pub percentiles_us: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Requests that ended, whatever the outcome.
    pub requests: u64,
    /// Ended as a response or failure that counts as good / bad (see `availability`).
    pub good: u64,
    pub bad: u64,
    /// good / (good + bad); 1.0 when nothing was valid.
    pub availability: f64,
    /// Completed requests per second over `run.duration_s`.
    pub rps: f64,
    /// Count per outcome name (see [`crate::Outcome::name`]).
    pub outcomes: BTreeMap<String, u64>,
    /// Count per HTTP status code (responses only).
    pub status_codes: BTreeMap<u16, u64>,
    /// Latency of every request that got a response: from the scheduled time in
    /// the open model, from the send in the closed model.
    pub latency: LatencySummary,
    /// Latency of the good responses only (Gatling's OK): what latency objectives
    /// judge by default, so fast errors never pass for fast service.
    #[serde(default)]
    pub latency_good: LatencySummary,
    /// Latency of the bad responses only (Gatling's KO), e.g. how fast 503s came back.
    #[serde(default)]
    pub latency_bad: LatencySummary,
    /// From the actual send, every model.
    pub service_time: LatencySummary,
    pub bytes_received: u64,
    /// Responses per value of the tracked response header (e.g. X-Served-By).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_header: BTreeMap<String, u64>,
}

impl Totals {
    /// Sets `availability` and `rps` from the counts, over a run of `duration_s`:
    /// the one formula for the engine, merged shards and test fixtures.
    pub fn derive_rates(&mut self, duration_s: f64) {
        let valid = self.good + self.bad;
        self.availability = if valid == 0 {
            1.0
        } else {
            self.good as f64 / valid as f64
        };
        self.rps = if duration_s > 0.0 {
            self.requests as f64 / duration_s
        } else {
            0.0
        };
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PacerStats {
    /// Requests the schedule called for.
    pub scheduled: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// Requests sent more than `late_threshold_us` after their scheduled time.
    pub late_sends: u64,
    pub late_threshold_us: u64,
    /// Worst and p99 delay between scheduled time and actual send.
    pub max_lag_us: u64,
    pub p99_lag_us: u64,
    /// True when the generator could not keep up; the summary says so loudly.
    pub fell_behind: bool,
}

/// How an open-model run fell behind its schedule, when it did: what `slolab
/// load`'s summary and `slolab report` both say, by the one rule in
/// [`PacerStats::behind`].
#[derive(Debug, Clone, PartialEq)]
pub struct Behind {
    pub scheduled: u64,
    pub sent: u64,
    /// Scheduled but never sent: the target saw less load than planned.
    pub missed: u64,
    /// Sent more than the late threshold after schedule: the latencies include that wait.
    pub late_sends: u64,
    pub max_lag_us: u64,
}

impl PacerStats {
    /// The rule for "the generator fell behind": more than 0.1 % of the
    /// scheduled requests (at least 2) were never sent, or more than 1 % of the
    /// sends were late. The engine stores its answer in `fell_behind`.
    pub fn fell_behind_rule(scheduled: u64, sent: u64, late_sends: u64) -> bool {
        let missed = scheduled.saturating_sub(sent);
        missed > (scheduled / 1000).max(1) || late_sends * 100 > sent
    }

    /// How the run fell behind, or `None` when it kept to its schedule. Judged
    /// from the counts, so a file's verdict never depends on who reads it.
    pub fn behind(&self) -> Option<Behind> {
        Self::fell_behind_rule(self.scheduled, self.sent, self.late_sends).then(|| Behind {
            scheduled: self.scheduled,
            sent: self.sent,
            missed: self.scheduled.saturating_sub(self.sent),
            late_sends: self.late_sends,
            max_lag_us: self.max_lag_us,
        })
    }
}

impl std::fmt::Display for Behind {
    /// One sentence: what fell behind, and what that does to the numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the load generator fell behind its schedule: {} of {} scheduled requests were sent, \
             {} late (worst lag {:.1} ms)",
            self.sent,
            self.scheduled,
            self.late_sends,
            self.max_lag_us as f64 / 1e3
        )?;
        let mut effects = Vec::new();
        if self.missed > (self.scheduled / 1000).max(1) {
            effects.push("the target saw less load than planned");
        }
        if self.late_sends > 0 {
            effects.push("the latencies include the wait for a free connection (-c)");
        }
        if !effects.is_empty() {
            write!(f, "; {}", effects.join(", and "))?;
        }
        Ok(())
    }
}

/// One timeline bucket, `[start_s, start_s + duration_s)` from the run start,
/// by completion time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    pub start_s: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub good: u64,
    pub bad: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub latency: LatencySummary,
    /// Requests whose scheduled time fell in this bucket (open model).
    #[serde(default)]
    pub scheduled: u64,
    #[serde(default)]
    pub late_sends: u64,
    #[serde(default)]
    pub max_lag_us: u64,
    /// Latency histogram of this bucket (µs), V2+DEFLATE base64.
    pub histogram: String,
    pub service_histogram: String,
    /// Latency of this bucket's bad responses only; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bad_histogram: String,
    /// Responses per HTTP status code in this bucket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_codes: BTreeMap<u16, u64>,
    /// Responses per value of the tracked response header in this bucket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_header: BTreeMap<String, u64>,
}

/// Which responses a latency figure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyOf {
    /// Good responses only (the default for latency objectives).
    #[default]
    Good,
    /// Bad responses only.
    Bad,
    /// Every response, good or bad.
    All,
}

/// `all` minus `bad`, where `bad` is a (possibly empty) encoded histogram of a
/// subset of `all`'s values, by kind.
fn select_histogram(all: &str, bad: &str, of: LatencyOf) -> Result<Histogram<u64>, ResultsError> {
    let empty_bad = bad.is_empty();
    match of {
        LatencyOf::All => decode_histogram(all),
        LatencyOf::Bad if empty_bad => Ok(new_histogram()),
        LatencyOf::Bad => decode_histogram(bad),
        LatencyOf::Good => {
            let mut h = decode_histogram(all)?;
            if !empty_bad {
                let b = decode_histogram(bad)?;
                h.subtract(&b)
                    .map_err(|e| ResultsError::Histogram(format!("bad ⊄ all: {e:?}")))?;
            }
            Ok(h)
        }
    }
}

impl Interval {
    /// Seconds of this interval that the run covered: the full width, except
    /// for the last interval, which the run usually ends partway through
    /// (`run_s` is the run's `run.duration_s`). Rates per interval divide by
    /// this; dividing by the width makes the last point of every run dip
    /// toward zero, which reads as an outage.
    pub fn covered_s(&self, run_s: f64) -> f64 {
        let covered = (run_s - self.start_s).min(self.duration_s);
        // A run that ends before its own timeline (a file from another writer)
        // keeps the nominal width rather than a rate over a near-zero divisor.
        if covered > 0.0 {
            covered
        } else {
            self.duration_s
        }
    }

    /// This bucket's latency histogram of the good, bad or all responses.
    pub fn latency_histogram(&self, of: LatencyOf) -> Result<Histogram<u64>, ResultsError> {
        select_histogram(&self.histogram, &self.bad_histogram, of)
    }
}

impl Results {
    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_json(&p, text.as_bytes())
    }

    /// Parses a results file received rather than read (`slolab collect`);
    /// `name` stands for its path in errors.
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Self, ResultsError> {
        let p = name.to_string();
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| ResultsError::Parse {
                path: p.clone(),
                source,
            })?;
        let found = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != SCHEMA_VERSION {
            return Err(ResultsError::Version { path: p, found });
        }
        serde_json::from_value(value).map_err(|source| ResultsError::Parse { path: p, source })
    }

    /// Writes atomically: a temp file in the same directory, fsync, rename.
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        write_atomic(path, &json)
    }

    pub fn total_histogram(&self) -> Result<Histogram<u64>, ResultsError> {
        decode_histogram(&self.histogram)
    }

    /// The whole run's latency histogram of the good, bad or all responses.
    pub fn latency_histogram(&self, of: LatencyOf) -> Result<Histogram<u64>, ResultsError> {
        select_histogram(&self.histogram, &self.bad_histogram, of)
    }
}

/// Write `bytes` to `path` so that a reader sees either the old file or the new
/// one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    atomicfile::write_atomic(path, bytes).map_err(|source| ResultsError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// A latency histogram in microseconds: 1 µs to 1 hour at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn encode_histogram(h: &Histogram<u64>) -> String {
    // Written with the full 1 µs–1 h range whatever range `h` grew to, so any
    // reader's decoded histogram can take any other's values.
    let mut full = new_histogram();
    let h = if h.high() >= full.high() || full.add(h).is_err() {
        h
    } else {
        &full
    };
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serialising into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, ResultsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| ResultsError::Histogram(e.to_string()))?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| ResultsError::Histogram(format!("{e:?}")))?;
    // A decoded histogram only spans the range it was written with; let it grow
    // so that adding another interval, run or shard with larger values works.
    h.auto(true);
    Ok(h)
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            max_us: h.max(),
            stddev_us: h.stdev(),
            percentiles_us: PERCENTILES
                .iter()
                .map(|(k, q)| (k.to_string(), h.value_at_quantile(q / 100.0)))
                .collect(),
        }
    }

    pub fn percentile(&self, key: &str) -> Option<u64> {
        self.percentiles_us.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_covers_its_width_except_where_the_run_ended() {
        let iv = |start_s: f64| Interval {
            start_s,
            duration_s: 1.0,
            ..Default::default()
        };
        assert_eq!(iv(3.0).covered_s(9.25), 1.0);
        assert_eq!(iv(9.0).covered_s(9.25), 0.25);
        // A file whose run ended before its own timeline keeps the width.
        assert_eq!(iv(10.0).covered_s(9.25), 1.0);
    }

    #[test]
    fn histogram_codec_round_trips_and_merges_exactly() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=1000u64 {
            a.record(v * 7).unwrap();
            b.record(v * 131).unwrap();
        }
        let mut total = a.clone();
        total.add(&b).unwrap();

        let mut merged = decode_histogram(&encode_histogram(&a)).unwrap();
        merged
            .add(decode_histogram(&encode_histogram(&b)).unwrap())
            .unwrap();
        assert_eq!(merged, total);
        assert_eq!(merged.len(), 2000);
    }

    #[test]
    fn small_decoded_histograms_take_larger_values() {
        let mut small = Histogram::<u64>::new(3).unwrap();
        small.record(100).unwrap();
        let mut big = Histogram::<u64>::new(3).unwrap();
        big.record(2_000_000_000).unwrap();
        let mut a = decode_histogram(&encode_histogram(&small)).unwrap();
        a.add(decode_histogram(&encode_histogram(&big)).unwrap())
            .unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.max() >= 1_999_000_000);
    }

    #[test]
    fn one_rule_says_when_the_pacer_fell_behind() {
        let stats = |scheduled, sent, late_sends| PacerStats {
            scheduled,
            sent,
            late_sends,
            max_lag_us: 25_000,
            ..Default::default()
        };
        // On schedule: 1 of 1000 missed, 1 % late — not behind.
        assert_eq!(stats(1000, 999, 9).behind(), None);
        assert_eq!(stats(1000, 1000, 10).behind(), None);
        // Missed sends: less load than planned.
        let b = stats(1000, 990, 0).behind().unwrap();
        assert_eq!(b.missed, 10);
        let text = b.to_string();
        assert!(text.contains("990 of 1000 scheduled"), "{text}");
        assert!(text.contains("less load than planned"), "{text}");
        assert!(!text.contains("include the wait"), "{text}");
        // Everything sent, but late: the latencies carry it, the load did not shrink.
        let text = stats(1000, 1000, 11).behind().unwrap().to_string();
        assert!(text.contains("include the wait"), "{text}");
        assert!(!text.contains("less load"), "{text}");
        assert!(PacerStats::fell_behind_rule(1000, 1000, 11));
        assert!(!PacerStats::fell_behind_rule(0, 0, 0));
    }

    #[test]
    fn corrupt_histogram_is_an_error_not_a_panic() {
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }
}
