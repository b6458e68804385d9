//! The reactor: socket slots, the SQEs they push and the CQEs that complete
//! them, and the timer heap that bounds each wait.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum RecvState {
    Idle,
    /// The RECV of a pair waiting in `Reactor::staged` for the next flush.
    Staged,
    /// The RECV of a submitted pair.
    Linked,
    /// A RECV of its own.
    Armed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SendState {
    /// `sbuf` is free.
    Idle,
    /// `sbuf` is the data of a linked SEND, staged or submitted but not yet
    /// known to have completed.
    Paired,
    /// `sbuf[sent..]` still goes out through plain SENDs, one at a time.
    Plain { sent: usize, in_flight: bool },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ConnectState {
    Idle,
    InFlight,
    Done(i32),
}

/// One socket. Everything the kernel may touch (buffers, sockaddr) lives here
/// until every op naming it has completed, so memory safety never depends on a
/// future being polled to its end.
pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) in_use: bool,
    /// False once the `UringSocket` is dropped; the slot is freed when
    /// `pending` reaches 0.
    pub(super) open: bool,
    pub(super) fd: Option<OwnedFd>,
    /// The fd also sits in the ring's file table at the slot's index: ops name
    /// it by that index, which spares the kernel an fd lookup (fget/fput) per op.
    pub(super) fixed: bool,
    /// CQEs still expected (a pair counts one: its RECV's, or its send's
    /// failure CQE, which stands in for the RECV's).
    pub(super) pending: u32,
    pub(super) waker: Option<Waker>,
    /// Wake the task when a pair's send is settled (a second write waits on it).
    pub(super) settle_waiter: bool,
    pub(super) addr: Option<Box<SockAddr>>,
    pub(super) connect: ConnectState,
    /// Received bytes not yet handed out are `rbuf[rpos..rlen]`; an armed RECV
    /// writes from `rbuf[rlen]` on (so `rlen` does not move while it is armed).
    pub(super) rbuf: Vec<u8>,
    pub(super) rpos: usize,
    pub(super) rlen: usize,
    pub(super) recv: RecvState,
    /// EOF (0) or an error (-errno) the next `recv` reports.
    pub(super) rres: Option<i32>,
    pub(super) sbuf: Vec<u8>,
    pub(super) send: SendState,
    /// The result of the plain SEND in flight.
    pub(super) send_res: Option<i32>,
    /// A send error the next call on the socket reports.
    pub(super) send_err: Option<io::Error>,
}

impl Slot {
    pub(super) fn new() -> Self {
        Slot {
            rbuf: vec![0; RECV_BUF],
            ..Slot::empty()
        }
    }

    /// A free slot without buffers (`new` and `release` supply them).
    pub(super) fn empty() -> Self {
        Slot {
            gen: 0,
            in_use: false,
            open: false,
            fd: None,
            fixed: false,
            pending: 0,
            waker: None,
            settle_waiter: false,
            addr: None,
            connect: ConnectState::Idle,
            rbuf: Vec::new(),
            rpos: 0,
            rlen: 0,
            recv: RecvState::Idle,
            rres: None,
            sbuf: Vec::new(),
            send: SendState::Idle,
            send_res: None,
            send_err: None,
        }
    }

    /// Whether this slot is still the socket generation `gen` named.
    pub(super) fn is(&self, gen: u32) -> bool {
        self.in_use && self.gen == gen
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// What an SQE for this socket holds: in its fd field, the file-table
    /// index or the fd; in its flags, IOSQE_FIXED_FILE for an index (what the
    /// crate's `types::Fixed` sets; one code path serves both kinds of socket).
    pub(super) fn target(&self, idx: usize) -> (Fd, squeue::Flags) {
        if self.fixed {
            (Fd(idx as RawFd), squeue::Flags::FIXED_FILE)
        } else {
            (Fd(self.raw_fd()), squeue::Flags::empty())
        }
    }

    /// A RECV into the free end of `rbuf`, and the flags its SQE needs.
    pub(super) fn recv_op(&mut self, idx: usize) -> (opcode::Recv, squeue::Flags) {
        let (fd, flags) = self.target(idx);
        // SAFETY (pointer arithmetic): rlen <= RECV_BUF == rbuf.len().
        let ptr = unsafe { self.rbuf.as_mut_ptr().add(self.rlen) };
        (
            opcode::Recv::new(fd, ptr, (RECV_BUF - self.rlen) as u32),
            flags,
        )
    }

    pub(super) fn register(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    /// Moves unread bytes to the front, making room for a RECV after them.
    /// Only while no RECV is armed.
    pub(super) fn compact(&mut self) {
        debug_assert_eq!(self.recv, RecvState::Idle);
        if self.rpos == self.rlen {
            self.rpos = 0;
            self.rlen = 0;
        } else if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rlen, 0);
            self.rlen -= self.rpos;
            self.rpos = 0;
        }
    }

    pub(super) fn fold_recv(&mut self, res: i32) {
        if res > 0 {
            self.rlen += res as usize;
        } else {
            self.rres = Some(res);
        }
    }
}

pub(super) struct Timer {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) waker: Waker,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(super) struct Reactor {
    pub(super) id: u64,
    pub(super) ring: IoUring,
    pub(super) slots: Vec<Slot>,
    /// Lowest index first: slots inside the file table are reused before
    /// those past it.
    pub(super) free: BinaryHeap<Reverse<usize>>,
    /// Entries of the registered-file table (0: the kernel refused one).
    pub(super) files: u32,
    /// Slots whose SEND+RECV pair goes into the SQ at the next flush: writes
    /// made before then join the same send.
    pub(super) staged: Vec<(usize, u32)>,
    /// Pairs submitted whose send is finished once the enter that took them
    /// has returned (see `settle`).
    pub(super) unsettled: Vec<(usize, u32)>,
    pub(super) timers: BinaryHeap<Reverse<Timer>>,
    pub(super) timer_seq: u64,
    /// The clock as the last turn read it (for timers; never ahead of time).
    pub(super) now: Instant,
    pub(super) shared: Arc<Shared>,
    /// The armed eventfd read's target.
    pub(super) wake_buf: Box<UnsafeCell<[u8; 8]>>,
    pub(super) wake_armed: bool,
    pub(super) closing: bool,
    pub(super) cqes: Vec<cqueue::Entry>,
    /// The completions `reap` is handling (empty between reaps).
    pub(super) batch: Vec<cqueue::Entry>,
    pub(super) fatal: Option<io::Error>,
}

impl Reactor {
    pub(super) fn new(file_table: u32) -> io::Result<Reactor> {
        let ring = build_ring()?;
        let files = register_file_table(&ring, file_table);
        let shared = Arc::new(Shared {
            remote: Mutex::new(Vec::new()),
            remote_queued: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            eventfd: eventfd()?,
        });
        let mut reactor = Reactor {
            id: NEXT_REACTOR_ID.fetch_add(1, Ordering::Relaxed),
            ring,
            slots: Vec::new(),
            free: BinaryHeap::new(),
            files,
            staged: Vec::new(),
            unsettled: Vec::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            now: Instant::now(),
            shared,
            wake_buf: Box::new(UnsafeCell::new([0; 8])),
            wake_armed: false,
            closing: false,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            batch: Vec::with_capacity(CQ_ENTRIES as usize),
            fatal: None,
        };
        reactor.arm_wake();
        Ok(reactor)
    }

    pub(super) fn arm_wake(&mut self) {
        let read = opcode::Read::new(
            Fd(self.shared.eventfd.as_raw_fd()),
            self.wake_buf.get().cast(),
            8,
        )
        .build()
        .user_data(WAKE_USER_DATA);
        self.wake_armed = true;
        // SAFETY: `wake_buf` is a heap allocation the reactor owns and never
        // reads or moves; teardown waits for this read (or leaks the buffer).
        // The eventfd lives in `shared`, which the reactor holds.
        unsafe { self.push(&read) };
    }

    /// Puts `entry` in the SQ, submitting first when it is full.
    ///
    /// # Safety
    /// Every buffer `entry` points at must stay allocated and in place, and a
    /// buffer the kernel writes must not be accessed by us, until the kernel is
    /// done with it: until the op's CQE is reaped or, for a linked send whose
    /// success posts none, until the enter that submitted it has returned.
    pub(super) unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if !self.submit_now() {
                return;
            }
        }
    }

    /// `push` for a pair that must sit in one submission (a link does not span
    /// two enters).
    ///
    /// # Safety
    /// As for `push`, for both entries.
    pub(super) unsafe fn push_pair(&mut self, pair: [squeue::Entry; 2]) {
        loop {
            let mut sq = self.ring.submission();
            if sq.capacity() - sq.len() >= 2 {
                // SAFETY: forwarded from this function's contract.
                let pushed = unsafe { sq.push_multiple(&pair) };
                debug_assert!(pushed.is_ok(), "room was checked");
                return;
            }
            drop(sq);
            if !self.submit_now() {
                return;
            }
        }
    }

    /// Submits without waiting. False on an error that ends the run.
    pub(super) fn submit_now(&mut self) -> bool {
        match self.ring.submit() {
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                ) =>
            {
                self.stash_completions();
                true
            }
            Err(e) => {
                self.fatal.get_or_insert(e);
                false
            }
        }
    }

    /// The CQ is backed up: moves completions out (they are handled at the
    /// end of the turn) so the kernel can take more.
    pub(super) fn stash_completions(&mut self) {
        let Reactor { ring, cqes, .. } = self;
        cqes.extend(ring.completion());
    }

    pub(super) fn slot(&mut self, idx: usize, gen: u32) -> &mut Slot {
        let slot = &mut self.slots[idx];
        assert!(slot.is(gen), "a UringSocket outlived its slot");
        slot
    }

    pub(super) fn alloc(&mut self, fd: OwnedFd) -> (usize, u32) {
        let idx = match self.free.pop() {
            Some(Reverse(idx)) => idx,
            None => {
                self.slots.push(Slot::new());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[idx];
        slot.in_use = true;
        slot.open = true;
        // Where the table has room and the kernel takes the fd; else plain.
        slot.fixed = (idx as u64) < u64::from(self.files)
            && self
                .ring
                .submitter()
                .register_files_update(idx as u32, &[fd.as_raw_fd()])
                .is_ok_and(|n| n == 1);
        slot.fd = Some(fd);
        (idx, slot.gen)
    }

    /// Frees a closed slot whose ops have all completed: closes the fd and
    /// retires the generation.
    pub(super) fn release(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        debug_assert!(!slot.open && slot.pending == 0);
        if slot.fixed {
            // The table holds a reference to the socket: without this, closing
            // our fd would not close the connection. Cannot fail for an index
            // that was set (and if it did, the entry goes with the ring).
            let _ = self
                .ring
                .submitter()
                .register_files_update(idx as u32, &[-1]);
        }
        let gen = (slot.gen + 1) & GEN_MASK;
        let rbuf = std::mem::take(&mut slot.rbuf);
        let sbuf = std::mem::take(&mut slot.sbuf);
        *slot = Slot {
            gen,
            rbuf,
            sbuf,
            ..Slot::empty()
        };
        self.free.push(Reverse(idx));
    }

    /// Slots held by a socket or its ops still in flight (every slot is in use
    /// or on the free list).
    pub(super) fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub(super) fn start_connect(&mut self, fd: OwnedFd, addr: SockAddr) -> (usize, u32) {
        let (idx, gen) = self.alloc(fd);
        let slot = &mut self.slots[idx];
        let (fd, flags) = slot.target(idx);
        let addr = slot.addr.insert(Box::new(addr));
        let entry = opcode::Connect::new(fd, addr.as_ptr(), addr.len())
            .build()
            .flags(flags)
            .user_data(Kind::Connect.user_data(idx, gen));
        slot.connect = ConnectState::InFlight;
        slot.pending += 1;
        // SAFETY: the sockaddr is boxed in the slot, which keeps it until the
        // CONNECT's CQE (counted in `pending`) is reaped.
        unsafe { self.push(&entry) };
        (idx, gen)
    }

    pub(super) fn poll_connect(
        &mut self,
        idx: usize,
        gen: u32,
        cx: &Context<'_>,
    ) -> Poll<io::Result<()>> {
        let slot = self.slot(idx, gen);
        match slot.connect {
            ConnectState::Done(res) => {
                slot.connect = ConnectState::Idle;
                Poll::Ready(if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(())
                })
            }
            ConnectState::InFlight => {
                slot.register(cx);
                Poll::Pending
            }
            ConnectState::Idle => Poll::Ready(Ok(())),
        }
    }

    /// Takes `data` into a pair (new, or the staged one it joins) if it can.
    pub(super) fn try_stage(&mut self, idx: usize, gen: u32, data: &[u8]) -> bool {
        let slot = self.slot(idx, gen);
        if slot.recv == RecvState::Staged {
            if slot.sbuf.len() + data.len() > MAX_OP_LEN {
                return false;
            }
            slot.sbuf.extend_from_slice(data);
            return true;
        }
        let unread = slot.rlen - slot.rpos;
        let can = slot.send == SendState::Idle
            && slot.send_err.is_none()
            && slot.recv == RecvState::Idle
            && slot.rres.is_none()
            && unread < RECV_BUF
            && data.len() <= MAX_OP_LEN;
        if !can {
            return false;
        }
        slot.compact();
        slot.sbuf.clear();
        slot.sbuf.extend_from_slice(data);
        slot.send = SendState::Paired;
        slot.recv = RecvState::Staged;
        slot.settle_waiter = false;
        slot.pending += 1; // the RECV's CQE
        self.staged.push((idx, gen));
        true
    }

    /// Puts the staged pairs in the SQ, built from their final send buffers.
    pub(super) fn flush_staged(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        for &(idx, gen) in &staged {
            let slot = &mut self.slots[idx];
            if !(slot.is(gen) && slot.recv == RecvState::Staged) {
                continue; // closed since
            }
            let (fd, flags) = slot.target(idx);
            // MSG_DONTWAIT: the send ends inside the enter that submits it
            // (whole, short, or failed), never parked on a full socket buffer.
            // So once that enter returns, its success is known (a short or
            // failed send has posted its CQE by then) and a later write can
            // never overtake it. MSG_WAITALL makes a short send a failure that
            // breaks the link: the RECV never starts.
            let send = opcode::Send::new(fd, slot.sbuf.as_ptr(), slot.sbuf.len() as u32)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL | libc::MSG_DONTWAIT)
                .build()
                .flags(flags | squeue::Flags::SKIP_SUCCESS | squeue::Flags::IO_LINK)
                .user_data(Kind::LinkedSend.user_data(idx, gen));
            let (recv, _) = slot.recv_op(idx);
            let recv = recv
                // The answer to a request just sent is not there yet: arm the
                // socket's poll at once instead of trying a receive first.
                .ioprio(RECVSEND_POLL_FIRST)
                .build()
                .flags(flags)
                .user_data(Kind::LinkedRecv.user_data(idx, gen));
            slot.recv = RecvState::Linked;
            // SAFETY: `sbuf` is left alone while the send is `Paired` (until
            // settled or its failure CQE is reaped) and `rbuf[rlen..]` while the
            // RECV is in flight (its CQE is counted in `pending`); the slot keeps
            // both until then, even if the socket is dropped.
            unsafe { self.push_pair([send, recv]) };
            self.unsettled.push((idx, gen));
        }
        self.staged = staged;
        self.staged.clear();
    }

    /// After an enter that left the SQ empty, every pair submitted so far has
    /// run its send, and a send that failed or fell short has posted its CQE
    /// (reaped by now, unless the CQ overflowed: the caller checks): those
    /// without one sent everything.
    pub(super) fn settle(&mut self) {
        for (idx, gen) in self.unsettled.drain(..) {
            let slot = &mut self.slots[idx];
            if slot.is(gen) && slot.send == SendState::Paired {
                slot.send = SendState::Idle;
                if std::mem::take(&mut slot.settle_waiter) {
                    if let Some(w) = &slot.waker {
                        w.wake_by_ref();
                    }
                }
            }
        }
    }

    /// Drives the socket's send side until `sbuf` is free.
    pub(super) fn poll_send(
        &mut self,
        idx: usize,
        gen: u32,
        cx: &Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let slot = self.slot(idx, gen);
            match slot.send {
                SendState::Idle => return Poll::Ready(Ok(())),
                SendState::Paired => {
                    slot.settle_waiter = true;
                    slot.register(cx);
                    return Poll::Pending;
                }
                SendState::Plain {
                    sent,
                    in_flight: true,
                } => match slot.send_res.take() {
                    None => {
                        slot.register(cx);
                        return Poll::Pending;
                    }
                    Some(res) if res > 0 => {
                        slot.send = SendState::Plain {
                            sent: sent + res as usize,
                            in_flight: false,
                        };
                    }
                    Some(res) => {
                        slot.send = SendState::Idle;
                        return Poll::Ready(Err(if res == 0 {
                            io::ErrorKind::WriteZero.into()
                        } else {
                            io::Error::from_raw_os_error(-res)
                        }));
                    }
                },
                SendState::Plain {
                    sent,
                    in_flight: false,
                } => {
                    if sent >= slot.sbuf.len() {
                        slot.send = SendState::Idle;
                        continue;
                    }
                    let len = (slot.sbuf.len() - sent).min(MAX_OP_LEN);
                    // SAFETY (pointer arithmetic): sent < sbuf.len().
                    let ptr = unsafe { slot.sbuf.as_ptr().add(sent) };
                    let (fd, flags) = slot.target(idx);
                    let entry = opcode::Send::new(fd, ptr, len as u32)
                        .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                        .build()
                        .flags(flags)
                        .user_data(Kind::Send.user_data(idx, gen));
                    slot.send = SendState::Plain {
                        sent,
                        in_flight: true,
                    };
                    slot.pending += 1;
                    slot.register(cx);
                    // SAFETY: `sbuf` is not touched while a plain SEND is in
                    // flight, and the slot keeps it until the CQE (counted).
                    unsafe { self.push(&entry) };
                    return Poll::Pending;
                }
            }
        }
    }

    pub(super) fn start_plain_send(&mut self, idx: usize, gen: u32, data: &[u8]) {
        let slot = self.slot(idx, gen);
        debug_assert_eq!(slot.send, SendState::Idle);
        slot.sbuf.clear();
        slot.sbuf.extend_from_slice(data);
        slot.send = SendState::Plain {
            sent: 0,
            in_flight: false,
        };
    }

    pub(super) fn poll_recv(
        &mut self,
        idx: usize,
        gen: u32,
        cx: &Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let slot = self.slot(idx, gen);
        if slot.rpos < slot.rlen {
            let n = dst.len().min(slot.rlen - slot.rpos);
            dst[..n].copy_from_slice(&slot.rbuf[slot.rpos..slot.rpos + n]);
            slot.rpos += n;
            if slot.rpos == slot.rlen && slot.recv == RecvState::Idle {
                slot.rpos = 0;
                slot.rlen = 0;
            }
            return Poll::Ready(Ok(n));
        }
        if slot.send == SendState::Paired {
            // A pair is out: its RECV's CQE, or its send's failure, wakes us.
            slot.register(cx);
            return Poll::Pending;
        }
        // A short pair send leaves the rest to send before the answer can come.
        match self.poll_send(idx, gen, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        let slot = self.slot(idx, gen);
        if let Some(e) = slot.send_err.take() {
            return Poll::Ready(Err(e));
        }
        if let Some(res) = slot.rres.take() {
            return Poll::Ready(if res == 0 {
                Ok(0)
            } else {
                Err(io::Error::from_raw_os_error(-res))
            });
        }
        slot.register(cx);
        if slot.recv == RecvState::Idle {
            slot.compact();
            let (recv, flags) = slot.recv_op(idx);
            let entry = recv
                .build()
                .flags(flags)
                .user_data(Kind::Recv.user_data(idx, gen));
            slot.recv = RecvState::Armed;
            slot.pending += 1;
            // SAFETY: `rbuf[rlen..]` is not touched while the RECV is in
            // flight, and the slot keeps it until the CQE (counted).
            unsafe { self.push(&entry) };
        }
        Poll::Pending
    }

    /// The socket was dropped: wake its pending ops and free it once they end.
    pub(super) fn close(&mut self, idx: usize, gen: u32) {
        let slot = &mut self.slots[idx];
        if !(slot.is(gen) && slot.open) {
            return;
        }
        slot.open = false;
        slot.waker = None;
        if slot.recv == RecvState::Staged {
            // Never submitted: nothing to wait for.
            slot.recv = RecvState::Idle;
            slot.send = SendState::Idle;
            slot.pending -= 1;
        }
        if slot.pending == 0 {
            self.release(idx);
            return;
        }
        let fd = slot.raw_fd();
        // SAFETY: shutdown takes no pointers and `fd` is open (the slot owns
        // it). ENOTCONN (a connect in flight) is fine: the cancel covers it.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        // A fixed socket by its table index (the crate sets
        // IORING_ASYNC_CANCEL_FD_FIXED for `Fixed`): no fd lookup. The table
        // entry stays set until `release`, after this cancel has run.
        let target = if slot.fixed {
            CancelBuilder::fd(Fixed(idx as u32))
        } else {
            CancelBuilder::fd(Fd(fd))
        };
        let cancel = opcode::AsyncCancel2::new(target.all())
            .build()
            .user_data(Kind::Cancel.user_data(idx, gen));
        // Counted, so the fd stays open (and cannot be reused by another
        // socket whose ops the cancel would hit) until the cancel has run.
        slot.pending += 1;
        // SAFETY: a cancel carries no pointers into our memory.
        unsafe { self.push(&cancel) };
    }

    pub(super) fn add_timer(&mut self, at: Instant, waker: Waker) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            waker,
        }));
    }

    /// Wakes the due timers; returns the next deadline.
    pub(super) fn fire_timers(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.at > now {
                return Some(timer.at);
            }
            if let Some(Reverse(timer)) = self.timers.pop() {
                timer.waker.wake();
            }
        }
        None
    }

    /// One executor turn after the ready tasks ran: timers, then one enter
    /// (waiting only if no task is ready), then completions.
    pub(super) fn turn(&mut self, local: &LocalQueue) -> io::Result<()> {
        let now = Instant::now();
        self.now = now;
        let next_timer = self.fire_timers(now);
        self.flush_staged();
        // Completions a refused submit stashed are work: waiting on the ring
        // for them would sleep through them.
        if local.is_empty()
            && self.cqes.is_empty()
            && !self.shared.remote_queued.load(Ordering::SeqCst)
        {
            self.shared.parked.store(true, Ordering::SeqCst);
            // Pairs with `schedule_remote`'s flag store then `parked` load.
            if !self.shared.remote_queued.load(Ordering::SeqCst) {
                self.wait(next_timer.map(|t| t - now));
            } else {
                self.submit_if_needed();
            }
            self.shared.parked.store(false, Ordering::SeqCst);
        } else {
            self.submit_if_needed();
        }
        let drained = self.ring.submission().is_empty();
        // Everything reaped below had arrived by now: the time the tasks it
        // wakes stamp their responses (and next sends) with.
        set_clock(Instant::now());
        self.reap();
        // A failed pair send's CQE that overflowed the CQ was not reaped yet:
        // settling now would take that send as whole. The enter that flushes
        // the overflow settles them.
        if drained && !self.ring.submission().cq_overflow() {
            self.settle();
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn submit_if_needed(&mut self) {
        let sq = self.ring.submission();
        // Deferred completions run only in an enter: the taskrun flag says
        // some are waiting.
        if !sq.is_empty() || sq.taskrun() || sq.cq_overflow() {
            drop(sq);
            self.submit_now();
        }
    }

    pub(super) fn wait(&mut self, timeout: Option<Duration>) {
        let ts;
        let mut args = SubmitArgs::new();
        if let Some(d) = timeout {
            ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
            args = args.timespec(&ts);
        }
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            // A timer is due, a signal came, or the CQ is backed up (reaped next).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => {
                self.fatal.get_or_insert(e);
            }
        }
    }

    pub(super) fn reap(&mut self) {
        // Two buffers that keep their capacity: `cqes` takes what `complete`
        // stashes while `batch` is handled (no allocation per turn).
        let mut batch = std::mem::take(&mut self.batch);
        std::mem::swap(&mut batch, &mut self.cqes);
        batch.extend(self.ring.completion());
        while !batch.is_empty() {
            for cqe in batch.drain(..) {
                self.complete(cqe.user_data(), cqe.result());
            }
            // Re-arming the wake read with the SQ full may have submitted and
            // stashed more: handle them too.
            std::mem::swap(&mut batch, &mut self.cqes);
        }
        self.batch = batch;
    }

    pub(super) fn complete(&mut self, user_data: u64, res: i32) {
        let Some(kind) = Kind::of(user_data) else {
            return;
        };
        if kind == Kind::Wake {
            self.wake_armed = false;
            if !self.closing {
                self.arm_wake();
            }
            return;
        }
        let idx = user_data as u32 as usize;
        let gen = (user_data >> 32) as u32 & GEN_MASK;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if !slot.is(gen) {
            // Not one we count (a link's -ECANCELED from a kernel that posts
            // it): the slot it named is gone, and with it anything to update.
            return;
        }
        match kind {
            Kind::Connect => {
                slot.pending -= 1;
                slot.addr = None;
                slot.connect = ConnectState::Done(res);
            }
            Kind::LinkedSend => {
                let len = slot.sbuf.len();
                let failed = res < 0 || (res as usize) < len;
                if failed && slot.recv == RecvState::Linked {
                    // The RECV was cancelled without a CQE: this one is
                    // counted in its place.
                    slot.recv = RecvState::Idle;
                    slot.pending -= 1;
                }
                if failed && slot.send != SendState::Paired {
                    // Settled as sent before this CQE came: cannot happen with
                    // the kernels we know, and the stream is broken if it does.
                    slot.send_err = Some(io::Error::other(format!(
                        "io_uring reported a linked send's failure late ({res})"
                    )));
                } else if slot.send == SendState::Paired {
                    slot.send = match res {
                        r if r >= 0 && r as usize >= len => SendState::Idle,
                        // Short, or the socket buffer was full: the rest goes
                        // out through plain SENDs before anything else.
                        r if r >= 0 => SendState::Plain {
                            sent: r as usize,
                            in_flight: false,
                        },
                        r if r == -libc::EAGAIN => SendState::Plain {
                            sent: 0,
                            in_flight: false,
                        },
                        r => {
                            slot.send_err = Some(io::Error::from_raw_os_error(-r));
                            SendState::Idle
                        }
                    };
                }
            }
            Kind::LinkedRecv => {
                if slot.recv != RecvState::Linked {
                    // Its send failed and that CQE was counted for it (a kernel
                    // posting the -ECANCELED that current ones skip).
                    return;
                }
                slot.pending -= 1;
                slot.recv = RecvState::Idle;
                // The RECV only starts once the send has completed.
                if slot.send == SendState::Paired {
                    slot.send = SendState::Idle;
                }
                if res != -libc::ECANCELED {
                    slot.fold_recv(res);
                }
            }
            Kind::Recv => {
                slot.pending -= 1;
                slot.recv = RecvState::Idle;
                slot.fold_recv(res);
            }
            Kind::Send => {
                slot.pending -= 1;
                slot.send_res = Some(res);
            }
            Kind::Cancel => slot.pending -= 1,
            Kind::Wake => unreachable!("handled above"),
        }
        if !slot.open {
            if slot.pending == 0 {
                self.release(idx);
            }
            return;
        }
        if let Some(w) = &slot.waker {
            w.wake_by_ref();
        }
    }

    /// Closes what is still open, waits (bounded) for every op to complete,
    /// then drops the ring. Returns how many sockets' memory had to be leaked.
    pub(super) fn teardown(mut self) -> usize {
        for idx in 0..self.slots.len() {
            let gen = self.slots[idx].gen;
            self.close(idx, gen);
        }
        self.closing = true;
        if self.wake_armed {
            self.shared.signal();
        }
        let limit = Instant::now() + TEARDOWN_LIMIT;
        while self.in_use() > 0 || self.wake_armed {
            let left = limit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.wait(Some(left.min(Duration::from_millis(100))));
            self.reap();
        }
        let leaked = self.in_use();
        if leaked > 0 || self.wake_armed {
            tracing::warn!(
                sockets = leaked,
                "io_uring operations still in flight after {TEARDOWN_LIMIT:?}: leaking their buffers"
            );
            // The kernel may still write them after the ring is gone.
            for slot in self.slots.iter_mut().filter(|s| s.in_use) {
                std::mem::forget(std::mem::take(&mut slot.rbuf));
                std::mem::forget(std::mem::take(&mut slot.sbuf));
                std::mem::forget(slot.addr.take());
            }
            if self.wake_armed {
                let buf = std::mem::replace(&mut self.wake_buf, Box::new(UnsafeCell::new([0; 8])));
                std::mem::forget(buf);
            }
        }
        leaked
    }
}
