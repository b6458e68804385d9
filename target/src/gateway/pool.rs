//! Keep-alive HTTP/1.1 connections to one upstream, pooled on hyper's own
//! `client::conn::http1`: a short, uncontended lock per checkout and return
//! instead of hyper-util's legacy client (its request channel, pool keying and
//! per-response return task cost more per request than the proxying itself).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::config::PoolConfig;

/// The sending half of one upstream connection.
pub(crate) type Sender = http1::SendRequest<Full<Bytes>>;

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// No connection could be made: nothing was sent.
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connecting: timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The request may have reached the upstream.
    #[error("sending the request: {0}")]
    Send(#[source] hyper::Error),
}

impl PoolError {
    /// Whether the request certainly never reached the upstream.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectTimeout(_))
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections to one upstream, most recently used on top (so the ones
/// that sit longest age out and stale ones are found together at the bottom).
pub(crate) struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(addr: SocketAddr, config: &PoolConfig) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            max_idle: config.max_idle_per_upstream,
            idle_timeout: config.idle_timeout,
            connect_timeout: config.connect_timeout,
        }
    }

    /// Sends `req` (origin-form URI, Host set) on an idle connection, else a
    /// new one. Returns the response and its connection's sender, which the
    /// caller hands back with [`Pool::put`] once the response body is read.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Sender), PoolError> {
        while let Some(mut sender) = self.checkout() {
            // Ready means the previous exchange finished and the connection
            // is still open; an error means the upstream closed it.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: safe on another.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Send(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender.send_request(req).await.map_err(PoolError::Send)?;
        Ok((response, sender))
    }

    /// Returns a connection whose exchange completed to the idle set.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let top = idle.pop()?;
            if top.since.elapsed() >= self.idle_timeout {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if !top.sender.is_closed() {
                return Some(top.sender);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, PoolError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
            .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Send)?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}
