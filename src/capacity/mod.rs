//! `slolab capacity PROFILE`: the highest open-model rate at which the profile's
//! SLOs still hold, on its stack (at one or several instance counts) or its URL.
//! The search, the judgement and the fit live in `verdict::capacity`; this runs
//! the probes — start the target, hold each rate, stop everything even on Ctrl-C —
//! and writes `capacity.json` with its reports.
//!
//! - `setup`: flags over `[capacity]` over defaults, resolved once;
//! - `probe`: one search on its target (started once, or afresh per probe).

mod probe;
mod setup;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use verdict::capacity::{
    self, CapacityRecord, GeneratorRate, Outcome, Projection, SearchRecord, UslFit,
};

use self::probe::{search_one, Subject};
use self::setup::Setup;
use crate::run::execute::{unique_dir, Interrupt};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each probe holds one open-model rate: a warm-up, then a judged window. It passes only if \
the achieved rate is at least 97 % of the offered one, every [slo] objective is met \
(latency from the scheduled send; [[slo.stage]] targets fold in, the strictest wins) and \
neither p99 nor the backlog rises across the window. The search grows the rate until a \
probe fails, bisects to the resolution, then confirms the last pass on a longer plateau. \
When the generator cannot keep its schedule while the target keeps up, the answer is \
\"at least X, generator-bound\". Faults are injected only with --with-chaos.

Each setting may also be set in the profile's [capacity] table (start-rate, max-rate, \
growth, resolution, warmup, window, confirm, cooldown, instances); flags win.

Writes OUT/<profile>/capacity-<utc-time>-<commit>/ with capacity.json, report.md and \
report.html.

Exit codes: 0 a capacity was found (or a lower bound: generator-bound, every rate up to \
--max-rate passed), 1 bad input or slolab failed, 3 even the start rate fails the SLOs, \
130 interrupted (the probes so far are written).")]
pub struct CapacityArgs {
    /// The experiment profile (TOML): its target, request mix and [slo].
    pub profile: PathBuf,
    /// Override a profile field: `--set stack.cache=redis` (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Seed for the request mix (default: the profile's, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the search's directory is written.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// First rate probed, req/s (`500`, `2k`); default: the profile's first stage rate.
    #[arg(long, value_parser = rate)]
    pub start_rate: Option<f64>,
    /// Never offer more than this, req/s (default 1M).
    #[arg(long, value_parser = rate)]
    pub max_rate: Option<f64>,
    /// Factor between rates while growing (default 2).
    #[arg(long)]
    pub growth: Option<f64>,
    /// Stop bisecting when the interval is this narrow: `5%` or `0.05` (default 5 %).
    #[arg(long, value_parser = fraction)]
    pub resolution: Option<f64>,
    /// Unjudged load before each window (default 2s).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Duration>,
    /// Each probe's judged window (default 10s; at least 4 of the profile's intervals).
    #[arg(long, value_parser = duration)]
    pub window: Option<Duration>,
    /// The confirmation's judged window (default 2 × window).
    #[arg(long, value_parser = duration)]
    pub confirm: Option<Duration>,
    /// Pause between probes so a failed probe's queues drain (default 2s).
    #[arg(long, value_parser = duration)]
    pub cooldown: Option<Duration>,
    /// Search at each of these instance counts (`1,2,4`) and fit the Universal
    /// Scalability Law to the capacities (stack profiles).
    #[arg(long, value_delimiter = ',')]
    pub instances: Vec<u32>,
    /// With a fit: what this rate (`10M`) would take, by the model.
    #[arg(long, value_parser = rate)]
    pub target_rate: Option<f64>,
    /// Fire the profile's [[chaos]] faults in every probe: those planned within
    /// the window, at their offsets from the window's start (the recovery
    /// objective then applies too). Capacity under faults, not only at rest.
    #[arg(long)]
    pub with_chaos: bool,
    /// Start the stack afresh (its seed data, nothing else) before each probe, so
    /// every probe meets the same state: `auto` does when the request mix writes
    /// (otherwise the data grows across probes and later probes measure a
    /// different system); `always`; `never` keeps one stack for the search.
    #[arg(long, value_enum, default_value_t = Fresh::Auto)]
    pub fresh: Fresh,
    /// Print the answer as JSON on stdout (the reports go to files only).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fresh {
    Auto,
    Always,
    Never,
}

fn rate(s: &str) -> Result<f64, String> {
    capacity::parse_rate(s).ok_or_else(|| format!("{s:?} is not a rate (e.g. 500, 2k, 10M)"))
}

fn fraction(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a fraction (e.g. 5% or 0.05)"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: must be between 0 and 100 %"))
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    chaos::duration::parse_positive(s)
}

pub fn main(a: CapacityArgs) -> anyhow::Result<ExitCode> {
    let setup = Setup::resolve(&a)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(search_all(&a, &setup))
}

async fn search_all(a: &CapacityArgs, setup: &Setup) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let exp = &setup.exp;
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    eprintln!(
        "slolab capacity: {} (seed {}, {} arrivals, up to {} requests in flight)",
        exp.name, exp.seed, setup.arrivals, setup.connections
    );
    if setup.spec.is_empty() {
        eprintln!(
            "slolab capacity: the profile has no [slo] objectives: only the achieved rate and \
             stationarity judge each plateau"
        );
    }
    let staging = a.out.join(&exp.name).join(format!(
        ".capacity-running-{}-{}",
        std::process::id(),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let mut searches = Vec::new();
    let mut generator: Option<GeneratorRate> = None;
    let mut meta: Option<(Option<String>, loadgen::results::Host)> = None;
    let mut target_info = serde_json::Value::Null;
    let mut logs = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for &n in &setup.instances {
        if interrupt.is_set() {
            break;
        }
        let exp_n = setup.at(a, n)?;
        let dir = match n {
            Some(n) => staging.join(format!("instances-{n}")),
            None => staging.clone(),
        };
        let mut subject = Subject::new(&exp_n, dir, setup.fresh);
        let searched = search_one(setup, &exp_n, n, &mut subject, &interrupt).await;
        // Stopped whatever the search's outcome.
        subject.stop().await;
        if target_info.is_null() {
            target_info = subject.info.take().unwrap_or(serde_json::Value::Null);
        }
        logs.extend(subject.left.drain(..).map(|(sub, left)| (n, sub, left)));
        if let Some(g) = searched.generator {
            if generator
                .as_ref()
                .map_or(true, |best| g.rps_per_core > best.rps_per_core)
            {
                generator = Some(g);
            }
        }
        meta = meta.or(searched.meta);
        let stop = searched.record.answer.outcome == Outcome::Interrupted;
        searches.push(searched.record);
        if searched.failure.is_some() {
            failure = searched.failure;
            break;
        }
        if stop {
            break;
        }
    }
    let interrupted = interrupt.is_set()
        || searches
            .iter()
            .any(|s| s.answer.outcome == Outcome::Interrupted);

    let (scaling, scaling_note) = fit(&searches);
    let projection = match (&scaling, setup.target_rate) {
        (Some(fit), Some(t)) => Some(Projection::plan(fit, t, generator.as_ref())),
        _ => None,
    };
    let (commit, host) = meta.unwrap_or_else(|| (None, loadgen::host()));
    let record = CapacityRecord {
        schema_version: capacity::SCHEMA_VERSION,
        kind: capacity::KIND.into(),
        name: exp.name.clone(),
        profile_path: exp.path.display().to_string(),
        profile: serde_json::to_value(&exp.profile).context("profile as JSON")?,
        seed: exp.seed,
        started_at: started_at.clone(),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        commit: commit.clone(),
        host,
        target: target_info,
        arrivals: setup.arrivals.to_string(),
        with_chaos: setup.with_chaos,
        fresh_target: setup.fresh,
        objectives: serde_json::to_value(&setup.spec).context("objectives as JSON")?,
        settings: setup.settings.clone(),
        searches,
        scaling,
        scaling_note,
        generator,
        projection,
        interrupted,
        other: Default::default(),
    };

    let dir = unique_dir(
        &a.out.join(&exp.name),
        "capacity-",
        &started_at,
        commit.as_deref(),
    )?;
    write(&dir, &record)?;
    for (n, sub, left) in logs {
        let mut into = match n {
            Some(n) if setup.instances.len() > 1 => dir.join(format!("instances-{n}")),
            _ => dir.clone(),
        };
        if let Some(sub) = sub {
            into = into.join(sub);
        }
        if let Err(e) = std::fs::create_dir_all(&into)
            .map_err(anyhow::Error::from)
            .and_then(|_| left.keep_in(&into))
        {
            tracing::warn!("cannot keep the stack logs with the search: {e:#}");
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer_json(&record, &dir))?
        );
    } else {
        print!("{}", capacity::text(&record));
    }
    eprintln!("slolab capacity: results in {}", dir.display());
    if let Some(e) = failure {
        return Err(e.context(format!(
            "the search stopped early; the probes measured so far are in {}",
            dir.display()
        )));
    }
    Ok(exit_code(&record))
}

/// The USL over the searches that found a capacity, when there are 2 or more.
fn fit(searches: &[SearchRecord]) -> (Option<UslFit>, Option<String>) {
    if searches.len() < 2 {
        return (None, None);
    }
    let points: Vec<(f64, f64)> = searches
        .iter()
        .filter(|s| s.answer.outcome == Outcome::Found)
        .filter_map(|s| Some((s.instances? as f64, s.answer.capacity_rps()?)))
        .collect();
    match UslFit::fit(&points) {
        Ok(f) => (Some(f), None),
        Err(e) => (
            None,
            Some(format!(
                "no scalability fit: {e} (only searches that found a capacity interval count; \
                 lower bounds and failures do not)"
            )),
        ),
    }
}

fn write(dir: &Path, record: &CapacityRecord) -> anyhow::Result<()> {
    record.write(&dir.join(capacity::FILE_NAME))?;
    atomicfile::write_atomic(
        &dir.join("report.md"),
        capacity::markdown(record).as_bytes(),
    )
    .context("writing report.md")?;
    atomicfile::write_atomic(&dir.join("report.html"), capacity::html(record).as_bytes())
        .context("writing report.html")?;
    Ok(())
}

/// `--json`: the answer for scripts.
fn answer_json(rec: &CapacityRecord, dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": rec.name,
        "dir": dir.display().to_string(),
        "interrupted": rec.interrupted,
        "searches": rec.searches.iter().map(|s| serde_json::json!({
            "instances": s.instances,
            "outcome": s.answer.outcome,
            "interval_rps": [s.answer.last_pass_rps, s.answer.first_fail_rps],
            "binding": s.answer.binding,
            "knee_rps": s.answer.knee_rps,
            "summary": s.answer.summary,
            "probes": s.probes.iter().map(|p| serde_json::json!({
                "offered_rps": p.offered_rps,
                "achieved_rps": p.achieved_rps,
                "kind": p.kind,
                "p50_ms": p.p50_ms,
                "p95_ms": p.p95_ms,
                "p99_ms": p.p99_ms,
                "availability": p.availability,
                "verdict": p.verdict,
                "reasons": p.reasons,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "scaling": rec.scaling,
        "projection": rec.projection,
    })
}

/// 0 when any search found a capacity or a lower bound; 3 when every search
/// failed at its start rate; 130 when interrupted.
fn exit_code(rec: &CapacityRecord) -> ExitCode {
    if rec.interrupted {
        return ExitCode::from(crate::exit::INTERRUPTED);
    }
    let all_below = !rec.searches.is_empty()
        && rec
            .searches
            .iter()
            .all(|s| s.answer.outcome == Outcome::BelowStart);
    if all_below {
        ExitCode::from(crate::exit::SLO_NOT_MET)
    } else {
        crate::exit::SUCCESS
    }
}
