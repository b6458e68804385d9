//! A private `redis-server` on its own port on 127.0.0.1 with persistence off: a
//! cache that tests (and the chaos `restart` fault) can kill and start again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{find_binary, loopback, on_port, open_log, wait_ready, ChildProcess, ProcessError};

const PACKAGE: &str = "redis-server";

/// How long `stop` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Port on 127.0.0.1. `None`: a free one. Give the old port to restart in place.
    pub port: Option<u16>,
    /// Working directory (`--dir`). `None`: a temp dir removed on drop.
    pub dir: Option<PathBuf>,
    /// Where redis' output goes. `None`: `redis.log` in the working directory.
    pub log_file: Option<PathBuf>,
}

/// A running private redis-server. Stopped on `stop()` or drop.
#[derive(Debug)]
pub struct Redis {
    child: ChildProcess,
    port: u16,
    dir: PathBuf,
    log_file: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

pub fn binary() -> Result<PathBuf, ProcessError> {
    find_binary(
        "redis-server",
        PACKAGE,
        &[PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")],
    )
}

impl Redis {
    /// Start redis-server and wait until it answers PING.
    pub fn start(opts: RedisOptions) -> Result<Redis, ProcessError> {
        let bin = binary()?;
        let (temp, dir) = match &opts.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ProcessError::io(format!("creating {}", dir.display()), e))?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("slolab-redis-")
                    .tempdir()
                    .map_err(|e| ProcessError::io("creating a temp dir for redis", e))?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let log_file = opts
            .log_file
            .clone()
            .unwrap_or_else(|| dir.join("redis.log"));
        let (child, port) = on_port("redis", opts.port, |port| {
            launch(&bin, &dir, port, &log_file)
        })?;
        Ok(Redis {
            child,
            port,
            dir,
            log_file,
            _temp: temp,
        })
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    pub fn child(&self) -> &ChildProcess {
        &self.child
    }

    /// SIGTERM, SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&self) {
        self.child.stop(Signal::SIGTERM, STOP_GRACE);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn launch(
    bin: &Path,
    dir: &Path,
    port: u16,
    log_file: &Path,
) -> Result<ChildProcess, ProcessError> {
    let (out, err) = open_log(log_file)?;
    let mut command = Command::new(bin);
    command
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = ChildProcess::spawn("redis", command)?;
    let ready = wait_ready("redis", &child, log_file, || Ok(ping(port)));
    if let Err(e) = ready {
        child.stop(Signal::SIGKILL, Duration::from_secs(1));
        return Err(e);
    }
    tracing::info!(pid = child.pid(), port, "redis ready");
    Ok(child)
}

/// True when redis answers PING with PONG (not -LOADING or a refused connection).
pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
