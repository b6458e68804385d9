//! The two things the HTTP/1.1 client and the worker loop need from an I/O
//! backend: a TCP stream and a timer. Two backends implement them: tokio's epoll
//! reactor (`epoll`) and our own io_uring executor (`uring`, Linux).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket as RawSocket, Type};

/// A connected TCP stream (TCP_NODELAY), as the HTTP/1.1 client drives it:
/// one request written, then its response read, over and over.
pub(crate) trait Socket: Sized {
    /// Connects to `addr`. Dropping the future abandons the attempt.
    fn connect(addr: &SocketAddr) -> impl Future<Output = io::Result<Self>>;

    /// Hands all of `data` to the kernel. It may return before the kernel has
    /// taken every byte (the bytes are then owned by the socket); an error
    /// found later is returned by the next call on the socket.
    fn send_all(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>>;

    /// Reads at least one byte into `dst` (`dst` is never empty); `Ok(0)` is EOF.
    fn recv(&mut self, dst: &mut [u8]) -> impl Future<Output = io::Result<usize>>;

    /// The clock requests are timed by: when a send starts and when a read
    /// ends. The default reads the clock; a backend that wakes tasks in
    /// batches may return when it last looked for completions instead.
    fn clock() -> Instant {
        Instant::now()
    }
}

/// Timers and the stream type of one backend.
pub(crate) trait Backend: 'static {
    type Socket: Socket;
    type Sleep: Future<Output = ()>;

    /// How early the open-model pacer aims its timer so that sends land on
    /// their schedule rather than after it (an early send counts from the
    /// actual send, so aiming early never undercounts latency).
    const TIMER_SLACK: Duration = Duration::ZERO;

    /// A timer that fires at `t` (at once if `t` has passed).
    fn sleep_until(t: Instant) -> Self::Sleep;
    /// Moves a timer to `t`; it fires again even if it had fired.
    fn reset(sleep: Pin<&mut Self::Sleep>, t: Instant);
    /// When the timer fires (fired).
    fn deadline(sleep: &Self::Sleep) -> Instant;
}

/// A non-blocking TCP socket for `addr` with TCP_NODELAY, not yet connected:
/// what both backends connect (socket2 sets close-on-exec itself).
pub(crate) fn tcp_socket(addr: &SocketAddr) -> io::Result<RawSocket> {
    // One syscall on Linux: the flag rides on socket(2) instead of an fcntl.
    #[cfg(target_os = "linux")]
    let socket = RawSocket::new(
        Domain::for_address(*addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let s = RawSocket::new(
            Domain::for_address(*addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        s.set_nonblocking(true)?;
        s
    };
    socket.set_nodelay(true)?;
    Ok(socket)
}
