//! Debian's nginx as the stack's alternative gateway (the course's own setup and our
//! performance peer): found on PATH or in /usr/sbin, run in the foreground from a
//! config the gateway module writes, as a single process so PDEATHSIG covers it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{find_binary, loopback, open_log, wait_ready, ChildProcess, ProcessError};

const PACKAGE: &str = "nginx";

/// How long `stop` waits after SIGQUIT (graceful: finish in-flight requests) before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Find the nginx binary (PATH, then /usr/sbin where Debian puts it).
pub fn binary() -> Result<PathBuf, ProcessError> {
    find_binary(
        "nginx",
        PACKAGE,
        &[PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")],
    )
}

#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// nginx's prefix (`-p`): relative paths in the config (temp dirs, pid) live here.
    pub prefix: PathBuf,
    /// The config file (`-c`).
    pub config: PathBuf,
    /// The port the config listens on (127.0.0.1), probed for readiness.
    pub port: u16,
    /// stdout/stderr and the error log (`-e`). `None`: `nginx.log` in the prefix.
    pub log_file: Option<PathBuf>,
}

/// A running nginx. Stopped on `stop()` or drop.
#[derive(Debug)]
pub struct Nginx {
    child: ChildProcess,
    port: u16,
    log_file: PathBuf,
}

impl Nginx {
    /// Start nginx in the foreground and wait until its port accepts connections.
    ///
    /// Unless the config sets them itself, adds `daemon off;` (we must stay its parent
    /// to reap and signal it) and `master_process off;` (nginx workers outlive a
    /// SIGKILLed master; a single process cannot be orphaned).
    pub fn start(opts: NginxOptions) -> Result<Nginx, ProcessError> {
        let bin = binary()?;
        let config = std::fs::read_to_string(&opts.config)
            .map_err(|e| ProcessError::io(format!("reading {}", opts.config.display()), e))?;
        let mut globals = String::new();
        if !has_directive(&config, "daemon") {
            globals.push_str("daemon off; ");
        }
        if !has_directive(&config, "master_process") {
            globals.push_str("master_process off; ");
        }
        std::fs::create_dir_all(&opts.prefix)
            .map_err(|e| ProcessError::io(format!("creating {}", opts.prefix.display()), e))?;
        let log_file = opts
            .log_file
            .clone()
            .unwrap_or_else(|| opts.prefix.join("nginx.log"));
        let (out, err) = open_log(&log_file)?;
        let mut command = Command::new(&bin);
        command
            .arg("-p")
            .arg(&opts.prefix)
            .arg("-c")
            .arg(&opts.config)
            // Without -e nginx first opens /var/log/nginx/error.log, which may not exist.
            .arg("-e")
            .arg(&log_file);
        if !globals.is_empty() {
            command.arg("-g").arg(globals.trim_end());
        }
        command
            .current_dir(&opts.prefix)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = ChildProcess::spawn("nginx", command)?;
        let port = opts.port;
        let ready = wait_ready("nginx", &child, &log_file, || {
            Ok(TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)).is_ok())
        });
        if let Err(e) = ready {
            child.stop(Signal::SIGKILL, Duration::from_secs(1));
            return Err(e);
        }
        tracing::info!(pid = child.pid(), port, "nginx ready");
        Ok(Nginx {
            child,
            port,
            log_file,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    pub fn child(&self) -> &ChildProcess {
        &self.child
    }

    /// SIGQUIT (graceful), SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&self) {
        self.child.stop(Signal::SIGQUIT, STOP_GRACE);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `name` appears as a directive (first word of a statement, outside comments).
fn has_directive(config: &str, name: &str) -> bool {
    config.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        line.split(';')
            .any(|stmt| stmt.split_whitespace().next() == Some(name))
    })
}

#[cfg(test)]
mod tests {
    use super::has_directive;

    #[test]
    fn finds_directives_but_not_comments_or_substrings() {
        let conf = "# daemon off;\nworker_processes 1; daemon off;\nevents {}\n";
        assert!(has_directive(conf, "daemon"));
        assert!(!has_directive(conf, "master_process"));
        assert!(!has_directive("# master_process off;\n", "master_process"));
        assert!(!has_directive("daemonize on;", "daemon"));
    }
}
