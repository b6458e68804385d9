//! Merging the shards of one distributed run (`slolab merge`) into one results
//! file, exactly: HDR histograms add interval by interval (`--start-at` aligns
//! the shards' timelines), so report, compare and the SLO analysis read the
//! merged file as if one machine had run the whole plan.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use loadgen::results::{
    decode_histogram, encode_histogram, new_histogram, Host, Interval, LatencySummary, PacerStats,
    ResultsError, Totals,
};
use loadgen::{MergedShard, MergedShards, Phases, Results};
use serde::Deserialize as _;

use crate::compare::compat::leaf_differences;
use crate::record::ExperimentSection;
use crate::slo::{self, SloAnalysis, SloError, SloSpec};

/// Why shards cannot be merged at all. A missing or interrupted shard is not
/// one of them: that run is merged and marked INCOMPLETE ([`Merged::incomplete`]).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: give the results files (or directories) of the shards")]
    Empty,
    #[error(
        "{file} is not a shard's results file (it has no `shard` record): run each shard \
         with --shard I/N (or --shards N) and --start-at"
    )]
    NotAShard { file: String },
    #[error("{file} says it is shard {index} of {count}: the index must be below the count")]
    BadIndex {
        file: String,
        index: u32,
        count: u32,
    },
    #[error("shard {index} is given twice: {first} and {second}")]
    Duplicate {
        index: u32,
        first: String,
        second: String,
    },
    #[error(
        "{file} is not a shard of the same run as {base}: {}",
        .differences.join("; ")
    )]
    OtherRun {
        base: String,
        file: String,
        differences: Vec<String>,
    },
    #[error("{file}: {source}")]
    Histogram { file: String, source: ResultsError },
    #[error("{file}: its `{what}` section does not read: {source}")]
    Section {
        file: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the SLO analysis of the merged run: {0}")]
    Slo(#[from] SloError),
}

/// One shard's results and the file they came from (for messages).
#[derive(Debug, Clone)]
pub struct ShardFile {
    pub file: String,
    pub results: Results,
}

/// The merged run.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Marked `run.interrupted` and `shards.incomplete` when incomplete.
    pub results: Results,
    /// Why the run is INCOMPLETE (shards missing or interrupted), when it is.
    pub incomplete: Option<String>,
    /// The SLO analysis recomputed on the merged data, when the shards carry an
    /// experiment whose profile has an `[slo]` table.
    pub analysis: Option<SloAnalysis>,
}

/// Checks that `shards` are shards of one run and adds them up.
pub fn merge(mut shards: Vec<ShardFile>) -> Result<Merged, MergeError> {
    if shards.is_empty() {
        return Err(MergeError::Empty);
    }
    for s in &shards {
        let Some(record) = &s.results.shard else {
            return Err(MergeError::NotAShard {
                file: s.file.clone(),
            });
        };
        if record.index >= record.count {
            return Err(MergeError::BadIndex {
                file: s.file.clone(),
                index: record.index,
                count: record.count,
            });
        }
    }
    shards.sort_by_key(|s| shard_of(s).index);
    for pair in shards.windows(2) {
        if shard_of(&pair[0]).index == shard_of(&pair[1]).index {
            return Err(MergeError::Duplicate {
                index: shard_of(&pair[0]).index,
                first: pair[0].file.clone(),
                second: pair[1].file.clone(),
            });
        }
    }
    let base = &shards[0];
    let base_id = identity(base)?;
    for other in &shards[1..] {
        let differences = leaf_differences("", &base_id, &identity(other)?);
        if !differences.is_empty() {
            return Err(MergeError::OtherRun {
                base: base.file.clone(),
                file: other.file.clone(),
                differences,
            });
        }
    }

    let count = shard_of(base).count;
    let present: BTreeSet<u32> = shards.iter().map(|s| shard_of(s).index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| !present.contains(i))
        .map(|i| i.to_string())
        .collect();
    let cut: Vec<String> = shards
        .iter()
        .filter(|s| s.results.run.interrupted)
        .map(|s| shard_of(s).index.to_string())
        .collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!(
            "shard{} {} of {count} missing",
            plural(missing.len()),
            missing.join(", ")
        ));
    }
    if !cut.is_empty() {
        why.push(format!(
            "shard{} {} interrupted",
            plural(cut.len()),
            cut.join(", ")
        ));
    }
    let incomplete = (!why.is_empty()).then(|| why.join("; "));

    let mut results = add_up(&shards)?;
    results.run.interrupted = incomplete.is_some();
    results.shard = None;
    results.shards = Some(MergedShards {
        count,
        start_at: shard_of(base).start_at.clone(),
        merged: shards
            .iter()
            .map(|s| MergedShard {
                shard: shard_of(s).clone(),
                host: s.results.run.host.clone(),
                interrupted: s.results.run.interrupted,
                file: s.file.clone(),
            })
            .collect(),
        incomplete: incomplete.clone(),
    });

    let section = ExperimentSection::of(&base.results).map_err(|source| MergeError::Section {
        file: base.file.clone(),
        what: crate::record::SECTION_KEY,
        source,
    })?;
    let mut analysis = None;
    if let Some(mut section) = section {
        section.interrupted = results.run.interrupted;
        let spec = match section.profile.get("slo") {
            Some(v) if !v.is_null() => {
                Some(
                    SloSpec::deserialize(v).map_err(|source| MergeError::Section {
                        file: base.file.clone(),
                        what: "experiment.profile.slo",
                        source,
                    })?,
                )
            }
            _ => None,
        };
        if let Some(spec) = spec {
            let a = slo::analyze(&results, &spec, &section.stages, &section.faults)?;
            section.slo = serde_json::to_value(&a).expect("an analysis serialises");
            analysis = Some(a);
        }
        section.store(&mut results).expect("a section serialises");
    }
    Ok(Merged {
        results,
        incomplete,
        analysis,
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn shard_of(s: &ShardFile) -> &loadgen::ShardRecord {
    s.results.shard.as_ref().expect("checked to be a shard")
}

/// What must be equal for files to be shards of one run, as one JSON value
/// whose leaf paths name the results file's fields: the plan (but for which
/// shard ran it), the shard count and start, and the experiment's profile.
fn identity(s: &ShardFile) -> Result<serde_json::Value, MergeError> {
    let mut plan = s.results.plan.clone();
    plan.shard = None;
    let record = shard_of(s);
    let section = ExperimentSection::of(&s.results).map_err(|source| MergeError::Section {
        file: s.file.clone(),
        what: crate::record::SECTION_KEY,
        source,
    })?;
    let mut id = serde_json::json!({
        "plan": plan,
        "shard": { "count": record.count, "start_at": record.start_at },
    });
    if let Some(e) = section {
        id["experiment"] = serde_json::json!({
            "name": e.name,
            "seed": e.seed,
            "profile": e.profile,
        });
    }
    Ok(id)
}

/// The three histograms a bucket or a run keeps: latency, service time and
/// the bad responses' latency.
struct Hists {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    bad: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            bad: new_histogram(),
        }
    }

    fn add(&mut self, latency: &str, service: &str, bad: &str) -> Result<(), ResultsError> {
        let add = |into: &mut Histogram<u64>, encoded: &str| -> Result<(), ResultsError> {
            if encoded.is_empty() {
                return Ok(());
            }
            into.add(decode_histogram(encoded)?)
                .map_err(|e| ResultsError::Histogram(format!("{e:?}")))
        };
        add(&mut self.latency, latency)?;
        add(&mut self.service, service)?;
        add(&mut self.bad, bad)
    }

    fn encoded_bad(&self) -> String {
        if self.bad.is_empty() {
            String::new()
        } else {
            encode_histogram(&self.bad)
        }
    }

    fn good(&self) -> Histogram<u64> {
        let mut good = self.latency.clone();
        // The bad responses are a subset of all: subtracting cannot underflow.
        let _ = good.subtract(&self.bad);
        good
    }
}

fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Adds the shards' measurements; the first shard gives everything else.
fn add_up(shards: &[ShardFile]) -> Result<Results, MergeError> {
    let base = &shards[0].results;
    let width = base.plan.interval.as_secs_f64();
    let mut buckets: BTreeMap<u64, (Interval, Hists)> = BTreeMap::new();
    let mut total = Hists::new();
    let mut totals = Totals::default();
    let mut phases: Option<Phases> = None;
    let mut pacer: Option<PacerStats> = None;
    for s in shards {
        let r = &s.results;
        let bad_file = |source| MergeError::Histogram {
            file: s.file.clone(),
            source,
        };
        for iv in &r.timeline {
            // Every shard's t = 0 is the agreed start, so bucket k of each
            // covers the same wall-clock interval.
            let k = (iv.start_s / width).round() as u64;
            let (into, h) = buckets.entry(k).or_insert_with(|| {
                (
                    Interval {
                        start_s: k as f64 * width,
                        duration_s: iv.duration_s,
                        ..Default::default()
                    },
                    Hists::new(),
                )
            });
            into.requests += iv.requests;
            into.good += iv.good;
            into.bad += iv.bad;
            into.scheduled += iv.scheduled;
            into.late_sends += iv.late_sends;
            into.max_lag_us = into.max_lag_us.max(iv.max_lag_us);
            add_map(&mut into.outcomes, &iv.outcomes);
            add_map(&mut into.status_codes, &iv.status_codes);
            add_map(&mut into.by_header, &iv.by_header);
            h.add(&iv.histogram, &iv.service_histogram, &iv.bad_histogram)
                .map_err(bad_file)?;
        }
        total
            .add(&r.histogram, &r.service_histogram, &r.bad_histogram)
            .map_err(bad_file)?;
        let t = &r.totals;
        totals.requests += t.requests;
        totals.good += t.good;
        totals.bad += t.bad;
        totals.bytes_received += t.bytes_received;
        add_map(&mut totals.outcomes, &t.outcomes);
        add_map(&mut totals.status_codes, &t.status_codes);
        add_map(&mut totals.by_header, &t.by_header);
        if let Some(p) = &r.pacer {
            let m = pacer.get_or_insert_with(|| PacerStats {
                late_threshold_us: p.late_threshold_us,
                ..Default::default()
            });
            m.scheduled += p.scheduled;
            m.sent += p.sent;
            m.late_sends += p.late_sends;
            m.max_lag_us = m.max_lag_us.max(p.max_lag_us);
            // The files keep no lag histogram: the worst shard's p99 bounds
            // the run's from above.
            m.p99_lag_us = m.p99_lag_us.max(p.p99_lag_us);
        }
        if let Some(v) = r.extra.get("phases") {
            let p = Phases::deserialize(v).map_err(|source| MergeError::Section {
                file: s.file.clone(),
                what: "phases",
                source,
            })?;
            phases.get_or_insert_with(Phases::default).merge(&p);
        }
    }
    if let Some(p) = &mut pacer {
        p.fell_behind = PacerStats::fell_behind_rule(p.scheduled, p.sent, p.late_sends);
    }
    // Contiguous from 0, as a single run's timeline is.
    let last = buckets.keys().next_back().copied();
    let timeline: Vec<Interval> = match last {
        None => Vec::new(),
        Some(last) => (0..=last)
            .map(|k| {
                let (mut iv, h) = buckets.remove(&k).unwrap_or_else(|| {
                    (
                        Interval {
                            start_s: k as f64 * width,
                            duration_s: width,
                            ..Default::default()
                        },
                        Hists::new(),
                    )
                });
                iv.latency = LatencySummary::from_histogram(&h.latency);
                iv.histogram = encode_histogram(&h.latency);
                iv.service_histogram = encode_histogram(&h.service);
                iv.bad_histogram = h.encoded_bad();
                iv
            })
            .collect(),
    };

    let duration_s = shards
        .iter()
        .map(|s| s.results.run.duration_s)
        .fold(0.0, f64::max);
    totals.derive_rates(duration_s);
    totals.latency = LatencySummary::from_histogram(&total.latency);
    totals.latency_good = LatencySummary::from_histogram(&total.good());
    totals.latency_bad = LatencySummary::from_histogram(&total.bad);
    totals.service_time = LatencySummary::from_histogram(&total.service);

    let unique = |f: &dyn Fn(&Results) -> String| -> String {
        let mut seen: Vec<String> = Vec::new();
        for s in shards {
            let v = f(&s.results);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(",")
    };
    let mut out = base.clone();
    out.run.started_at = shards
        .iter()
        .map(|s| s.results.run.started_at.clone())
        .min()
        .unwrap_or_default();
    out.run.finished_at = shards
        .iter()
        .map(|s| s.results.run.finished_at.clone())
        .max()
        .unwrap_or_default();
    out.run.duration_s = duration_s;
    out.run.host = Host {
        hostname: unique(&|r| r.run.host.hostname.clone()),
        os: base.run.host.os.clone(),
        arch: base.run.host.arch.clone(),
        cpus: shards.iter().map(|s| s.results.run.host.cpus).sum(),
    };
    let io = unique(&|r| r.run.io.clone().unwrap_or_default());
    out.run.io = (!io.is_empty()).then_some(io);
    out.plan.shard = None;
    out.totals = totals;
    out.pacer = pacer;
    out.timeline = timeline;
    out.histogram = encode_histogram(&total.latency);
    out.service_histogram = encode_histogram(&total.service);
    out.bad_histogram = total.encoded_bad();
    if let Some(p) = phases {
        out.extra.insert(
            "phases".into(),
            serde_json::to_value(&p).expect("phases serialise"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fixture::{results, Spec};
    use loadgen::ShardRecord;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const START: &str = "2026-12-05T04:00:00.000Z";

    fn shard(index: u32, count: u32, intervals: &[Spec]) -> ShardFile {
        let mut r = results(intervals);
        r.shard = Some(ShardRecord {
            index,
            count,
            start_at: START.into(),
            clock: None,
        });
        r.plan.shard = Some(loadgen::Shard { index, count });
        r.run.host.hostname = format!("gen-{index}");
        ShardFile {
            file: format!("shard-{index}/results.json"),
            results: r,
        }
    }

    fn random_intervals(rng: &mut ChaCha8Rng) -> Vec<Spec> {
        (0..rng.gen_range(1..6))
            .map(|_| Spec {
                latencies_us: (0..rng.gen_range(0..400))
                    // Heavy-tailed over six decades, as latencies are.
                    .map(|_| 10f64.powf(rng.gen_range(1.0..7.0)) as u64)
                    .collect(),
                bad: rng.gen_range(0..3),
            })
            .collect()
    }

    fn pooled(all: &[&[Spec]], interval: Option<usize>) -> Histogram<u64> {
        let mut h = new_histogram();
        for specs in all {
            for (i, s) in specs.iter().enumerate() {
                if interval.is_none() || interval == Some(i) {
                    s.latencies_us.iter().for_each(|v| h.record(*v).unwrap());
                }
            }
        }
        h
    }

    #[test]
    fn merged_percentiles_are_those_of_the_pooled_samples() {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        for round in 0..25 {
            let count = rng.gen_range(1..5);
            let specs: Vec<Vec<Spec>> = (0..count).map(|_| random_intervals(&mut rng)).collect();
            // Given in any order.
            let mut files: Vec<ShardFile> = specs
                .iter()
                .enumerate()
                .map(|(i, s)| shard(i as u32, count, s))
                .collect();
            files.reverse();
            let merged = merge(files).unwrap();
            assert_eq!(merged.incomplete, None, "round {round}");
            let r = &merged.results;
            let all: Vec<&[Spec]> = specs.iter().map(|s| s.as_slice()).collect();
            let want = pooled(&all, None);
            assert_eq!(r.total_histogram().unwrap(), want, "round {round}");
            assert_eq!(r.totals.latency, LatencySummary::from_histogram(&want));
            let requests: u64 = specs
                .iter()
                .flatten()
                .map(|s| s.latencies_us.len() as u64 + s.bad)
                .sum();
            assert_eq!(r.totals.requests, requests);
            let longest = specs.iter().map(Vec::len).max().unwrap();
            assert_eq!(r.timeline.len(), longest);
            for (k, iv) in r.timeline.iter().enumerate() {
                let want = pooled(&all, Some(k));
                assert_eq!(iv.latency, LatencySummary::from_histogram(&want), "{k}");
                assert_eq!(decode_histogram(&iv.histogram).unwrap(), want);
                assert_eq!(iv.start_s, k as f64);
            }
            let shards = r.shards.as_ref().unwrap();
            assert_eq!(shards.merged.len(), count as usize);
            assert!(r.shard.is_none() && r.plan.shard.is_none());
            assert!(!r.run.interrupted);
        }
    }

    #[test]
    fn shards_of_different_runs_are_refused_naming_the_field() {
        let a = shard(0, 2, &[]);
        let mut b = shard(1, 2, &[]);
        b.results.plan.connections = 20;
        let err = merge(vec![a.clone(), b]).unwrap_err().to_string();
        assert!(err.contains("plan.connections: 10 → 20"), "{err}");
        assert!(err.contains("shard-1/results.json"), "{err}");

        let mut c = shard(1, 2, &[]);
        c.results.shard.as_mut().unwrap().start_at = "2026-12-05T04:01:00.000Z".into();
        let err = merge(vec![a.clone(), c]).unwrap_err().to_string();
        assert!(err.contains("shard.start_at"), "{err}");

        let d = shard(1, 3, &[]);
        let err = merge(vec![a.clone(), d]).unwrap_err().to_string();
        assert!(err.contains("shard.count: 2 → 3"), "{err}");

        let mut plain = shard(1, 2, &[]);
        plain.results.shard = None;
        let err = merge(vec![a, plain]).unwrap_err();
        assert!(matches!(err, MergeError::NotAShard { .. }), "{err}");
    }

    #[test]
    fn a_duplicate_index_is_refused_and_a_missing_one_is_incomplete() {
        let one = [Spec {
            latencies_us: vec![100, 200],
            bad: 0,
        }];
        let err = merge(vec![shard(1, 3, &one), shard(1, 3, &one)]).unwrap_err();
        assert!(
            err.to_string().starts_with("shard 1 is given twice"),
            "{err}"
        );

        let merged = merge(vec![shard(0, 3, &one), shard(2, 3, &one)]).unwrap();
        assert_eq!(merged.incomplete.as_deref(), Some("shard 1 of 3 missing"));
        assert!(merged.results.run.interrupted);
        let shards = merged.results.shards.as_ref().unwrap();
        assert_eq!(shards.incomplete, merged.incomplete);
        assert_eq!(merged.results.totals.requests, 4);

        let mut cut = shard(1, 2, &one);
        cut.results.run.interrupted = true;
        let merged = merge(vec![shard(0, 2, &one), cut]).unwrap();
        assert_eq!(merged.incomplete.as_deref(), Some("shard 1 interrupted"));
    }
}
