//! The tokio backend: sockets driven through tokio's epoll reactor, timers from
//! tokio's time driver. It runs wherever tokio runs and is the fallback when
//! io_uring is not available.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::time::{Duration, Instant};

use socket2::SockAddr;
use tokio::io::unix::AsyncFd;

use crate::sock::{tcp_socket, Backend, Socket};

pub(crate) struct Epoll;

impl Backend for Epoll {
    type Socket = EpollSocket;
    type Sleep = tokio::time::Sleep;

    /// tokio rounds a deadline up to its next millisecond tick and epoll adds up
    /// to another: aiming two ticks early lands sends in about [due - 1ms, due]
    /// instead of [due, due + 1ms].
    const TIMER_SLACK: Duration = Duration::from_millis(2);

    fn sleep_until(t: Instant) -> Self::Sleep {
        tokio::time::sleep_until(t.into())
    }

    fn reset(sleep: Pin<&mut Self::Sleep>, t: Instant) {
        sleep.reset(t.into());
    }

    fn deadline(sleep: &Self::Sleep) -> Instant {
        sleep.deadline().into_std()
    }
}

/// A TCP stream registered once with tokio's reactor.
///
/// Driven through `AsyncFd` rather than tokio's `TcpStream` so a short read can
/// clear read readiness: tokio keeps a socket marked readable after any
/// successful read, so the read after the next request would hit the kernel and
/// come back `EAGAIN` before waiting on epoll (one wasted syscall per request).
/// A short read means the receive queue was drained, and with edge-triggered
/// epoll the next arrival raises a fresh readiness event.
pub(crate) struct EpollSocket(AsyncFd<TcpStream>);

impl Socket for EpollSocket {
    /// A non-blocking connect registered once with the reactor (a tokio
    /// `TcpStream` would be registered, then deregistered again to become an
    /// `AsyncFd`).
    async fn connect(addr: &SocketAddr) -> io::Result<Self> {
        let socket = tcp_socket(addr)?;
        match socket.connect(&SockAddr::from(*addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: a std `TcpStream` owns its descriptor until it is dropped, and
        // the `AsyncFd` owns the stream, so the descriptor stays open and the same.
        let fd = unsafe { AsyncFd::register(TcpStream::from(socket)) }?;
        // Writable means the handshake ended; SO_ERROR says how. (A connected
        // socket stays writable, so the readiness is left as it is.)
        let _handshake = fd.writable().await?;
        if let Some(e) = fd.get_ref().take_error()? {
            return Err(e);
        }
        drop(_handshake);
        Ok(Self(fd))
    }

    /// Writes straight away (the send buffer almost always has room) and waits
    /// for write readiness only after `EAGAIN`.
    async fn send_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = match self.0.get_ref().write(data) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut guard = self.0.writable().await?;
                    match guard.try_io(|s| s.get_ref().write(data)) {
                        Ok(r) => r?,
                        Err(_would_block) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    async fn recv(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.get_inner().read(dst) {
                Ok(n) => {
                    // Short: the receive queue is empty now (see above). The
                    // guard's tick keeps an event that raced in from being lost.
                    if n > 0 && n < dst.len() {
                        guard.clear_ready();
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
