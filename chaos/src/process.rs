//! Process faults by pid (kill, stop, pause, resume) and the `Components` trait
//! through which the supervisor, which owns the processes, lends them to chaos.

use std::fmt;

use futures::future::BoxFuture;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::proxy::ProxyHandle;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Signal {
        pid: u32,
        signal: Signal,
        source: nix::Error,
    },
}

/// What kind of component a process is: decides the fault proxy's place and how
/// the CLI groups it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    Api,
    Gateway,
    Redis,
    Postgres,
    Other,
}

/// One component of the stack as chaos sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    /// The running process, when there is one.
    pub pid: Option<u32>,
    /// The fault proxy clients of this component go through, when it has one.
    #[serde(skip)]
    pub proxy: Option<ProxyHandle>,
}

/// A failure reported by the supervisor.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

/// The supervisor's side of the contract: name lookup, and stop/start that keep
/// the port and data (for `restart`). `stop` must hold the component down — no
/// restart policy — until `start`.
pub trait Components: Send + Sync + 'static {
    /// Every component name, in a stable order (api-1, api-2, …, gateway, …).
    fn names(&self) -> Vec<String>;
    fn lookup(&self, name: &str) -> Option<Component>;
    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ComponentError>>;
    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ComponentError>>;
}

pub fn send(pid: u32, sig: Signal) -> Result<(), ProcessError> {
    signal::kill(Pid::from_raw(pid as i32), sig).map_err(|source| ProcessError::Signal {
        pid,
        signal: sig,
        source,
    })
}

/// SIGKILL: the process dies at once, no cleanup.
pub fn kill(pid: u32) -> Result<(), ProcessError> {
    send(pid, Signal::SIGKILL)
}

/// SIGTERM: a graceful stop.
pub fn terminate(pid: u32) -> Result<(), ProcessError> {
    send(pid, Signal::SIGTERM)
}

/// SIGSTOP: frozen, sockets open, answering nothing.
pub fn pause(pid: u32) -> Result<(), ProcessError> {
    send(pid, Signal::SIGSTOP)
}

/// SIGCONT: the revert of [`pause`].
pub fn resume(pid: u32) -> Result<(), ProcessError> {
    send(pid, Signal::SIGCONT)
}

/// `pid` and all its descendants, parents before children. Pausing a component
/// must freeze its whole tree: PostgreSQL serves queries from per-connection
/// backends, so stopping the postmaster alone would freeze nothing that matters.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|t| ProcStat::parse_ppid(&t))
            {
                parents.push((child, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// The two fields of `/proc/PID/stat` chaos needs: the state letter ('T' when
/// stopped) and the start time, which tells a pid from a recycled one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    /// Clock ticks after boot at which the process started.
    pub start_time: u64,
}

impl ProcStat {
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// The command name (field 2) may hold spaces and parentheses, so fields
    /// are counted from the last ')'.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // After the state (field 3), starttime is field 22: 18 fields further.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcStat { state, start_time })
    }

    fn parse_ppid(text: &str) -> Option<u32> {
        let rest = &text[text.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn stopped(&self) -> bool {
        self.state == 'T'
    }
}

impl fmt::Display for ProcStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state {} started at tick {}",
            self.state, self.start_time
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (my (odd) cmd) T 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000000 200";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'T',
                start_time: 987654
            })
        );
    }

    #[test]
    fn tree_finds_descendants() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let mut found = vec![pid];
        for _ in 0..1000 {
            found = tree(pid);
            if found.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], pid);
        for p in found.iter().rev() {
            let _ = kill(*p);
        }
        shell.wait().unwrap();
    }

    #[test]
    fn pause_and_resume_a_real_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let before = ProcStat::read(pid).unwrap();
        assert!(!before.stopped());
        pause(pid).unwrap();
        // The signal is delivered asynchronously; wait (bounded) for the state.
        let mut stopped = false;
        for _ in 0..1000 {
            if ProcStat::read(pid).unwrap().stopped() {
                stopped = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(stopped);
        assert_eq!(ProcStat::read(pid).unwrap().start_time, before.start_time);
        resume(pid).unwrap();
        let mut running = false;
        for _ in 0..1000 {
            if !ProcStat::read(pid).unwrap().stopped() {
                running = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(running);
        kill(pid).unwrap();
        child.wait().unwrap();
    }
}
