//! A private PostgreSQL cluster for tests and the stack: initdb in a temp (or given)
//! directory, its own port on 127.0.0.1, the socket inside the data directory, fsync
//! off. Run as the `postgres` user when we are root, because PostgreSQL refuses root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{find_binary, on_port, open_log, wait_ready, ChildProcess, ProcessError};

const PACKAGE: &str = "postgresql";

/// How long `stop` waits for a fast shutdown before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Data directory. `None`: a fresh temp dir, removed on drop. `Some`: used as is
    /// (initdb'd if empty), kept on drop — start again on it to keep the data.
    pub data_dir: Option<PathBuf>,
    /// Port on 127.0.0.1. `None`: a free one.
    pub port: Option<u16>,
    /// The database created (if missing) and named in `url()`.
    pub database: String,
    /// Where postgres' output goes. `None`: `postgres.log` beside the data directory.
    pub log_file: Option<PathBuf>,
    /// `max_connections`; the stack runs several pooled instances against one cluster.
    pub max_connections: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            data_dir: None,
            port: None,
            database: "slolab".to_string(),
            log_file: None,
            max_connections: 200,
        }
    }
}

/// A running private cluster. Stopped (fast shutdown) on `stop()` or drop.
#[derive(Debug)]
pub struct Postgres {
    child: ChildProcess,
    port: u16,
    database: String,
    data_dir: PathBuf,
    log_file: PathBuf,
    // Declared last: dropped after the process is stopped.
    _temp: Option<tempfile::TempDir>,
}

/// Who the server runs as: ourselves, or the `postgres` user when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    fn detect() -> Result<RunAs, ProcessError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs { ids: None });
        }
        let user = nix::unistd::User::from_name("postgres")
            .map_err(|e| ProcessError::io("looking up the postgres user", e.into()))?
            .ok_or(ProcessError::NoPostgresUser)?;
        Ok(RunAs {
            ids: Some((user.uid.as_raw(), user.gid.as_raw())),
        })
    }

    fn apply(self, command: &mut Command) {
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
    }

    fn own(self, path: &Path) -> Result<(), ProcessError> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
                ProcessError::io(format!("chown {} to postgres", path.display()), e)
            })?;
        }
        Ok(())
    }
}

/// The directory holding initdb and postgres: PATH first, else the newest
/// /usr/lib/postgresql/*/bin (Debian does not put them on PATH).
pub fn bin_dir() -> Result<PathBuf, ProcessError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    let extra: Vec<PathBuf> = versions.into_iter().rev().map(|(_, p)| p).collect();
    let initdb = find_binary("initdb", PACKAGE, &extra)?;
    // A PATH entry may be a symlink farm; the real directory also has `postgres`.
    let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
    let dir = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    find_binary("postgres", PACKAGE, std::slice::from_ref(&dir))?;
    Ok(dir)
}

impl Postgres {
    /// initdb (if needed), start, wait until it accepts connections, create the database.
    pub fn start(opts: PostgresOptions) -> Result<Postgres, ProcessError> {
        let bin = bin_dir()?;
        let run_as = RunAs::detect()?;
        let (temp, data_dir) = match &opts.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("slolab-pg-")
                    .tempdir()
                    .map_err(|e| ProcessError::io("creating a temp dir for postgres", e))?;
                // The postgres user must be able to reach its data dir inside.
                set_mode(temp.path(), 0o755)?;
                let data = temp.path().join("data");
                (Some(temp), data)
            }
        };
        let log_file = opts.log_file.clone().unwrap_or_else(|| {
            data_dir
                .parent()
                .unwrap_or(Path::new("/tmp"))
                .join("postgres.log")
        });
        if !data_dir.join("PG_VERSION").exists() {
            initdb(&bin, &data_dir, run_as, &log_file)?;
        }
        let (child, port) = on_port("postgres", opts.port, |port| {
            launch(&bin, &data_dir, port, run_as, &log_file, &opts)
        })?;
        Ok(Postgres {
            child,
            port,
            database: opts.database.clone(),
            data_dir,
            log_file,
            _temp: temp,
        })
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE` (trust auth on loopback).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    pub fn child(&self) -> &ChildProcess {
        &self.child
    }

    /// Fast shutdown (SIGINT: abort transactions, disconnect clients), SIGKILL after
    /// [`STOP_GRACE`]. Idempotent.
    pub fn stop(&self) {
        self.child.stop(Signal::SIGINT, STOP_GRACE);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ProcessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ProcessError::io(format!("chmod {}", path.display()), e))
}

fn initdb(bin: &Path, data_dir: &Path, run_as: RunAs, log_file: &Path) -> Result<(), ProcessError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ProcessError::io(format!("creating {}", data_dir.display()), e))?;
    set_mode(data_dir, 0o700)?;
    run_as.own(data_dir)?;
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        // initdb complains when it cannot return to a cwd the postgres user cannot read.
        .current_dir(data_dir)
        .stdin(Stdio::null());
    run_as.apply(&mut command);
    let output = command.output().map_err(|source| ProcessError::Spawn {
        binary: bin.join("initdb").display().to_string(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::write(log_file, &text);
    if !output.status.success() {
        return Err(ProcessError::CommandFailed {
            what: format!("initdb -D {}", data_dir.display()),
            status: output.status,
            output: text,
        });
    }
    Ok(())
}

fn launch(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    run_as: RunAs,
    log_file: &Path,
    opts: &PostgresOptions,
) -> Result<ChildProcess, ProcessError> {
    let (out, err) = open_log(log_file)?;
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(data_dir)
        .arg("-p")
        .arg(port.to_string())
        // The socket lives in the data dir: private, and writable by the server user.
        .arg("-k")
        .arg(data_dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Throwaway clusters: durability buys nothing and costs the tests time.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .arg("-c")
        .arg(format!("max_connections={}", opts.max_connections))
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    run_as.apply(&mut command);
    let child = ChildProcess::spawn("postgres", command)?;
    let ready = wait_ready("postgres", &child, log_file, || {
        match wire::session(port, "postgres") {
            Ok(mut session) => {
                session.create_database(&opts.database)?;
                Ok(true)
            }
            Err(wire::ConnectError::NotYet) => Ok(false),
            Err(wire::ConnectError::Fatal(message)) => Err(ProcessError::Probe {
                name: "postgres".into(),
                message,
            }),
        }
    });
    if let Err(e) = ready {
        child.stop(Signal::SIGKILL, Duration::from_secs(1));
        return Err(e);
    }
    tracing::info!(pid = child.pid(), port, data = %data_dir.display(), "postgres ready");
    Ok(child)
}

/// Just enough of the PostgreSQL wire protocol (v3) to tell "accepting connections"
/// from "starting up" and to create a database, without a client library or
/// runtime in this synchronous launcher.
mod wire {
    use super::*;

    pub enum ConnectError {
        /// Not listening yet, or "the database system is starting up" (57P03).
        NotYet,
        Fatal(String),
    }

    pub struct Session {
        stream: TcpStream,
    }

    pub fn session(port: u16, database: &str) -> Result<Session, ConnectError> {
        let addr = super::super::loopback(port);
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(|_| ConnectError::NotYet)?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut session = Session { stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
        for (k, v) in [("user", "postgres"), ("database", database)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        session
            .stream
            .write_all(&msg)
            .map_err(|_| ConnectError::NotYet)?;
        loop {
            let (kind, body) = session.read().map_err(|_| ConnectError::NotYet)?;
            match kind {
                b'R' => {
                    let code = body
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    if code != Some(0) {
                        return Err(ConnectError::Fatal(format!(
                            "server asks for authentication (code {code:?}); expected trust"
                        )));
                    }
                }
                b'Z' => return Ok(session),
                b'E' => {
                    let (code, message) = error_fields(&body);
                    return Err(if code == "57P03" {
                        ConnectError::NotYet
                    } else {
                        ConnectError::Fatal(format!("{code}: {message}"))
                    });
                }
                _ => {} // ParameterStatus, BackendKeyData, notices
            }
        }
    }

    impl Session {
        fn read(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
            let mut head = [0u8; 5];
            self.stream.read_exact(&mut head)?;
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            self.stream.read_exact(&mut body)?;
            Ok((head[0], body))
        }

        /// CREATE DATABASE, treating "already exists" (42P04) as success so a restart
        /// on the same data dir works.
        pub fn create_database(&mut self, name: &str) -> Result<(), ProcessError> {
            let fail = |message: String| ProcessError::Probe {
                name: "postgres".into(),
                message,
            };
            let quoted = name.replace('"', "\"\"");
            let sql = format!("CREATE DATABASE \"{quoted}\"\0");
            let mut msg = vec![b'Q'];
            msg.extend_from_slice(&((sql.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(sql.as_bytes());
            self.stream
                .write_all(&msg)
                .map_err(|e| fail(format!("sending CREATE DATABASE: {e}")))?;
            let mut error = None;
            loop {
                let (kind, body) = self
                    .read()
                    .map_err(|e| fail(format!("reading CREATE DATABASE reply: {e}")))?;
                match kind {
                    b'E' => {
                        let (code, message) = error_fields(&body);
                        if code != "42P04" {
                            error = Some(format!("CREATE DATABASE {name}: {code}: {message}"));
                        }
                    }
                    b'Z' => break,
                    _ => {}
                }
            }
            let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]);
            error.map_or(Ok(()), |m| Err(fail(m)))
        }
    }

    /// (SQLSTATE, message) from an ErrorResponse body.
    fn error_fields(body: &[u8]) -> (String, String) {
        let (mut code, mut message) = (String::new(), String::new());
        for field in body.split(|b| *b == 0) {
            if let Some((&tag, value)) = field.split_first() {
                let value = String::from_utf8_lossy(value).into_owned();
                match tag {
                    b'C' => code = value,
                    b'M' => message = value,
                    _ => {}
                }
            }
        }
        (code, message)
    }
}
