//! One search on its target: the target started for the first probe (and again
//! before each later one when the search wants fresh state), each probe's load
//! on one clock with its faults, judged, until the search is done.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use loadgen::{Model, Stage, Stop};
use verdict::capacity::{
    self, Answer, GeneratorRate, Outcome, Probe, ProbeRun, ProbeVerdict, Search, SearchRecord, Step,
};

use super::setup::Setup;
use crate::experiment::Experiment;
use crate::run::execute::Interrupt;
use crate::run::plan::{Endpoint, ExperimentPlan};
use crate::run::target::{RunningTarget, StackLeftovers};

/// How far ahead of now a probe's t = 0 is set, so the load's workers and the
/// chaos task are both waiting when it comes.
const CLOCK_LEAD: Duration = Duration::from_millis(50);

/// The target one search probes: started on the first probe, and again
/// before every later one when the search wants a fresh stack each time.
pub(super) struct Subject<'a> {
    exp: &'a Experiment,
    dir: PathBuf,
    fresh: bool,
    /// The running target, and the load plan against it (its URL and token).
    running: Option<(RunningTarget, loadgen::LoadPlan)>,
    /// The first start's settings, for the record.
    pub(super) info: Option<serde_json::Value>,
    /// What each stopped stack left (its logs), with the probe it served when fresh.
    pub(super) left: Vec<(Option<String>, StackLeftovers)>,
    /// The probe the running target was started for.
    since: usize,
}

impl<'a> Subject<'a> {
    pub(super) fn new(exp: &'a Experiment, dir: PathBuf, fresh: bool) -> Self {
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

    pub(super) async fn stop(&mut self) {
        if let Some((t, _)) = self.running.take() {
            if let Some(left) = t.stop().await {
                let sub = self.fresh.then(|| format!("probe-{}", self.since));
                self.left.push((sub, left));
            }
        }
    }
}

/// What one search measured, and the error that stopped it early, if one did
/// (the probes before it are kept: nothing measured is lost).
pub(super) struct Searched {
    pub record: SearchRecord,
    pub generator: Option<GeneratorRate>,
    pub meta: Option<(Option<String>, loadgen::results::Host)>,
    pub failure: Option<anyhow::Error>,
}

/// One search on a running target: probe until the search is done.
pub(super) async fn search_one(
    setup: &Setup,
    exp: &Experiment,
    instances: Option<u32>,
    subject: &mut Subject<'_>,
    interrupt: &Interrupt,
) -> Searched {
    let mut search = Search::new(setup.settings.clone());
    let mut probes: Vec<Probe> = Vec::new();
    let mut generator: Option<GeneratorRate> = None;
    let mut meta = None;
    let mut sent = 0u64;
    let label = instances
        .map(|n| format!(" [{n} instance{}]", if n == 1 { "" } else { "s" }))
        .unwrap_or_default();
    let mut failure: Option<anyhow::Error> = None;
    // An error ends the search as `Aborted`, keeping the probes before it.
    macro_rules! or_abort {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    failure = Some(e);
                    break Outcome::Aborted;
                }
            }
        };
    }
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
            capacity::format_secs(s.warmup_s),
            capacity::format_secs(window_s)
        );
        let Some((target, base)) = or_abort!(subject.ready(index, interrupt).await) else {
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
            or_abort!(target.start_chaos_plan(origin + Duration::from_secs_f64(s.warmup_s), faults));
        }
        let results = loadgen::run_from(plan, origin, interrupt.clone().wait(), None).await;
        // Reverted whatever the load's outcome.
        let mut faults = target.finish_chaos().await;
        let results = or_abort!(results.context("probe load"));
        let cpu = (process_cpu_s() - cpu0).max(1e-6);
        for f in &mut faults {
            // From the window's clock onto the probe's timeline.
            f.planned_s += s.warmup_s;
            f.start_s += s.warmup_s;
            f.end_s = f.end_s.map(|e| e + s.warmup_s);
        }
        let probe = or_abort!(capacity::judge(
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
        .context("judging the probe"));
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
    let writes = (sent as f64 * setup.write_share).round() as u64;
    eprintln!("slolab capacity{label}: {}", answer.summary);
    Searched {
        record: SearchRecord {
            instances,
            writes,
            answer,
            probes,
        },
        generator,
        meta,
        failure,
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
