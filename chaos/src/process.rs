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
            if let Some(stat) = ProcStat::read(child) {
                parents.push((child, stat.ppid));
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

/// The fields of `/proc/PID/stat` the workspace reads: the one parser of that
/// file, so the awkward command names (spaces, parentheses) are handled once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The command name without its enclosing parentheses.
    pub comm: String,
    /// 'R', 'S', 'T' (stopped), 'Z' (zombie), …
    pub state: char,
    pub ppid: u32,
    /// The process group: a child leading its own group has `pgrp == pid`.
    pub pgrp: u32,
    /// Clock ticks after boot at which the process started; tells a pid from a
    /// recycled one.
    pub start_time: u64,
}

impl ProcStat {
    /// None when the process is gone (or the file is not what we expect).
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// The command name (field 2) may hold spaces and parentheses, so it runs
    /// from the first '(' to the last ')' and the other fields are counted after.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        if close < open {
            return None;
        }
        let pid = text[..open].trim().parse().ok()?;
        let comm = text[open + 1..close].to_string();
        let mut fields = text[close + 1..].split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        // After pgrp (field 5), starttime is field 22: 16 fields further.
        let start_time = fields.nth(16)?.parse().ok()?;
        Some(ProcStat {
            pid,
            comm,
            state,
            ppid,
            pgrp,
            start_time,
        })
    }

    pub fn stopped(&self) -> bool {
        self.state == 'T'
    }

    /// Dead but not yet reaped ('Z'), or dead ('X'): not alive for any purpose.
    pub fn dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
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

    fn stat_line(comm: &str) -> String {
        format!("1234 ({comm}) T 1 1230 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000000 200")
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        for comm in [
            "my (odd) cmd",
            "a) T 9 9 9 (b",
            "))",
            "(",
            "",
            " lead and trail ",
        ] {
            assert_eq!(
                ProcStat::parse(&stat_line(comm)),
                Some(ProcStat {
                    pid: 1234,
                    comm: comm.to_string(),
                    state: 'T',
                    ppid: 1,
                    pgrp: 1230,
                    start_time: 987654
                }),
                "comm {comm:?}"
            );
        }
    }

    #[test]
    fn rejects_truncated_or_garbled_stat() {
        assert_eq!(ProcStat::parse(""), None);
        assert_eq!(ProcStat::parse("1234 (sleep"), None);
        assert_eq!(ProcStat::parse("1234 (sleep) S 1 1234"), None);
        assert_eq!(ProcStat::parse(") 1234 (sleep S 1 1 1"), None);
        assert_eq!(
            ProcStat::parse("x (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
    }

    #[test]
    fn reads_this_process() {
        let me = ProcStat::read(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(!me.dead() && !me.stopped(), "{me}");
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
