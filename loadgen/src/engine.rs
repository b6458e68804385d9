//! The engine: one worker loop, parameterised by a pacer (closed, per-worker rate,
//! open schedule) and a stop condition (count, deadline, schedule end, Ctrl-C),
//! plus the aggregator task that turns worker parts into a `Results`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distributions::{Distribution, WeightedIndex};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch, Notify};

use crate::epoll::Epoll;
use crate::http1::{Conn, Failure, Marks, ResponseMeta, Wanted};
use crate::outcome::Outcome;
use crate::pacer::Schedule;
use crate::plan::{Io, LoadPlan, Model, Shard, Stop};
use crate::record::{outcome_map, Aggregator, Message, Recorder, Sample};
use crate::results::{
    encode_histogram, PacerStats, Results, RunMeta, Tool, Totals, SCHEMA_VERSION,
};
use crate::sock::{Backend, Socket};
use crate::template::{self, CompiledRequest, Expansion, Origin, Sequence};
use crate::tls;
#[cfg(target_os = "linux")]
use crate::uring::Uring;
use crate::{LoadError, Progress, RequestRow};

/// A send more than this after its scheduled time counts as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(10);
/// Redirect hops followed before giving up (Go's client, hence hey, stops at 10).
const MAX_REDIRECTS: usize = 10;

/// What every worker shares: the compiled plan and the stop condition.
struct Shared {
    plan: LoadPlan,
    requests: Vec<CompiledRequest>,
    /// Picks a request by weight (`None`: there is only one).
    pick: Option<WeightedIndex<u32>>,
    origins: Vec<Origin>,
    /// One TLS client config per run: its session cache makes reconnects resume.
    tls: Arc<rustls::ClientConfig>,
    start: Instant,
    interval_us: u64,
    count: Option<u64>,
    /// The part of the run this generator sends (0/1: all of it).
    shard: Shard,
    /// Requests (open model: arrivals) this shard has taken; its `j`-th is the
    /// run's `shard.global(j)`-th.
    claimed: AtomicU64,
    sequence: Sequence,
    stopping: AtomicBool,
    interrupted: AtomicBool,
    /// When sending stopped early (µs from start), for the pacer's accounting.
    stopped_at_us: AtomicU64,
    notify: Notify,
    schedule: Option<Schedule>,
    rows: Option<mpsc::Sender<RequestRow>>,
    /// The HTTP proxy's addresses (`-x`): every `http://` connection goes there.
    proxy: Option<Vec<SocketAddr>>,
}

impl Shared {
    fn index(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64 / self.interval_us
    }

    fn stop(&self, interrupted: bool) {
        if interrupted {
            self.interrupted.store(true, Ordering::SeqCst);
        }
        if !self.stopping.swap(true, Ordering::SeqCst) {
            let at = self.start.elapsed().as_micros() as u64;
            self.stopped_at_us.store(at, Ordering::SeqCst);
        }
        self.notify.notify_waiters();
    }

    /// Takes the next request of a counted run; false when the count is used up.
    /// A shard takes the requests k ≡ index (mod count) of the run's count.
    fn claim(&self) -> bool {
        match self.count {
            Some(n) => {
                self.shard
                    .global(self.claimed.fetch_add(1, Ordering::Relaxed))
                    < n
            }
            None => true,
        }
    }

    /// Sleeps until `t` unless the run stops first; false when it stopped.
    async fn wait_until<B: Backend>(&self, t: Instant) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        tokio::select! {
            biased;
            _ = B::sleep_until(t) => !self.stopping.load(Ordering::Acquire),
            _ = notified => false,
        }
    }
}

/// How a worker decides when to send.
enum Pacer {
    /// Back to back (hey without -q).
    Closed,
    /// hey's -q: at most one request per `period` per worker.
    PerWorker { period: Duration, next: Instant },
    /// The shared arrival schedule; latency counts from the scheduled time.
    Open,
}

/// Which phase a request was in when its timeout struck.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Connecting,
    Exchanging,
}

/// A completed exchange (after redirects).
struct Exchanged {
    meta: ResponseMeta,
    connect_us: u64,
    marks: Marks,
}

struct Worker<B: Backend> {
    shared: Arc<Shared>,
    pacer: Pacer,
    conns: Vec<Option<Conn<B::Socket>>>,
    /// HTTP/2 connections (`-h2`), one per origin like `conns`.
    h2: Vec<Option<crate::h2::Conn>>,
    rng: ChaCha8Rng,
    scratch: Vec<u8>,
    recorder: Recorder,
}

impl<B: Backend> Worker<B> {
    /// The next send: `None` to stop, else the time latency counts from when it
    /// is a schedule's (open model).
    async fn next(&mut self) -> Option<Option<Instant>> {
        let shared = &*self.shared;
        if shared.stopping.load(Ordering::Relaxed) {
            return None;
        }
        match &mut self.pacer {
            Pacer::Closed => shared.claim().then_some(None),
            Pacer::PerWorker { period, next } => {
                let due = *next;
                *next = due.max(Instant::now()) + *period;
                if due > Instant::now() {
                    self.recorder.roll(shared.index(due));
                    if !shared.wait_until::<B>(due).await {
                        return None;
                    }
                }
                shared.claim().then_some(None)
            }
            Pacer::Open => {
                // Arrival k of the whole run's schedule; a shard skips to its
                // own k ≡ index (mod count), so the shards' union is the schedule.
                let k = shared
                    .shard
                    .global(shared.claimed.fetch_add(1, Ordering::Relaxed));
                if shared.count.is_some_and(|n| k >= n) {
                    return None;
                }
                let schedule = shared.schedule.as_ref().expect("open model has a schedule");
                let due = shared.start + Duration::from_secs_f64(schedule.at(k)?);
                // See TIMER_SLACK: an early send counts from the actual send, so
                // aiming early never undercounts latency; aiming late would add
                // artificial lateness to every request.
                let wake = due - B::TIMER_SLACK.min(due - shared.start);
                if wake > Instant::now() {
                    self.recorder.roll(shared.index(due));
                    if !shared.wait_until::<B>(wake).await {
                        return None;
                    }
                }
                Some(Some(due))
            }
        }
    }

    async fn run(mut self) {
        let shared = self.shared.clone();
        let timeout = shared.plan.timeout;
        // One timer per worker instead of one `tokio::time::timeout` per request
        // (each registers and deregisters a timer entry: measurable user time at
        // tens of thousands of requests/s). It lags behind: it is only moved to
        // the current request's deadline when it fires before it.
        let watchdog = B::sleep_until(Instant::now() + timeout);
        tokio::pin!(watchdog);
        while let Some(due) = self.next().await {
            let sent = B::Socket::clock();
            if let Some(due) = due {
                let lag = sent.saturating_duration_since(due);
                self.recorder.roll(shared.index(sent));
                self.recorder
                    .send_lag(lag.as_micros() as u64, lag > LATE_THRESHOLD);
            }
            let which = match &shared.pick {
                Some(w) => w.sample(&mut self.rng),
                None => 0,
            };
            let mut phase = Phase::Connecting;
            let deadline = sent + timeout;
            let result = {
                let attempt = self.attempt(&shared, which, &mut phase);
                tokio::pin!(attempt);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut attempt => break Ok(r),
                        _ = &mut watchdog => {
                            // Compared by deadline, not by reading the clock again.
                            if B::deadline(&watchdog) >= deadline {
                                break Err(());
                            }
                            B::reset(watchdog.as_mut(), deadline);
                        }
                    }
                }
            };
            let done = B::Socket::clock();
            let origin = shared.requests[which].origin;
            let (outcome, exchanged) = match result {
                Ok(Ok(x)) => {
                    let o = if x.meta.status >= 300
                        && x.meta.status < 400
                        && x.meta.location.is_some()
                        && shared.plan.follow_redirects
                    {
                        // Still a redirect after MAX_REDIRECTS hops.
                        Outcome::Other
                    } else {
                        Outcome::from_status(x.meta.status)
                    };
                    (o, Some(x))
                }
                Ok(Err(f)) => {
                    tracing::debug!(failure = %f.detail(), "request failed");
                    (f.outcome(), None)
                }
                Err(_) => {
                    // The connection is mid-exchange; it cannot be reused.
                    self.conns[origin] = None;
                    self.h2[origin] = None;
                    let o = match phase {
                        Phase::Connecting => Outcome::ConnectTimeout,
                        Phase::Exchanging => Outcome::RequestTimeout,
                    };
                    (o, None)
                }
            };
            // An early send (at most one timer tick) counts from the actual send,
            // a late one from its schedule: latency never undercounts.
            let from = due.map_or(sent, |d| d.min(sent));
            let latency_us = done.saturating_duration_since(from).as_micros() as u64;
            let service_us = done.saturating_duration_since(sent).as_micros() as u64;
            self.recorder.roll(shared.index(done));
            let (status, bytes, tracked) = match &exchanged {
                Some(x) => (x.meta.status, x.meta.body_bytes, x.meta.tracked.as_deref()),
                None => (0, 0, None),
            };
            self.recorder.record(&Sample {
                outcome,
                status,
                latency_us,
                service_us,
                bytes,
                tracked,
            });
            if let Some(x) = &exchanged {
                let connected = sent + Duration::from_micros(x.connect_us);
                let write = x.marks.written.saturating_duration_since(connected);
                let first_byte = x.marks.first_byte.unwrap_or(done);
                let wait = first_byte.saturating_duration_since(x.marks.written);
                let read = done.saturating_duration_since(first_byte);
                self.recorder.phases(
                    x.connect_us,
                    write.as_micros() as u64,
                    wait.as_micros() as u64,
                    read.as_micros() as u64,
                );
                if let Some(rows) = &shared.rows {
                    let row = RequestRow {
                        offset: sent.saturating_duration_since(shared.start),
                        response_time: Duration::from_micros(latency_us),
                        connect: Duration::from_micros(x.connect_us),
                        write,
                        wait,
                        read,
                        status,
                    };
                    // Bounded: a slow CSV writer slows the run instead of buffering rows.
                    let _ = rows.send(row).await;
                }
            }
        }
        self.recorder.finish();
    }

    /// One request, redirects included.
    async fn attempt(
        &mut self,
        shared: &Shared,
        which: usize,
        phase: &mut Phase,
    ) -> Result<Exchanged, Failure> {
        let req = &shared.requests[which];
        if shared.plan.transport.http2 {
            return self.attempt_h2(shared, which, phase).await;
        }
        let wanted = Wanted {
            location: shared.plan.follow_redirects,
            tracked: shared.plan.track_header.as_deref(),
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let bytes: &[u8] = match &req.encoded {
            Some(b) => b,
            None => {
                let mut x = Expansion {
                    sequence: &shared.sequence,
                    rng: &mut self.rng,
                    seq: None,
                };
                req.encode(&shared.origins[req.origin], &mut scratch, &mut x);
                &scratch
            }
        };
        let first = send_on(
            shared,
            &mut self.conns,
            req.origin,
            None,
            bytes,
            req.head_only,
            wanted,
            phase,
        )
        .await;
        let mut result = first;
        if shared.plan.follow_redirects {
            // Borrowed: most responses are not redirects, and this runs for each.
            let mut method: &str = &req.method;
            // Borrowed until a redirect leaves the origin: no copy per request.
            let mut at = std::borrow::Cow::Borrowed(&shared.origins[req.origin]);
            let mut path = String::new();
            for _ in 0..MAX_REDIRECTS {
                let Ok(x) = &result else { break };
                let Some(location) = redirect_target(&x.meta) else {
                    break;
                };
                let status = x.meta.status;
                let keep = matches!(status, 307 | 308);
                if !keep && method != "HEAD" {
                    method = "GET";
                }
                let (next, next_path) = match resolve_location(&location, &path).await {
                    Ok(t) => t,
                    Err(f) => {
                        result = Err(f);
                        break;
                    }
                };
                if let Some(mut next) = next {
                    if let (Some(proxy), None) = (&shared.proxy, &next.tls) {
                        next.addrs = proxy.clone();
                    }
                    at = std::borrow::Cow::Owned(next);
                }
                path = next_path;
                let line = match (&shared.proxy, &at.tls) {
                    (Some(_), None) => format!("http://{}{path}", at.authority),
                    _ => path.clone(),
                };
                let mut x = Expansion {
                    sequence: &shared.sequence,
                    rng: &mut self.rng,
                    seq: None,
                };
                let host = if at.same_as(&shared.origins[req.origin]) {
                    req.host_for(&at.authority)
                } else {
                    &at.authority
                };
                req.encode_redirect(method, keep, host, &line, &mut scratch, &mut x);
                let pooled = shared.origins.iter().position(|o| o.same_as(&at));
                let connect_us = result.as_ref().map(|x| x.connect_us).unwrap_or(0);
                result = match pooled {
                    Some(o) => {
                        send_on(
                            shared,
                            &mut self.conns,
                            o,
                            None,
                            &scratch,
                            method == "HEAD",
                            wanted,
                            phase,
                        )
                        .await
                    }
                    None => {
                        let mut once: Vec<Option<Conn<B::Socket>>> = vec![None];
                        send_on(
                            shared,
                            &mut once,
                            0,
                            Some(&at),
                            &scratch,
                            method == "HEAD",
                            wanted,
                            phase,
                        )
                        .await
                    }
                };
                if let Ok(x) = &mut result {
                    x.connect_us += connect_us;
                }
            }
        }
        self.scratch = scratch;
        result
    }
}

impl<B: Backend> Worker<B> {
    /// One HTTP/2 request on this worker's connection to its origin (opened
    /// when there is none; reopened once when a reused one turns out closed).
    /// Redirects are not followed: their responses count as 3xx.
    async fn attempt_h2(
        &mut self,
        shared: &Shared,
        which: usize,
        phase: &mut Phase,
    ) -> Result<Exchanged, Failure> {
        let req = &shared.requests[which];
        let origin = &shared.origins[req.origin];
        let wanted = Wanted {
            location: false,
            tracked: shared.plan.track_header.as_deref(),
        };
        let request = match &req.encoded {
            Some(b) => crate::h2::request(b, origin.tls.is_some(), &origin.authority)?,
            None => {
                let mut x = Expansion {
                    sequence: &shared.sequence,
                    rng: &mut self.rng,
                    seq: None,
                };
                req.encode(origin, &mut self.scratch, &mut x);
                crate::h2::request(&self.scratch, origin.tls.is_some(), &origin.authority)?
            }
        };
        let slot = &mut self.h2[req.origin];
        let mut connect_us = 0;
        for retry in 0..2 {
            let reused = slot.is_some();
            if !reused {
                let tls = origin.tls.as_ref().map(|name| (&shared.tls, name));
                let open = crate::h2::Conn::open(&origin.addrs, tls);
                connect_us += open_into(slot, phase, open).await?;
            }
            *phase = Phase::Exchanging;
            let conn = slot.as_mut().expect("connected above");
            let result = conn.exchange(request.clone(), wanted).await;
            if let Some(done) = settle(slot, result, reused && retry == 0, shared, connect_us) {
                return done;
            }
        }
        Err(Failure::Closed {
            before_response: true,
        })
    }
}

fn redirect_target(meta: &ResponseMeta) -> Option<String> {
    match meta.status {
        301 | 302 | 303 | 307 | 308 => meta.location.clone(),
        _ => None,
    }
}

/// Where a `Location` points: (its origin with addresses, or `None` for the
/// current one; its path).
async fn resolve_location(
    location: &str,
    current_path: &str,
) -> Result<(Option<Origin>, String), Failure> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let u = template::parse_url(location).map_err(Failure::Protocol)?;
        let mut origin = Origin::new(&u).map_err(Failure::Protocol)?;
        origin.addrs = tokio::net::lookup_host((u.host.as_str(), u.port))
            .await
            .map_err(Failure::Other)?
            .collect();
        return Ok((Some(origin), u.path));
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = current_path
            .split('?')
            .next()
            .and_then(|p| p.rsplit_once('/'))
            .map(|(d, _)| d)
            .unwrap_or("");
        format!("{dir}/{location}")
    };
    // Same origin: same scheme, and its addresses as already resolved.
    Ok((None, path))
}

/// Sends on the pooled connection for `origin` (connecting when there is none),
/// retrying once on a fresh connection when a reused one turns out to be closed.
#[allow(clippy::too_many_arguments)]
async fn send_on<S: Socket>(
    shared: &Shared,
    conns: &mut [Option<Conn<S>>],
    origin: usize,
    off_pool: Option<&Origin>,
    bytes: &[u8],
    head_only: bool,
    wanted: Wanted<'_>,
    phase: &mut Phase,
) -> Result<Exchanged, Failure> {
    let to = off_pool.unwrap_or(&shared.origins[origin]);
    let slot = &mut conns[origin];
    let mut connect_us = 0;
    for retry in 0..2 {
        let reused = slot.is_some();
        if !reused {
            let tls = to.tls.as_ref().map(|name| (&shared.tls, name));
            connect_us += open_into(slot, phase, Conn::open(&to.addrs, tls)).await?;
        }
        *phase = Phase::Exchanging;
        let conn = slot.as_mut().expect("connected above");
        let result = conn.exchange(bytes, head_only, wanted).await;
        if let Some(done) = settle(slot, result, reused && retry == 0, shared, connect_us) {
            return done;
        }
    }
    Err(Failure::Closed {
        before_response: true,
    })
}

/// Runs `open` as the connect phase and puts the connection in `slot`;
/// returns how long connecting took (µs).
async fn open_into<C>(
    slot: &mut Option<C>,
    phase: &mut Phase,
    open: impl std::future::Future<Output = Result<C, Failure>>,
) -> Result<u64, Failure> {
    *phase = Phase::Connecting;
    let t = Instant::now();
    *slot = Some(open.await?);
    Ok(t.elapsed().as_micros() as u64)
}

/// What an exchange's result means for its connection (dropped unless it may
/// serve another request): `Some` to return, `None` to retry once on a fresh
/// connection — a reused one the server had already closed, found before any
/// response byte, which browsers and Go's client retry too. The retry loops
/// themselves stay one per connection kind: a generic async one over both
/// kinds trips rustc's `Send` inference for the spawned workers (rust#100013).
fn settle<C>(
    slot: &mut Option<C>,
    result: Result<(ResponseMeta, Marks), Failure>,
    may_retry: bool,
    shared: &Shared,
    connect_us: u64,
) -> Option<Result<Exchanged, Failure>> {
    match result {
        Ok((meta, marks)) => {
            if meta.close || !shared.plan.keepalive {
                *slot = None;
            }
            Some(Ok(Exchanged {
                meta,
                connect_us,
                marks,
            }))
        }
        Err(Failure::Closed {
            before_response: true,
        }) if may_retry => {
            *slot = None;
            None
        }
        Err(e) => {
            *slot = None;
            Some(Err(e))
        }
    }
}

/// A worker for connection `id`: its own seeded random stream, pacer, connection
/// slots and recorder.
fn worker<B: Backend>(
    shared: &Arc<Shared>,
    id: usize,
    tx: &mpsc::UnboundedSender<Message>,
) -> Worker<B> {
    let plan = &shared.plan;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    rng.set_stream(id as u64);
    let pacer = match plan.model {
        Model::Closed {
            rate_per_worker: None,
        } => Pacer::Closed,
        Model::Closed {
            rate_per_worker: Some(q),
        } => Pacer::PerWorker {
            period: Duration::from_secs_f64(1.0 / q),
            next: shared.start,
        },
        Model::Open { .. } => Pacer::Open,
    };
    Worker {
        shared: shared.clone(),
        pacer,
        conns: (0..shared.origins.len()).map(|_| None).collect(),
        h2: (0..shared.origins.len()).map(|_| None).collect(),
        rng,
        scratch: Vec::new(),
        recorder: Recorder::new(plan.bad.clone(), tx.clone()),
    }
}

/// The workers, running: on the caller's tokio runtime (epoll) or on threads of
/// their own, one io_uring each.
enum Running {
    Epoll,
    #[cfg(target_os = "linux")]
    Uring(Vec<std::thread::JoinHandle<std::io::Result<()>>>),
}

impl Running {
    fn name(&self) -> &'static str {
        match self {
            Running::Epoll => "epoll",
            #[cfg(target_os = "linux")]
            Running::Uring(_) => "uring",
        }
    }

    /// Waits for the io_uring threads to finish tearing down their rings.
    async fn join(self) -> Result<(), LoadError> {
        match self {
            Running::Epoll => Ok(()),
            #[cfg(target_os = "linux")]
            Running::Uring(threads) => {
                for t in threads {
                    let joined = tokio::task::spawn_blocking(move || t.join())
                        .await
                        .map_err(|e| LoadError::Runtime(std::io::Error::other(e)))?;
                    match joined {
                        Ok(r) => r.map_err(LoadError::Runtime)?,
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                Ok(())
            }
        }
    }
}

/// Picks the backend (`plan.io`) and starts one worker per connection on it.
fn spawn_workers(
    shared: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Message>,
) -> Result<Running, LoadError> {
    let plan = &shared.plan;
    #[cfg(target_os = "linux")]
    {
        let uring = match plan.io {
            Io::Epoll => false,
            Io::Uring => {
                crate::uring::available().map_err(|e| {
                    LoadError::Plan(format!(
                        "the io_uring backend is not available here ({e}); --io auto falls back to epoll"
                    ))
                })?;
                true
            }
            // Back to back (hey without -q), epoll measured as cheap per request
            // and kept nginx busier (ci/bench-loadgen.sh); when sends are paced
            // by timers, io_uring's exact timers keep the schedule that tokio's
            // millisecond ticks turn into bursts (ci/bench-openmodel.sh).
            // hyper's HTTP/2 client needs tokio's reactor.
            Io::Auto if plan.transport.http2 => false,
            Io::Auto if !paced(&plan.model) => false,
            Io::Auto => match crate::uring::available() {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "io_uring is not available; using epoll");
                    false
                }
            },
        };
        if uring {
            return spawn_uring(shared, tx).map(Running::Uring);
        }
    }
    #[cfg(not(target_os = "linux"))]
    if plan.io == Io::Uring {
        return Err(LoadError::Plan("the io_uring backend needs Linux".into()));
    }
    for id in shared.shard.connections(plan.connections) {
        tokio::spawn(worker::<Epoll>(shared, id, tx).run());
    }
    Ok(Running::Epoll)
}

/// Whether sends wait for timers: the open model's schedule, or hey's `-q`.
fn paced(model: &Model) -> bool {
    !matches!(
        model,
        Model::Closed {
            rate_per_worker: None
        }
    )
}

/// `plan.threads` threads (0: one per core, never more than connections), each
/// running its share of the workers on its own io_uring. Workers are built on
/// their thread: their sockets belong to that thread's ring.
#[cfg(target_os = "linux")]
fn spawn_uring(
    shared: &Arc<Shared>,
    tx: &mpsc::UnboundedSender<Message>,
) -> Result<Vec<std::thread::JoinHandle<std::io::Result<()>>>, LoadError> {
    let plan = &shared.plan;
    let ids = shared.shard.connections(plan.connections);
    let threads = match plan.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(ids.len());
    // Redirects to another host resolve names through tokio's blocking pool.
    let handle = tokio::runtime::Handle::current();
    let mut joins = Vec::with_capacity(threads);
    for t in 0..threads {
        let (mine, tx, handle, ids) = (shared.clone(), tx.clone(), handle.clone(), ids.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-uring-{t}"))
            .spawn(move || {
                // Timers wake within microseconds instead of the default 50 µs of
                // slack, so open-model sends land on their schedule.
                // SAFETY: PR_SET_TIMERSLACK takes one integer and changes only
                // this thread's timer slack.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                let _runtime = handle.enter();
                let tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = ids
                    .skip(t)
                    .step_by(threads)
                    .map(|id| Box::pin(worker::<Uring>(&mine, id, &tx).run()) as _)
                    .collect();
                drop(tx);
                crate::uring::block_on_all(tasks)
            });
        match spawned {
            Ok(j) => joins.push(j),
            Err(e) => {
                // The threads already running would go on sending with nobody
                // to collect their results: stop them. They end by themselves
                // once their requests in flight do (joining here could block
                // the runtime a `-o csv` writer needs to let them finish).
                shared.stop(false);
                return Err(LoadError::Runtime(e));
            }
        }
    }
    Ok(joins)
}

pub(crate) fn validate(plan: &LoadPlan) -> Result<(), LoadError> {
    let bad = |m: &str| Err(LoadError::Plan(m.to_string()));
    if plan.connections == 0 {
        return bad("connections must be at least 1");
    }
    if plan.timeout.is_zero() {
        return bad("the timeout must be more than 0");
    }
    if plan.interval.as_micros() == 0 {
        return bad("the interval must be at least 1µs");
    }
    if let Some(s) = plan.shard {
        if s.count == 0 || s.index >= s.count {
            return Err(LoadError::Plan(format!(
                "shard {s}: the index must be below the count (0/{n} … {m}/{n})",
                n = s.count,
                m = s.count.saturating_sub(1)
            )));
        }
        if plan.connections < s.count as usize {
            return Err(LoadError::Plan(format!(
                "{} shards need at least {} connections (-c) in all: each shard runs its share",
                s.count, s.count
            )));
        }
    }
    if plan.transport.http2 && plan.io == Io::Uring {
        return bad(
            "HTTP/2 (-h2) runs on hyper over tokio's epoll reactor: use --io auto or epoll",
        );
    }
    if let Some(p) = &plan.transport.proxy {
        template::parse_proxy(p)?;
        if plan.transport.http2 {
            return bad("HTTP/2 (-h2) through a proxy (-x) is not supported: use one or the other");
        }
    }
    match (&plan.model, &plan.stop) {
        (_, Stop::Requests { count: 0 }) => return bad("the request count must be at least 1"),
        (_, Stop::Duration { duration }) if duration.is_zero() => {
            return bad("the duration must be more than 0")
        }
        (Model::Closed { .. }, Stop::Stages) => {
            return bad("the closed model needs a request count or a duration to stop")
        }
        (
            Model::Closed {
                rate_per_worker: Some(q),
            },
            _,
        ) if !(q.is_finite() && *q > 0.0) => {
            return bad("the per-worker rate must be a positive number")
        }
        (Model::Open { stages }, _) => {
            if stages.is_empty() {
                return bad("the open model needs at least one stage");
            }
            for s in stages {
                if !(s.start_rate.is_finite() && s.end_rate.is_finite())
                    || s.start_rate < 0.0
                    || s.end_rate < 0.0
                {
                    return bad("stage rates must be non-negative numbers");
                }
            }
            if stages
                .iter()
                .all(|s| s.start_rate + s.end_rate == 0.0 || s.duration.is_zero())
            {
                return bad("the stages schedule no requests");
            }
        }
        _ => {}
    }
    Ok(())
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, LoadError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| LoadError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(LoadError::Resolve {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        });
    }
    Ok(addrs)
}

pub(crate) async fn run(
    plan: LoadPlan,
    origin: Option<Instant>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    progress: Option<watch::Sender<Progress>>,
    rows: Option<mpsc::Sender<RequestRow>>,
) -> Result<Results, LoadError> {
    validate(&plan)?;
    let (requests, mut origins) = template::compile(&plan)?;
    let proxy = match &plan.transport.proxy {
        Some(p) => {
            let (host, port) = template::parse_proxy(p)?;
            Some(resolve(&host, port).await?)
        }
        None => None,
    };
    for o in &mut origins {
        o.addrs = match (&proxy, &o.tls) {
            // The proxy resolves the target's name.
            (Some(p), None) => p.clone(),
            _ => resolve(&o.host, o.port).await?,
        };
    }
    let schedule = match &plan.model {
        Model::Closed { .. } => None,
        Model::Open { stages } => {
            let limit = match plan.stop {
                Stop::Duration { duration } => Some(duration),
                _ => None,
            };
            Some(Schedule::new(stages, limit, plan.arrivals, plan.seed))
        }
    };
    let count = match plan.stop {
        Stop::Requests { count } => Some(count),
        _ => None,
    };
    let deadline = match plan.stop {
        Stop::Duration { duration } => Some(duration),
        _ => None,
    };
    let tls = tls::client_config(plan.transport.http2)
        .map_err(|e| LoadError::Plan(format!("cannot set up TLS: {e}")))?;
    // Once for every worker (each draws from it with its own seeded stream).
    let pick = (plan.requests.len() > 1).then(|| {
        WeightedIndex::new(plan.requests.iter().map(|r| r.weight)).expect("weights validated")
    });
    // t = 0 of the schedule and the timeline: the caller's origin when it gives
    // one (so faults and other clocks share it exactly), else now.
    if let Some(origin) = origin {
        tokio::time::sleep_until(tokio::time::Instant::from_std(origin)).await;
    }
    let start = origin.unwrap_or_else(Instant::now);
    let started_at = chrono::Utc::now()
        - chrono::Duration::from_std(Instant::now().saturating_duration_since(start))
            .unwrap_or_default();
    let shared = Arc::new(Shared {
        interval_us: plan.interval.as_micros() as u64,
        pick,
        requests,
        origins,
        tls,
        start,
        count,
        shard: plan.shard.unwrap_or(Shard { index: 0, count: 1 }),
        claimed: AtomicU64::new(0),
        sequence: Sequence::new(plan.shard),
        stopping: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        stopped_at_us: AtomicU64::new(u64::MAX),
        notify: Notify::new(),
        schedule,
        rows,
        proxy,
        plan,
    });
    let plan = &shared.plan;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let io = spawn_workers(&shared, &tx)?;
    drop(tx);
    let stopper = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until((shared.start + d).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown => shared.stop(true),
                _ = timer => shared.stop(false),
            }
        })
    };

    let mut agg = Aggregator::new(plan.interval);
    // Workers hand an interval over when they next finish or sleep; most do so
    // within moments. Intervals are encoded two intervals after they end (a late
    // part still merges exactly), which keeps only a few histograms alive.
    let grace = plan.interval * 2;
    let mut ticker = tokio::time::interval(plan.interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => agg.take(m),
                None => break,
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                let safe = shared.index(now.checked_sub(grace).unwrap_or(start));
                agg.close_before(safe);
                if let Some(p) = &progress {
                    let idx = shared.index(now);
                    let last = idx.saturating_sub(1);
                    let (n, _, p99) = agg.peek(last).unwrap_or((0, 0, 0));
                    let elapsed = now - start;
                    let stage = shared
                        .schedule
                        .as_ref()
                        .map(|s| s.stage_at(elapsed.as_secs_f64()))
                        .unwrap_or(0);
                    p.send_replace(Progress {
                        elapsed,
                        requests: agg.total.counts.requests,
                        rate: n as f64 / plan.interval.as_secs_f64(),
                        errors: agg.total.counts.bad,
                        p99_last_interval: Duration::from_micros(p99),
                        stage,
                    });
                }
            }
        }
    }
    stopper.abort();
    let finished = Instant::now();
    let io_name = io.name();
    io.join().await?;
    let elapsed = finished - start;
    let last_idx = (elapsed.as_micros() as u64).saturating_sub(1) / shared.interval_us;
    let lag = agg.lag.clone();
    let phases = agg.phases.clone();
    let status_codes = agg.status_codes.clone();
    let by_header = agg.by_header.clone();
    let (mut timeline, acc, _) = agg.timeline(Some(last_idx));
    let total = &acc.counts;

    let interrupted = shared.interrupted.load(Ordering::SeqCst);
    let pacer = shared.schedule.as_ref().map(|s| {
        let stopped = shared.stopped_at_us.load(Ordering::SeqCst);
        let stop_s = if stopped == u64::MAX {
            s.end().as_secs_f64()
        } else {
            stopped as f64 / 1e6
        };
        // The run's arrivals before a time, capped by `-n`, then this shard's
        // share of them (all of them unsharded).
        let cap = |n: u64| shared.shard.share(count.map_or(n, |c| n.min(c)));
        let w = plan.interval.as_secs_f64();
        // Cumulative counts at shared boundaries, so the buckets add up exactly.
        let upto = |i: usize| cap(s.scheduled_by((i as f64 * w).min(stop_s)));
        for (i, iv) in timeline.iter_mut().enumerate() {
            iv.scheduled = upto(i + 1) - upto(i);
        }
        let scheduled = cap(s.scheduled_by(stop_s));
        let sent = lag.len();
        PacerStats {
            scheduled,
            sent,
            late_sends: total.late_sends,
            late_threshold_us: LATE_THRESHOLD.as_micros() as u64,
            max_lag_us: lag.max(),
            p99_lag_us: lag.value_at_quantile(0.99),
            fell_behind: PacerStats::fell_behind_rule(scheduled, sent, total.late_sends),
        }
    });

    let duration_s = elapsed.as_secs_f64();
    let mut totals = Totals {
        requests: total.requests,
        good: total.good,
        bad: total.bad,
        availability: 0.0,
        rps: 0.0,
        outcomes: outcome_map(&total.outcomes),
        status_codes,
        latency: crate::results::LatencySummary::from_histogram(&acc.latency),
        latency_good: crate::results::LatencySummary::from_histogram(&acc.good_latency()),
        latency_bad: crate::results::LatencySummary::from_histogram(&acc.bad_latency),
        service_time: crate::results::LatencySummary::from_histogram(&acc.service),
        bytes_received: total.bytes,
        by_header,
    };
    totals.derive_rates(duration_s);
    let commit = tokio::task::spawn_blocking(crate::meta::git_commit)
        .await
        .ok()
        .flatten();
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(
        "phases".to_string(),
        serde_json::to_value(&phases).expect("phases serialise"),
    );
    Ok(Results {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "slolab".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        run: RunMeta {
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_s,
            commit,
            host: crate::meta::host(),
            interrupted,
            io: Some(io_name.into()),
        },
        plan: shared.plan.clone(),
        totals,
        pacer,
        timeline,
        histogram: encode_histogram(&acc.latency),
        service_histogram: encode_histogram(&acc.service),
        bad_histogram: if acc.bad_latency.is_empty() {
            String::new()
        } else {
            encode_histogram(&acc.bad_latency)
        },
        shard: None,
        shards: None,
        extra,
    })
}
