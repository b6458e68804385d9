//! Launchers for the real processes the stack is made of (PostgreSQL, Redis, nginx,
//! and our own re-executed binary): find the binary, pick a free port, spawn it so it
//! dies with us, wait until it is really ready, and stop it by pid.

pub mod child;
pub mod nginx;
pub mod postgres;
pub mod redis;

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use child::ChildProcess;

/// How long a launcher waits for its process to become ready. Generous because the
/// machines that run the tests are shared and noisy; a process that dies fails fast.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a launcher retries on a port that someone else grabbed between our
/// probe and the child's bind.
const PORT_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{binary}` not found on PATH{searched}; install the Debian package `{package}` (apt-get install {package})")]
    MissingBinary {
        binary: String,
        package: String,
        searched: String,
    },
    #[error("we are root and PostgreSQL refuses to run as root, but there is no `postgres` user to run it as; create one (e.g. apt-get install postgresql, or useradd postgres)")]
    NoPostgresUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start `{binary}`: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}); its output:\n{output}")]
    CommandFailed {
        what: String,
        status: ExitStatus,
        output: String,
    },
    #[error("{name} exited during start-up ({status}); end of {log}:\n{tail}")]
    ExitedEarly {
        name: String,
        status: ExitStatus,
        log: String,
        tail: String,
    },
    /// The child exited during start-up because its port was taken: the one
    /// early exit a launcher on a free port may retry.
    #[error(
        "{name} could not bind its port ({status}): address already in use; end of {log}:\n{tail}"
    )]
    AddrInUse {
        name: String,
        status: ExitStatus,
        log: String,
        tail: String,
    },
    #[error("{name} was not ready after {waited:?}; end of {log}:\n{tail}")]
    NotReady {
        name: String,
        waited: Duration,
        log: String,
        tail: String,
    },
    #[error("{name} rejected the start-up probe: {message}")]
    Probe { name: String, message: String },
}

impl ProcessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ProcessError::Io {
            what: what.into(),
            source,
        }
    }

    /// A child that exited during start-up, told apart once, here, by its log:
    /// every process we launch (PostgreSQL, Redis, nginx, our own binary) prints
    /// the OS message "Address already in use" when its bind fails.
    pub(crate) fn exited_early(name: &str, status: ExitStatus, log: &Path) -> Self {
        let tail = log_tail(log);
        let (name, log) = (name.to_string(), log.display().to_string());
        if tail.contains("ddress already in use") {
            ProcessError::AddrInUse {
                name,
                status,
                log,
                tail,
            }
        } else {
            ProcessError::ExitedEarly {
                name,
                status,
                log,
                tail,
            }
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1. The listener is closed before the
/// child binds it, so there is a small race; launchers retry when they lose it.
pub fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ProcessError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ProcessError::io("reading the free port", e))?;
    Ok(addr.port())
}

/// Run `launch` on `fixed` or, when None, on a free port — retrying with another
/// free port when the child loses the race for it. Returns the child and its port.
pub(crate) fn on_port(
    name: &str,
    fixed: Option<u16>,
    mut launch: impl FnMut(u16) -> Result<ChildProcess, ProcessError>,
) -> Result<(ChildProcess, u16), ProcessError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match fixed {
            Some(p) => p,
            None => free_port()?,
        };
        match launch(port) {
            Ok(child) => return Ok((child, port)),
            Err(ProcessError::AddrInUse { .. }) if fixed.is_none() && attempt < PORT_ATTEMPTS => {
                tracing::info!(name, port, "lost the race for a free port; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Find `binary` on PATH, then in `extra_dirs` (in order). The error names the Debian
/// package that provides it.
pub fn find_binary(
    binary: &str,
    package: &str,
    extra_dirs: &[PathBuf],
) -> Result<PathBuf, ProcessError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in path_dirs.iter().chain(extra_dirs) {
        let candidate = dir.join(binary);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let searched = if extra_dirs.is_empty() {
        String::new()
    } else {
        let dirs: Vec<String> = extra_dirs.iter().map(|d| d.display().to_string()).collect();
        format!(" or in {}", dirs.join(", "))
    };
    Err(ProcessError::MissingBinary {
        binary: binary.to_string(),
        package: package.to_string(),
        searched,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The last few KiB of a log file, for error messages that should show why a
/// process would not start.
pub fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 4096;
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Open (append) a log file for a child's stdout and stderr.
pub(crate) fn open_log(path: &Path) -> Result<(std::fs::File, std::fs::File), ProcessError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ProcessError::io(format!("opening log {}", path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| ProcessError::io(format!("opening log {}", path.display()), e))?;
    Ok((out, err))
}

/// Poll `probe` until it says ready, the child exits, or [`READY_TIMEOUT`] passes.
/// `probe` returns Ok(true) when ready, Ok(false) to try again, Err to give up.
pub(crate) fn wait_ready(
    name: &str,
    child: &ChildProcess,
    log: &Path,
    mut probe: impl FnMut() -> Result<bool, ProcessError>,
) -> Result<(), ProcessError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(status) = child.try_status() {
            return Err(ProcessError::exited_early(name, status, log));
        }
        if probe()? {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(ProcessError::NotReady {
                name: name.to_string(),
                waited: started.elapsed(),
                log: log.display().to_string(),
                tail: log_tail(log),
            });
        }
        // The exit check above races with the probe; waiting on the child here
        // doubles as the back-off sleep and notices an exit at once.
        child.wait_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
