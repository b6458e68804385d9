//! The io_uring backend: a single-threaded executor whose reactor is an io_uring.
//! A request costs one SQE pair (a SEND linked to a RECV, the send posting no
//! completion) and one CQE, and an idle turn costs one `io_uring_enter` (the
//! cheapest variant `ci/floor` measured). Timers are a heap checked every turn,
//! with the ring's wait bounded by the earliest one, so open-model sends land
//! within microseconds of their schedule instead of tokio's millisecond ticks.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use socket2::SockAddr;

use crate::sock::{tcp_socket, Backend, Socket};

const SQ_ENTRIES: u32 = 256;
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// Receive buffer per socket: one RECV takes a typical response whole.
const RECV_BUF: usize = 16 * 1024;
/// The largest length one SQE can carry.
const MAX_OP_LEN: usize = u32::MAX as usize;
/// How long teardown waits for in-flight operations before leaking their memory.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);
/// IORING_RECVSEND_POLL_FIRST (Linux 5.19, which `available` requires through
/// cancel by fd); the crate keeps its constants private.
const RECVSEND_POLL_FIRST: u16 = 1;
/// Size of the ring's registered-file table (it cannot grow): sockets in slots
/// past it, or past RLIMIT_NOFILE, use plain fds.
const FILE_TABLE: u32 = 4096;

/// user_data = kind << 56 | generation << 32 | slot index: a CQE for a slot that
/// was freed (and maybe reused) since its op was pushed carries a stale
/// generation and is ignored.
const GEN_MASK: u32 = (1 << 24) - 1;
const WAKE_USER_DATA: u64 = (Kind::Wake as u64) << 56 | u32::MAX as u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Kind {
    Connect = 1,
    /// The SEND of a pair; it posts a CQE only when it fails or falls short,
    /// and then its RECV posts none (the kernel skips the CQEs of the rest of
    /// a link whose skip-on-success head failed).
    LinkedSend,
    /// The RECV of a pair, started by the kernel once the send has completed.
    LinkedRecv,
    Recv,
    Send,
    Cancel,
    /// The read armed on the eventfd that wakes a parked executor.
    Wake,
}

impl Kind {
    fn of(user_data: u64) -> Option<Kind> {
        Some(match (user_data >> 56) as u8 {
            1 => Kind::Connect,
            2 => Kind::LinkedSend,
            3 => Kind::LinkedRecv,
            4 => Kind::Recv,
            5 => Kind::Send,
            6 => Kind::Cancel,
            7 => Kind::Wake,
            _ => return None,
        })
    }

    fn user_data(self, idx: usize, gen: u32) -> u64 {
        (self as u64) << 56 | u64::from(gen & GEN_MASK) << 32 | idx as u64
    }
}

fn unsupported(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring: {what}"))
}

/// Sets the ring up as the design wants it (one issuing thread, completions run
/// only when we ask), or plainly where the kernel refuses those flags.
fn build_ring() -> io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        // Says in the SQ flags when deferred completions wait for an enter, so
        // a turn with nothing to submit can skip the syscall.
        .setup_taskrun_flag()
        .build(SQ_ENTRIES);
    let ring = match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)?,
        other => other?,
    };
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(unsupported(
            "no timeout on waits (IORING_FEAT_EXT_ARG, Linux 5.11)",
        ));
    }
    if !params.is_feature_skip_cqe_on_success() {
        return Err(unsupported(
            "no IOSQE_CQE_SKIP_SUCCESS (IORING_FEAT_CQE_SKIP, Linux 5.17)",
        ));
    }
    Ok(ring)
}

/// Registers a sparse file table for the ring's sockets; returns its size, 0
/// where the kernel refuses (sockets then use plain fds).
fn register_file_table(ring: &IoUring, want: u32) -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live local it is given.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    };
    // The kernel refuses a table larger than RLIMIT_NOFILE.
    let size = u64::from(want).min(nofile) as u32;
    if size == 0 {
        return 0;
    }
    match ring.submitter().register_files_sparse(size) {
        Ok(()) => size,
        Err(e) => {
            tracing::debug!("io_uring: no registered files ({e}); using plain fds");
            0
        }
    }
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd that
    // nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: the fd is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Can this process use io_uring with the ops we need? (setup may be refused:
/// seccomp in containers, old kernels, io_uring_disabled sysctl). Cheap enough to
/// call once per run.
pub(crate) fn available() -> Result<(), io::Error> {
    let mut ring = build_ring()?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(unsupported(format!("no {name} op")));
        }
    }
    // Cancelling by fd (Linux 5.19) cannot be probed: ask for it on an fd with
    // nothing in flight, which says 0 or ENOENT where supported, EINVAL where not.
    let efd = eventfd()?;
    let cancel = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(efd.as_raw_fd())).all())
        .build()
        .user_data(0);
    // SAFETY: a cancel carries no pointers into our memory.
    unsafe { ring.submission().push(&cancel) }.map_err(|_| unsupported("empty SQ is full"))?;
    ring.submit_and_wait(1)?;
    let res = ring.completion().next().map(|c| c.result());
    match res {
        Some(r) if r >= 0 || r == -libc::ENOENT => Ok(()),
        Some(r) => Err(unsupported(format!(
            "no cancel by fd: {}",
            io::Error::from_raw_os_error(-r)
        ))),
        None => Err(unsupported("cancel posted no completion")),
    }
}

// ---------------------------------------------------------------------------
// Executor

/// What other threads touch: their run queue, and the eventfd that wakes a
/// parked executor (tasks await tokio's Notify and mpsc, woken from anywhere).
/// Wakes on the executor's own thread (completions, timers, the tasks
/// themselves) skip all of it: they go to `LOCAL`.
struct Shared {
    remote: Mutex<Vec<usize>>,
    /// Set after a push to `remote`: spares the executor the lock on turns
    /// when no other thread woke anything (nearly all of them).
    remote_queued: AtomicBool,
    /// Set while the executor waits in the ring: a wake must then write the eventfd.
    parked: AtomicBool,
    eventfd: OwnedFd,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue holds plain ids: a panic elsewhere leaves it consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A wake from a thread other than the executor's.
    fn schedule_remote(&self, id: usize) {
        lock(&self.remote).push(id);
        // SeqCst pairs with the executor's `parked` store then
        // `remote_queued` load (see `Reactor::turn`): either it sees the flag
        // or we see it parked and write the eventfd.
        self.remote_queued.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.signal();
        }
    }

    /// Completes the executor's armed eventfd read: wakes a parked executor.
    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to an eventfd this struct
        // owns (so it is open). A full counter (EAGAIN) already means "wake".
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Moves the other threads' wakes into `into`.
    fn take_remote(&self, into: &mut Vec<usize>) {
        if self.remote_queued.swap(false, Ordering::SeqCst) {
            into.append(&mut lock(&self.remote));
        }
    }
}

/// The run queue of the executor running on this thread.
struct Local {
    /// The `Shared` of that executor (null when none runs here): a waker whose
    /// `shared` is this one was fired on the executor's thread.
    shared: Cell<*const Shared>,
    ready: RefCell<Vec<usize>>,
    /// When the executor last looked for completions (see `UringSocket::clock`).
    clock: Cell<Option<Instant>>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            shared: Cell::new(std::ptr::null()),
            ready: RefCell::new(Vec::new()),
            clock: Cell::new(None),
        }
    };
}

fn set_clock(t: Instant) {
    LOCAL.with(|l| l.clock.set(Some(t)));
}

/// Sets `LOCAL` for one `block_on_all` and clears it when that ends (by
/// return or panic), so a waker that outlives it takes the remote path.
struct LocalQueue;

impl LocalQueue {
    fn install(shared: &Arc<Shared>) -> LocalQueue {
        LOCAL.with(|l| {
            l.shared.set(Arc::as_ptr(shared));
            l.ready.borrow_mut().clear();
            l.clock.set(None);
        });
        LocalQueue
    }

    fn is_empty(&self) -> bool {
        LOCAL.with(|l| l.ready.borrow().is_empty())
    }

    /// Swaps the queued ids into `batch` (which must be empty).
    fn take(&self, batch: &mut Vec<usize>) {
        LOCAL.with(|l| std::mem::swap(&mut *l.ready.borrow_mut(), batch));
    }
}

impl Drop for LocalQueue {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            l.shared.set(std::ptr::null());
            if let Ok(mut ready) = l.ready.try_borrow_mut() {
                ready.clear();
            }
        });
    }
}

struct TaskWaker {
    id: usize,
    /// Already in a run queue: further wakes are free.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::as_ptr(&self.shared);
        // The pointer can only match while the executor owning `shared` runs
        // on this thread: `LocalQueue` clears it before that executor's
        // `Shared` (which this waker keeps alive) could be freed.
        let local = LOCAL.with(|l| {
            if l.shared.get() != me {
                return false;
            }
            // Never borrowed across a poll or a wake, so this cannot fail;
            // should it, the remote path is still correct.
            match l.ready.try_borrow_mut() {
                Ok(mut ready) => {
                    ready.push(self.id);
                    true
                }
                Err(_) => false,
            }
        });
        if !local {
            self.shared.schedule_remote(self.id);
        }
    }
}

thread_local! {
    static REACTOR: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

static NEXT_REACTOR_ID: AtomicU64 = AtomicU64::new(1);

const OUTSIDE: &str =
    "uring sockets and timers work only inside uring::block_on_all, on its thread";

/// Runs `f` on this thread's reactor. No borrow is ever held across an await or
/// a task poll, so the only way to find it borrowed is a bug.
fn with_reactor<R>(f: impl FnOnce(&mut Reactor) -> R) -> R {
    REACTOR.with(|cell| {
        let mut reactor = cell
            .try_borrow_mut()
            .expect("the uring reactor was re-entered");
        f(reactor.as_mut().expect(OUTSIDE))
    })
}

/// Tears the installed reactor down when `block_on_all` ends, by return or by
/// a task's panic.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let reactor = REACTOR
            .try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut r| r.take()))
            .ok()
            .flatten();
        if let Some(reactor) = reactor {
            reactor.teardown();
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Runs `tasks` to completion on the calling thread with a fresh ring, then
/// tears the ring down (every socket closed, every in-flight op completed)
/// before returning.
pub(crate) fn block_on_all(tasks: Vec<Task>) -> io::Result<()> {
    run_all(tasks, FILE_TABLE).map(|_leaked| ())
}

/// `block_on_all`, returning how many sockets' memory teardown had to leak
/// because their operations did not complete in time (tests assert 0), with a
/// file table of (at most) `file_table` entries.
fn run_all(tasks: Vec<Task>, file_table: u32) -> io::Result<usize> {
    let reactor = Reactor::new(file_table)?;
    let shared = Arc::clone(&reactor.shared);
    let installed = REACTOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_some() {
            return Err(io::Error::other(
                "uring::block_on_all is already running on this thread",
            ));
        }
        *cell = Some(reactor);
        Ok(Installed)
    })?;
    // After the check above: a nested call must not take over this thread's queue.
    let local = LocalQueue::install(&shared);
    // Declared after `installed`, so a panic drops the tasks (closing their
    // sockets through the reactor) before the guard tears the reactor down.
    let mut tasks: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
    let wakers: Vec<(Arc<TaskWaker>, Waker)> = (0..tasks.len())
        .map(|id| {
            let w = Arc::new(TaskWaker {
                id,
                queued: AtomicBool::new(true),
                shared: Arc::clone(&shared),
            });
            (Arc::clone(&w), Waker::from(w))
        })
        .collect();
    let mut live = tasks.len();
    let mut batch: Vec<usize> = (0..tasks.len()).collect();
    let result = loop {
        for &id in &batch {
            let (task_waker, waker) = &wakers[id];
            // Before the poll: a wake during it queues the task again.
            task_waker.queued.store(false, Ordering::Release);
            let Some(task) = tasks[id].as_mut() else {
                continue;
            };
            if task
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_ready()
            {
                // Dropped here, with no reactor borrow held: its sockets close.
                tasks[id] = None;
                live -= 1;
            }
        }
        batch.clear();
        if live == 0 {
            break Ok(());
        }
        if let Err(e) = with_reactor(|r| r.turn(&local)) {
            break Err(e);
        }
        local.take(&mut batch);
        shared.take_remote(&mut batch);
    };
    drop(tasks);
    drop(local);
    std::mem::forget(installed);
    let reactor = REACTOR.with(|cell| cell.borrow_mut().take());
    let leaked = reactor.map_or(0, Reactor::teardown);
    result.map(|()| leaked)
}

// ---------------------------------------------------------------------------
// Reactor

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RecvState {
    Idle,
    /// The RECV of a pair waiting in `Reactor::staged` for the next flush.
    Staged,
    /// The RECV of a submitted pair.
    Linked,
    /// A RECV of its own.
    Armed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SendState {
    /// `sbuf` is free.
    Idle,
    /// `sbuf` is the data of a linked SEND, staged or submitted but not yet
    /// known to have completed.
    Paired,
    /// `sbuf[sent..]` still goes out through plain SENDs, one at a time.
    Plain { sent: usize, in_flight: bool },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ConnectState {
    Idle,
    InFlight,
    Done(i32),
}

/// One socket. Everything the kernel may touch (buffers, sockaddr) lives here
/// until every op naming it has completed, so memory safety never depends on a
/// future being polled to its end.
struct Slot {
    gen: u32,
    in_use: bool,
    /// False once the `UringSocket` is dropped; the slot is freed when
    /// `pending` reaches 0.
    open: bool,
    fd: Option<OwnedFd>,
    /// The fd also sits in the ring's file table at the slot's index: ops name
    /// it by that index, which spares the kernel an fd lookup (fget/fput) per op.
    fixed: bool,
    /// CQEs still expected (a pair counts one: its RECV's, or its send's
    /// failure CQE, which stands in for the RECV's).
    pending: u32,
    waker: Option<Waker>,
    /// Wake the task when a pair's send is settled (a second write waits on it).
    settle_waiter: bool,
    addr: Option<Box<SockAddr>>,
    connect: ConnectState,
    /// Received bytes not yet handed out are `rbuf[rpos..rlen]`; an armed RECV
    /// writes from `rbuf[rlen]` on (so `rlen` does not move while it is armed).
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    recv: RecvState,
    /// EOF (0) or an error (-errno) the next `recv` reports.
    rres: Option<i32>,
    sbuf: Vec<u8>,
    send: SendState,
    /// The result of the plain SEND in flight.
    send_res: Option<i32>,
    /// A send error the next call on the socket reports.
    send_err: Option<io::Error>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            rbuf: vec![0; RECV_BUF],
            ..Slot::empty()
        }
    }

    /// A free slot without buffers (`new` and `release` supply them).
    fn empty() -> Self {
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
    fn is(&self, gen: u32) -> bool {
        self.in_use && self.gen == gen
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// What an SQE for this socket holds: in its fd field, the file-table
    /// index or the fd; in its flags, IOSQE_FIXED_FILE for an index (what the
    /// crate's `types::Fixed` sets; one code path serves both kinds of socket).
    fn target(&self, idx: usize) -> (Fd, squeue::Flags) {
        if self.fixed {
            (Fd(idx as RawFd), squeue::Flags::FIXED_FILE)
        } else {
            (Fd(self.raw_fd()), squeue::Flags::empty())
        }
    }

    /// A RECV into the free end of `rbuf`, and the flags its SQE needs.
    fn recv_op(&mut self, idx: usize) -> (opcode::Recv, squeue::Flags) {
        let (fd, flags) = self.target(idx);
        // SAFETY (pointer arithmetic): rlen <= RECV_BUF == rbuf.len().
        let ptr = unsafe { self.rbuf.as_mut_ptr().add(self.rlen) };
        (
            opcode::Recv::new(fd, ptr, (RECV_BUF - self.rlen) as u32),
            flags,
        )
    }

    fn register(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    /// Moves unread bytes to the front, making room for a RECV after them.
    /// Only while no RECV is armed.
    fn compact(&mut self) {
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

    fn fold_recv(&mut self, res: i32) {
        if res > 0 {
            self.rlen += res as usize;
        } else {
            self.rres = Some(res);
        }
    }
}

struct Timer {
    at: Instant,
    seq: u64,
    waker: Waker,
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

struct Reactor {
    id: u64,
    ring: IoUring,
    slots: Vec<Slot>,
    /// Lowest index first: slots inside the file table are reused before
    /// those past it.
    free: BinaryHeap<Reverse<usize>>,
    /// Entries of the registered-file table (0: the kernel refused one).
    files: u32,
    /// Slots whose SEND+RECV pair goes into the SQ at the next flush: writes
    /// made before then join the same send.
    staged: Vec<(usize, u32)>,
    /// Pairs submitted whose send is finished once the enter that took them
    /// has returned (see `settle`).
    unsettled: Vec<(usize, u32)>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    /// The clock as the last turn read it (for timers; never ahead of time).
    now: Instant,
    shared: Arc<Shared>,
    /// The armed eventfd read's target.
    wake_buf: Box<UnsafeCell<[u8; 8]>>,
    wake_armed: bool,
    closing: bool,
    cqes: Vec<cqueue::Entry>,
    /// The completions `reap` is handling (empty between reaps).
    batch: Vec<cqueue::Entry>,
    fatal: Option<io::Error>,
}

impl Reactor {
    fn new(file_table: u32) -> io::Result<Reactor> {
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

    fn arm_wake(&mut self) {
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
    unsafe fn push(&mut self, entry: &squeue::Entry) {
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
    unsafe fn push_pair(&mut self, pair: [squeue::Entry; 2]) {
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
    fn submit_now(&mut self) -> bool {
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
    fn stash_completions(&mut self) {
        let Reactor { ring, cqes, .. } = self;
        cqes.extend(ring.completion());
    }

    fn slot(&mut self, idx: usize, gen: u32) -> &mut Slot {
        let slot = &mut self.slots[idx];
        assert!(slot.is(gen), "a UringSocket outlived its slot");
        slot
    }

    fn alloc(&mut self, fd: OwnedFd) -> (usize, u32) {
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
    fn release(&mut self, idx: usize) {
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
    fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn start_connect(&mut self, fd: OwnedFd, addr: SockAddr) -> (usize, u32) {
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

    fn poll_connect(&mut self, idx: usize, gen: u32, cx: &Context<'_>) -> Poll<io::Result<()>> {
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
    fn try_stage(&mut self, idx: usize, gen: u32, data: &[u8]) -> bool {
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
    fn flush_staged(&mut self) {
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
    fn settle(&mut self) {
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
    fn poll_send(&mut self, idx: usize, gen: u32, cx: &Context<'_>) -> Poll<io::Result<()>> {
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

    fn start_plain_send(&mut self, idx: usize, gen: u32, data: &[u8]) {
        let slot = self.slot(idx, gen);
        debug_assert_eq!(slot.send, SendState::Idle);
        slot.sbuf.clear();
        slot.sbuf.extend_from_slice(data);
        slot.send = SendState::Plain {
            sent: 0,
            in_flight: false,
        };
    }

    fn poll_recv(
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
    fn close(&mut self, idx: usize, gen: u32) {
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

    fn add_timer(&mut self, at: Instant, waker: Waker) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            waker,
        }));
    }

    /// Wakes the due timers; returns the next deadline.
    fn fire_timers(&mut self, now: Instant) -> Option<Instant> {
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
    fn turn(&mut self, local: &LocalQueue) -> io::Result<()> {
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

    fn submit_if_needed(&mut self) {
        let sq = self.ring.submission();
        // Deferred completions run only in an enter: the taskrun flag says
        // some are waiting.
        if !sq.is_empty() || sq.taskrun() || sq.cq_overflow() {
            drop(sq);
            self.submit_now();
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) {
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

    fn reap(&mut self) {
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

    fn complete(&mut self, user_data: u64, res: i32) {
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
    fn teardown(mut self) -> usize {
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

// ---------------------------------------------------------------------------
// Backend

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
    fn with<R>(&self, f: impl FnOnce(&mut Reactor, usize, u32) -> R) -> R {
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

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket as RawSocket, Type};
    use std::cell::Cell;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::rc::Rc;
    use std::thread;

    fn task(f: impl Future<Output = ()> + 'static) -> Task {
        Box::pin(f)
    }

    /// Starts a recv that the server never answers and gives up on it after
    /// 50 ms, as the engine does on a timeout: the RECV stays in the ring.
    async fn abandon_recv(s: &mut UringSocket) {
        let mut buf = [0; 16];
        let mut recv = std::pin::pin!(s.recv(&mut buf));
        let mut timeout = std::pin::pin!(Uring::sleep_until(
            Instant::now() + Duration::from_millis(50)
        ));
        poll_fn(|cx| {
            if let Poll::Ready(r) = recv.as_mut().poll(cx) {
                panic!("recv returned {r:?}");
            }
            timeout.as_mut().poll(cx)
        })
        .await;
    }

    /// Runs the tasks and checks that teardown found every op completed.
    fn run(tasks: Vec<Task>) {
        assert_eq!(
            run_all(tasks, FILE_TABLE).expect("block_on_all"),
            0,
            "sockets leaked"
        );
    }

    fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    async fn read_line(sock: &mut UringSocket, chunk: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = sock.recv(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.extend_from_slice(&buf[..n]);
            if line.last() == Some(&b'\n') {
                return Ok(line);
            }
        }
    }

    /// Answers each line `req N` with `resp N` padded by N % 300 bytes.
    fn line_server(stream: TcpStream) {
        // One write per answer, sent at once (several small writes would meet
        // Nagle and the client's delayed ACK).
        stream.set_nodelay(true).unwrap();
        let mut out = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            out.write_all(&answer(&line)).unwrap();
        }
    }

    /// The answer to the line `req N` (without its newline).
    fn answer(line: &str) -> Vec<u8> {
        expected(line.strip_prefix("req ").unwrap().parse().unwrap())
    }

    fn expected(n: usize) -> Vec<u8> {
        format!("resp {n} {}\n", "x".repeat(n % 300)).into_bytes()
    }

    fn fnv(data: &[u8]) -> u64 {
        data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn available_here() {
        available().expect("io_uring is usable in this environment");
    }

    #[test]
    fn exchanges_over_one_socket_are_exact() {
        let (l, addr) = listener();
        let server = thread::spawn(move || line_server(l.accept().unwrap().0));
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            for n in 0..2000 {
                // Two writes before reading join one pair; small reads use the
                // bytes left over in the receive buffer.
                s.send_all(b"req ").await.unwrap();
                s.send_all(format!("{n}\n").as_bytes()).await.unwrap();
                let chunk = 1 + n % 64;
                assert_eq!(read_line(&mut s, chunk).await.unwrap(), expected(n));
            }
        })]);
        server.join().unwrap();
    }

    #[test]
    fn the_clock_brackets_each_exchange() {
        // What the engine times requests by: a send is stamped no later than
        // the server saw it, a response no earlier than the server wrote it
        // (latency never undercounts), and the clock is never ahead of time.
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let stream = l.accept().unwrap().0;
            stream.set_nodelay(true).unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut marks = Vec::new();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let read = Instant::now();
                // Some answers come at once (often in the same turn), some
                // after the client has gone to sleep in a wait.
                if marks.len() % 2 == 1 {
                    thread::sleep(Duration::from_millis(5));
                }
                let reply = answer(&line);
                let wrote = Instant::now();
                out.write_all(&reply).unwrap();
                marks.push((read, wrote));
            }
            marks
        });
        let stamps = Rc::new(RefCell::new(Vec::new()));
        let seen = stamps.clone();
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            for n in 0..20 {
                let sent = UringSocket::clock();
                assert!(sent <= Instant::now());
                s.send_all(format!("req {n}\n").as_bytes()).await.unwrap();
                assert_eq!(read_line(&mut s, 4096).await.unwrap(), expected(n));
                let done = UringSocket::clock();
                assert!(done <= Instant::now());
                seen.borrow_mut().push((sent, done));
            }
        })]);
        let marks = server.join().unwrap();
        let stamps = stamps.borrow();
        assert_eq!(marks.len(), stamps.len());
        for (i, ((sent, done), (read, wrote))) in stamps.iter().zip(&marks).enumerate() {
            assert!(sent <= read, "request {i} stamped after the server read it");
            assert!(
                done >= wrote,
                "response {i} stamped before the server wrote it"
            );
        }
    }

    /// Reads `total` bytes and answers their hash.
    fn hash_server(stream: &mut TcpStream, total: usize) {
        let mut data = vec![0; total];
        stream.read_exact(&mut data).unwrap();
        writeln!(stream, "{}", fnv(&data)).unwrap();
    }

    /// Sends `payload` in one write, runs `then`, and expects the server's hash
    /// of exactly those bytes back.
    fn sent_whole(payload: Vec<u8>, then: fn()) {
        let want = format!("{}\n", fnv(&payload)).into_bytes();
        let (l, addr) = listener();
        let len = payload.len();
        let server = thread::spawn(move || hash_server(&mut l.accept().unwrap().0, len));
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            s.send_all(&payload).await.unwrap();
            then();
            assert_eq!(read_line(&mut s, 4096).await.unwrap(), want);
        })]);
        server.join().unwrap();
    }

    #[test]
    fn payload_larger_than_the_socket_buffer_arrives_intact() {
        sent_whole(pattern(8 << 20, 0x5a), || {});
    }

    #[test]
    fn a_second_write_after_the_pair_went_out_keeps_the_order() {
        // The first write fills the socket buffer (its pair's send falls
        // short); the second, after an await, must still follow all of it.
        let first = pattern(8 << 20, 1);
        let second = pattern(1 << 20, 2);
        let want = format!("{}\n", fnv(&[first.clone(), second.clone()].concat())).into_bytes();
        let (l, addr) = listener();
        let total = first.len() + second.len();
        let server = thread::spawn(move || hash_server(&mut l.accept().unwrap().0, total));
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            s.send_all(&first).await.unwrap();
            Uring::sleep_until(Instant::now() + Duration::from_millis(20)).await;
            s.send_all(&second).await.unwrap();
            assert_eq!(read_line(&mut s, 4096).await.unwrap(), want);
        })]);
        server.join().unwrap();
    }

    /// Pushes `n` NOPs (ignored user_data 0): each SQ-full submit completes
    /// its NOPs at once, so more than the CQ holds leaves it overflowed.
    fn flood_cq(n: usize) {
        let nop = opcode::Nop::new().build().user_data(0);
        for _ in 0..n {
            // SAFETY: a NOP carries no pointers.
            with_reactor(|r| unsafe { r.push(&nop) });
        }
    }

    #[test]
    fn a_short_pair_send_is_not_settled_as_sent_while_the_cq_overflows() {
        // The pair's send falls short (8 MiB against the socket buffer) in an
        // enter whose completions overflow the CQ: its failure CQE is then not
        // in the CQ when the turn reaps, and must not be taken as "sent it all".
        sent_whole(pattern(8 << 20, 7), || flood_cq(CQ_ENTRIES as usize + 100));
    }

    #[test]
    fn completions_stashed_by_a_busy_submit_are_not_slept_on() {
        // A submit refused with EBUSY (a backed-up CQ, older kernels) moves
        // the completions it finds into `Reactor::cqes`. Simulated here: one
        // task waits for an answer, another takes its completion out of the
        // CQ the way that path does, then ends. With no timer pending, an
        // executor that parks without handling the stash never wakes.
        let (l, addr) = listener();
        let server = thread::spawn(move || line_server(l.accept().unwrap().0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // In a thread, so that a hang fails the test instead of blocking it.
        thread::spawn(move || {
            let waiting = Rc::new(Cell::new(false));
            let flag = Rc::clone(&waiting);
            run(vec![
                task(async move {
                    let mut s = UringSocket::connect(&addr).await.unwrap();
                    s.send_all(b"req 7\n").await.unwrap();
                    flag.set(true);
                    assert_eq!(read_line(&mut s, 4096).await.unwrap(), expected(7));
                }),
                task(async move {
                    // Yields until the pair is in the ring.
                    let mut turns = 0;
                    poll_fn(|cx| {
                        if waiting.get() {
                            turns += 1;
                        }
                        if turns < 2 {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        Poll::Ready(())
                    })
                    .await;
                    with_reactor(|r| {
                        r.ring.submit_and_wait(1).unwrap();
                        r.stash_completions();
                        assert!(!r.cqes.is_empty());
                    });
                }),
            ]);
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the executor slept on stashed completions");
        server.join().unwrap();
    }

    #[test]
    fn closed_port_is_refused() {
        let (l, addr) = listener();
        drop(l);
        run(vec![task(async move {
            let err = UringSocket::connect(&addr).await.err().expect("connected");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        })]);
    }

    #[test]
    fn server_close_is_eof() {
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0; 4];
            s.read_exact(&mut req).unwrap();
            s.write_all(b"bye\n").unwrap();
        });
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            s.send_all(b"req\n").await.unwrap();
            assert_eq!(read_line(&mut s, 64).await.unwrap(), b"bye\n");
            let mut buf = [0; 16];
            assert_eq!(s.recv(&mut buf).await.unwrap(), 0);
        })]);
        server.join().unwrap();
    }

    /// What the engine counts as a reset.
    fn is_reset(r: &io::Result<usize>) -> bool {
        match r {
            Ok(n) => *n == 0,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
        }
    }

    #[test]
    fn server_reset_is_a_reset() {
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0; 4];
            s.read_exact(&mut req).unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s); // RST
        });
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            s.send_all(b"req\n").await.unwrap();
            let mut buf = [0; 16];
            let got = s.recv(&mut buf).await;
            assert!(is_reset(&got), "{got:?}");
            // The next request on the dead connection fails too.
            let sent = s.send_all(b"req\n").await;
            let got = match sent {
                Ok(()) => s.recv(&mut buf).await,
                Err(e) => Err(e),
            };
            assert!(is_reset(&got), "{got:?}");
        })]);
        server.join().unwrap();
    }

    #[test]
    fn dropping_a_socket_with_a_recv_in_flight_closes_it() {
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0; 4];
            s.read_exact(&mut req).unwrap();
            // Never answers; sees the client's close (the timeout only keeps
            // a broken close from hanging the test).
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).map(|_| rest.len())
        });
        run(vec![task(async move {
            let mut s = UringSocket::connect(&addr).await.unwrap();
            s.send_all(b"req\n").await.unwrap();
            // A timeout wins the race; the recv future, then the socket, drop
            // with the RECV still in the ring.
            abandon_recv(&mut s).await;
        })]);
        assert_eq!(server.join().unwrap().expect("server saw the close"), 0);
    }

    #[test]
    fn dropping_a_socket_with_a_staged_pair_and_one_mid_send() {
        // One socket dropped before its pair was submitted, one while a plain
        // send of the rest of a short pair is in flight (the server reads
        // nothing until the client is gone).
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let mut closes = 0;
            for conn in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                if conn == 1 {
                    // Lets the client's socket buffer fill first.
                    thread::sleep(Duration::from_millis(200));
                }
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut rest = Vec::new();
                match s.read_to_end(&mut rest) {
                    Ok(_) => closes += 1,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closes += 1,
                    Err(e) => panic!("connection {conn}: {e}"),
                }
            }
            closes
        });
        let big = pattern(8 << 20, 3);
        run(vec![task(async move {
            let mut a = UringSocket::connect(&addr).await.unwrap();
            a.send_all(b"staged").await.unwrap();
            drop(a);
            let mut b = UringSocket::connect(&addr).await.unwrap();
            b.send_all(&big).await.unwrap();
            abandon_recv(&mut b).await;
        })]);
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn dropping_a_connect_in_flight_frees_its_slot() {
        // A listener whose accept queue is full drops further SYNs, so a
        // connect to it stays in flight; the engine drops such a connect on
        // its timeout: the CONNECT must be cancelled and the slot freed.
        let l = RawSocket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let s = RawSocket::new(Domain::IPV4, Type::STREAM.nonblocking(), None).unwrap();
            let _ = s.connect(&SockAddr::from(addr));
            fillers.push(s);
        }
        let timed_out = Rc::new(Cell::new(false));
        let flag = Rc::clone(&timed_out);
        run(vec![task(async move {
            let mut connect = std::pin::pin!(UringSocket::connect(&addr));
            let mut timeout = std::pin::pin!(Uring::sleep_until(
                Instant::now() + Duration::from_millis(200)
            ));
            poll_fn(|cx| {
                if connect.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                timeout.as_mut().poll(cx).map(|()| flag.set(true))
            })
            .await;
        })]);
        assert!(timed_out.get(), "the connect did not stay in flight");
        drop(fillers);
    }

    #[test]
    fn a_timer_fires_not_before_its_deadline_and_reset_moves_it() {
        run(vec![task(async {
            let t = Instant::now() + Duration::from_millis(30);
            Uring::sleep_until(t).await;
            assert!(Instant::now() >= t);

            // Moved earlier: fires at the new deadline, not the old one.
            let far = Instant::now() + Duration::from_secs(3600);
            let mut sleep = std::pin::pin!(Uring::sleep_until(far));
            poll_fn(|cx| {
                assert!(sleep.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let near = Instant::now() + Duration::from_millis(20);
            Uring::reset(sleep.as_mut(), near);
            assert_eq!(Uring::deadline(&sleep), near);
            sleep.as_mut().await;
            assert!(Instant::now() >= near && Instant::now() < far);

            // Moved after firing: pending again until the new deadline.
            let later = Instant::now() + Duration::from_millis(20);
            Uring::reset(sleep.as_mut(), later);
            sleep.as_mut().await;
            assert!(Instant::now() >= later);
        })]);
    }

    #[test]
    fn many_timers_fire_in_deadline_order() {
        let fired = Rc::new(RefCell::new(Vec::new()));
        let base = Instant::now() + Duration::from_millis(20);
        // Created in a scrambled order.
        let tasks = (0..100u64)
            .map(|k| (k * 37) % 100)
            .map(|k| {
                let fired = Rc::clone(&fired);
                task(async move {
                    Uring::sleep_until(base + Duration::from_millis(k)).await;
                    fired.borrow_mut().push(k);
                })
            })
            .collect();
        run(tasks);
        assert_eq!(*fired.borrow(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn wakes_from_other_threads_reach_a_parked_executor() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
        let n2 = Arc::clone(&notify);
        let other = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            n2.notify_one();
            for i in 0..1000 {
                tx.blocking_send(i).unwrap();
            }
        });
        let got = Rc::new(Cell::new(0u32));
        let got2 = Rc::clone(&got);
        run(vec![task(async move {
            notify.notified().await;
            let mut sum = 0;
            while let Some(i) = rx.recv().await {
                assert_eq!(i, sum);
                sum += 1;
            }
            got2.set(sum);
        })]);
        other.join().unwrap();
        assert_eq!(got.get(), 1000);
    }

    #[test]
    fn many_sockets_many_exchanges() {
        const CONNS: usize = 50;
        const EXCHANGES: usize = 1000;
        let (l, addr) = listener();
        let server = thread::spawn(move || {
            let handlers: Vec<_> = (0..CONNS)
                .map(|_| {
                    let (s, _) = l.accept().unwrap();
                    thread::spawn(move || line_server(s))
                })
                .collect();
            for h in handlers {
                h.join().unwrap();
            }
        });
        let done = Rc::new(Cell::new(0usize));
        let tasks = (0..CONNS)
            .map(|c| {
                let done = Rc::clone(&done);
                task(async move {
                    let mut s = UringSocket::connect(&addr).await.unwrap();
                    for k in 0..EXCHANGES {
                        let n = c * EXCHANGES + k;
                        s.send_all(format!("req {n}\n").as_bytes()).await.unwrap();
                        assert_eq!(read_line(&mut s, 4096).await.unwrap(), expected(n));
                        done.set(done.get() + 1);
                    }
                })
            })
            .collect();
        run(tasks);
        server.join().unwrap();
        assert_eq!(done.get(), CONNS * EXCHANGES);
    }

    #[test]
    fn sockets_past_the_file_table_use_plain_fds() {
        // A one-entry table: the first socket takes it, the second falls back
        // to its fd, a third reuses the entry the first freed. Every close
        // reaches the server while the ring still runs (the table's reference
        // to a socket goes with it).
        let (l, addr) = listener();
        let (eofs_tx, eofs) = std::sync::mpsc::channel();
        let server = thread::spawn(move || {
            let handlers: Vec<_> = (0..3)
                .map(|_| {
                    let (s, _) = l.accept().unwrap();
                    let eofs_tx = eofs_tx.clone();
                    thread::spawn(move || {
                        serve_until_close(s);
                        eofs_tx.send(()).unwrap();
                    })
                })
                .collect();
            for h in handlers {
                h.join().unwrap();
            }
        });
        let leaked = run_all(
            vec![task(async move {
                let fixed = |s: &UringSocket| s.with(|r, i, g| r.slot(i, g).fixed);
                let mut a = UringSocket::connect(&addr).await.unwrap();
                let mut b = UringSocket::connect(&addr).await.unwrap();
                assert!(fixed(&a), "the first socket is in the table");
                assert!(!fixed(&b), "the second socket uses its fd");
                for n in 0..100 {
                    for s in [&mut a, &mut b] {
                        s.send_all(format!("req {n}\n").as_bytes()).await.unwrap();
                        assert_eq!(read_line(s, 4096).await.unwrap(), expected(n));
                    }
                }
                // Dropped with their pair's RECV in flight (the server waits
                // for the end of the line): cancelled by table index and by fd.
                a.send_all(b"req 1").await.unwrap();
                b.send_all(b"req 1").await.unwrap();
                Uring::sleep_until(Instant::now() + Duration::from_millis(10)).await;
                drop(a);
                drop(b);
                wait_for_eofs(&eofs, 2).await;
                // The server sees the shutdown before the slots are freed
                // (when their cancelled ops' CQEs are reaped).
                let limit = Instant::now() + Duration::from_secs(30);
                while with_reactor(|r| r.in_use()) > 0 {
                    assert!(Instant::now() < limit, "closed sockets were not freed");
                    Uring::sleep_until(Instant::now() + Duration::from_millis(1)).await;
                }
                let mut c = UringSocket::connect(&addr).await.unwrap();
                assert!(fixed(&c), "the third socket took the freed entry");
                c.send_all(b"req 7\n").await.unwrap();
                assert_eq!(read_line(&mut c, 4096).await.unwrap(), expected(7));
                drop(c); // idle: closed at once
                wait_for_eofs(&eofs, 1).await;
            })],
            1,
        )
        .expect("block_on_all");
        assert_eq!(leaked, 0, "sockets leaked");
        server.join().unwrap();
    }

    /// Answers lines like `line_server` until the client closes (a partial
    /// last line is not answered); panics if the stream ends any other way.
    fn serve_until_close(stream: TcpStream) {
        stream.set_nodelay(true).unwrap();
        // Bounds a broken close: the read fails, and with it the test.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .expect("the client's close ends the stream");
            let Some(line) = line.strip_suffix('\n') else {
                return; // EOF
            };
            out.write_all(&answer(line)).unwrap();
        }
    }

    /// Waits until `n` more connections have reported EOF (polling, since the
    /// reports come from std threads; bounded so a lost close fails the test).
    async fn wait_for_eofs(eofs: &std::sync::mpsc::Receiver<()>, n: usize) {
        let limit = Instant::now() + Duration::from_secs(30);
        for _ in 0..n {
            loop {
                match eofs.try_recv() {
                    Ok(()) => break,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        assert!(Instant::now() < limit, "a close did not reach the server");
                        Uring::sleep_until(Instant::now() + Duration::from_millis(2)).await;
                    }
                    Err(e) => panic!("server: {e}"),
                }
            }
        }
    }

    #[test]
    fn block_on_all_runs_again_on_the_same_thread() {
        for _ in 0..3 {
            let (l, addr) = listener();
            let server = thread::spawn(move || line_server(l.accept().unwrap().0));
            run(vec![task(async move {
                let mut s = UringSocket::connect(&addr).await.unwrap();
                s.send_all(b"req 7\n").await.unwrap();
                assert_eq!(read_line(&mut s, 4096).await.unwrap(), expected(7));
            })]);
            server.join().unwrap();
        }
    }

    #[test]
    #[should_panic(expected = "only inside uring::block_on_all")]
    fn a_timer_outside_block_on_all_panics() {
        let mut sleep =
            std::pin::pin!(Uring::sleep_until(Instant::now() + Duration::from_secs(60)));
        let waker = futures::task::noop_waker_ref();
        let _ = sleep.as_mut().poll(&mut Context::from_waker(waker));
    }
}
