//! The ledger: every active fault's revert, on disk, so that no fault outlives
//! the process that injected it. One file per injecting process; the next start
//! reverts what a crashed one left (a SIGSTOPped pid gets its SIGCONT).

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::process::{self, ProcStat};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot write the fault ledger {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the fault ledger directory {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// A process identity that survives pid reuse: the pid plus its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a live pid, `None` when it is gone.
    pub fn of(pid: u32) -> Option<ProcessId> {
        ProcStat::read(pid).map(|s| ProcessId {
            pid,
            start_time: s.start_time,
        })
    }

    /// This very process.
    pub fn current() -> ProcessId {
        ProcessId::of(std::process::id()).unwrap_or(ProcessId {
            pid: std::process::id(),
            start_time: 0,
        })
    }

    /// Whether this exact process still exists (same pid, same start time).
    pub fn alive(&self) -> bool {
        ProcStat::read(self.pid).is_some_and(|s| s.start_time == self.start_time)
    }
}

/// How to undo one fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Revert {
    /// SIGCONT these processes (a component's tree), each only if it is still
    /// the same process.
    Resume { processes: Vec<ProcessId> },
    /// Remove a toxic from a proxy. Proxies live in the injecting process, so a
    /// crash removes these by itself.
    RemoveToxic { proxy: String, toxic: u64 },
    /// Start a component held down by `restart` or `stop --for` (the
    /// supervisor's job).
    Start { component: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: u64,
    pub fault: String,
    pub target: String,
    pub started: DateTime<Utc>,
    pub revert: Revert,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    owner: Option<ProcessId>,
    entries: Vec<LedgerEntry>,
}

/// This process's ledger file: `<dir>/chaos-ledger-<pid>.json`.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: LedgerFile,
}

/// What [`Ledger::recover`] found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Pids that were stopped by a dead run and got SIGCONT.
    pub resumed: Vec<u32>,
    /// Entries whose revert needed nothing (the process is gone, or was recycled,
    /// or the fault vanished with its owner).
    pub gone: usize,
    /// Components a dead run held down (`restart`, `stop --for`): the next
    /// [`crate::Injector`] asks its supervisor to start them (a no-op for one that
    /// runs), so a crash mid-outage does not make the outage permanent.
    pub held_down: Vec<String>,
}

impl Ledger {
    /// Create (empty) this process's ledger in `dir`.
    pub fn create(dir: &Path) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let ledger = Ledger {
            path: dir.join(format!("chaos-ledger-{}.json", std::process::id())),
            file: LedgerFile {
                owner: Some(ProcessId::current()),
                entries: Vec::new(),
            },
        };
        ledger.save()?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[LedgerEntry] {
        &self.file.entries
    }

    pub fn record(&mut self, entry: LedgerEntry) -> Result<(), LedgerError> {
        self.file.entries.push(entry);
        self.save()
    }

    pub fn remove(&mut self, id: u64) -> Result<Option<LedgerEntry>, LedgerError> {
        let Some(at) = self.file.entries.iter().position(|e| e.id == id) else {
            return Ok(None);
        };
        let entry = self.file.entries.remove(at);
        self.save()?;
        Ok(Some(entry))
    }

    /// Write to a temporary file and rename, so a crash mid-write never leaves
    /// a torn ledger.
    fn save(&self) -> Result<(), LedgerError> {
        let err = |source| LedgerError::Write {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(&self.file).expect("ledger serialises");
        atomicfile::write_atomic(&self.path, &text).map_err(err)
    }

    /// Revert what dead runs left in `dir`: for every ledger whose owner is gone,
    /// SIGCONT the processes it stopped (only if the pid still names the same
    /// process and it is still stopped), then delete that ledger.
    pub fn recover(dir: &Path) -> Result<Recovery, LedgerError> {
        let mut recovery = Recovery::default();
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(recovery),
            Err(source) => {
                return Err(LedgerError::Read {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        for item in read.flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("chaos-ledger-") && name.ends_with(".json")) {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let file: LedgerFile = match serde_json::from_slice(&text) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable fault ledger left alone");
                    continue;
                }
            };
            if file.owner.is_some_and(|o| o.alive()) {
                continue;
            }
            for entry in &file.entries {
                match &entry.revert {
                    Revert::Resume { processes } => {
                        for p in processes {
                            match ProcStat::read(p.pid) {
                                Some(s) if s.start_time == p.start_time => {
                                    // SIGCONT even when not 'T' yet: harmless, and
                                    // it covers a stop still being delivered.
                                    if process::resume(p.pid).is_ok() {
                                        tracing::warn!(pid = p.pid, fault = entry.id, target = %entry.target, "resumed a process a crashed run left paused");
                                        recovery.resumed.push(p.pid);
                                    }
                                }
                                _ => recovery.gone += 1,
                            }
                        }
                    }
                    Revert::RemoveToxic { .. } => recovery.gone += 1,
                    Revert::Start { component } => recovery.held_down.push(component.clone()),
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        Ok(recovery)
    }
}

impl Drop for Ledger {
    /// An empty ledger is deleted on a clean exit; a non-empty one stays for
    /// [`Ledger::recover`].
    fn drop(&mut self) {
        if self.file.entries.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
