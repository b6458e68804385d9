//! `slolab capacity PROFILE`: the highest open-model rate at which the profile's
//! SLOs still hold, on its stack (at one or several instance counts) or its URL.
//! The search, the judgement and the fit live in `verdict::capacity`; this runs
//! the probes — start the target, hold each rate, stop everything even on Ctrl-C —
//! and writes `capacity.json` with its reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use loadgen::{Model, Stage, Stop};
use verdict::capacity::{
    self, Answer, CapacityRecord, GeneratorRate, Outcome, Probe, ProbeRun, ProbeVerdict,
    Projection, Search, SearchRecord, SearchSettings, Step, UslFit,
};
use verdict::slo::SloSpec;

use crate::experiment::{Experiment, LoadShape, Target};
use crate::run::execute::{unique_dir, Interrupt};
use crate::run::plan::{Endpoint, ExperimentPlan};
use crate::run::target::RunningTarget;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each probe holds one open-model rate: a warm-up, then a judged window. It passes only if \
the achieved rate is at least 97 % of the offered one, every [slo] objective is met \
(latency from the scheduled send; [[slo.stage]] targets fold in, the strictest wins) and \
neither p99 nor the backlog rises across the window. The search grows the rate until a \
probe fails, bisects to the resolution, then confirms the last pass on a longer plateau. \
When the generator cannot keep its schedule while the target keeps up, the answer is \
\"at least X, generator-bound\". Faults are not injected.

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

pub const DEFAULT_GROWTH: f64 = 2.0;
pub const DEFAULT_RESOLUTION: f64 = 0.05;
pub const DEFAULT_MAX_RATE: f64 = 1e6;
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(2);
/// A probe passes only if it achieved this share of the offered rate.
pub const MIN_ACHIEVED: f64 = 0.97;
/// How far ahead of now a probe's t = 0 is set, so the load's workers and the
/// chaos task are both waiting when it comes.
const CLOCK_LEAD: Duration = Duration::from_millis(50);
/// Start rate for a profile without an open-model stage to take one from.
const FALLBACK_START: f64 = 10.0;

/// Everything the search needs, resolved once: flags over `[capacity]` over defaults.
struct Setup {
    exp: Experiment,
    settings: SearchSettings,
    /// `None`: the URL target (or the stack at its profile's count).
    instances: Vec<Option<u32>>,
    spec: SloSpec,
    connections: usize,
    /// The profile's arrival spacing (a closed profile's probes are uniform).
    arrivals: loadgen::Arrivals,
    target_rate: Option<f64>,
    with_chaos: bool,
    /// A fresh stack before each probe.
    fresh: bool,
}

impl Setup {
    fn resolve(a: &CapacityArgs) -> anyhow::Result<Self> {
        let exp = Experiment::read(&a.profile, &a.set, a.seed)?;
        let c = &exp.capacity;
        let (first_rate, connections, arrivals) = match &exp.load.shape {
            LoadShape::Open {
                stages,
                connections,
                arrivals,
            } => (
                stages.first().map(|s| s.start_rate),
                *connections,
                *arrivals,
            ),
            LoadShape::Closed { connections, .. } => {
                (None, *connections, loadgen::Arrivals::default())
            }
        };
        let start_rate = a
            .start_rate
            .or(c.start_rate)
            .or(first_rate.filter(|r| *r > 0.0))
            .unwrap_or(FALLBACK_START);
        let max_rate = a.max_rate.or(c.max_rate).unwrap_or(DEFAULT_MAX_RATE);
        if max_rate < start_rate {
            bail!("the maximum rate ({max_rate}) is below the start rate ({start_rate})");
        }
        let growth = a.growth.or(c.growth).unwrap_or(DEFAULT_GROWTH);
        if !(growth > 1.0 && growth.is_finite()) {
            bail!("--growth {growth}: must be more than 1");
        }
        let window = a.window.or(c.window).unwrap_or(DEFAULT_WINDOW);
        let interval = exp.load.interval;
        if window < interval * 4 {
            bail!(
                "the window ({}) must hold at least 4 of the profile's intervals ({} each) \
                 to tell a growing queue from a steady one",
                chaos::duration::format(window),
                chaos::duration::format(interval)
            );
        }
        let settings = SearchSettings {
            start_rate,
            growth,
            resolution: a.resolution.or(c.resolution).unwrap_or(DEFAULT_RESOLUTION),
            max_rate,
            warmup_s: a
                .warmup
                .or(c.warmup)
                .unwrap_or(DEFAULT_WARMUP)
                .as_secs_f64(),
            window_s: window.as_secs_f64(),
            confirm_s: a.confirm.or(c.confirm).unwrap_or(window * 2).as_secs_f64(),
            cooldown_s: a
                .cooldown
                .or(c.cooldown)
                .unwrap_or(DEFAULT_COOLDOWN)
                .as_secs_f64(),
            min_achieved: MIN_ACHIEVED,
        };
        let counts = if a.instances.is_empty() {
            c.instances.clone()
        } else {
            a.instances.clone()
        };
        if counts.contains(&0) {
            bail!("--instances: every count must be 1 or more");
        }
        let instances = match &exp.target {
            Target::Url(_) if !counts.is_empty() => {
                bail!("--instances needs a stack profile: a `url` target's instances are not ours to change")
            }
            Target::Url(_) => vec![None],
            Target::Stack(s) if counts.is_empty() => vec![Some(s.spec.instances as u32)],
            Target::Stack(_) => {
                let mut v = counts;
                v.sort_unstable();
                v.dedup();
                v.into_iter().map(Some).collect()
            }
        };
        if a.target_rate.is_some() && instances.len() < 2 {
            bail!(
                "--target-rate plans from a scalability fit: give --instances with 2 or more \
                 counts (e.g. --instances 1,2,4)"
            );
        }
        if a.with_chaos {
            match &exp.target {
                Target::Url(_) => bail!(
                    "--with-chaos needs a stack profile: faults cannot be injected into a `url` target"
                ),
                Target::Stack(_) if exp.chaos.faults.is_empty() => bail!(
                    "--with-chaos: the profile has no [[chaos]] faults to fire"
                ),
                Target::Stack(_) => {}
            }
            let window = Duration::from_secs_f64(settings.window_s);
            if !exp.chaos.faults.iter().any(|f| f.at < window) {
                bail!(
                    "--with-chaos: no fault of the profile is planned within the {} window \
                     (offsets count from the window's start); lengthen --window",
                    chaos::duration::format(window)
                );
            }
        }
        let fresh = match (a.fresh, &exp.target) {
            (Fresh::Always, Target::Url(_)) => {
                bail!("--fresh always needs a stack profile: a `url` target is not ours to restart")
            }
            (_, Target::Url(_)) | (Fresh::Never, _) => false,
            (Fresh::Always, _) => true,
            (Fresh::Auto, _) => write_share(&exp) > 0.0,
        };
        let spec = exp
            .slo
            .as_ref()
            .map(|s| capacity::plateau_spec(s, a.with_chaos))
            .unwrap_or_default();
        Ok(Self {
            settings,
            instances,
            spec,
            connections,
            arrivals,
            target_rate: a.target_rate,
            with_chaos: a.with_chaos,
            fresh,
            exp,
        })
    }

    /// The experiment at `n` instances (the profile re-read with the override, so
    /// every derived value — component names, fault plan — agrees).
    fn at(&self, a: &CapacityArgs, n: Option<u32>) -> anyhow::Result<Experiment> {
        match n {
            Some(n)
                if self
                    .exp
                    .stack()
                    .is_some_and(|s| s.spec.instances != n as usize) =>
            {
                let mut sets = a.set.clone();
                sets.push(format!("stack.instances={n}"));
                Ok(Experiment::read(&a.profile, &sets, a.seed)?)
            }
            _ => Ok(self.exp.clone()),
        }
    }
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
        let result = search_one(setup, &exp_n, n, &mut subject, &interrupt).await;
        // Stopped whatever the search's outcome.
        subject.stop().await;
        if target_info.is_null() {
            target_info = subject.info.take().unwrap_or(serde_json::Value::Null);
        }
        logs.extend(subject.left.drain(..).map(|(sub, left)| (n, sub, left)));
        let (record, gen, m) = result?;
        if let Some(g) = gen {
            if generator
                .as_ref()
                .map_or(true, |best| g.rps_per_core > best.rps_per_core)
            {
                generator = Some(g);
            }
        }
        meta = meta.or(m);
        let stop = record.answer.outcome == Outcome::Interrupted;
        searches.push(record);
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
    Ok(exit_code(&record))
}

/// The target one search probes: started on the first probe, and again
/// before every later one when the search wants a fresh stack each time.
struct Subject<'a> {
    exp: &'a Experiment,
    dir: PathBuf,
    fresh: bool,
    /// The running target, and the load plan against it (its URL and token).
    running: Option<(RunningTarget, loadgen::LoadPlan)>,
    /// The first start's settings, for the record.
    info: Option<serde_json::Value>,
    /// What each stopped stack left (its logs), with the probe it served when fresh.
    left: Vec<(Option<String>, crate::run::target::StackLeftovers)>,
    /// The probe the running target was started for.
    since: usize,
}

impl<'a> Subject<'a> {
    fn new(exp: &'a Experiment, dir: PathBuf, fresh: bool) -> Self {
        Self {
            exp,
            dir,
            fresh,
            running: None,
            info: None,
            left: Vec::new(),
            since: 0,
        }
    }

    /// The target for probe `index` and the load plan against it; `None`
    /// when interrupted while it started.
    async fn ready(
        &mut self,
        index: usize,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Option<(&mut RunningTarget, loadgen::LoadPlan)>> {
        if self.running.is_some() && self.fresh && self.since != index {
            self.stop().await;
        }
        if self.running.is_none() {
            let dir = if self.fresh {
                self.dir.join(format!("probe-{index}"))
            } else {
                self.dir.clone()
            };
            let t = tokio::select! {
                t = RunningTarget::start(self.exp, &dir) => t?,
                _ = interrupt.clone().wait() => return Ok(None),
            };
            let endpoint = Endpoint {
                base_url: t.url().to_string(),
                token: t.token().map(str::to_string),
            };
            let plan = ExperimentPlan::build(self.exp, &endpoint).load;
            if self.info.is_none() {
                let info = t.info();
                self.info = Some(serde_json::json!({ "url": info.url, "stack": info.stack }));
            }
            self.running = Some((t, plan));
            self.since = index;
        }
        Ok(self.running.as_mut().map(|(t, plan)| (t, plan.clone())))
    }

    async fn stop(&mut self) {
        if let Some((t, _)) = self.running.take() {
            if let Some(left) = t.stop().await {
                let sub = self.fresh.then(|| format!("probe-{}", self.since));
                self.left.push((sub, left));
            }
        }
    }
}

/// One search on a running target: probe until the search is done.
async fn search_one(
    setup: &Setup,
    exp: &Experiment,
    instances: Option<u32>,
    subject: &mut Subject<'_>,
    interrupt: &Interrupt,
) -> anyhow::Result<(
    SearchRecord,
    Option<GeneratorRate>,
    Option<(Option<String>, loadgen::results::Host)>,
)> {
    let mut search = Search::new(setup.settings.clone());
    let mut probes: Vec<Probe> = Vec::new();
    let mut generator: Option<GeneratorRate> = None;
    let mut meta = None;
    let mut sent = 0u64;
    let label = instances
        .map(|n| format!(" [{n} instance{}]", if n == 1 { "" } else { "s" }))
        .unwrap_or_default();
    let outcome = loop {
        let (rate, kind) = match search.next() {
            Step::Done(outcome) => break outcome,
            Step::Probe { rate, kind } => (rate, kind),
        };
        let index = probes.len() + 1;
        let s = &setup.settings;
        let window_s = if kind.is_confirmation() {
            s.confirm_s
        } else {
            s.window_s
        };
        eprintln!(
            "slolab capacity{label}: probe {index} ({}): {} for {} + {}",
            format!("{kind:?}").to_lowercase(),
            capacity::format_rps(rate),
            secs(s.warmup_s),
            secs(window_s)
        );
        let Some((target, base)) = subject.ready(index, interrupt).await? else {
            // Interrupted while the target was starting.
            break Outcome::Interrupted;
        };
        let mut plan = base;
        let mut stages = Vec::new();
        if s.warmup_s > 0.0 {
            stages.push(Stage::steady(Duration::from_secs_f64(s.warmup_s), rate));
        }
        stages.push(Stage::steady(Duration::from_secs_f64(window_s), rate));
        plan.model = Model::Open { stages };
        plan.stop = Stop::Stages;
        plan.connections = setup.connections;
        plan.arrivals = setup.arrivals;
        // Each probe its own request sequence: `{uuid}` idempotency keys must not
        // repeat across probes, or the target answers replays from its store.
        plan.seed = exp.seed.wrapping_add(1000 * index as u64);
        let cpu0 = process_cpu_s();
        // One clock: the probe's t = 0, and the window's start for its faults.
        let origin = std::time::Instant::now() + CLOCK_LEAD;
        if setup.with_chaos {
            let window = Duration::from_secs_f64(window_s);
            let mut faults = exp.chaos.clone();
            faults.faults.retain(|f| f.at < window);
            target.start_chaos_plan(origin + Duration::from_secs_f64(s.warmup_s), faults)?;
        }
        let results = loadgen::run_from(plan, origin, interrupt.clone().wait(), None).await;
        // Reverted whatever the load's outcome.
        let mut faults = target.finish_chaos().await;
        let results = results.context("probe load")?;
        let cpu = (process_cpu_s() - cpu0).max(1e-6);
        for f in &mut faults {
            // From the window's clock onto the probe's timeline.
            f.planned_s += s.warmup_s;
            f.start_s += s.warmup_s;
            f.end_s = f.end_s.map(|e| e + s.warmup_s);
        }
        let probe = capacity::judge(
            &ProbeRun {
                index,
                kind,
                instances,
                offered_rps: rate,
                warmup_s: s.warmup_s,
                window_s,
                results: &results,
                generator_cpu_s: cpu,
                faults: &faults,
            },
            &setup.spec,
            s.min_achieved,
        )
        .context("judging the probe")?;
        let verdict = if interrupt.is_set() {
            ProbeVerdict::Interrupted
        } else {
            probe.verdict
        };
        eprintln!(
            "slolab capacity{label}: probe {index}: {} — achieved {}, p95 {}, p99 {}{}",
            verdict.word(),
            capacity::format_rps(probe.achieved_rps),
            ms(probe.p95_ms),
            ms(probe.p99_ms),
            probe
                .reasons
                .first()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        );
        if matches!(verdict, ProbeVerdict::Pass | ProbeVerdict::Fail) {
            let per_core = results.totals.requests as f64 / cpu;
            if generator
                .as_ref()
                .map_or(true, |g| per_core > g.rps_per_core)
            {
                generator = Some(GeneratorRate {
                    rps_per_core: per_core,
                    at_offered_rps: rate,
                    cores: results.run.host.cpus,
                });
            }
        }
        meta = meta.or(Some((results.run.commit.clone(), results.run.host.clone())));
        sent += results.totals.requests;
        search.record(rate, kind, verdict);
        probes.push(Probe { verdict, ..probe });
        if verdict != ProbeVerdict::Interrupted && !matches!(search.next(), Step::Done(_)) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(s.cooldown_s)) => {}
                _ = interrupt.clone().wait() => {}
            }
        }
    };
    let answer = Answer::of(&search, outcome, &probes);
    let writes = (sent as f64 * write_share(exp)).round() as u64;
    eprintln!("slolab capacity{label}: {}", answer.summary);
    Ok((
        SearchRecord {
            instances,
            writes,
            answer,
            probes,
        },
        generator,
        meta,
    ))
}

/// The share of the request mix (by weight) that writes: methods other than
/// GET and HEAD.
fn write_share(exp: &Experiment) -> f64 {
    let total: u32 = exp.load.requests.iter().map(|r| r.weight).sum();
    let writes: u32 = exp
        .load
        .requests
        .iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .map(|r| r.weight)
        .sum();
    if total == 0 {
        0.0
    } else {
        f64::from(writes) / f64::from(total)
    }
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

/// CPU (user + system) this process has used, seconds: the generator's cost.
fn process_cpu_s() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the pointer on success, and
    // the value is read only then.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } == 0;
    if !ok {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { u.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn ms(v: Option<f64>) -> String {
    v.map(verdict::slo::format_ms).unwrap_or_else(|| "—".into())
}

fn secs(s: f64) -> String {
    chaos::duration::format(Duration::from_secs_f64(s))
}
