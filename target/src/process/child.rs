//! A child process that dies with us: spawned from one long-lived thread with
//! PR_SET_PDEATHSIG(SIGKILL), reaped by its own waiter thread, and stopped by pid
//! (a polite signal, then SIGKILL after a grace period).
//!
//! Linux delivers the parent-death signal when the *thread* that forked the child
//! exits, not the process. Tokio's blocking pool retires idle threads, so a child
//! spawned from one would be killed seconds later; every spawn therefore goes through
//! a dedicated spawner thread that lives as long as the process.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::ProcessError;

type SpawnJob = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

/// A running (or exited) child. Cloning shares the same process.
#[derive(Clone)]
pub struct ChildProcess {
    name: Arc<str>,
    pid: u32,
    exit: Arc<ExitCell>,
}

struct ExitCell {
    status: Mutex<Option<ExitStatus>>,
    changed: Condvar,
    watch: watch::Sender<Option<ExitStatus>>,
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("status", &self.try_status())
            .finish()
    }
}

fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("slolab-spawner".into())
            .spawn(move || {
                // Never returns while the process lives: the Sender sits in a static.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the slolab-spawner thread");
        tx
    })
}

impl ChildProcess {
    /// Spawn `command` as a child that receives SIGKILL if this process dies, in its
    /// own process group (so a terminal's Ctrl-C reaches only the supervisor, which
    /// then stops children in order). Set stdio and credentials on `command` first.
    pub fn spawn(name: &str, mut command: Command) -> Result<ChildProcess, ProcessError> {
        let binary = command.get_program().to_string_lossy().into_owned();
        let parent = std::process::id();
        command.process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid) without allocating.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died between fork and prctl; then nobody would kill us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited before exec"));
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let spawn_failed = |source| ProcessError::Spawn {
            binary: binary.clone(),
            source,
        };
        spawner()
            .send((command, reply_tx))
            .map_err(|_| spawn_failed(std::io::Error::other("spawner thread is gone")))?;
        let mut child = reply_rx
            .recv()
            .map_err(|_| spawn_failed(std::io::Error::other("spawner thread is gone")))?
            .map_err(spawn_failed)?;
        let pid = child.id();
        let (watch_tx, _) = watch::channel(None);
        let exit = Arc::new(ExitCell {
            status: Mutex::new(None),
            changed: Condvar::new(),
            watch: watch_tx,
        });
        let cell = exit.clone();
        let waiter = std::thread::Builder::new()
            .name(format!("wait-{name}"))
            .spawn(move || {
                // Wait for the exit without reaping (WNOWAIT), then reap under the
                // lock: while `signal` holds the lock the pid cannot be recycled.
                loop {
                    // SAFETY: waitid only writes into the zeroed siginfo we own.
                    let rc = unsafe {
                        let mut info: libc::siginfo_t = std::mem::zeroed();
                        libc::waitid(
                            libc::P_PID,
                            pid as libc::id_t,
                            &mut info,
                            libc::WEXITED | libc::WNOWAIT,
                        )
                    };
                    if rc == 0
                        || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                    {
                        break;
                    }
                }
                let mut slot = cell.status.lock().unwrap_or_else(|e| e.into_inner());
                let status = match child.wait() {
                    Ok(s) => s,
                    // wait() only fails if the child was already reaped, which nobody
                    // else does; report it as killed so waiters do not hang.
                    Err(_) => std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL),
                };
                *slot = Some(status);
                drop(slot);
                cell.changed.notify_all();
                cell.watch.send_replace(Some(status));
            });
        if let Err(e) = waiter {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            return Err(ProcessError::io("starting a waiter thread", e));
        }
        tracing::debug!(name, pid, binary, "spawned");
        Ok(ChildProcess {
            name: name.into(),
            pid,
            exit,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, if the child has exited (and been reaped).
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.exit.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// Block up to `timeout` for the child to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut status = self.exit.status.lock().unwrap_or_else(|e| e.into_inner());
        while status.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            status = self
                .exit
                .changed
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *status
    }

    /// Wait (async) until the child exits.
    pub async fn exited(&self) -> ExitStatus {
        let mut rx = self.exit.watch.subscribe();
        loop {
            if let Some(status) = *rx.borrow_and_update() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; fall back to polling.
                if let Some(status) = self.try_status() {
                    return status;
                }
            }
        }
    }

    /// Send `signal` to the child unless it has already exited (so a recycled pid is
    /// never signalled). Returns whether the signal was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        let status = self.exit.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_some() {
            return false;
        }
        // Holding the lock: the waiter reaps only under it, so the pid is still ours.
        kill(Pid::from_raw(self.pid as i32), signal).is_ok()
    }

    /// Stop the child: `polite` signal, up to `grace` to exit, then SIGKILL.
    pub fn stop(&self, polite: Signal, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_status() {
            return Some(status);
        }
        self.signal(polite);
        if let Some(status) = self.wait_timeout(grace) {
            tracing::debug!(name = %self.name, pid = self.pid, ?status, "stopped");
            return Some(status);
        }
        tracing::warn!(name = %self.name, pid = self.pid, ?grace, "did not stop in time; sending SIGKILL");
        self.signal(Signal::SIGKILL);
        self.wait_timeout(Duration::from_secs(10))
    }
}
