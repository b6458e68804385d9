//! The `Backend` and `Socket` adapters the engine drives: connect, send, recv
//! and sleep on the ring.

use super::*;

pub(crate) struct Uring;

impl Backend for Uring {
    type Socket = UringSocket;
    type Sleep = UringSleep;

    fn sleep_until(t: Instant) -> Self::Sleep {
        UringSleep {
            deadline: t,
            registered: None,
            _thread_bound: PhantomData,
        }
    }

    fn reset(sleep: Pin<&mut Self::Sleep>, t: Instant) {
        sleep.get_mut().deadline = t;
    }

    fn deadline(sleep: &Self::Sleep) -> Instant {
        sleep.deadline
    }
}

/// A TCP stream whose state lives in a slot of this thread's reactor.
pub(crate) struct UringSocket {
    reactor: u64,
    idx: usize,
    gen: u32,
    /// Its slot is in a thread-local reactor.
    _thread_bound: PhantomData<*const ()>,
}

impl UringSocket {
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Reactor, usize, u32) -> R) -> R {
        with_reactor(|r| {
            assert_eq!(
                r.id, self.reactor,
                "a UringSocket was used outside the uring::block_on_all that created it"
            );
            f(r, self.idx, self.gen)
        })
    }
}

impl Socket for UringSocket {
    /// When the executor last looked for completions: one clock read per turn
    /// instead of several per request. A response is stamped with when its
    /// completion was reaped (not later, when its task gets to run after
    /// others of the same batch). A send is stamped with the same time, one
    /// round of tasks before the enter that submits it: latency may overcount
    /// by that round, never undercount.
    fn clock() -> Instant {
        LOCAL.with(|l| l.clock.get()).unwrap_or_else(Instant::now)
    }

    async fn connect(addr: &SocketAddr) -> io::Result<Self> {
        let reactor = with_reactor(|r| r.id);
        let socket = tcp_socket(addr)?;
        let (idx, gen) = with_reactor(|r| r.start_connect(socket.into(), SockAddr::from(*addr)));
        // Owned from here on: dropping this future drops it, which cancels the
        // CONNECT.
        let this = UringSocket {
            reactor,
            idx,
            gen,
            _thread_bound: PhantomData,
        };
        poll_fn(|cx| this.with(|r, i, g| r.poll_connect(i, g, cx))).await?;
        Ok(this)
    }

    /// Usually returns at once: the data becomes the SEND of a pair, linked to
    /// the RECV of the answer, submitted at the end of the executor turn (a
    /// second write before then joins it). A second write after the pair went
    /// out is a plain SEND awaited to its end.
    async fn send_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.with(|r, i, g| r.try_stage(i, g, data)) {
            return Ok(());
        }
        poll_fn(|cx| self.with(|r, i, g| r.poll_send(i, g, cx))).await?;
        if let Some(e) = self.with(|r, i, g| r.slot(i, g).send_err.take()) {
            return Err(e);
        }
        if self.with(|r, i, g| r.try_stage(i, g, data)) {
            return Ok(());
        }
        self.with(|r, i, g| r.start_plain_send(i, g, data));
        poll_fn(|cx| self.with(|r, i, g| r.poll_send(i, g, cx))).await
    }

    async fn recv(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.with(|r, i, g| r.poll_recv(i, g, cx, dst))).await
    }
}

impl Drop for UringSocket {
    fn drop(&mut self) {
        // Outside its block_on_all (after teardown closed everything) there is
        // nothing left to do, and panicking in drop would abort.
        let _ = REACTOR.try_with(|cell| {
            if let Ok(mut reactor) = cell.try_borrow_mut() {
                if let Some(r) = reactor.as_mut().filter(|r| r.id == self.reactor) {
                    r.close(self.idx, self.gen);
                }
            }
        });
    }
}

/// A timer in the reactor's heap. Entries are not removed when the timer moves
/// or is dropped: a stale one only causes a spurious wake.
pub(crate) struct UringSleep {
    deadline: Instant,
    /// (reactor, deadline, waker) of the last heap entry.
    registered: Option<(u64, Instant, Waker)>,
    _thread_bound: PhantomData<*const ()>,
}

impl Future for UringSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let deadline = this.deadline;
        let registered = &mut this.registered;
        with_reactor(|r| {
            let current = matches!(registered, Some((id, at, w))
                if *id == r.id && *at == deadline && w.will_wake(cx.waker()));
            if current {
                // Re-polled (the engine's watchdog is, with every request):
                // the turn's clock reading spares a clock read here. The heap
                // entry wakes us once that reading passes the deadline; if it
                // was already popped, the reading has passed it.
                return if r.now >= deadline {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            r.add_timer(deadline, cx.waker().clone());
            *registered = Some((r.id, deadline, cx.waker().clone()));
            Poll::Pending
        })
    }
}
