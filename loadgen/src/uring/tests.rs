//! The io_uring backend against real sockets on loopback.

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
    let mut sleep = std::pin::pin!(Uring::sleep_until(Instant::now() + Duration::from_secs(60)));
    let waker = futures::task::noop_waker_ref();
    let _ = sleep.as_mut().poll(&mut Context::from_waker(waker));
}
