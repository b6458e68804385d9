//! The HTTP/1.1 client fast path (what wrk does): pre-encoded requests written in one
//! call, responses parsed with `httparse` out of one reused buffer per connection,
//! bodies (content-length, chunked or close-delimited) read fully and counted, not kept.
//! `https://` runs the same parser over rustls, driven on the same raw socket.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::outcome::Outcome;

/// Initial read buffer per connection; grows only for response heads larger than this.
const BUF_SIZE: usize = 16 * 1024;
/// A response head larger than this is treated as a protocol error.
const MAX_HEAD: usize = 256 * 1024;
const MAX_HEADERS: usize = 64;

/// Why an exchange failed, before timeouts are taken into account.
#[derive(Debug)]
pub(crate) enum Failure {
    Refused,
    /// Reset, broken pipe, or EOF before the response was complete.
    Closed {
        /// True when not a single byte of the response had arrived (a stale
        /// keep-alive connection: safe to retry once on a fresh one).
        before_response: bool,
    },
    Protocol(String),
    Other(io::Error),
}

impl Failure {
    pub fn outcome(&self) -> Outcome {
        match self {
            Failure::Refused => Outcome::ConnectRefused,
            Failure::Closed { .. } => Outcome::Reset,
            Failure::Protocol(_) => Outcome::ProtocolError,
            Failure::Other(_) => Outcome::Other,
        }
    }

    /// Why, in words, for debug logs.
    pub fn detail(&self) -> String {
        match self {
            Failure::Refused => "connection refused".into(),
            Failure::Closed { before_response } => {
                format!("connection closed (before any response byte: {before_response})")
            }
            Failure::Protocol(m) => m.clone(),
            Failure::Other(e) => e.to_string(),
        }
    }

    fn from_io(e: io::Error, before_response: bool) -> Self {
        use io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => Failure::Refused,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
                Failure::Closed { before_response }
            }
            _ => Failure::Other(e),
        }
    }
}

/// What the engine needs to know about a response.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ResponseMeta {
    pub status: u16,
    /// Body bytes (after chunk framing is removed).
    pub body_bytes: u64,
    /// The server will close (or has closed) the connection after this response.
    pub close: bool,
    /// `Location`, when asked for and present.
    pub location: Option<String>,
    /// Value of the tracked header, when asked for and present.
    pub tracked: Option<String>,
}

/// When each part of an exchange ended, for hey's "Details" section and `-o csv`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    pub written: Instant,
    /// `None` when the whole response came in the read that brought its first
    /// byte: the caller's completion time is the first-byte time too.
    pub first_byte: Option<Instant>,
}

/// The first response byte, timed lazily: most responses arrive in one read,
/// and then the completion time the engine takes anyway is the first-byte
/// time, so the clock is read only when another read has to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FirstByte {
    None,
    /// Arrived in the latest read, not timed yet.
    Unmarked,
    At(Instant),
}

/// What to pick out of response heads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub location: bool,
    pub tracked: Option<&'a str>,
}

/// Connects to the first address that accepts, with TCP_NODELAY.
async fn connect(addrs: &[SocketAddr]) -> Result<AsyncFd<TcpStream>, Failure> {
    let mut last = Failure::Other(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no address to connect to",
    ));
    for addr in addrs {
        match connect_one(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Failure::from_io(e, true),
        }
    }
    Err(last)
}

/// A non-blocking connect registered once with the reactor (a tokio `TcpStream`
/// would be registered, then deregistered again to become an `AsyncFd`).
async fn connect_one(addr: &SocketAddr) -> io::Result<AsyncFd<TcpStream>> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
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
    Ok(fd)
}

/// One keep-alive connection and its read buffer.
///
/// The socket is driven through `AsyncFd` rather than tokio's `TcpStream` so a
/// short read can clear read readiness: tokio keeps a socket marked readable
/// after any successful read, so the read after the next request would hit the
/// kernel and come back `EAGAIN` before waiting on epoll (one wasted syscall per
/// request). A short read means the receive queue was drained, and with
/// edge-triggered epoll the next arrival raises a fresh readiness event.
pub(crate) struct Conn {
    stream: AsyncFd<TcpStream>,
    transport: Transport,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses completed on this connection.
    pub served: u64,
}

/// What is spoken over the socket. The plain path pays one predictable branch
/// per read and write for TLS being possible: no allocation, no extra syscall,
/// no dynamic dispatch.
enum Transport {
    Plain,
    /// Boxed: a rustls session is large, and plain connections should not carry it.
    Tls(Box<ClientConnection>),
}

impl Conn {
    /// Connects and, for TLS, completes the handshake: both are the connect phase
    /// (hey counts the handshake in "DNS+dialup"), so a server that never answers
    /// the handshake is a connect timeout.
    pub async fn open(
        addrs: &[SocketAddr],
        tls: Option<(&Arc<ClientConfig>, &ServerName<'static>)>,
    ) -> Result<Self, Failure> {
        let stream = connect(addrs).await?;
        let Some((config, name)) = tls else {
            return Ok(Self::new(stream, Transport::Plain));
        };
        let session = ClientConnection::new(config.clone(), name.clone()).map_err(tls_failure)?;
        let mut conn = Self::new(stream, Transport::Tls(Box::new(session)));
        conn.handshake().await?;
        Ok(conn)
    }

    fn new(stream: AsyncFd<TcpStream>, transport: Transport) -> Self {
        Self {
            stream,
            transport,
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            served: 0,
        }
    }

    /// Sends one request and reads its response fully.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        wanted: Wanted<'_>,
    ) -> Result<(ResponseMeta, Marks), Failure> {
        // No pipelining: anything left over from the previous response is junk.
        self.start = 0;
        self.end = 0;
        self.write_all(request)
            .await
            .map_err(|e| Failure::from_io(e, true))?;
        let written = Instant::now();
        let mut first_byte = FirstByte::None;
        let meta = self
            .read_response(head_only, wanted, &mut first_byte)
            .await?;
        self.served += 1;
        self.start = 0;
        self.end = 0;
        Ok((
            meta,
            Marks {
                written,
                first_byte: match first_byte {
                    FirstByte::None => Some(written),
                    FirstByte::Unmarked => None,
                    FirstByte::At(t) => Some(t),
                },
            },
        ))
    }

    /// Drives the TLS handshake to its end (a no-op on plain connections).
    async fn handshake(&mut self) -> Result<(), Failure> {
        let Transport::Tls(tls) = &mut self.transport else {
            return Ok(());
        };
        loop {
            flush_tls(&self.stream, tls)
                .await
                .map_err(|e| Failure::from_io(e, true))?;
            if !tls.is_handshaking() {
                return Ok(());
            }
            if recv_tls(&self.stream, tls, true).await? == 0 {
                // No alert, just a closed connection: a reset, as when a plain
                // server closes before answering.
                return Err(Failure::Closed {
                    before_response: true,
                });
            }
        }
    }

    /// Writes straight away (the send buffer almost always has room) and waits
    /// for write readiness only after `EAGAIN`.
    async fn write_all(&mut self, mut request: &[u8]) -> io::Result<()> {
        if let Transport::Tls(tls) = &mut self.transport {
            while !request.is_empty() {
                // Encrypts into rustls's send buffer, which holds at most its
                // limit (64 KiB by default): larger requests go in pieces.
                let n = tls.writer().write(request)?;
                if n == 0 && !tls.wants_write() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                request = &request[n..];
                flush_tls(&self.stream, tls).await?;
            }
            return Ok(());
        }
        while !request.is_empty() {
            let n = match self.stream.get_ref().write(request) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut guard = self.stream.writable().await?;
                    match guard.try_io(|s| s.get_ref().write(request)) {
                        Ok(r) => r?,
                        Err(_would_block) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            request = &request[n..];
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; `Ok(0)` is EOF.
    async fn fill(&mut self, first_byte: &mut FirstByte) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(Failure::Protocol("response head too large".into()));
            }
        }
        // The bytes read last time were the first: they arrived before this wait.
        if *first_byte == FirstByte::Unmarked {
            *first_byte = FirstByte::At(Instant::now());
        }
        let before = *first_byte == FirstByte::None;
        if let Transport::Tls(tls) = &mut self.transport {
            let n = fill_tls(&self.stream, tls, &mut self.buf[self.end..], before).await?;
            if n > 0 && before {
                *first_byte = FirstByte::Unmarked;
            }
            self.end += n;
            return Ok(n);
        }
        let n = loop {
            let mut guard = self
                .stream
                .readable()
                .await
                .map_err(|e| Failure::from_io(e, before))?;
            let dst = &mut self.buf[self.end..];
            match guard.get_inner().read(dst) {
                Ok(n) => {
                    // Short: the receive queue is empty now (see `Conn`). The
                    // guard's tick keeps an event that raced in from being lost.
                    if n > 0 && n < dst.len() {
                        guard.clear_ready();
                    }
                    break n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::from_io(e, before)),
            }
        };
        if n > 0 && before {
            *first_byte = FirstByte::Unmarked;
        }
        self.end += n;
        Ok(n)
    }

    async fn read_response(
        &mut self,
        head_only: bool,
        wanted: Wanted<'_>,
        first_byte: &mut FirstByte,
    ) -> Result<ResponseMeta, Failure> {
        loop {
            let (meta, framing) = self.read_head(head_only, wanted, first_byte).await?;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&meta.status) && meta.status != 101 {
                continue;
            }
            let mut meta = meta;
            match framing {
                Framing::None => {}
                Framing::Length(n) => {
                    self.skip(n, first_byte).await?;
                    meta.body_bytes = n;
                }
                Framing::Chunked => meta.body_bytes = self.read_chunked(first_byte).await?,
                Framing::UntilClose => {
                    let mut n = (self.end - self.start) as u64;
                    self.start = self.end;
                    loop {
                        let got = self.fill(first_byte).await?;
                        if got == 0 {
                            break;
                        }
                        n += got as u64;
                        self.start = self.end;
                    }
                    meta.body_bytes = n;
                    meta.close = true;
                }
            }
            return Ok(meta);
        }
    }

    async fn read_head(
        &mut self,
        head_only: bool,
        wanted: Wanted<'_>,
        first_byte: &mut FirstByte,
    ) -> Result<(ResponseMeta, Framing), Failure> {
        loop {
            if self.end > self.start {
                // Uninitialised: zeroing 64 headers (2 KB) per response was the
                // single largest cost of the parse.
                let mut headers =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut []);
                match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut resp,
                    &self.buf[self.start..self.end],
                    &mut headers,
                ) {
                    Ok(httparse::Status::Complete(used)) => {
                        let parsed = interpret(&resp, head_only, wanted)?;
                        self.start += used;
                        return Ok(parsed);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(Failure::Protocol(format!("bad response head: {e}"))),
                }
            }
            if self.fill(first_byte).await? == 0 {
                return Err(Failure::Closed {
                    before_response: *first_byte == FirstByte::None,
                });
            }
        }
    }

    /// Consumes exactly `n` body bytes.
    async fn skip(&mut self, mut n: u64, first_byte: &mut FirstByte) -> Result<(), Failure> {
        loop {
            let avail = (self.end - self.start) as u64;
            let take = avail.min(n);
            self.start += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            if self.fill(first_byte).await? == 0 {
                return Err(Failure::Closed {
                    before_response: false,
                });
            }
        }
    }

    async fn read_chunked(&mut self, first_byte: &mut FirstByte) -> Result<u64, Failure> {
        let mut total = 0u64;
        loop {
            match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.start += used;
                    if size == 0 {
                        break;
                    }
                    self.skip(size, first_byte).await?;
                    total += size;
                    self.expect_crlf(first_byte).await?;
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start > 1024 {
                        return Err(Failure::Protocol("chunk size line too long".into()));
                    }
                    self.more(first_byte).await?;
                }
                Err(_) => return Err(Failure::Protocol("bad chunk size".into())),
            }
        }
        // Trailer section: header lines until an empty line.
        loop {
            let window = &self.buf[self.start..self.end];
            match window.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.start += 2;
                    return Ok(total);
                }
                Some(i) => self.start += i + 2,
                None => {
                    if window.len() > MAX_HEAD {
                        return Err(Failure::Protocol("trailers too large".into()));
                    }
                    self.more(first_byte).await?;
                }
            }
        }
    }

    async fn expect_crlf(&mut self, first_byte: &mut FirstByte) -> Result<(), Failure> {
        while self.end - self.start < 2 {
            self.more(first_byte).await?;
        }
        if &self.buf[self.start..self.start + 2] != b"\r\n" {
            return Err(Failure::Protocol("chunk not followed by CRLF".into()));
        }
        self.start += 2;
        Ok(())
    }

    /// `fill`, with EOF as a failure (the response is not complete yet).
    async fn more(&mut self, first_byte: &mut FirstByte) -> Result<(), Failure> {
        if self.fill(first_byte).await? == 0 {
            return Err(Failure::Closed {
                before_response: false,
            });
        }
        Ok(())
    }
}

/// The socket as rustls reads it, noting whether a read came back short (the
/// receive queue is drained: see `Conn`).
struct ShortRead<'a> {
    socket: &'a TcpStream,
    short: bool,
}

impl Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

fn tls_failure(e: rustls::Error) -> Failure {
    Failure::Protocol(format!("TLS: {e}"))
}

/// Sends whatever rustls has queued, waiting for writability only after `EAGAIN`.
async fn flush_tls(stream: &AsyncFd<TcpStream>, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        let mut socket = stream.get_ref();
        match tls.write_tls(&mut socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut guard = stream.writable().await?;
                // `try_io` clears write readiness if this comes back `EAGAIN` too.
                if let Ok(r) = guard.try_io(|s| tls.write_tls(&mut s.get_ref())) {
                    if r? == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One socket read into rustls, then decryption; `Ok(0)` is EOF. A TLS alert
/// or a malformed record is a protocol error carrying rustls's words.
async fn recv_tls(
    stream: &AsyncFd<TcpStream>,
    tls: &mut ClientConnection,
    before: bool,
) -> Result<usize, Failure> {
    let n = loop {
        let mut guard = stream
            .readable()
            .await
            .map_err(|e| Failure::from_io(e, before))?;
        let mut socket = ShortRead {
            socket: guard.get_inner(),
            short: false,
        };
        match tls.read_tls(&mut socket) {
            Ok(n) => {
                if n > 0 && socket.short {
                    guard.clear_ready();
                }
                break n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::from_io(e, before)),
        }
    };
    tls.process_new_packets().map_err(tls_failure)?;
    Ok(n)
}

/// Reads plaintext into `dst`, pulling records off the socket as needed; `Ok(0)`
/// is the end of the connection, with or without a `close_notify`.
async fn fill_tls(
    stream: &AsyncFd<TcpStream>,
    tls: &mut ClientConnection,
    dst: &mut [u8],
    before: bool,
) -> Result<usize, Failure> {
    loop {
        match tls.reader().read(dst) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(Failure::from_io(e, before)),
        }
        let got = recv_tls(stream, tls, before).await?;
        // Post-handshake messages may need an answer (a TLS 1.3 key update).
        flush_tls(stream, tls)
            .await
            .map_err(|e| Failure::from_io(e, before))?;
        if got == 0 {
            // EOF: whatever plaintext the last records held, then the end.
            return Ok(tls.reader().read(dst).unwrap_or(0));
        }
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn interpret(
    resp: &httparse::Response<'_, '_>,
    head_only: bool,
    wanted: Wanted<'_>,
) -> Result<(ResponseMeta, Framing), Failure> {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut meta = ResponseMeta {
        status,
        close: http10,
        ..Default::default()
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        let name = h.name;
        // Dispatch on the length first: most headers (Server, Date, ...) are
        // then rejected by one comparison instead of three case-folding ones.
        match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| Failure::Protocol("bad Content-Length".into()))?;
                if length.is_some_and(|l| l != v) {
                    return Err(Failure::Protocol("conflicting Content-Length".into()));
                }
                length = Some(v);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        meta.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        meta.close = false;
                    }
                }
            }
            _ => {}
        }
        if wanted.location && name.eq_ignore_ascii_case("location") {
            meta.location = Some(String::from_utf8_lossy(h.value).into_owned());
        }
        if let Some(t) = wanted.tracked {
            if name.eq_ignore_ascii_case(t) {
                meta.tracked = Some(String::from_utf8_lossy(h.value).into_owned());
            }
        }
    }
    let framing = if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if status == 101 {
        meta.close = true;
    }
    Ok((meta, framing))
}
