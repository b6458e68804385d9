//! The floor experiment (not slolab code): how cheap can a closed-loop HTTP/1.1
//! generator get on this machine? Evidence for issue 2; see README.md.
//!
//!   slolab-floor epoll PORT SECS [clock]
//!   slolab-floor uring PORT SECS [clock] [link] [pollfirst] [multishot] [fixed] [skip]
//!                                [single] [defer] [coop] [submitall] [wait=N] [minwait=US] [tsrx]
//!
//! 50 keep-alive connections (CONNS env overrides), one pre-encoded GET, every
//! response parsed with httparse and its Content-Length body consumed exactly.
//! Prints the number of completed responses.
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUF: usize = 4096;

/// Returns the length of the complete response at the start of `b`, if any.
#[inline]
fn parse(b: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(b) {
        Ok(httparse::Status::Complete(h)) => {
            let mut cl = 0usize;
            for hd in resp.headers.iter() {
                if hd.name.eq_ignore_ascii_case("content-length") {
                    cl = std::str::from_utf8(hd.value).unwrap().trim().parse().unwrap();
                }
            }
            if b.len() >= h + cl {
                Some(h + cl)
            } else {
                None
            }
        }
        Ok(httparse::Status::Partial) => None,
        Err(e) => panic!("bad response: {e}"),
    }
}

/// Latency sink: a real generator records into a histogram; a flat bucket
/// array costs about the same as an hdrhistogram record.
struct Lat {
    on: bool,
    buckets: Vec<u64>,
}
impl Lat {
    #[inline]
    fn start(&self) -> Option<Instant> {
        if self.on {
            Some(Instant::now())
        } else {
            None
        }
    }
    #[inline]
    fn done(&mut self, t: Option<Instant>) {
        if let Some(t) = t {
            let us = t.elapsed().as_micros() as usize;
            let last = self.buckets.len() - 1;
            self.buckets[us.min(last)] += 1;
        }
    }
}

struct Conn {
    sock: TcpStream,
    buf: Box<[u8; BUF]>,
    len: usize,
    t: Option<Instant>,
}

fn connect(port: u16, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nodelay(true).unwrap();
            s.set_nonblocking(true).unwrap();
            Conn { sock: s, buf: Box::new([0; BUF]), len: 0, t: None }
        })
        .collect()
}

fn stopper(secs: f64) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(secs));
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// `nap`: (microseconds, min batch). When an epoll_wait returned fewer than
/// `min` events, sleep `us` on a timer before polling again, so that one
/// wake-up harvests many responses (the epoll analogue of io_uring's wait_nr).
fn run_epoll(port: u16, secs: f64, req: &[u8], lat: &mut Lat, nconn: usize, nap: Option<(u64, usize)>) -> u64 {
    if nap.is_some() {
        // The default 50 us timer slack would stretch every nap.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    }
    let mut conns = connect(port, nconn);
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: i as u64 };
        assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.sock.as_raw_fd(), &mut ev) }, 0);
    }
    let send = |fd: RawFd| {
        let r = unsafe { libc::write(fd, req.as_ptr().cast(), req.len()) };
        assert_eq!(r as usize, req.len(), "short write");
    };
    let stop = stopper(secs);
    for c in conns.iter_mut() {
        c.t = lat.start();
        send(c.sock.as_raw_fd());
    }
    let mut count = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    while !stop.load(Ordering::Relaxed) {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        if n < 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let c = &mut conns[ev.u64 as usize];
            let fd = c.sock.as_raw_fd();
            loop {
                let space = BUF - c.len;
                let r = unsafe { libc::read(fd, c.buf[c.len..].as_mut_ptr().cast(), space) };
                if r <= 0 {
                    let e = std::io::Error::last_os_error();
                    assert!(r < 0 && e.raw_os_error() == Some(libc::EAGAIN), "read: {r} {e}");
                    break;
                }
                c.len += r as usize;
                if let Some(used) = parse(&c.buf[..c.len]) {
                    count += 1;
                    lat.done(c.t);
                    c.buf.copy_within(used..c.len, 0);
                    c.len -= used;
                    c.t = lat.start();
                    send(fd);
                }
                // Edge-triggered: a short read drained the socket, and any later
                // arrival raises a new edge, so no EAGAIN read is needed.
                if (r as usize) < space {
                    break;
                }
            }
        }
        if let Some((us, min)) = nap {
            if (n as usize) < min {
                let ts = libc::timespec { tv_sec: 0, tv_nsec: (us * 1000) as i64 };
                unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            }
        }
    }
    count
}

#[derive(Default, Clone, Copy)]
struct UOpts {
    link: bool,
    pollfirst: bool,
    multishot: bool,
    fixed: bool,
    skip: bool,
    single: bool,
    defer: bool,
    coop: bool,
    submitall: bool,
    wait: usize,
    minwait: u32,
    tsrx: bool,
}

fn run_uring(port: u16, secs: f64, req: &[u8], lat: &mut Lat, o: UOpts, nconn: usize) -> u64 {
    use io_uring::{cqueue, opcode, squeue, types, IoUring};
    let mut conns = connect(port, nconn);
    let mut b = IoUring::builder();
    if o.single {
        b.setup_single_issuer();
    }
    if o.defer {
        b.setup_defer_taskrun();
    }
    if o.coop {
        b.setup_coop_taskrun();
    }
    if o.submitall {
        b.setup_submit_all();
    }
    let mut ring: IoUring = b.setup_cqsize(1024).build(256).unwrap();
    let fds: Vec<RawFd> = conns.iter().map(|c| c.sock.as_raw_fd()).collect();
    if o.fixed {
        ring.submitter().register_files(&fds).unwrap();
    }
    // Provided-buffer ring for multishot recv: NB buffers of BSZ bytes.
    const NB: u16 = 128;
    const BSZ: usize = 2048;
    const BGID: u16 = 7;
    let mut pool: Vec<u8> = vec![0; NB as usize * BSZ];
    let ring_mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            NB as usize * 16,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as *mut types::BufRingEntry;
    let mut br_tail: u16 = 0;
    let add_buf = |bid: u16, tail: &mut u16, pool: &mut Vec<u8>| unsafe {
        let e = &mut *ring_mem.add((*tail & (NB - 1)) as usize);
        e.set_addr(pool.as_mut_ptr().add(bid as usize * BSZ) as u64);
        e.set_len(BSZ as u32);
        e.set_bid(bid);
        *tail = tail.wrapping_add(1);
    };
    let publish = |tail: u16| unsafe {
        let t = types::BufRingEntry::tail(ring_mem) as *const std::sync::atomic::AtomicU16;
        (*t).store(tail, Ordering::Release);
    };
    if o.multishot {
        for bid in 0..NB {
            add_buf(bid, &mut br_tail, &mut pool);
        }
        publish(br_tail);
        unsafe { ring.submitter().register_buf_ring_with_flags(ring_mem as u64, NB, BGID, 0).unwrap() };
    }

    let send_flags = {
        let mut f = squeue::Flags::empty();
        if o.skip {
            f |= squeue::Flags::SKIP_SUCCESS;
        }
        if o.link && !o.multishot {
            f |= squeue::Flags::IO_LINK;
        }
        f
    };
    let recv_ioprio: u16 = if o.pollfirst { 1 } else { 0 }; // IORING_RECVSEND_POLL_FIRST
    let mk_send = |i: usize| -> squeue::Entry {
        let e = if o.fixed {
            opcode::Send::new(types::Fixed(i as u32), req.as_ptr(), req.len() as u32).build()
        } else {
            opcode::Send::new(types::Fd(fds[i]), req.as_ptr(), req.len() as u32).build()
        };
        e.flags(send_flags).user_data((i as u64) << 1)
    };
    // tsrx: every recv is a RECVMSG that also reads the kernel's receive
    // timestamp (SO_TIMESTAMPNS), which would let a generator batch its waits
    // without delaying when responses count as arrived. One boxed msghdr,
    // iovec and control buffer per connection (addresses the kernel keeps).
    type Msg = (libc::msghdr, libc::iovec, [u64; 8]);
    let mut msgs: Vec<Box<Msg>> = Vec::new();
    if o.tsrx {
        for &fd in &fds {
            let on: libc::c_int = 1;
            let r = unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on as *const _ as *const libc::c_void, 4)
            };
            assert_eq!(r, 0, "SO_TIMESTAMPNS");
            msgs.push(Box::new(unsafe { std::mem::zeroed() }));
        }
    }
    let msgp: Vec<usize> = msgs.iter_mut().map(|b| &mut **b as *mut Msg as usize).collect();
    // Summed and printed so the timestamps are read, as a generator would.
    let mut ts_sum: i64 = 0;
    let mk_recv = |i: usize, c: &mut Conn| -> squeue::Entry {
        if o.tsrx {
            let m = unsafe { &mut *(msgp[i] as *mut Msg) };
            m.1.iov_base = unsafe { c.buf.as_mut_ptr().add(c.len) } as *mut libc::c_void;
            m.1.iov_len = BUF - c.len;
            m.0.msg_iov = &mut m.1;
            m.0.msg_iovlen = 1;
            m.0.msg_control = m.2.as_mut_ptr() as *mut libc::c_void;
            m.0.msg_controllen = 64;
            let e = if o.fixed {
                opcode::RecvMsg::new(types::Fixed(i as u32), &mut m.0).ioprio(recv_ioprio).build()
            } else {
                opcode::RecvMsg::new(types::Fd(fds[i]), &mut m.0).ioprio(recv_ioprio).build()
            };
            return e.user_data(((i as u64) << 1) | 1);
        }
        let p = unsafe { c.buf.as_mut_ptr().add(c.len) };
        let l = (BUF - c.len) as u32;
        let e = if o.fixed {
            opcode::Recv::new(types::Fixed(i as u32), p, l).ioprio(recv_ioprio).build()
        } else {
            opcode::Recv::new(types::Fd(fds[i]), p, l).ioprio(recv_ioprio).build()
        };
        e.user_data(((i as u64) << 1) | 1)
    };
    let mk_multi = |i: usize| -> squeue::Entry {
        let e = if o.fixed {
            opcode::RecvMulti::new(types::Fixed(i as u32), BGID).build()
        } else {
            opcode::RecvMulti::new(types::Fd(fds[i]), BGID).build()
        };
        e.user_data(((i as u64) << 1) | 1)
    };

    let stop = stopper(secs);
    for i in 0..conns.len() {
        conns[i].t = lat.start();
        unsafe {
            let mut sq = ring.submission();
            sq.push(&mk_send(i)).unwrap();
            if o.multishot {
                sq.push(&mk_multi(i)).unwrap();
            } else {
                let r = mk_recv(i, &mut conns[i]);
                sq.push(&r).unwrap();
            }
        }
    }
    let mut count = 0u64;
    let mut pending: Vec<squeue::Entry> = Vec::with_capacity(256);
    let wait = o.wait.max(1);
    while !stop.load(Ordering::Relaxed) {
        if o.minwait > 0 {
            // Robust batching (kernel >= 6.12): wait up to `minwait` us for
            // `wait` completions, then return with whatever has arrived (>= 1),
            // so fewer in-flight requests than `wait` cannot stall the loop.
            let args = types::SubmitArgs::new().min_wait_usec(o.minwait);
            // ETIME only says fewer than `wait` arrived in time.
            if let Err(e) = ring.submitter().submit_with_args(wait, &args) {
                assert_eq!(e.raw_os_error(), Some(libc::ETIME), "{e}");
            }
        } else {
            ring.submit_and_wait(wait).unwrap();
        }
        let mut returned = false;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            let i = (ud >> 1) as usize;
            let res = cqe.result();
            if ud & 1 == 0 {
                assert_eq!(res as usize, req.len(), "send result {res}");
                continue;
            }
            let c = &mut conns[i];
            if o.multishot {
                if res == -libc::ENOBUFS {
                    pending.push(mk_multi(i));
                    continue;
                }
                assert!(res > 0, "multishot recv {res}");
                let bid = cqueue::buffer_select(cqe.flags()).unwrap();
                let data = &pool[bid as usize * BSZ..bid as usize * BSZ + res as usize];
                let done = if c.len == 0 {
                    match parse(data) {
                        Some(used) => {
                            assert_eq!(used, data.len(), "pipelined bytes");
                            true
                        }
                        None => {
                            c.buf[..data.len()].copy_from_slice(data);
                            c.len = data.len();
                            false
                        }
                    }
                } else {
                    c.buf[c.len..c.len + data.len()].copy_from_slice(data);
                    c.len += data.len();
                    match parse(&c.buf[..c.len]) {
                        Some(used) => {
                            assert_eq!(used, c.len);
                            c.len = 0;
                            true
                        }
                        None => false,
                    }
                };
                add_buf(bid, &mut br_tail, &mut pool);
                returned = true;
                if done {
                    count += 1;
                    lat.done(c.t);
                    c.t = lat.start();
                    pending.push(mk_send(i));
                }
                if !cqueue::more(cqe.flags()) {
                    pending.push(mk_multi(i));
                }
            } else {
                assert!(res > 0, "recv {res}");
                if o.tsrx {
                    let m = unsafe { &*(msgp[i] as *const Msg) };
                    let cm = unsafe { libc::CMSG_FIRSTHDR(&m.0) };
                    if !cm.is_null() && unsafe { (*cm).cmsg_type } == libc::SCM_TIMESTAMPNS {
                        let ts = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::timespec) };
                        ts_sum = ts_sum.wrapping_add(ts.tv_nsec);
                    } else {
                        panic!("a RECVMSG without its timestamp");
                    }
                }
                c.len += res as usize;
                if let Some(used) = parse(&c.buf[..c.len]) {
                    count += 1;
                    lat.done(c.t);
                    c.buf.copy_within(used..c.len, 0);
                    c.len -= used;
                    c.t = lat.start();
                    pending.push(mk_send(i));
                }
                pending.push(mk_recv(i, c));
            }
        }
        if returned {
            publish(br_tail);
        }
        unsafe { ring.submission().push_multiple(&pending).unwrap() };
        pending.clear();
    }
    if o.tsrx {
        eprintln!("ts_sum {ts_sum}");
    }
    count
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mode = a[1].as_str();
    let port: u16 = a[2].parse().unwrap();
    let secs: f64 = a[3].parse().unwrap();
    let flags = &a[4..];
    let has = |f: &str| flags.iter().any(|x| x == f);
    let nconn: usize = std::env::var("CONNS").ok().map(|v| v.parse().unwrap()).unwrap_or(50);
    let req = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes();
    let mut lat = Lat { on: has("clock"), buckets: vec![0; 100_000] };
    let count = match mode {
        "epoll" => {
            let nap = flags.iter().find_map(|f| f.strip_prefix("nap=")).map(|v| {
                let (us, min) = v.split_once(',').unwrap();
                (us.parse().unwrap(), min.parse().unwrap())
            });
            run_epoll(port, secs, &req, &mut lat, nconn, nap)
        }
        "uring" => {
            let wait = flags.iter().find_map(|f| f.strip_prefix("wait=")).map(|v| v.parse().unwrap()).unwrap_or(1);
            let o = UOpts {
                link: has("link"),
                pollfirst: has("pollfirst"),
                multishot: has("multishot"),
                fixed: has("fixed"),
                skip: has("skip"),
                single: has("single"),
                defer: has("defer"),
                coop: has("coop"),
                submitall: has("submitall"),
                wait,
                tsrx: has("tsrx"),
                minwait: flags.iter().find_map(|f| f.strip_prefix("minwait=")).map(|v| v.parse().unwrap()).unwrap_or(0),
            };
            run_uring(port, secs, &req, &mut lat, o, nconn)
        }
        _ => panic!("mode"),
    };
    let recorded: u64 = lat.buckets.iter().sum();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{count}").unwrap();
    if lat.on {
        let q = |p: f64| {
            let target = (recorded as f64 * p).ceil() as u64;
            let mut acc = 0;
            lat.buckets.iter().position(|&b| {
                acc += b;
                acc >= target
            })
        };
        writeln!(out, "latencies recorded {recorded} p50 {:?}us p99 {:?}us", q(0.5), q(0.99)).unwrap();
    }
}
