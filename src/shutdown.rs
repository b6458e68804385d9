//! The one shutdown signal every command waits on: SIGINT (a terminal's Ctrl-C) or
//! SIGTERM (a supervisor's stop). Handlers are registered up front so a signal during
//! start-up is not lost.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Which signal asked us to stop, so each command can word its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// Registered SIGINT and SIGTERM handlers; `recv` may be awaited more than once.
pub struct Shutdown {
    int: Signal,
    term: Signal,
}

impl Shutdown {
    /// Registers both handlers now; must run inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM. Without handlers it never resolves:
/// the default action (exit) still stops us, and we must not stop at once.
pub async fn signal_received() -> Stop {
    match Shutdown::install() {
        Ok(mut s) => s.recv().await,
        Err(e) => {
            tracing::warn!("cannot install signal handlers: {e}");
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sigterm_to_ourselves_is_reported_as_terminate() {
        let mut shutdown = Shutdown::install().expect("handlers");
        // Our own pid, never a name: the handler is installed so the default action is off.
        let pid = std::process::id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill own pid");
        assert_eq!(shutdown.recv().await, Stop::Terminate);
    }
}
