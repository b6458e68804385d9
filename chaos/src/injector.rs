//! The injector: applies faults to the supervisor's components, records each as
//! a `FaultEvent` for the results file, keeps the ledger, and reverts on expiry,
//! on request, and when dropped (so a panic unwinding through it reverts too).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fault::{self, Fault, FaultError, FaultParams, FaultRequest};
use crate::ledger::{Ledger, LedgerEntry, LedgerError, ProcessId, Recovery, Revert};
use crate::process::{self, Component, ComponentError, Components, ProcStat, ProcessError};
use crate::proxy::{ProxyError, ProxyHandle};
use crate::schedule::Plan;

/// How long a pause waits for its process to reach the stopped state.
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("{target}: {source}")]
    Component {
        target: String,
        source: ComponentError,
    },
    #[error("no active fault with id {0}")]
    NotActive(u64),
}

/// A point in time twice: as an offset from the injector's origin (monotonic,
/// for the timeline) and as wall-clock time (for people).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// Seconds since the origin (the run's start when the runner sets it).
    pub offset_s: f64,
    pub wall: DateTime<Utc>,
}

/// One fault, injected and (once `end` is set) reverted: what the results file carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub id: u64,
    pub fault: String,
    /// The concrete component (patterns like `api-*` are expanded, one event each).
    pub target: String,
    pub params: FaultParams,
    #[serde(
        rename = "for",
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    pub start: Stamp,
    /// When it was reverted; equal to `start` for instantaneous faults (kill, stop).
    pub end: Option<Stamp>,
    /// Set when the injection failed at its scheduled time (e.g. no process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct InjectorOptions {
    /// Seeds `api-random` choices.
    pub seed: u64,
    /// Where the ledger lives; `None` keeps no ledger (tests, throwaway runs).
    pub ledger_dir: Option<std::path::PathBuf>,
    /// The instant event offsets count from; default: when the injector is made.
    pub origin: Option<Instant>,
}

struct Active {
    revert: Revert,
    proxy: Option<ProxyHandle>,
    expiry: Option<JoinHandle<()>>,
}

struct State {
    active: BTreeMap<u64, Active>,
    events: Vec<FaultEvent>,
    next_id: u64,
    rng: ChaCha8Rng,
}

pub struct Injector {
    components: Arc<dyn Components>,
    ledger: Mutex<Option<Ledger>>,
    state: Mutex<State>,
    origin: Instant,
    origin_wall: DateTime<Utc>,
}

impl Injector {
    /// Make an injector over `components`. With a ledger directory, first revert
    /// whatever a crashed run left there: SIGCONT what it paused, and start what
    /// it held down (in the background on the current runtime; see
    /// `start_held_down`).
    pub fn new(
        components: Arc<dyn Components>,
        options: InjectorOptions,
    ) -> Result<(Arc<Injector>, Recovery), InjectError> {
        let (ledger, recovery) = match &options.ledger_dir {
            Some(dir) => {
                let recovery = Ledger::recover(dir)?;
                (Some(Ledger::create(dir)?), recovery)
            }
            None => (None, Recovery::default()),
        };
        if !recovery.held_down.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let components = components.clone();
                    let names = recovery.held_down.clone();
                    rt.spawn(async move { start_held_down(components.as_ref(), &names).await });
                }
                Err(_) => tracing::warn!(
                    components = ?recovery.held_down,
                    "a crashed run held these components down and there is no runtime to start them on"
                ),
            }
        }
        let origin = options.origin.unwrap_or_else(Instant::now);
        // The origin may lie ahead (a runner sets t = 0 a moment in the future).
        let now = Instant::now();
        let origin_wall = if origin > now {
            Utc::now() + chrono::Duration::from_std(origin - now).unwrap_or_default()
        } else {
            Utc::now() - chrono::Duration::from_std(now - origin).unwrap_or_default()
        };
        Ok((
            Arc::new(Injector {
                components,
                ledger: Mutex::new(ledger),
                state: Mutex::new(State {
                    active: BTreeMap::new(),
                    events: Vec::new(),
                    next_id: 1,
                    rng: ChaCha8Rng::seed_from_u64(options.seed),
                }),
                origin,
                origin_wall,
            }),
            recovery,
        ))
    }

    pub fn components(&self) -> &Arc<dyn Components> {
        &self.components
    }

    pub fn ledger_path(&self) -> Option<std::path::PathBuf> {
        self.lock_ledger().as_ref().map(|l| l.path().to_path_buf())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_ledger(&self) -> std::sync::MutexGuard<'_, Option<Ledger>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(&self) -> Stamp {
        let offset = self.origin.elapsed();
        Stamp {
            offset_s: offset.as_secs_f64(),
            wall: self.origin_wall + chrono::Duration::from_std(offset).unwrap_or_default(),
        }
    }

    /// Every event so far, injected and reverted, in injection order.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.lock_state().events.clone()
    }

    /// The events of faults still in force.
    pub fn active(&self) -> Vec<FaultEvent> {
        let st = self.lock_state();
        st.events
            .iter()
            .filter(|e| st.active.contains_key(&e.id))
            .cloned()
            .collect()
    }

    /// Validate a request against the components of the moment and expand its
    /// target, without injecting anything.
    pub fn check(&self, req: &FaultRequest) -> Result<(Fault, Vec<Component>), FaultError> {
        let fault = Fault::from_request(req)?;
        let names = self.resolve(&req.target)?;
        let mut targets = Vec::new();
        for name in names {
            let c = self
                .components
                .lookup(&name)
                .ok_or_else(|| self.unknown(&name))?;
            match &fault {
                Fault::Network { .. } if c.proxy.is_none() => {
                    return Err(FaultError::NoProxy {
                        target: name,
                        fault: fault.name().into(),
                    })
                }
                Fault::Kill | Fault::Stop { .. } | Fault::Pause if c.pid.is_none() => {
                    return Err(FaultError::NoProcess { target: name })
                }
                _ => {}
            }
            targets.push(c);
        }
        Ok((fault, targets))
    }

    fn unknown(&self, target: &str) -> FaultError {
        FaultError::UnknownTarget {
            target: target.into(),
            known: self.components.names().join(", "),
        }
    }

    fn resolve(&self, pattern: &str) -> Result<Vec<String>, FaultError> {
        let names = self.components.names();
        if let Some(pool) = fault::random_pool(pattern) {
            let candidates: Vec<&String> =
                names.iter().filter(|n| fault::matches(&pool, n)).collect();
            let mut st = self.lock_state();
            return candidates
                .choose(&mut st.rng)
                .map(|n| vec![(*n).clone()])
                .ok_or_else(|| self.unknown(pattern));
        }
        let picked: Vec<String> = names
            .iter()
            .filter(|n| fault::matches(pattern, n))
            .cloned()
            .collect();
        if picked.is_empty() {
            return Err(self.unknown(pattern));
        }
        Ok(picked)
    }

    /// Inject a fault on every component its target names. Everything is checked
    /// first; then each target's revert is written to the ledger before the
    /// fault is applied. Returns one event per target.
    pub async fn inject(
        self: &Arc<Self>,
        req: &FaultRequest,
    ) -> Result<Vec<FaultEvent>, InjectError> {
        let (fault, targets) = self.check(req)?;
        let mut out = Vec::new();
        for component in targets {
            out.push(self.apply(req, &fault, component).await?);
        }
        Ok(out)
    }

    async fn apply(
        self: &Arc<Self>,
        req: &FaultRequest,
        fault: &Fault,
        c: Component,
    ) -> Result<FaultEvent, InjectError> {
        let id = {
            let mut st = self.lock_state();
            st.next_id += 1;
            st.next_id - 1
        };
        let mut event = FaultEvent {
            id,
            fault: fault.name().into(),
            target: c.name.clone(),
            params: req.params.clone(),
            duration: req.duration,
            start: self.stamp(),
            end: None,
            error: None,
        };
        let pid = || {
            c.pid.ok_or_else(|| FaultError::NoProcess {
                target: c.name.clone(),
            })
        };
        let (revert, proxy) = match fault {
            Fault::Kill | Fault::Stop { held: false } => {
                let pid = pid()?;
                if matches!(fault, Fault::Kill) {
                    process::kill(pid)?;
                } else {
                    process::terminate(pid)?;
                }
                tracing::info!(id, fault = fault.name(), target = %c.name, pid, "fault injected");
                event.end = Some(event.start);
                self.lock_state().events.push(event.clone());
                return Ok(event);
            }
            Fault::Pause => {
                let pid = pid()?;
                let processes: Vec<ProcessId> = process::tree(pid)
                    .into_iter()
                    .filter_map(ProcessId::of)
                    .collect();
                if processes.is_empty() {
                    return Err(FaultError::NoProcess {
                        target: c.name.clone(),
                    }
                    .into());
                }
                let revert = Revert::Resume {
                    processes: processes.clone(),
                };
                self.record(id, fault, &c.name, &revert)?;
                for p in &processes {
                    if let Err(e) = process::pause(p.pid) {
                        // A child that exited meanwhile is fine; the component itself is not.
                        if p.pid == pid {
                            revert_now(&revert, None);
                            self.forget(id);
                            return Err(e.into());
                        }
                    }
                }
                // SIGSTOP takes effect when the process next runs, which on a
                // busy machine is milliseconds later: return once it is frozen,
                // so that "injected" means "in force".
                let deadline = Instant::now() + STOP_GRACE;
                while ProcStat::read(pid).is_some_and(|s| !s.stopped()) {
                    if Instant::now() >= deadline {
                        tracing::warn!(
                            pid,
                            "SIGSTOP sent but the process has not stopped yet (uninterruptible sleep?)"
                        );
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (revert, None)
            }
            // `restart`, and `stop` with a duration: held down by the supervisor
            // (no restart policy) until the revert starts it again.
            Fault::Stop { held: true } | Fault::Restart => {
                let revert = Revert::Start {
                    component: c.name.clone(),
                };
                self.record(id, fault, &c.name, &revert)?;
                if let Err(source) = self.components.stop(&c.name).await {
                    self.forget(id);
                    return Err(InjectError::Component {
                        target: c.name.clone(),
                        source,
                    });
                }
                (revert, None)
            }
            Fault::Network { toxic, toxicity } => {
                let proxy = c.proxy.clone().ok_or_else(|| FaultError::NoProxy {
                    target: c.name.clone(),
                    fault: fault.name().into(),
                })?;
                let toxic_id = proxy.add_toxic(toxic.clone(), *toxicity)?;
                let revert = Revert::RemoveToxic {
                    proxy: proxy.name().to_string(),
                    toxic: toxic_id,
                };
                if let Err(e) = self.record(id, fault, &c.name, &revert) {
                    proxy.remove_toxic(toxic_id);
                    return Err(e.into());
                }
                (revert, Some(proxy))
            }
        };
        tracing::info!(id, fault = fault.name(), target = %c.name, "fault injected");
        let expiry = req.duration.map(|d| {
            let weak: Weak<Injector> = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(injector) = weak.upgrade() {
                    if let Err(e) = injector.revert_inner(id, false).await {
                        tracing::warn!(id, error = %e, "revert on expiry failed");
                    }
                }
            })
        });
        let mut st = self.lock_state();
        st.active.insert(
            id,
            Active {
                revert,
                proxy,
                expiry,
            },
        );
        st.events.push(event.clone());
        Ok(event)
    }

    fn record(
        &self,
        id: u64,
        fault: &Fault,
        target: &str,
        revert: &Revert,
    ) -> Result<(), LedgerError> {
        if let Some(ledger) = self.lock_ledger().as_mut() {
            ledger.record(LedgerEntry {
                id,
                fault: fault.name().into(),
                target: target.into(),
                started: Utc::now(),
                revert: revert.clone(),
            })?;
        }
        Ok(())
    }

    fn forget(&self, id: u64) {
        if let Some(ledger) = self.lock_ledger().as_mut() {
            if let Err(e) = ledger.remove(id) {
                tracing::warn!(id, error = %e, "cannot update the fault ledger");
            }
        }
    }

    /// Revert one active fault now.
    pub async fn revert(&self, id: u64) -> Result<FaultEvent, InjectError> {
        self.revert_inner(id, true).await
    }

    async fn revert_inner(&self, id: u64, cancel_expiry: bool) -> Result<FaultEvent, InjectError> {
        let active = self
            .lock_state()
            .active
            .remove(&id)
            .ok_or(InjectError::NotActive(id))?;
        if cancel_expiry {
            if let Some(t) = &active.expiry {
                t.abort();
            }
        }
        let result = match &active.revert {
            Revert::Start { component } => {
                self.components
                    .start(component)
                    .await
                    .map_err(|source| InjectError::Component {
                        target: component.clone(),
                        source,
                    })
            }
            other => {
                revert_now(other, active.proxy.as_ref());
                Ok(())
            }
        };
        self.forget(id);
        let end = self.stamp();
        let mut st = self.lock_state();
        let event = st
            .events
            .iter_mut()
            .find(|e| e.id == id)
            .expect("every active fault has an event");
        event.end = Some(end);
        if let Err(e) = &result {
            event.error = Some(e.to_string());
        }
        tracing::info!(id, fault = %event.fault, target = %event.target, "fault reverted");
        let event = event.clone();
        drop(st);
        result.map(|()| event)
    }

    /// Revert every active fault; returns the events, including failed reverts.
    pub async fn revert_all(&self) -> Vec<FaultEvent> {
        let ids: Vec<u64> = self.lock_state().active.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            match self.revert(id).await {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(id, error = %e, "revert failed"),
            }
        }
        out
    }

    /// Revert everything without awaiting — for Drop and signal paths. A
    /// `restart` in progress is started on the current runtime when there is one.
    pub fn revert_all_now(&self) {
        let drained: Vec<(u64, Active)> = std::mem::take(&mut self.lock_state().active)
            .into_iter()
            .collect();
        let end = self.stamp();
        for (id, active) in drained {
            if let Some(t) = &active.expiry {
                t.abort();
            }
            match &active.revert {
                Revert::Start { component } => {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let components = self.components.clone();
                        let component = component.clone();
                        rt.spawn(async move {
                            if let Err(e) = components.start(&component).await {
                                tracing::warn!(%component, error = %e, "restart revert failed");
                            }
                        });
                    }
                    // The ledger keeps the entry if we could not even try.
                    else {
                        continue;
                    }
                }
                other => revert_now(other, active.proxy.as_ref()),
            }
            self.forget(id);
            if let Some(e) = self.lock_state().events.iter_mut().find(|e| e.id == id) {
                e.end = Some(end);
            }
        }
    }

    /// Inject a plan's faults at their offsets from `start` (the run's start).
    /// A fault that cannot be injected when its time comes (e.g. its process is
    /// down) becomes an event with `error` set, and the plan carries on.
    pub fn run_plan(self: &Arc<Self>, plan: Plan, start: Instant) -> JoinHandle<()> {
        let injector = self.clone();
        tokio::spawn(async move {
            for planned in plan.faults {
                tokio::time::sleep_until(start + planned.at).await;
                if let Err(e) = injector.inject(&planned.request).await {
                    tracing::warn!(fault = %planned.request.fault, target = %planned.request.target, error = %e, "planned fault not injected");
                    injector.record_failure(&planned.request, &e);
                }
            }
        })
    }

    fn record_failure(&self, req: &FaultRequest, error: &InjectError) {
        let now = self.stamp();
        let mut st = self.lock_state();
        st.next_id += 1;
        let id = st.next_id - 1;
        st.events.push(FaultEvent {
            id,
            fault: req.fault.clone(),
            target: req.target.clone(),
            params: req.params.clone(),
            duration: req.duration,
            start: now,
            end: Some(now),
            error: Some(error.to_string()),
        });
    }

    /// A guard that reverts every active fault when dropped — on return, on
    /// early exit, on panic unwinding.
    pub fn guard(self: &Arc<Self>) -> RevertGuard {
        RevertGuard(self.clone())
    }
}

/// Start the components a crashed run held down. Best effort: one that no
/// longer exists, or fails to start, is logged and the others are still tried.
async fn start_held_down(components: &dyn Components, names: &[String]) {
    for name in names {
        match components.start(name).await {
            Ok(()) => {
                tracing::warn!(component = %name, "started a component a crashed run held down")
            }
            Err(e) => {
                tracing::warn!(component = %name, error = %e, "cannot start a component a crashed run held down")
            }
        }
    }
}

/// The synchronous reverts (everything but `Revert::Start`).
fn revert_now(revert: &Revert, proxy: Option<&ProxyHandle>) {
    match revert {
        Revert::Resume { processes } => {
            for p in processes.iter().filter(|p| p.alive()) {
                if let Err(e) = process::resume(p.pid) {
                    tracing::warn!(pid = p.pid, error = %e, "cannot resume");
                }
            }
        }
        Revert::RemoveToxic { toxic, .. } => {
            if let Some(proxy) = proxy {
                proxy.remove_toxic(*toxic);
            }
        }
        Revert::Start { .. } => {}
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.revert_all_now();
    }
}

/// See [`Injector::guard`].
pub struct RevertGuard(Arc<Injector>);

impl Drop for RevertGuard {
    fn drop(&mut self) {
        self.0.revert_all_now();
    }
}
