//! The executor: single-threaded tasks, their wakers, and the loop that polls
//! them and parks on the ring when nothing is ready.

use super::*;

/// What other threads touch: their run queue, and the eventfd that wakes a
/// parked executor (tasks await tokio's Notify and mpsc, woken from anywhere).
/// Wakes on the executor's own thread (completions, timers, the tasks
/// themselves) skip all of it: they go to `LOCAL`.
pub(super) struct Shared {
    pub(super) remote: Mutex<Vec<usize>>,
    /// Set after a push to `remote`: spares the executor the lock on turns
    /// when no other thread woke anything (nearly all of them).
    pub(super) remote_queued: AtomicBool,
    /// Set while the executor waits in the ring: a wake must then write the eventfd.
    pub(super) parked: AtomicBool,
    pub(super) eventfd: OwnedFd,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue holds plain ids: a panic elsewhere leaves it consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A wake from a thread other than the executor's.
    pub(super) fn schedule_remote(&self, id: usize) {
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
    pub(super) fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to an eventfd this struct
        // owns (so it is open). A full counter (EAGAIN) already means "wake".
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Moves the other threads' wakes into `into`.
    pub(super) fn take_remote(&self, into: &mut Vec<usize>) {
        if self.remote_queued.swap(false, Ordering::SeqCst) {
            into.append(&mut lock(&self.remote));
        }
    }
}

/// The run queue of the executor running on this thread.
pub(super) struct Local {
    /// The `Shared` of that executor (null when none runs here): a waker whose
    /// `shared` is this one was fired on the executor's thread.
    pub(super) shared: Cell<*const Shared>,
    pub(super) ready: RefCell<Vec<usize>>,
    /// When the executor last looked for completions (see `UringSocket::clock`).
    pub(super) clock: Cell<Option<Instant>>,
}

thread_local! {
    pub(super) static LOCAL: Local = const {
        Local {
            shared: Cell::new(std::ptr::null()),
            ready: RefCell::new(Vec::new()),
            clock: Cell::new(None),
        }
    };
}

pub(super) fn set_clock(t: Instant) {
    LOCAL.with(|l| l.clock.set(Some(t)));
}

/// Sets `LOCAL` for one `block_on_all` and clears it when that ends (by
/// return or panic), so a waker that outlives it takes the remote path.
pub(super) struct LocalQueue;

impl LocalQueue {
    pub(super) fn install(shared: &Arc<Shared>) -> LocalQueue {
        LOCAL.with(|l| {
            l.shared.set(Arc::as_ptr(shared));
            l.ready.borrow_mut().clear();
            l.clock.set(None);
        });
        LocalQueue
    }

    pub(super) fn is_empty(&self) -> bool {
        LOCAL.with(|l| l.ready.borrow().is_empty())
    }

    /// Swaps the queued ids into `batch` (which must be empty).
    pub(super) fn take(&self, batch: &mut Vec<usize>) {
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

pub(super) struct TaskWaker {
    pub(super) id: usize,
    /// Already in a run queue: further wakes are free.
    pub(super) queued: AtomicBool,
    pub(super) shared: Arc<Shared>,
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
    pub(super) static REACTOR: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

pub(super) static NEXT_REACTOR_ID: AtomicU64 = AtomicU64::new(1);

pub(super) const OUTSIDE: &str =
    "uring sockets and timers work only inside uring::block_on_all, on its thread";

/// Runs `f` on this thread's reactor. No borrow is ever held across an await or
/// a task poll, so the only way to find it borrowed is a bug.
pub(super) fn with_reactor<R>(f: impl FnOnce(&mut Reactor) -> R) -> R {
    REACTOR.with(|cell| {
        let mut reactor = cell
            .try_borrow_mut()
            .expect("the uring reactor was re-entered");
        f(reactor.as_mut().expect(OUTSIDE))
    })
}

/// Tears the installed reactor down when `block_on_all` ends, by return or by
/// a task's panic.
pub(super) struct Installed;

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

pub(super) type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Runs `tasks` to completion on the calling thread with a fresh ring, then
/// tears the ring down (every socket closed, every in-flight op completed)
/// before returning.
pub(crate) fn block_on_all(tasks: Vec<Task>) -> io::Result<()> {
    run_all(tasks, FILE_TABLE).map(|_leaked| ())
}

/// `block_on_all`, returning how many sockets' memory teardown had to leak
/// because their operations did not complete in time (tests assert 0), with a
/// file table of (at most) `file_table` entries.
pub(super) fn run_all(tasks: Vec<Task>, file_table: u32) -> io::Result<usize> {
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
