//! Running an experiment: bring the target up, warm it, drive the measured load
//! while the chaos plan fires, take everything down (even on Ctrl-C), then judge
//! the SLOs and write the run's directory.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use loadgen::{Progress, Results};
use tokio::sync::watch;

use super::plan::{Endpoint, ExperimentPlan};
use super::target::RunningTarget;
use crate::experiment::Experiment;
use crate::shard::Sharding;
use verdict::record::{ExperimentSection, FaultRecord, StageWindow};
use verdict::report::{self, Report};
use verdict::slo::{self, SloAnalysis};

/// Where a finished run was written, and what it concluded.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub analysis: Option<SloAnalysis>,
    pub interrupted: bool,
}

impl RunOutcome {
    pub fn exit_code(&self) -> ExitCode {
        if self.interrupted {
            return ExitCode::from(crate::exit::INTERRUPTED);
        }
        match &self.analysis {
            Some(a) if !a.met => ExitCode::from(crate::exit::SLO_NOT_MET),
            _ => crate::exit::SUCCESS,
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM, as a flag every stage of the run can wait on.
#[derive(Clone)]
pub(crate) struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    pub(crate) fn install() -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(false);
        let mut shutdown =
            crate::shutdown::Shutdown::install().context("cannot handle SIGINT/SIGTERM")?;
        tokio::spawn(async move {
            shutdown.recv().await;
            tracing::warn!("interrupted: stopping the load, reverting faults, stopping the stack");
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) async fn wait(mut self) {
        let _ = self.0.wait_for(|set| *set).await;
    }
}

/// Runs the experiment on a fresh runtime; see [`run`].
pub fn execute(
    exp: &Experiment,
    out: &Path,
    sharding: Option<&Sharding>,
) -> anyhow::Result<RunOutcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(exp, out, sharding))
}

/// Runs the experiment; a shard (`sharding`) runs its part from the agreed
/// start and gets no SLO analysis: only the merged run is judged.
pub async fn run(
    exp: &Experiment,
    out: &Path,
    sharding: Option<&Sharding>,
) -> anyhow::Result<RunOutcome> {
    let interrupt = Interrupt::install()?;
    let name = &exp.name;

    eprintln!("slolab run: {name} (seed {})", exp.seed);
    // The stack's logs and state live in a staging dir beside the runs, moved
    // into the run's directory once its name (start time, commit) is known.
    let staging = out.join(name).join(format!(
        ".running-{}-{}",
        std::process::id(),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let mut target = tokio::select! {
        t = RunningTarget::start(exp, &staging) => t?,
        _ = interrupt.clone().wait() => anyhow::bail!("interrupted while starting the stack"),
    };
    let endpoint = Endpoint {
        base_url: target.url().to_string(),
        token: target.token().map(str::to_string),
    };
    let mut plan = ExperimentPlan::build(exp, &endpoint);
    plan.load.shard = sharding.map(|s| s.shard);
    let measured = measure(&plan, &mut target, &interrupt, sharding).await;
    let faults = target.finish_chaos().await;
    let target_info = target.info();
    let leftovers = target.stop().await;
    let mut results = measured?;

    let interrupted = interrupt.is_set() || results.run.interrupted;
    // The analysis reads this: an interrupted run gets no verdict.
    results.run.interrupted = interrupted;
    // Fault offsets were taken on the load's own origin: no shift to apply.
    let mut faults = faults;
    if interrupted {
        faults.extend(never_fired(&exp.chaos, &faults));
    }
    let stages = measured_stages(&plan.stages, &results);
    let analysis = exp
        .slo
        .as_ref()
        .filter(|_| sharding.is_none())
        .map(|spec| slo::analyze(&results, spec, &stages, &faults))
        .transpose()
        .context("SLO analysis")?;
    let section = ExperimentSection {
        name: name.clone(),
        profile: serde_json::to_value(&exp.profile).context("profile as JSON")?,
        profile_path: exp.path.display().to_string(),
        seed: Some(exp.seed),
        warmup_s: plan.warmup.as_secs_f64(),
        target: target_info,
        stages,
        faults,
        slo: analysis
            .as_ref()
            .map(serde_json::to_value)
            .transpose()?
            .unwrap_or(serde_json::Value::Null),
        interrupted,
        other: Default::default(),
    };
    section.store(&mut results)?;

    let dir = run_dir(out, name, &results)?;
    let logs = leftovers.and_then(|left| {
        left.keep_in(&dir)
            .map_err(|e| tracing::warn!("cannot keep the stack logs with the run: {e:#}"))
            .ok()
    });
    write_run(&dir, &results)?;
    let outcome = RunOutcome {
        dir,
        analysis,
        interrupted,
    };
    eprintln!("slolab run: results in {}", outcome.dir.display());
    if let Some(logs) = logs {
        eprintln!("slolab run: component logs in {}", logs.display());
    }
    Ok(outcome)
}

/// Warm-up, then the measured load with the chaos plan firing alongside. The
/// returned instant-in-wall-time is when the chaos clock started (t = 0).
/// How far ahead of now the shared origin is set: enough for the chaos task and
/// the load's workers to be waiting when it comes, short enough to be unnoticed.
const CLOCK_LEAD: Duration = Duration::from_millis(50);
/// A shard's warm-up stops this long before the agreed start.
const WARMUP_GAP: Duration = Duration::from_millis(200);

async fn measure(
    plan: &ExperimentPlan,
    target: &mut RunningTarget,
    interrupt: &Interrupt,
    sharding: Option<&Sharding>,
) -> anyhow::Result<Results> {
    // A shard's t = 0 is the agreed start (after its clock check); its
    // warm-up ends there, so every shard warms the target at the same time.
    let shard = match sharding {
        Some(s) => {
            let s = s.clone();
            Some(
                tokio::task::spawn_blocking(move || s.prepare())
                    .await
                    .context("the clock check")??,
            )
        }
        None => None,
    };
    if let Some(mut warmup) = plan.warmup_plan() {
        eprintln!(
            "slolab run: warming up for {}",
            chaos::duration::format(plan.warmup)
        );
        warmup.shard = plan.load.shard;
        let warmed = match &shard {
            Some((origin, record)) => {
                let Some(from) = origin.checked_sub(plan.warmup) else {
                    anyhow::bail!("the warm-up cannot start before this machine booted");
                };
                if from < std::time::Instant::now() {
                    anyhow::bail!(
                        "--start-at {} leaves less than the {} warm-up: give a later time",
                        record.start_at,
                        chaos::duration::format(plan.warmup)
                    );
                }
                // Ends a moment early, so that its last responses are in
                // before the measured load's first arrivals are due.
                if let Some(d) = plan.warmup.checked_sub(WARMUP_GAP).filter(|d| !d.is_zero()) {
                    warmup.stop = loadgen::Stop::Duration { duration: d };
                }
                loadgen::run_from(warmup, from, interrupt.clone().wait(), None).await
            }
            None => loadgen::run(warmup, interrupt.clone().wait(), None).await,
        };
        warmed.context("warm-up load")?;
    }
    if interrupt.is_set() {
        anyhow::bail!("interrupted during the warm-up; nothing was measured");
    }
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    // One clock: t = 0 of the load's schedule and timeline and of the chaos plan
    // is this one instant, a moment ahead so both are ready when it comes.
    let origin = match &shard {
        Some((origin, _)) => *origin,
        None => std::time::Instant::now() + CLOCK_LEAD,
    };
    let fault_notes = target.start_chaos(origin)?;
    let bar = ProgressBar::start(plan, progress_rx, fault_notes);
    let results = loadgen::run_from(
        plan.load.clone(),
        origin,
        interrupt.clone().wait(),
        Some(progress_tx),
    )
    .await
    .context("measured load");
    bar.finish().await;
    let mut results = results?;
    results.shard = shard.map(|(_, record)| record);
    Ok(results)
}

/// Faults of the chaos plan that an interrupt stopped before they fired, recorded
/// as not injected so that the report lists them instead of silently judging a
/// run without them. The plan is the one the target fired.
fn never_fired(plan: &chaos::Plan, fired: &[FaultRecord]) -> Vec<FaultRecord> {
    let mut left: Vec<&FaultRecord> = fired.iter().collect();
    let mut out = Vec::new();
    for planned in &plan.faults {
        let at = planned.at.as_secs_f64();
        let req = &planned.request;
        // One fired record per planned fault, matched by schedule time and kind.
        let same = |r: &&FaultRecord| (r.planned_s - at).abs() < 1e-6 && r.fault == req.fault;
        if let Some(i) = left.iter().position(same) {
            left.remove(i);
            continue;
        }
        out.push(FaultRecord::not_injected(
            planned,
            format!(
                "the run was interrupted before its time ({at:.1} s); its recovery was not judged"
            ),
        ));
    }
    out
}

/// Stage windows as they ran: a stage stopped by a request count, or cut short
/// by Ctrl-C, ends where the measurement ended.
fn measured_stages(planned: &[StageWindow], results: &Results) -> Vec<StageWindow> {
    let end = results
        .timeline
        .last()
        .map(|iv| iv.start_s + iv.duration_s)
        .unwrap_or(0.0)
        .max(results.run.duration_s);
    planned
        .iter()
        .filter(|s| s.start_s < end || s.start_s == 0.0)
        .map(|s| StageWindow {
            end_s: s.end_s.min(end),
            ..s.clone()
        })
        .collect()
}

/// `OUT/<profile>/<utc-time>-<commit>/`, made unique if two runs share a second.
fn run_dir(out: &Path, name: &str, results: &Results) -> anyhow::Result<PathBuf> {
    unique_dir(
        &out.join(name),
        "",
        &results.run.started_at,
        results.run.commit.as_deref(),
    )
}

/// `PARENT/<prefix><utc-time>-<commit>/` for a start time in RFC 3339, made
/// unique if two share a second, and created.
pub(crate) fn unique_dir(
    parent: &Path,
    prefix: &str,
    started_at: &str,
    commit: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let time = chrono::DateTime::parse_from_rfc3339(started_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now())
        .format("%Y%m%dT%H%M%SZ");
    let commit = commit
        .map(|c| c.chars().take(12).collect::<String>())
        .unwrap_or_else(|| "nocommit".into());
    let base = parent.join(format!("{prefix}{time}-{commit}"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// results.json first (atomic: it is the record), then both reports from it,
/// then the terminal report.
fn write_run(dir: &Path, results: &Results) -> anyhow::Result<()> {
    results.write(&dir.join("results.json"))?;
    let report = Report::new(results.clone(), None)?;
    let md = report::render(&report, report::Format::Md);
    loadgen::results::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let html = report::render(&report, report::Format::Html);
    loadgen::results::write_atomic(&dir.join("report.html"), html.as_bytes())?;
    print!("{}", report::render(&report, report::Format::Text));
    Ok(())
}

/// The live line on stderr (only on a terminal): stage, rate, p99, errors, and
/// the last fault fired. Off a terminal, each fault fired is a line of its own.
struct ProgressBar {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(
        plan: &ExperimentPlan,
        mut rx: watch::Receiver<Progress>,
        mut faults: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) -> Self {
        if !std::io::stderr().is_terminal() {
            // Ends when the chaos plan does (its sender is dropped with it).
            tokio::spawn(async move {
                while let Some(note) = faults.recv().await {
                    eprintln!("slolab run: {note}");
                }
            });
            return Self { task: None };
        }
        let stage_names: Vec<String> = plan.stages.iter().map(|s| s.name.clone()).collect();
        let bar = crate::progress::bar(
            plan.duration().map(|d| d.as_secs().max(1)),
            "{elapsed_precise} [{bar:30}] {msg}",
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        let task = tokio::spawn(async move {
            let mut last_fault = String::new();
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    Some(note) = faults.recv() => {
                        // Above the bar, so it stays on screen after the line moves on.
                        bar.println(&note);
                        last_fault = format!(" | {note}");
                    }
                }
                let p = rx.borrow_and_update().clone();
                let stage = stage_names.get(p.stage).map(String::as_str).unwrap_or("-");
                bar.set_position(p.elapsed.as_secs());
                bar.set_message(format!(
                    "{stage} | {} | {} requests{last_fault}",
                    crate::progress::status(&p),
                    p.requests
                ));
            }
            bar.finish_and_clear();
        });
        Self { task: Some(task) }
    }

    async fn finish(self) {
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}
