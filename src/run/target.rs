//! The system under test for one experiment: an external URL, or the bundled
//! stack started from the profile's `[stack]` with its chaos plan firing on the
//! load's clock — and always reverted and stopped, however the run ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chaos::{FaultEvent, Injector, InjectorOptions, Plan, PlannedFault, RevertGuard};
use target::stack::{Stack, StackSpec, Supervisor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::experiment::{Experiment, Target};
use verdict::record::{FaultRecord, TargetInfo};

/// What the load goes to, from start to stop.
pub enum RunningTarget {
    /// `url = ...`: somebody else's system; nothing to start, no faults.
    External { url: String },
    /// The bundled stack, its chaos plan and what the plan did.
    Stack(Box<StackRun>),
}

pub struct StackRun {
    stack: Stack,
    spec: StackSpec,
    plan: Plan,
    seed: u64,
    chaos: Option<ChaosRun>,
    /// Whether the stack's run dir is the run's staging dir (see [`StackLeftovers`]).
    staged: bool,
}

/// The chaos plan in flight: the task that fires it, the injector, and per
/// planned fault what became of it.
struct ChaosRun {
    injector: Arc<Injector>,
    task: JoinHandle<()>,
    fired: Arc<Mutex<Vec<Fired>>>,
    /// Reverts everything still in force if the run unwinds past us.
    _guard: RevertGuard,
}

/// A planned fault once its time came: the ids of the events the injection
/// made (their end times are known after the revert), or why it failed.
struct Fired {
    planned: PlannedFault,
    result: Result<Vec<u64>, String>,
}

impl RunningTarget {
    /// Starts the stack (when the profile has one) in `run_dir`, on a free port
    /// unless the profile names one.
    pub async fn start(exp: &Experiment, run_dir: &Path) -> anyhow::Result<Self> {
        let stack = match &exp.target {
            Target::Url(url) => return Ok(Self::External { url: url.clone() }),
            Target::Stack(stack) => stack,
        };
        let mut spec = stack.spec.clone();
        if !stack.port_set {
            spec.port = 0;
        }
        let staged = !stack.run_dir_set;
        if staged {
            spec.run_dir = Some(run_dir.to_path_buf());
        }
        let bin = std::env::current_exe().context("cannot find the slolab binary to re-execute")?;
        eprintln!(
            "slolab: starting the stack ({} instance(s), {:?} db, {:?} cache, {:?} gateway)",
            spec.instances, spec.db, spec.cache, spec.gateway
        );
        let stack = tokio::time::timeout(START_TIMEOUT, Supervisor::start(spec.clone(), bin))
            .await
            .map_err(|_| anyhow::anyhow!("the stack did not come up within {START_TIMEOUT:?}"))?
            .context("starting the stack")?;
        // Its logs move into the run's directory at the end (printed then).
        eprintln!("slolab: stack up at {}", stack.url());
        Ok(Self::Stack(Box::new(StackRun {
            stack,
            spec,
            plan: exp.chaos.clone(),
            seed: exp.seed,
            chaos: None,
            staged,
        })))
    }

    pub fn url(&self) -> &str {
        match self {
            Self::External { url } => url,
            Self::Stack(s) => s.stack.url(),
        }
    }

    /// The admin JWT for `{token}`.
    pub fn token(&self) -> Option<&str> {
        match self {
            Self::External { .. } => None,
            Self::Stack(s) => Some(s.stack.admin_token()),
        }
    }

    /// Starts the chaos plan on the load's clock: faults fire at their offsets
    /// from `origin` (the load's t = 0) and their events are stamped from it, so
    /// fault windows and the timeline share one clock. The receiver gets one
    /// line per fault as it fires, for the progress display.
    pub fn start_chaos(
        &mut self,
        origin: std::time::Instant,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<String>> {
        let plan = match self {
            Self::Stack(run) => run.plan.clone(),
            Self::External { .. } => return Ok(mpsc::unbounded_channel().1),
        };
        self.start_chaos_plan(origin, plan)
    }

    /// [`RunningTarget::start_chaos`] with another plan than the experiment's
    /// (a capacity probe fires the part of it that fits its window).
    pub fn start_chaos_plan(
        &mut self,
        origin: std::time::Instant,
        plan: Plan,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<String>> {
        let (notes, notes_rx) = mpsc::unbounded_channel();
        let Self::Stack(run) = self else {
            return Ok(notes_rx);
        };
        let origin = tokio::time::Instant::from_std(origin);
        let (injector, _recovery) = Injector::new(
            run.stack.registry(),
            InjectorOptions {
                seed: run.seed,
                ledger_dir: Some(run.stack.run_dir().to_path_buf()),
                origin: Some(origin),
            },
        )
        .context("starting the fault injector")?;
        let fired = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(fire(plan, injector.clone(), origin, fired.clone(), notes));
        run.chaos = Some(ChaosRun {
            _guard: injector.guard(),
            injector,
            task,
            fired,
        });
        Ok(notes_rx)
    }

    /// Stops the chaos plan, reverts whatever is still in force, and returns
    /// every planned fault on the chaos clock (seconds from `start_chaos`).
    pub async fn finish_chaos(&mut self) -> Vec<FaultRecord> {
        let Self::Stack(run) = self else {
            return Vec::new();
        };
        let Some(chaos) = run.chaos.take() else {
            return Vec::new();
        };
        chaos.task.abort();
        let _ = chaos.task.await;
        chaos.injector.revert_all().await;
        let events = chaos.injector.events();
        let fired = std::mem::take(&mut *chaos.fired.lock().unwrap_or_else(|p| p.into_inner()));
        fault_records(fired, &events)
    }

    pub fn info(&self) -> TargetInfo {
        match self {
            Self::External { url } => TargetInfo {
                url: url.clone(),
                stack: serde_json::Value::Null,
                components: Vec::new(),
            },
            Self::Stack(s) => TargetInfo {
                url: s.stack.url().to_string(),
                stack: serde_json::to_value(&s.spec).unwrap_or_default(),
                components: s.stack.registry().names(),
            },
        }
    }

    /// Stops the stack (gateway first, database last); returns what it left
    /// behind (its run dir and logs).
    pub async fn stop(self) -> Option<StackLeftovers> {
        match self {
            Self::External { .. } => None,
            Self::Stack(run) => {
                let left = StackLeftovers {
                    run_dir: run.stack.run_dir().to_path_buf(),
                    log_dir: run.stack.log_dir().to_path_buf(),
                    staged: run.staged,
                };
                run.stack.shutdown().await;
                Some(left)
            }
        }
    }
}

/// A stopped stack's directory: its logs belong with the run's results.
#[derive(Debug)]
pub struct StackLeftovers {
    run_dir: PathBuf,
    log_dir: PathBuf,
    /// The run dir is the run's own staging dir (the profile named none), so the
    /// whole of it can move; a run dir the profile named stays where it is.
    staged: bool,
}

impl StackLeftovers {
    /// Moves the staging dir to `<run>/stack`, or copies the logs of a run dir
    /// the profile named into `<run>/stack/logs`; returns where the logs are now.
    pub fn keep_in(&self, run: &Path) -> anyhow::Result<PathBuf> {
        let kept = run.join("stack");
        if self.staged {
            std::fs::rename(&self.run_dir, &kept).with_context(|| {
                format!(
                    "cannot move the stack's files from {} to {}",
                    self.run_dir.display(),
                    kept.display()
                )
            })?;
            return Ok(kept.join("logs"));
        }
        let logs = kept.join("logs");
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let entries = std::fs::read_dir(&self.log_dir).with_context(|| {
            format!("cannot list the stack's logs in {}", self.log_dir.display())
        })?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.log_dir.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let to = logs.join(entry.file_name());
                std::fs::copy(entry.path(), &to).with_context(|| {
                    format!("cannot copy {} to {}", entry.path().display(), to.display())
                })?;
            }
        }
        Ok(logs)
    }
}

/// Fires `plan` against the injector, each fault at its offset from `origin`.
/// Expiry reverts are the injector's; a failed injection is recorded and the
/// plan goes on (a fault that cannot be injected is a finding, not a crash).
async fn fire(
    plan: Plan,
    injector: Arc<Injector>,
    origin: tokio::time::Instant,
    fired: Arc<Mutex<Vec<Fired>>>,
    notes: mpsc::UnboundedSender<String>,
) {
    for planned in plan.faults {
        tokio::time::sleep_until(origin + planned.at).await;
        let at_s = origin.elapsed().as_secs_f64();
        let req = &planned.request;
        tracing::info!(fault = %req.fault, target = %req.target, at = ?planned.at, "injecting");
        let result = injector
            .inject(req)
            .await
            .map(|events| events.iter().map(|e| e.id).collect())
            .map_err(|e| {
                tracing::warn!(fault = %req.fault, target = %req.target, error = %e, "injection failed");
                e.to_string()
            });
        // The display may be gone (the load ended first): the record still counts.
        let _ = notes.send(fault_note(&req.fault, &req.target, at_s, &result));
        fired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fired { planned, result });
    }
}

/// One fired fault as the progress display shows it: `⚡ kill api-2 @8.0s`
/// (seconds on the chaos clock, which starts with the measured load).
fn fault_note(fault: &str, target: &str, at_s: f64, result: &Result<Vec<u64>, String>) -> String {
    match result {
        Ok(_) => format!("⚡ {fault} {target} @{at_s:.1}s"),
        Err(e) => format!("⚡ {fault} {target} @{at_s:.1}s failed: {e}"),
    }
}

fn fault_records(fired: Vec<Fired>, events: &[FaultEvent]) -> Vec<FaultRecord> {
    let mut out = Vec::new();
    for f in fired {
        match f.result {
            Ok(ids) => out.extend(
                events
                    .iter()
                    .filter(|e| ids.contains(&e.id))
                    .map(|e| FaultRecord::injected(&f.planned, e)),
            ),
            Err(error) => out.push(FaultRecord::not_injected(&f.planned, error)),
        }
    }
    out
}

/// Upper bound on how long we wait for the stack to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::{fault_note, StackLeftovers};

    /// A stopped stack's dir (a log and a database) and an empty run dir beside
    /// it, under `root`: (leftovers, the stack's dir, the run dir).
    fn left_behind(
        root: &std::path::Path,
        staged: bool,
    ) -> (StackLeftovers, std::path::PathBuf, std::path::PathBuf) {
        let dir = root.join("stack-run-dir");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("logs/api-1.log"), "api-1 listening\n").unwrap();
        std::fs::write(dir.join("slolab.db"), "data").unwrap();
        let run = root.join("run");
        std::fs::create_dir(&run).unwrap();
        let left = StackLeftovers {
            log_dir: dir.join("logs"),
            run_dir: dir.clone(),
            staged,
        };
        (left, dir, run)
    }

    #[test]
    fn a_staging_dir_moves_into_the_run_whole() {
        let root = tempfile::tempdir().unwrap();
        let (left, dir, run) = left_behind(root.path(), true);
        let logs = left.keep_in(&run).unwrap();
        assert_eq!(logs, run.join("stack/logs"));
        assert!(logs.join("api-1.log").is_file());
        assert!(run.join("stack/slolab.db").is_file());
        assert!(!dir.exists(), "moved, not copied");
    }

    #[test]
    fn a_run_dir_the_profile_named_stays_and_its_logs_are_copied() {
        let root = tempfile::tempdir().unwrap();
        let (left, dir, run) = left_behind(root.path(), false);
        let logs = left.keep_in(&run).unwrap();
        assert_eq!(
            std::fs::read_to_string(logs.join("api-1.log")).unwrap(),
            "api-1 listening\n"
        );
        assert!(
            dir.join("slolab.db").is_file(),
            "the named run dir is left alone"
        );
        assert!(!run.join("stack/slolab.db").exists());
    }

    #[test]
    fn a_fired_fault_reads_as_what_where_and_when() {
        assert_eq!(
            fault_note("kill", "api-2", 8.04, &Ok(vec![1])),
            "⚡ kill api-2 @8.0s"
        );
        assert_eq!(
            fault_note(
                "pause",
                "redis",
                12.0,
                &Err("no component named `redis`".into())
            ),
            "⚡ pause redis @12.0s failed: no component named `redis`"
        );
    }
}
