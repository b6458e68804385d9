//! The HTTP/1.1 client fast path (what wrk does): pre-encoded requests written in one
//! call, responses parsed with `httparse` out of one reused buffer per connection,
//! bodies (content-length, chunked or close-delimited) read fully and counted, not kept.
//! `https://` runs the same parser over rustls, driven on the same raw socket.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::outcome::Outcome;
use crate::sock::Socket;

/// Initial read buffer per connection; grows only for response heads larger than this.
const BUF_SIZE: usize = 16 * 1024;
/// A response head larger than this is treated as a protocol error.
const MAX_HEAD: usize = 256 * 1024;
const MAX_HEADERS: usize = 64;
/// Ciphertext read per socket read on TLS connections (one full TLS record and more).
const TLS_RX: usize = 32 * 1024;

/// Why an exchange failed, before timeouts are taken into account.
#[derive(Debug)]
pub(crate) enum Failure {
    Refused,
    /// The TLS handshake failed, in rustls's or the socket's words.
    Handshake(String),
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
            Failure::Handshake(_) => Outcome::TlsHandshake,
            Failure::Closed { .. } => Outcome::Reset,
            Failure::Protocol(_) => Outcome::ProtocolError,
            Failure::Other(_) => Outcome::Other,
        }
    }

    /// Why, in words, for debug logs.
    pub fn detail(&self) -> String {
        match self {
            Failure::Refused => "connection refused".into(),
            Failure::Handshake(m) => format!("TLS handshake failed: {m}"),
            Failure::Closed { before_response } => {
                format!("connection closed (before any response byte: {before_response})")
            }
            Failure::Protocol(m) => m.clone(),
            Failure::Other(e) => e.to_string(),
        }
    }

    pub(crate) fn from_io(e: io::Error, before_response: bool) -> Self {
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

/// Connects to the first address that accepts.
async fn connect<S: Socket>(addrs: &[SocketAddr]) -> Result<S, Failure> {
    let mut last = Failure::Other(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no address to connect to",
    ));
    for addr in addrs {
        match S::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Failure::from_io(e, true),
        }
    }
    Err(last)
}

/// One keep-alive connection over a backend's socket, and its read buffer.
pub(crate) struct Conn<S> {
    sock: S,
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
    Tls(Box<Tls>),
}

/// A rustls session and the ciphertext on its way in and out.
struct Tls {
    session: ClientConnection,
    /// Ciphertext read from the socket that rustls has not taken yet.
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    /// Ciphertext rustls produced, on its way to the socket.
    tx: Vec<u8>,
}

impl<S: Socket> Conn<S> {
    /// Connects and, for TLS, completes the handshake: both are the connect phase
    /// (hey counts the handshake in "DNS+dialup"), so a server that never answers
    /// the handshake is a connect timeout.
    pub async fn open(
        addrs: &[SocketAddr],
        tls: Option<(&Arc<ClientConfig>, &ServerName<'static>)>,
    ) -> Result<Self, Failure> {
        let sock = connect(addrs).await?;
        let Some((config, name)) = tls else {
            return Ok(Self::new(sock, Transport::Plain));
        };
        let session = ClientConnection::new(config.clone(), name.clone()).map_err(tls_failure)?;
        let tls = Tls {
            session,
            rx: vec![0; TLS_RX],
            rx_start: 0,
            rx_end: 0,
            tx: Vec::new(),
        };
        let mut conn = Self::new(sock, Transport::Tls(Box::new(tls)));
        // However the handshake fails (an alert, bytes that are not TLS — a
        // plain HTTP server's 400 —, a close), that is the one named outcome.
        conn.handshake()
            .await
            .map_err(|f| Failure::Handshake(f.detail()))?;
        Ok(conn)
    }

    fn new(sock: S, transport: Transport) -> Self {
        Self {
            sock,
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
        let written = S::clock();
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
            tls.flush(&mut self.sock)
                .await
                .map_err(|e| Failure::from_io(e, true))?;
            if !tls.session.is_handshaking() {
                return Ok(());
            }
            if tls.recv(&mut self.sock, true).await? == 0 {
                // No alert, just a closed connection: a reset, as when a plain
                // server closes before answering.
                return Err(Failure::Closed {
                    before_response: true,
                });
            }
        }
    }

    async fn write_all(&mut self, mut request: &[u8]) -> io::Result<()> {
        let Transport::Tls(tls) = &mut self.transport else {
            return self.sock.send_all(request).await;
        };
        while !request.is_empty() {
            // Encrypts into rustls's send buffer, which holds at most its limit
            // (64 KiB by default): larger requests go in pieces.
            let n = tls.session.writer().write(request)?;
            if n == 0 && !tls.session.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            request = &request[n..];
            tls.flush(&mut self.sock).await?;
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
            *first_byte = FirstByte::At(S::clock());
        }
        let before = *first_byte == FirstByte::None;
        let dst = &mut self.buf[self.end..];
        let n = match &mut self.transport {
            Transport::Plain => self
                .sock
                .recv(dst)
                .await
                .map_err(|e| Failure::from_io(e, before))?,
            Transport::Tls(tls) => tls.fill(&mut self.sock, dst, before).await?,
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

fn tls_failure(e: rustls::Error) -> Failure {
    Failure::Protocol(format!("TLS: {e}"))
}

impl Tls {
    /// Sends whatever rustls has queued.
    async fn flush<S: Socket>(&mut self, sock: &mut S) -> io::Result<()> {
        while self.session.wants_write() {
            self.tx.clear();
            self.session.write_tls(&mut self.tx)?;
            sock.send_all(&self.tx).await?;
        }
        Ok(())
    }

    /// Feeds rustls one more piece of ciphertext (reading the socket when none
    /// is left over), then decrypts; `Ok(0)` is EOF. A TLS alert or a
    /// malformed record is a protocol error carrying rustls's words.
    async fn recv<S: Socket>(&mut self, sock: &mut S, before: bool) -> Result<usize, Failure> {
        if self.rx_start == self.rx_end {
            let n = sock
                .recv(&mut self.rx)
                .await
                .map_err(|e| Failure::from_io(e, before))?;
            if n == 0 {
                return Ok(0);
            }
            self.rx_start = 0;
            self.rx_end = n;
        }
        let mut pending = &self.rx[self.rx_start..self.rx_end];
        let taken = self
            .session
            .read_tls(&mut pending)
            .map_err(|e| Failure::from_io(e, before))?;
        self.rx_start += taken;
        self.session.process_new_packets().map_err(tls_failure)?;
        // `pending` was not empty, so rustls took at least one byte.
        Ok(taken)
    }

    /// Reads plaintext into `dst`, pulling records off the socket as needed;
    /// `Ok(0)` is the end of the connection, with or without a `close_notify`.
    async fn fill<S: Socket>(
        &mut self,
        sock: &mut S,
        dst: &mut [u8],
        before: bool,
    ) -> Result<usize, Failure> {
        loop {
            match self.session.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(Failure::from_io(e, before)),
            }
            let got = self.recv(sock, before).await?;
            // Post-handshake messages may need an answer (a TLS 1.3 key update).
            self.flush(sock)
                .await
                .map_err(|e| Failure::from_io(e, before))?;
            if got == 0 {
                // EOF: whatever plaintext the last records held, then the end.
                return Ok(self.session.reader().read(dst).unwrap_or(0));
            }
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
