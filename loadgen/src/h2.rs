//! HTTP/2 (hey's `-h2`) on hyper's client: not the hot path, so one hyper
//! connection per worker instead of our own framing. Like hey, h2 over
//! `https://` is agreed by ALPN; over `http://` it is spoken by prior knowledge (h2c).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::http1::{Failure, Marks, ResponseMeta, Wanted};

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2) or carries as `:authority`.
const NOT_IN_H2: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// One HTTP/2 connection; requests on it are sent one at a time, like the
/// HTTP/1.1 worker's.
pub(crate) struct Conn {
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects, for TLS shakes hands offering only `h2`, and opens the HTTP/2
    /// session: all of it the connect phase, as for HTTP/1.1.
    pub async fn open(
        addrs: &[SocketAddr],
        tls: Option<(&Arc<ClientConfig>, &ServerName<'static>)>,
    ) -> Result<Self, Failure> {
        let tcp = connect(addrs).await?;
        let Some((config, name)) = tls else {
            return handshake(TokioIo::new(tcp)).await;
        };
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| Failure::Handshake(e.to_string()))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Failure::Handshake(
                "the server did not agree to HTTP/2 by ALPN".into(),
            ));
        }
        handshake(TokioIo::new(stream)).await
    }

    /// Sends one request (an encoded HTTP/1.1 request, translated) and reads
    /// its response body fully, counting it.
    pub async fn exchange(
        &mut self,
        request: http::Request<Full<Bytes>>,
        wanted: Wanted<'_>,
    ) -> Result<(ResponseMeta, Marks), Failure> {
        self.send.ready().await.map_err(|e| failure(e, true))?;
        let written = Instant::now();
        let resp = self
            .send
            .send_request(request)
            .await
            .map_err(|e| failure(e, true))?;
        let first_byte = Instant::now();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut meta = ResponseMeta {
            status: resp.status().as_u16(),
            location: if wanted.location {
                header("location")
            } else {
                None
            },
            tracked: wanted.tracked.and_then(header),
            ..Default::default()
        };
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failure(e, false))?;
            if let Some(data) = frame.data_ref() {
                meta.body_bytes += data.len() as u64;
            }
        }
        Ok((
            meta,
            Marks {
                written,
                first_byte: Some(first_byte),
            },
        ))
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<tokio::net::TcpStream, Failure> {
    let mut last = Failure::Other(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no address to connect to",
    ));
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true).map_err(Failure::Other)?;
                return Ok(s);
            }
            Err(e) => last = Failure::from_io(e, true),
        }
    }
    Err(last)
}

async fn handshake<T>(io: T) -> Result<Conn, Failure>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| Failure::Handshake(format!("HTTP/2: {e}")))?;
    // The connection task ends when `send` is dropped or the peer goes away.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
    });
    Ok(Conn { send })
}

/// A hyper error as a failure: an I/O cause by its kind, a closed connection
/// as a reset, the rest (a protocol violation, a stream reset) as a protocol error.
fn failure(e: hyper::Error, before_response: bool) -> Failure {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Failure::from_io(
                std::io::Error::new(io.kind(), e.to_string()),
                before_response,
            );
        }
        source = s.source();
    }
    if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
        return Failure::Closed { before_response };
    }
    Failure::Protocol(format!("HTTP/2: {e}"))
}

/// The HTTP/2 request for an encoded HTTP/1.1 one (what the templates produce):
/// same method, path, headers and body; the Host header becomes `:authority`.
pub(crate) fn request(
    encoded: &[u8],
    https: bool,
    authority: &str,
) -> Result<http::Request<Full<Bytes>>, Failure> {
    let bad = |why: String| Failure::Protocol(format!("cannot send as HTTP/2: {why}"));
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(encoded) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request".into())),
        Err(e) => return Err(bad(e.to_string())),
    };
    let host = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_else(|| authority.to_string());
    let scheme = if https { "https" } else { "http" };
    let path = parsed.path.unwrap_or("/");
    let mut b = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(format!("{scheme}://{host}{path}"))
        .version(http::Version::HTTP_2);
    for h in parsed.headers.iter() {
        if !NOT_IN_H2.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            b = b.header(h.name, h.value);
        }
    }
    b.body(Full::new(Bytes::copy_from_slice(&encoded[used..])))
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http1_request_becomes_an_h2_one() {
        let wire = b"POST /a?b=1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nX-Y: z\r\nContent-Length: 2\r\n\r\nhi";
        let r = request(wire, true, "127.0.0.1:1").unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri().to_string(), "https://api.test/a?b=1");
        assert_eq!(r.headers()["x-y"], "z");
        assert!(r.headers().get("connection").is_none());
        assert!(r.headers().get("host").is_none());
        let r = request(b"GET / HTTP/1.1\r\n\r\n", false, "h:8").unwrap();
        assert_eq!(r.uri().to_string(), "http://h:8/");
        assert!(request(b"GET / HTTP/1.1\r\n", false, "h").is_err());
    }
}
