//! A minimal HTTP/1.1 client for plain-`http://` upstreams (vLLM, Ollama,
//! TGI, the mock), driven inline in the request's own task.
//!
//! hyper's pooled client hands every request to a separate connection task
//! through channels (request in, response head back, body frames back), and
//! checks connections out of a locked, hashed pool. On the gateway's hot path
//! that was a large share of its own CPU per request (docs/performance.md).
//! Here a worker-local pool (no lock: each worker is single-threaded) holds
//! idle connections; a request writes its head and body, parses the response
//! head with httparse, and reads the body — length-delimited, chunked or
//! until close — in the caller's task, returning the connection to the pool
//! when the body ended cleanly. Dropping a body before its end drops (closes)
//! the connection, which is how a disconnected client cancels its upstream.
//!
//! https upstreams keep using hyper (TLS, HTTP/2 by ALPN).
//!
//! Split by responsibility: [`conn`] (a socket and its read buffer),
//! [`head`] (request head out, response head in), [`body`] (body framing);
//! this file holds the pool and one request/response exchange.

mod body;
mod conn;
mod head;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{HeaderName, HeaderValue, Uri};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use body::H1Body;
use conn::{Conn, Counted};
use head::{MAX_HEAD, encode_head, parse_head};

use crate::session::PoolStats;

/// Idle this long, a pooled connection is checked for a close from the
/// server before reuse (one non-blocking read); busier ones are reused as is.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("connection error: {0}")]
    Io(io::Error),
    #[error("the connection closed before the response was complete")]
    Closed,
    #[error("invalid response: {0}")]
    Invalid(String),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct H1Target {
    /// `host:port` as the URL gave it, for the `Host` header and resolution.
    pub authority: String,
    pub host: String,
    pub port: u16,
}

/// A plain-http base URL's connect target, for the inline HTTP/1.1 client;
/// `None` for https (and anything else), which goes through hyper.
pub fn plain_http_target(uri: &Uri) -> Option<H1Target> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let authority = uri.authority()?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(80);
    Some(H1Target { authority: authority.as_str().to_string(), host, port })
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct PoolInner {
    target: H1Target,
    idle: RefCell<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    stats: Arc<PoolStats>,
}

/// One worker's connections to one upstream. Cheap to clone.
#[derive(Clone)]
pub struct H1Pool {
    inner: Rc<PoolInner>,
}

/// What to send.
pub struct H1Request<'a> {
    pub method: &'a str,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: &'a str,
    /// `host` and `content-length` are added here.
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: &'a [u8],
}

/// A response head and its body.
pub struct H1Response {
    pub status: u16,
    /// `content-type: text/event-stream`.
    pub event_stream: bool,
    pub retry_after: Option<crate::RetryAfter>,
    pub body: H1Body,
}

impl H1Pool {
    pub fn new(
        target: H1Target,
        stats: Arc<PoolStats>,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> H1Pool {
        H1Pool {
            inner: Rc::new(PoolInner {
                target,
                idle: RefCell::new(Vec::new()),
                max_idle,
                idle_timeout,
                connect_timeout,
                stats,
            }),
        }
    }

    #[cfg(test)]
    pub fn idle_connections(&self) -> usize {
        self.inner.idle.borrow().len()
    }

    /// Send one request. A pooled connection the server had already closed
    /// is retried once on a fresh one, when nothing of a response arrived.
    pub async fn send(&self, req: &H1Request<'_>) -> Result<H1Response, H1Error> {
        let head = encode_head(&self.inner.target, req);
        loop {
            let (conn, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            match exchange(conn, &head, req.body, self.inner.clone()).await {
                Ok(r) => return Ok(r),
                Err((e, nothing_received)) => {
                    if reused && nothing_received && matches!(e, H1Error::Closed | H1Error::Io(_)) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.inner.idle.borrow_mut();
        while let Some(i) = idle.pop() {
            let age = i.since.elapsed();
            if age > self.inner.idle_timeout {
                continue;
            }
            if age > CHECK_AFTER_IDLE {
                // Did the server close it meanwhile? (Ok(0) = FIN, data = protocol
                // garbage; WouldBlock = still open and quiet.)
                let mut probe = [0u8; 1];
                match i.conn.io.try_read(&mut probe) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => continue,
                }
            }
            return Some(i.conn);
        }
        None
    }

    async fn connect(&self) -> Result<Conn, H1Error> {
        let p = &self.inner;
        let fut = async {
            let addrs: Vec<SocketAddr> = match p.target.host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, p.target.port)],
                Err(_) => tokio::net::lookup_host((p.target.host.as_str(), p.target.port))
                    .await
                    .map_err(H1Error::Connect)?
                    .collect(),
            };
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolved to no address");
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(H1Error::Connect(last))
        };
        let io = match tokio::time::timeout(p.connect_timeout, fut).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                p.stats.connect_failed();
                return Err(e);
            }
            Err(_) => {
                p.stats.connect_failed();
                return Err(H1Error::ConnectTimeout(p.connect_timeout));
            }
        };
        // Each event of a stream must leave at once (no Nagle delay).
        io.set_nodelay(true).map_err(H1Error::Connect)?;
        p.stats.connection_opened();
        Ok(Conn::new(io, Counted(p.stats.clone())))
    }
}

impl PoolInner {
    fn checkin(&self, mut conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle && conn.buf.is_empty() {
            // An idle connection keeps no buffer (its window, a number, stays).
            conn.buf = BytesMut::new();
            idle.push(Idle { conn, since: Instant::now() });
        }
    }
}

/// Write the request and read the response head. On error, also says
/// whether any response byte had arrived (for the stale-connection retry).
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    body: &[u8],
    pool: Rc<PoolInner>,
) -> Result<H1Response, (H1Error, bool)> {
    // Small bodies go out in the same write as the head: one segment.
    let written = if body.len() <= 16 * 1024 {
        let mut one = BytesMut::with_capacity(head.len() + body.len());
        one.extend_from_slice(head);
        one.extend_from_slice(body);
        conn.io.write_all(&one).await
    } else {
        match conn.io.write_all(head).await {
            Ok(()) => conn.io.write_all(body).await,
            Err(e) => Err(e),
        }
    };
    written.map_err(|e| (H1Error::Io(e), true))?;
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&conn.buf) {
                Ok(Some(parsed)) => {
                    conn.buf.advance(parsed.len);
                    if (100..200).contains(&parsed.status) {
                        // An interim response (100 Continue): the real one follows.
                        continue;
                    }
                    let body =
                        H1Body { conn: Some(conn), framing: parsed.framing, keep_alive: parsed.keep_alive, pool };
                    return Ok(H1Response {
                        status: parsed.status,
                        event_stream: parsed.event_stream,
                        retry_after: parsed.retry_after,
                        body,
                    });
                }
                Ok(None) if conn.buf.len() > MAX_HEAD => {
                    return Err((H1Error::Invalid("response head too large".into()), false));
                }
                Ok(None) => {}
                Err(e) => return Err((e, false)),
            }
        }
        let nothing_yet = conn.buf.is_empty();
        match conn.fill().await {
            Ok(0) => return Err((H1Error::Closed, nothing_yet)),
            Ok(_) => {}
            Err(e) => return Err((H1Error::Io(e), nothing_yet)),
        }
    }
}

#[cfg(test)]
mod tests;
