//! Recording: each worker owns a `Recorder` (plain counters and a small buffer of
//! samples, no locks, no per-request messages) and hands over an `IntervalPart`
//! when its clock crosses an interval boundary or its buffer fills; the
//! `Aggregator` records parts into per-interval HDR histograms and the totals, and
//! encodes finished intervals so memory stays flat whatever the request count.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use crate::outcome::Outcome;
use crate::plan::BadPolicy;
use crate::results::{decode_histogram, encode_histogram, Interval, LatencySummary};

/// A histogram that starts small and grows to the values it sees (µs), so idle
/// or fast workers cost kilobytes, not the 190 KB of a 1 µs–1 h fixed range.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

fn record_us(h: &mut Histogram<u64>, us: u64) {
    // Auto-resizing histograms only fail on absurd values; clamp rather than lose a count.
    let _ = h.record(us.clamp(1, 3_600_000_000));
}

/// Is this outcome bad for availability under `policy`?
pub fn is_bad(policy: &BadPolicy, outcome: Outcome, status: u16) -> bool {
    match outcome {
        Outcome::Status5xx => policy.status_5xx,
        Outcome::Status4xx => policy.status_4xx || (status == 429 && policy.status_429),
        Outcome::Status2xx | Outcome::Status3xx => false,
        _ => true,
    }
}

/// One worker's share of one interval.
#[derive(Debug)]
pub(crate) struct IntervalPart {
    pub index: u64,
    pub requests: u64,
    pub good: u64,
    pub bad: u64,
    pub outcomes: [u64; Outcome::ALL.len()],
    pub status_codes: Vec<(u16, u64)>,
    pub bytes: u64,
    /// (latency µs, service time µs) of each response, recorded by the aggregator:
    /// 8 bytes a sample instead of two ≥16 KB histograms per worker. The latency's
    /// top bit ([`BAD_BIT`]) marks a bad response, so good and bad latency split
    /// at no extra cost.
    pub samples: Vec<[u32; 2]>,
    pub late_sends: u64,
    pub max_lag_us: u64,
    pub by_header: HashMap<String, u64>,
}

impl IntervalPart {
    fn new(index: u64) -> Self {
        Self {
            index,
            requests: 0,
            good: 0,
            bad: 0,
            outcomes: [0; Outcome::ALL.len()],
            status_codes: Vec::new(),
            bytes: 0,
            samples: Vec::new(),
            late_sends: 0,
            max_lag_us: 0,
            by_header: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0 && self.late_sends == 0 && self.max_lag_us == 0
    }

    /// Adds `o`'s counters (its samples are recorded by the caller).
    fn merge(&mut self, o: &IntervalPart) {
        self.requests += o.requests;
        self.good += o.good;
        self.bad += o.bad;
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes) {
            *a += b;
        }
        for (code, n) in &o.status_codes {
            bump(&mut self.status_codes, *code, *n);
        }
        self.bytes += o.bytes;
        self.late_sends += o.late_sends;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        for (k, v) in &o.by_header {
            *self.by_header.entry(k.clone()).or_default() += v;
        }
    }
}

/// Marks a sample's latency as a bad response's; latencies are clamped below it
/// (2^31 µs is 35 minutes, far past any timeout).
const BAD_BIT: u32 = 1 << 31;

/// Samples a worker buffers before handing them over (8 bytes each).
const SAMPLES: usize = 512;

/// An interval (or the whole run) on the aggregator's side: counters and histograms.
#[derive(Debug)]
pub(crate) struct Acc {
    pub counts: IntervalPart,
    /// Every response's latency, good or bad.
    pub latency: Histogram<u64>,
    /// Bad responses' latency only (a fast 503 is not a fast success).
    pub bad_latency: Histogram<u64>,
    pub service: Histogram<u64>,
}

impl Acc {
    fn new(index: u64) -> Self {
        Self {
            counts: IntervalPart::new(index),
            latency: histogram(),
            bad_latency: histogram(),
            service: histogram(),
        }
    }

    fn add(&mut self, part: &IntervalPart) {
        self.counts.merge(part);
        for [l, s] in &part.samples {
            let us = u64::from(*l & !BAD_BIT);
            record_us(&mut self.latency, us);
            if *l & BAD_BIT != 0 {
                record_us(&mut self.bad_latency, us);
            }
            record_us(&mut self.service, u64::from(*s));
        }
    }

    /// Good responses' latency: every response's minus the bad ones'.
    pub fn good_latency(&self) -> Histogram<u64> {
        let mut good = self.latency.clone();
        // Every bad value was also recorded in `latency`, so this cannot underflow.
        let _ = good.subtract(&self.bad_latency);
        good
    }
}

fn bump(codes: &mut Vec<(u16, u64)>, code: u16, n: u64) {
    match codes.iter_mut().find(|(c, _)| *c == code) {
        Some((_, c)) => *c += n,
        None => codes.push((code, n)),
    }
}

/// Sums over the whole run that do not need a timeline: pacer lag and the
/// phase timings of hey's "Details" section.
#[derive(Debug)]
pub(crate) struct WorkerTotals {
    pub lag: Histogram<u64>,
    pub phases: Phases,
}

/// Sum/min/max of each request phase (µs), over requests that got a response.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Phases {
    pub count: u64,
    pub connect: PhaseStat,
    pub write: PhaseStat,
    pub wait: PhaseStat,
    pub read: PhaseStat,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PhaseStat {
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
}

impl PhaseStat {
    fn add(&mut self, us: u64, first: bool) {
        self.sum_us += us;
        self.min_us = if first { us } else { self.min_us.min(us) };
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, o: &PhaseStat, first: bool) {
        self.sum_us += o.sum_us;
        self.min_us = if first {
            o.min_us
        } else {
            self.min_us.min(o.min_us)
        };
        self.max_us = self.max_us.max(o.max_us);
    }
}

impl Phases {
    pub(crate) fn add(&mut self, connect: u64, write: u64, wait: u64, read: u64) {
        let first = self.count == 0;
        self.count += 1;
        self.connect.add(connect, first);
        self.write.add(write, first);
        self.wait.add(wait, first);
        self.read.add(read, first);
    }

    /// Adds another run's (or shard's) phases: sums add, extremes take the extreme.
    pub fn merge(&mut self, o: &Phases) {
        if o.count == 0 {
            return;
        }
        let first = self.count == 0;
        self.count += o.count;
        self.connect.merge(&o.connect, first);
        self.write.merge(&o.write, first);
        self.wait.merge(&o.wait, first);
        self.read.merge(&o.read, first);
    }
}

pub(crate) enum Message {
    Part(IntervalPart),
    Done(WorkerTotals),
}

/// What one finished request contributes.
pub(crate) struct Sample<'a> {
    pub outcome: Outcome,
    pub status: u16,
    pub latency_us: u64,
    pub service_us: u64,
    pub bytes: u64,
    pub tracked: Option<&'a str>,
}

/// A worker's recorder.
pub(crate) struct Recorder {
    part: IntervalPart,
    totals: WorkerTotals,
    policy: BadPolicy,
    tx: mpsc::UnboundedSender<Message>,
}

impl Recorder {
    pub fn new(policy: BadPolicy, tx: mpsc::UnboundedSender<Message>) -> Self {
        Self {
            part: Self::fresh(0),
            totals: WorkerTotals {
                lag: histogram(),
                phases: Phases::default(),
            },
            policy,
            tx,
        }
    }

    /// Moves to interval `index`, handing over the current part if it has data.
    #[inline]
    pub fn roll(&mut self, index: u64) {
        if index != self.part.index {
            self.flush(index);
        }
    }

    /// How many samples a fresh part buffers.
    fn fresh(index: u64) -> IntervalPart {
        let mut p = IntervalPart::new(index);
        p.samples.reserve_exact(SAMPLES);
        p
    }

    fn flush(&mut self, next: u64) {
        let part = std::mem::replace(&mut self.part, Self::fresh(next));
        if !part.is_empty() {
            // The aggregator outlives every worker; a send error means it is gone
            // because the run is being torn down, and the data has nowhere to go.
            let _ = self.tx.send(Message::Part(part));
        }
    }

    pub fn send_lag(&mut self, lag_us: u64, late: bool) {
        record_us(&mut self.totals.lag, lag_us);
        if late {
            self.part.late_sends += 1;
        }
        self.part.max_lag_us = self.part.max_lag_us.max(lag_us);
    }

    pub fn phases(&mut self, connect: u64, write: u64, wait: u64, read: u64) {
        self.totals.phases.add(connect, write, wait, read);
    }

    pub fn record(&mut self, s: &Sample<'_>) {
        let p = &mut self.part;
        p.requests += 1;
        p.outcomes[s.outcome.index()] += 1;
        let bad = is_bad(&self.policy, s.outcome, s.status);
        if bad {
            p.bad += 1;
        } else {
            p.good += 1;
        }
        if s.outcome.is_response() || s.status != 0 {
            bump(&mut p.status_codes, s.status, 1);
            p.bytes += s.bytes;
            let clamp = |us: u64| us.min(u64::from(BAD_BIT - 1)) as u32;
            let flag = if bad { BAD_BIT } else { 0 };
            p.samples
                .push([clamp(s.latency_us) | flag, clamp(s.service_us)]);
            if let Some(v) = s.tracked {
                match p.by_header.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        p.by_header.insert(v.to_string(), 1);
                    }
                }
            }
            if p.samples.len() >= SAMPLES {
                let index = p.index;
                self.flush(index);
            }
        }
    }

    /// Hands over everything; the worker is done.
    pub fn finish(mut self) {
        self.flush(u64::MAX);
        let totals = std::mem::replace(
            &mut self.totals,
            WorkerTotals {
                lag: histogram(),
                phases: Phases::default(),
            },
        );
        let _ = self.tx.send(Message::Done(totals));
    }
}

/// Merges parts into intervals and totals. Intervals are encoded (and their
/// histograms dropped) shortly after they end; a part arriving later still merges
/// exactly (decode, add, re-encode), so closing early costs only time, not accuracy.
pub(crate) struct Aggregator {
    interval: Duration,
    open: BTreeMap<u64, Acc>,
    closed: BTreeMap<u64, Interval>,
    pub total: Acc,
    pub lag: Histogram<u64>,
    pub phases: Phases,
    pub status_codes: BTreeMap<u16, u64>,
    pub by_header: BTreeMap<String, u64>,
}

impl Aggregator {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            total: Acc::new(0),
            lag: histogram(),
            phases: Phases::default(),
            status_codes: BTreeMap::new(),
            by_header: BTreeMap::new(),
        }
    }

    pub fn take(&mut self, m: Message) {
        match m {
            Message::Part(part) => {
                self.total_add(&part);
                if let Some(done) = self.closed.remove(&part.index) {
                    let mut acc = reopen(&done, part.index);
                    acc.add(&part);
                    let mut iv = self.encode(&acc);
                    iv.scheduled = done.scheduled;
                    self.closed.insert(part.index, iv);
                } else {
                    self.open
                        .entry(part.index)
                        .or_insert_with(|| Acc::new(part.index))
                        .add(&part);
                }
            }
            Message::Done(t) => {
                self.lag.add(&t.lag).expect("auto-resizing histogram");
                self.phases.merge(&t.phases);
            }
        }
    }

    fn total_add(&mut self, part: &IntervalPart) {
        for (code, n) in &part.status_codes {
            *self.status_codes.entry(*code).or_default() += n;
        }
        for (k, v) in &part.by_header {
            *self.by_header.entry(k.clone()).or_default() += v;
        }
        self.total.add(part);
    }

    /// Encodes every open interval before `safe_before` (an index).
    pub fn close_before(&mut self, safe_before: u64) {
        while let Some((&idx, _)) = self.open.first_key_value() {
            if idx >= safe_before {
                break;
            }
            let acc = self.open.remove(&idx).expect("present");
            let iv = self.encode(&acc);
            self.closed.insert(idx, iv);
        }
    }

    /// The interval at `index` as far as it has arrived (for progress):
    /// (requests, bad, p99 µs).
    pub fn peek(&self, index: u64) -> Option<(u64, u64, u64)> {
        match self.open.get(&index) {
            Some(a) => Some((
                a.counts.requests,
                a.counts.bad,
                a.latency.value_at_quantile(0.99),
            )),
            None => self.closed.get(&index).map(|iv| {
                (
                    iv.requests,
                    iv.bad,
                    iv.latency.percentile("p99").unwrap_or(0),
                )
            }),
        }
    }

    fn encode(&self, acc: &Acc) -> Interval {
        let w = self.interval.as_secs_f64();
        let c = &acc.counts;
        let mut status_codes: BTreeMap<u16, u64> = c.status_codes.iter().copied().collect();
        status_codes.retain(|_, n| *n > 0);
        Interval {
            start_s: c.index as f64 * w,
            duration_s: w,
            requests: c.requests,
            good: c.good,
            bad: c.bad,
            outcomes: outcome_map(&c.outcomes),
            latency: LatencySummary::from_histogram(&acc.latency),
            scheduled: 0,
            late_sends: c.late_sends,
            max_lag_us: c.max_lag_us,
            histogram: encode_histogram(&acc.latency),
            service_histogram: encode_histogram(&acc.service),
            bad_histogram: if acc.bad_latency.is_empty() {
                String::new()
            } else {
                encode_histogram(&acc.bad_latency)
            },
            status_codes,
            by_header: c.by_header.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }

    /// The whole timeline from interval 0 to `last` (inclusive), gaps filled with
    /// empty intervals so charts have one point per bucket; and the totals.
    pub fn timeline(mut self, last: Option<u64>) -> (Vec<Interval>, Acc, Self) {
        self.close_before(u64::MAX);
        let seen = self.closed.last_key_value().map(|(k, _)| *k);
        let mut out = Vec::new();
        if let Some(last) = last.max(seen) {
            for idx in 0..=last {
                match self.closed.remove(&idx) {
                    Some(iv) => out.push(iv),
                    None => out.push(self.encode(&Acc::new(idx))),
                }
            }
        }
        let total = std::mem::replace(&mut self.total, Acc::new(0));
        (out, total, self)
    }
}

/// An encoded interval back as an accumulator, to merge a straggling part exactly.
fn reopen(done: &Interval, index: u64) -> Acc {
    let mut acc = Acc::new(index);
    if let (Ok(mut l), Ok(mut s)) = (
        decode_histogram(&done.histogram),
        decode_histogram(&done.service_histogram),
    ) {
        l.auto(true);
        s.auto(true);
        acc.latency = l;
        acc.service = s;
    }
    if !done.bad_histogram.is_empty() {
        if let Ok(mut b) = decode_histogram(&done.bad_histogram) {
            b.auto(true);
            acc.bad_latency = b;
        }
    }
    let c = &mut acc.counts;
    c.status_codes = done.status_codes.iter().map(|(k, v)| (*k, *v)).collect();
    c.by_header = done
        .by_header
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    c.requests = done.requests;
    c.good = done.good;
    c.bad = done.bad;
    for (name, n) in &done.outcomes {
        if let Some(o) = Outcome::from_name(name) {
            c.outcomes[o.index()] = *n;
        }
    }
    c.late_sends = done.late_sends;
    c.max_lag_us = done.max_lag_us;
    acc
}

pub(crate) fn outcome_map(counts: &[u64; Outcome::ALL.len()]) -> BTreeMap<String, u64> {
    Outcome::ALL
        .iter()
        .map(|o| (o.name().to_string(), counts[o.index()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Outcome, status: u16, us: u64) -> Sample<'static> {
        Sample {
            outcome,
            status,
            latency_us: us,
            service_us: us,
            bytes: 10,
            tracked: None,
        }
    }

    #[test]
    fn bad_policy() {
        let p = BadPolicy::default();
        assert!(is_bad(&p, Outcome::Status5xx, 503));
        assert!(!is_bad(&p, Outcome::Status4xx, 429));
        assert!(is_bad(&p, Outcome::Reset, 0));
        let strict = BadPolicy {
            status_5xx: false,
            status_429: true,
            status_4xx: false,
        };
        assert!(is_bad(&strict, Outcome::Status4xx, 429));
        assert!(!is_bad(&strict, Outcome::Status4xx, 404));
        assert!(!is_bad(&strict, Outcome::Status5xx, 500));
    }

    #[test]
    fn parts_from_many_workers_merge_into_intervals_and_totals() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut workers: Vec<Recorder> = (0..3)
            .map(|_| Recorder::new(BadPolicy::default(), tx.clone()))
            .collect();
        for (w, r) in workers.iter_mut().enumerate() {
            for i in 0..30u64 {
                r.roll(i / 10);
                let outcome = if i % 10 == 0 {
                    Outcome::Status5xx
                } else {
                    Outcome::Status2xx
                };
                let status = if outcome == Outcome::Status5xx {
                    500
                } else {
                    200
                };
                r.record(&sample(outcome, status, 100 * (w as u64 + 1) + i));
            }
        }
        for r in workers {
            r.finish();
        }
        drop(tx);
        let mut agg = Aggregator::new(Duration::from_secs(1));
        while let Ok(m) = rx.try_recv() {
            agg.take(m);
        }
        let (timeline, total, agg) = agg.timeline(None);
        assert_eq!(timeline.len(), 3);
        assert_eq!(total.counts.requests, 90);
        assert_eq!(total.counts.bad, 9);
        assert_eq!(agg.status_codes[&500], 9);
        assert_eq!(agg.status_codes[&200], 81);
        let mut merged = histogram();
        for iv in &timeline {
            assert_eq!(iv.requests, 30);
            assert_eq!(iv.outcomes["5xx"], 3);
            merged
                .add(decode_histogram(&iv.histogram).unwrap())
                .unwrap();
        }
        let a: Vec<_> = merged
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let b: Vec<_> = total
            .latency
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn a_part_arriving_after_its_interval_closed_still_merges_exactly() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut early = Recorder::new(BadPolicy::default(), tx.clone());
        let mut late = Recorder::new(BadPolicy::default(), tx.clone());
        for us in [100, 200, 300] {
            early.record(&sample(Outcome::Status2xx, 200, us));
            late.record(&sample(Outcome::Reset, 0, us));
        }
        late.record(&sample(Outcome::Status2xx, 200, 90_000));
        early.finish();
        let mut agg = Aggregator::new(Duration::from_secs(1));
        while let Ok(m) = rx.try_recv() {
            agg.take(m);
        }
        agg.close_before(1);
        late.finish();
        drop(tx);
        while let Ok(m) = rx.try_recv() {
            agg.take(m);
        }
        let (timeline, total, _) = agg.timeline(None);
        assert_eq!(timeline.len(), 1);
        let iv = &timeline[0];
        assert_eq!((iv.requests, iv.good, iv.bad), (7, 4, 3));
        assert_eq!(iv.outcomes["reset"], 3);
        let h = decode_histogram(&iv.histogram).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(h.max(), total.latency.max());
        assert_eq!(iv.latency.count, 4);
    }

    #[test]
    fn intervals_split_latency_by_outcome_and_count_codes_and_headers() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut r = Recorder::new(BadPolicy::default(), tx);
        for i in 0..10u64 {
            r.roll(i / 5);
            let mut s = if i % 5 == 0 {
                sample(Outcome::Status5xx, 503, 7)
            } else {
                sample(Outcome::Status2xx, 200, 40_000)
            };
            s.tracked = Some(if i < 5 { "api-1" } else { "api-2" });
            r.record(&s);
        }
        r.finish();
        let mut agg = Aggregator::new(Duration::from_secs(1));
        while let Ok(m) = rx.try_recv() {
            agg.take(m);
        }
        let (timeline, total, _) = agg.timeline(None);
        assert_eq!(timeline.len(), 2);
        for (n, iv) in timeline.iter().enumerate() {
            assert_eq!(iv.status_codes[&503], 1);
            assert_eq!(iv.status_codes[&200], 4);
            let who = if n == 0 { "api-1" } else { "api-2" };
            assert_eq!(iv.by_header.get(who), Some(&5));
            let good = iv
                .latency_histogram(crate::results::LatencyOf::Good)
                .unwrap();
            let bad = iv
                .latency_histogram(crate::results::LatencyOf::Bad)
                .unwrap();
            assert_eq!((good.len(), bad.len()), (4, 1));
            assert!(
                good.min() >= 39_000,
                "fast 503s are not in the good latency"
            );
            assert_eq!(bad.max(), 7);
        }
        assert_eq!(total.good_latency().len(), 8);
        assert_eq!(total.bad_latency.len(), 2);
    }

    #[test]
    fn a_full_sample_buffer_is_handed_over_within_the_interval() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut r = Recorder::new(BadPolicy::default(), tx);
        for i in 0..(SAMPLES as u64 * 2 + 3) {
            r.record(&sample(Outcome::Status2xx, 200, i + 1));
        }
        let mut parts = 0;
        while let Ok(Message::Part(p)) = rx.try_recv() {
            assert_eq!(p.samples.len(), SAMPLES);
            parts += 1;
        }
        assert_eq!(parts, 2);
    }
}
