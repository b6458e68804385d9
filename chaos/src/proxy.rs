//! The fault proxy: a tokio TCP proxy placed in front of a component, forwarding
//! bytes untouched (a cheap fast branch) until toxics are installed, which then
//! apply to live connections as well as new ones.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::toxic::{splitmix64, ActiveToxic, Direction, Effects, Toxic, ToxicError};

/// Bytes read per syscall: large, as in `copy_bidirectional`'s big-buffer mode,
/// so bulk transfers need few wake-ups.
const BUF_SIZE: usize = 64 * 1024;
/// At most this much may sit delayed in a pump before it stops reading (backpressure).
const MAX_QUEUED: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("fault proxy cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Toxic(#[from] ToxicError),
}

/// Options beyond the two addresses.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// A name for logs (the component's name, e.g. `redis`).
    pub name: String,
    /// Seeds the toxicity draws and jitter, so a run replays.
    pub seed: u64,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            name: "proxy".into(),
            seed: 0,
        }
    }
}

/// What every pump and the accept loop watch: the installed toxics and whether
/// the proxy is shutting down.
#[derive(Clone, Debug, Default)]
struct State {
    toxics: Arc<[ActiveToxic]>,
    shutdown: bool,
}

impl State {
    fn refusing(&self) -> bool {
        self.toxics
            .iter()
            .any(|t| matches!(t.toxic, Toxic::Refuse | Toxic::RefuseNew))
    }
}

struct Shared {
    name: String,
    seed: u64,
    listen: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    next_toxic: AtomicU64,
    next_conn: AtomicU64,
    active: AtomicUsize,
    /// Serialises read-modify-write of the toxic list.
    edit: Mutex<()>,
}

/// A running proxy. Dropping it stops accepting and closes its connections;
/// [`FaultProxy::handle`] gives cheap clones for whoever injects faults.
pub struct FaultProxy {
    handle: ProxyHandle,
}

/// A clonable reference to a running proxy, to add and remove toxics.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("name", &self.shared.name)
            .field("listen", &self.shared.listen)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

impl FaultProxy {
    /// Listen on `listen` (port 0 picks one; see [`FaultProxy::local_addr`]) and
    /// forward every connection to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<FaultProxy, ProxyError> {
        FaultProxy::start_with(listen, upstream, ProxyOptions::default()).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        options: ProxyOptions,
    ) -> Result<FaultProxy, ProxyError> {
        let listener = bind(listen).map_err(|source| ProxyError::Bind {
            addr: listen,
            source,
        })?;
        let local = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: listen,
            source,
        })?;
        let (state, _) = watch::channel(State::default());
        let shared = Arc::new(Shared {
            name: options.name,
            seed: options.seed,
            listen: local,
            upstream,
            state,
            next_toxic: AtomicU64::new(1),
            next_conn: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            edit: Mutex::new(()),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        tracing::debug!(name = %shared.name, %local, %upstream, "fault proxy listening");
        Ok(FaultProxy {
            handle: ProxyHandle { shared },
        })
    }

    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    pub fn add_toxic(&self, toxic: Toxic, toxicity: f64) -> Result<u64, ProxyError> {
        self.handle.add_toxic(toxic, toxicity)
    }

    pub fn remove_toxic(&self, id: u64) -> bool {
        self.handle.remove_toxic(id)
    }

    pub fn clear_toxics(&self) {
        self.handle.clear_toxics()
    }

    pub fn toxics(&self) -> Vec<ActiveToxic> {
        self.handle.toxics()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.handle.shared.state.send_modify(|s| s.shutdown = true);
    }
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Connections currently open through the proxy.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.next_conn.load(Ordering::Relaxed)
    }

    /// Install `toxic` on a `toxicity` fraction of connections (live and new);
    /// returns its id for [`ProxyHandle::remove_toxic`].
    pub fn add_toxic(&self, toxic: Toxic, toxicity: f64) -> Result<u64, ProxyError> {
        if !(0.0..=1.0).contains(&toxicity) || toxicity.is_nan() {
            return Err(ToxicError::Toxicity(toxicity).into());
        }
        toxic.validate()?;
        let _guard = self.shared.edit.lock().unwrap_or_else(|p| p.into_inner());
        let id = self.shared.next_toxic.fetch_add(1, Ordering::Relaxed);
        let active = ActiveToxic {
            id,
            toxic,
            toxicity,
            seed: splitmix64(self.shared.seed ^ id.rotate_left(32)),
        };
        tracing::info!(proxy = %self.shared.name, id, toxic = ?active.toxic, toxicity, "toxic added");
        self.shared.state.send_modify(|s| {
            let mut list = s.toxics.to_vec();
            list.push(active);
            s.toxics = list.into();
        });
        Ok(id)
    }

    /// Remove one toxic; false when it was not there.
    pub fn remove_toxic(&self, id: u64) -> bool {
        let _guard = self.shared.edit.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = false;
        self.shared.state.send_if_modified(|s| {
            if s.toxics.iter().any(|t| t.id == id) {
                s.toxics = s.toxics.iter().filter(|t| t.id != id).cloned().collect();
                removed = true;
            }
            removed
        });
        if removed {
            tracing::info!(proxy = %self.shared.name, id, "toxic removed");
        }
        removed
    }

    pub fn clear_toxics(&self) {
        let _guard = self.shared.edit.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.state.send_if_modified(|s| {
            let had = !s.toxics.is_empty();
            s.toxics = Arc::from([]);
            had
        });
    }

    pub fn toxics(&self) -> Vec<ActiveToxic> {
        self.shared.state.borrow().toxics.to_vec()
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Reopening the same port after `refuse` must not trip over TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut rx = shared.state.subscribe();
    let mut listener = Some(listener);
    loop {
        let (refusing, shutdown) = {
            let s = rx.borrow_and_update();
            (s.refusing(), s.shutdown)
        };
        if shutdown {
            return;
        }
        if refusing && listener.is_some() {
            // Closing the socket is what makes connects fail with ECONNREFUSED.
            listener = None;
            tracing::info!(proxy = %shared.name, "refusing connections");
        }
        if !refusing && listener.is_none() {
            match bind(shared.listen) {
                Ok(l) => {
                    tracing::info!(proxy = %shared.name, "accepting connections again");
                    listener = Some(l);
                }
                Err(e) => {
                    // Someone else may hold the port for a moment; keep trying.
                    tracing::warn!(proxy = %shared.name, addr = %shared.listen, error = %e, "cannot reopen listener, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        r = rx.changed() => if r.is_err() { return },
                    }
                    continue;
                }
            }
        }
        match &listener {
            Some(l) => tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                accepted = l.accept() => match accepted {
                    Ok((client, _)) => {
                        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve_connection(shared.clone(), conn, client));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        tracing::warn!(proxy = %shared.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            },
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How one direction's pump ended, which decides how the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PumpEnd {
    /// The source closed and the close was passed on.
    Eof,
    /// Close both sides now (limit-data reached, or `refuse` cut the connection).
    Close,
    /// Reset both sides (reset toxic, or an I/O error on either side).
    Reset,
    /// The proxy is going away.
    Shutdown,
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(shared: Arc<Shared>, conn: u64, client: TcpStream) {
    shared.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&shared.active);
    let rx = shared.state.subscribe();
    let upstream = match TcpStream::connect(shared.upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(proxy = %shared.name, conn, error = %e, "upstream unreachable, resetting client");
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = upstream.into_split();
    let end = {
        let seed = shared.seed ^ splitmix64(conn);
        let to_up = pump(
            rx.clone(),
            conn,
            Direction::Upstream,
            seed,
            &mut client_r,
            &mut up_w,
        );
        let to_down = pump(
            rx,
            conn,
            Direction::Downstream,
            seed.rotate_left(1),
            &mut up_r,
            &mut client_w,
        );
        tokio::pin!(to_up, to_down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                e = &mut to_up, if !up_done => { up_done = true; e }
                e = &mut to_down, if !down_done => { down_done = true; e }
            };
            if end != PumpEnd::Eof || (up_done && down_done) {
                break end;
            }
        }
    };
    let client = client_r.reunite(client_w).expect("halves of one stream");
    let upstream = up_r.reunite(up_w).expect("halves of one stream");
    match end {
        PumpEnd::Reset => {
            reset(client);
            reset(upstream);
        }
        PumpEnd::Eof | PumpEnd::Close | PumpEnd::Shutdown => {}
    }
}

/// Close with SO_LINGER 0, so the peer gets a RST rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

struct Chunk {
    due: Instant,
    data: Bytes,
}

/// Forward one direction. Always the same loop: with no toxic on this flow it
/// reads and writes straight through (the fast branch); with toxics it queues
/// chunks by due time and paces them. Either way it watches the toxic set, so a
/// change applies to this live connection on its next wake-up.
async fn pump(
    mut rx: watch::Receiver<State>,
    conn: u64,
    flow: Direction,
    seed: u64,
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
) -> PumpEnd {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; BUF_SIZE];
    let mut effects = {
        let s = rx.borrow_and_update();
        if s.shutdown {
            return PumpEnd::Shutdown;
        }
        Effects::for_connection(&s.toxics, conn, flow)
    };
    let mut queue: VecDeque<Chunk> = VecDeque::new();
    let mut queued = 0usize;
    let mut eof = false;
    // Bandwidth gate: the earliest time the next byte may leave.
    let mut next_send = Instant::now();
    // Bytes passed on in this direction, for limit-data.
    let mut sent: u64 = 0;

    loop {
        if effects.reset {
            return PumpEnd::Reset;
        }
        if effects.cut {
            return PumpEnd::Close;
        }
        if effects.blackhole && !queue.is_empty() {
            queue.clear();
            queued = 0;
        }
        if let Some(limit) = effects.limit {
            if sent >= limit {
                return PumpEnd::Close;
            }
        }
        if eof && queue.is_empty() {
            if let Some(delay) = effects.slow_close {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = wait_shutdown(&mut rx) => return PumpEnd::Shutdown,
                }
            }
            let _ = dst.shutdown().await;
            return PumpEnd::Eof;
        }

        if effects.is_clear() && queue.is_empty() {
            // Fast branch: straight copy, woken also by a change of toxics.
            tokio::select! {
                biased;
                changed = rx.changed() => match on_change(changed, &mut rx, conn, flow) {
                    Some(e) => effects = e,
                    None => return PumpEnd::Shutdown,
                },
                read = src.read(&mut buf) => match read {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        if dst.write_all(&buf[..n]).await.is_err() {
                            return PumpEnd::Reset;
                        }
                        sent += n as u64;
                    }
                    Err(_) => return PumpEnd::Reset,
                },
            }
            continue;
        }

        let head_due = queue.front().map(|c| c.due.max(next_send));
        let can_read = !eof && queued < MAX_QUEUED;
        tokio::select! {
            biased;
            changed = rx.changed() => match on_change(changed, &mut rx, conn, flow) {
                Some(e) => effects = e,
                None => return PumpEnd::Shutdown,
            },
            _ = sleep_until_opt(head_due), if head_due.is_some() => {
                let mut chunk = queue.pop_front().expect("head exists");
                let mut n = chunk.data.len();
                if let Some(rate) = effects.rate {
                    // Send at most ~50 ms worth at a time so the rate is smooth.
                    n = n.min((rate / 20).max(1) as usize);
                }
                if let Some(limit) = effects.limit {
                    n = n.min((limit - sent) as usize);
                }
                let piece = chunk.data.split_to(n);
                if !chunk.data.is_empty() {
                    queue.push_front(chunk);
                }
                queued -= n;
                if dst.write_all(&piece).await.is_err() {
                    return PumpEnd::Reset;
                }
                sent += n as u64;
                if let Some(rate) = effects.rate {
                    let now = Instant::now();
                    let floor = now.checked_sub(Duration::from_millis(50)).unwrap_or(now);
                    let start = next_send.max(floor);
                    next_send = start + Duration::from_secs_f64(n as f64 / rate as f64);
                }
            },
            read = src.read(&mut buf), if can_read => match read {
                Ok(0) => eof = true,
                Ok(_) if effects.blackhole => {}
                Ok(n) => {
                    let delay = jittered(effects.latency, effects.jitter, &mut rng);
                    let mut due = Instant::now() + delay;
                    // Jitter must not reorder bytes within a stream.
                    if let Some(last) = queue.back() {
                        due = due.max(last.due);
                    }
                    queue.push_back(Chunk { due, data: Bytes::copy_from_slice(&buf[..n]) });
                    queued += n;
                }
                Err(_) => return PumpEnd::Reset,
            },
        }
    }
}

fn on_change(
    changed: Result<(), watch::error::RecvError>,
    rx: &mut watch::Receiver<State>,
    conn: u64,
    flow: Direction,
) -> Option<Effects> {
    changed.ok()?;
    let s = rx.borrow_and_update();
    if s.shutdown {
        return None;
    }
    Some(Effects::for_connection(&s.toxics, conn, flow))
}

async fn wait_shutdown(rx: &mut watch::Receiver<State>) {
    loop {
        if rx.changed().await.is_err() || rx.borrow_and_update().shutdown {
            return;
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn jittered(latency: Duration, jitter: Duration, rng: &mut impl Rng) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let j = jitter.as_secs_f64();
    let offset = rng.gen_range(-j..=j);
    Duration::from_secs_f64((latency.as_secs_f64() + offset).max(0.0))
}
