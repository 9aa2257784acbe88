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
//! [`head`] (request head out, response head in), [`body`] (body framing),
//! [`wire`] (the same parse over bytes in memory, for the fuzzer); this
//! file holds the pool and one request/response exchange.

mod body;
mod conn;
mod head;
mod upload;
mod wire;

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

pub use body::{H1Body, Stopper};
use conn::{Conn, Counted};
use head::{MAX_HEAD, encode_head, parse_head};
pub use wire::{WholeResponse, read_response};

use crate::session::PoolStats;

/// Re-sends of one request, at most (each on another connection; see
/// [`H1Pool::send`]).
const MAX_RESENDS: u32 = 4;

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
    /// A streamed request body failed at its source (see [`crate::StreamedBody`]).
    #[error("the request body failed: {0}")]
    Body(String),
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
    /// Times the request was sent again because it never reached the upstream.
    pub resends: u32,
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

    /// Send one request.
    ///
    /// A POST to an LLM is a paid call: it is sent again only when it
    /// provably never reached the upstream — on a reused connection whose
    /// very first write failed, so not one byte of the request left this
    /// host (the server had closed the connection while it idled in the
    /// pool). A request that may have been received — any byte written,
    /// then a reset or a close before the answer — is an error for the
    /// attempt loop to judge, never a silent second call. Every re-send is
    /// counted (`sluice_upstream_resends_total`, the pool's `/status`) and
    /// reported in the response's `resends`.
    pub async fn send(&self, req: &H1Request<'_>) -> Result<H1Response, H1Error> {
        let head = encode_head(&self.inner.target, req);
        let drain = !asks_for_event_stream(req.headers);
        let mut resends = 0;
        loop {
            let (conn, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            match exchange(conn, &head, req.body, self.inner.clone(), drain).await {
                Ok(mut r) => {
                    r.resends = resends;
                    return Ok(r);
                }
                Err((e, Reached::No)) if reused && resends < MAX_RESENDS => {
                    drop(e);
                    resends += 1;
                    self.inner.stats.resent();
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// An idle connection still fit for a request. Each is checked before
    /// reuse with one non-blocking read: `Ok(0)` is the server's close, and
    /// data is bytes no request asked for — say, the excess of a body longer
    /// than its `content-length`, which read as the next request's answer
    /// would hand one client another's response. Either way the connection
    /// is dropped. The read costs no system call when tokio knows the
    /// socket has nothing (the answer's last read drained it: `Conn::fill`).
    /// A connection idle for longer than [`KERNEL_CHECK_AFTER`] is also
    /// asked of the kernel: a busy worker's reactor may not yet have seen a
    /// close or bytes that arrived while it idled.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.inner.idle.borrow_mut();
        while let Some(i) = idle.pop() {
            let idled = i.since.elapsed();
            if idled > self.inner.idle_timeout {
                continue;
            }
            if quiet(&i.conn.io, idled >= KERNEL_CHECK_AFTER) {
                return Some(i.conn);
            }
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

/// Below this idle time a connection is taken on tokio's word that its
/// socket is quiet; from it on, the kernel is asked too (one `recv` with
/// `MSG_PEEK`).
///
/// The reactor's word is stale only by what arrived since the worker last
/// polled it (every 61 tasks polled under load, sub-millisecond; at once
/// when the worker sleeps), whatever the connection's idle time, so the
/// peek guards one case the reactor does not: a server that closes
/// connections idle for its keep-alive timeout, the moment a busy worker
/// takes one. Those timeouts are seconds (gunicorn 2 s; uvicorn, Node,
/// Apache, llama.cpp 5 s; nginx 75 s), hence one second here. It was 1 ms,
/// and connections reused every few milliseconds (256 clients over one
/// upstream at ~30k req/s, 9 ms apart; one connection at 200 req/s, 5 ms)
/// paid a system call per request for nothing the reactor had not seen
/// (docs/performance.md, "The idle check's peek after a second").
const KERNEL_CHECK_AFTER: Duration = Duration::from_secs(1);

/// True when nothing waits to be read on an idle connection: no close, no
/// stray bytes. `ask_kernel` adds a peek that does not rely on the reactor.
fn quiet(io: &TcpStream, ask_kernel: bool) -> bool {
    let mut probe = [0u8; 1];
    match io.try_read(&mut probe) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        _ => return false,
    }
    if !ask_kernel {
        return true;
    }
    let mut peek = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket2::SockRef::from(io).peek(&mut peek), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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

/// Did any byte of a request leave this host?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Not one byte was written: the upstream cannot have received it.
    No,
    /// Some or all of it was written: it may have been received.
    Maybe,
}

/// Write the request and read the response head. On error, also says
/// whether any of the request was written (for the re-send rule).
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    body: &[u8],
    pool: Rc<PoolInner>,
    drain: bool,
) -> Result<H1Response, (H1Error, Reached)> {
    // Small bodies go out in the same write as the head: one segment.
    let mut written = 0usize;
    let result = if body.len() <= 16 * 1024 {
        let mut one = BytesMut::with_capacity(head.len() + body.len());
        one.extend_from_slice(head);
        one.extend_from_slice(body);
        write_counted(&mut conn, &one, &mut written).await
    } else {
        match write_counted(&mut conn, head, &mut written).await {
            Ok(()) => write_counted(&mut conn, body, &mut written).await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = result {
        return Err((H1Error::Io(e), if written == 0 { Reached::No } else { Reached::Maybe }));
    }
    read_head(conn, pool, drain).await.map_err(|e| (e, Reached::Maybe))
}

/// Did the request ask for `text/event-stream`? Then its head is read
/// without `drain` ([`Conn::fill`]): the first events often follow at once.
fn asks_for_event_stream(headers: &[(HeaderName, HeaderValue)]) -> bool {
    headers.iter().any(|(n, v)| *n == http::header::ACCEPT && v.as_bytes().starts_with(b"text/event-stream"))
}

/// Read the response head of a request that was written whole. `drain`:
/// the answer is likely whole once its head is in (see [`Conn::fill`]).
async fn read_head(mut conn: Conn, pool: Rc<PoolInner>, drain: bool) -> Result<H1Response, H1Error> {
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&conn.buf) {
                Ok(Some(parsed)) => {
                    conn.buf.advance(parsed.len);
                    if (100..200).contains(&parsed.status) {
                        // An interim response (100 Continue): the real one follows.
                        continue;
                    }
                    let body = H1Body {
                        conn: Some(conn),
                        framing: parsed.framing,
                        keep_alive: parsed.keep_alive,
                        pool,
                        stop: Default::default(),
                    };
                    return Ok(H1Response {
                        status: parsed.status,
                        event_stream: parsed.event_stream,
                        retry_after: parsed.retry_after,
                        body,
                        resends: 0,
                    });
                }
                Ok(None) if conn.buf.len() > MAX_HEAD => {
                    return Err(H1Error::Invalid("response head too large".into()));
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        match conn.fill(drain).await {
            Ok(0) => return Err(H1Error::Closed),
            Ok(_) => {}
            Err(e) => return Err(H1Error::Io(e)),
        }
    }
}

/// `write_all`, counting what the socket took: an error with `written ==
/// 0` proves the upstream got nothing.
async fn write_counted(conn: &mut Conn, mut buf: &[u8], written: &mut usize) -> io::Result<()> {
    while !buf.is_empty() {
        match conn.io.write(buf).await {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the connection took no bytes")),
            Ok(n) => {
                *written += n;
                buf = &buf[n..];
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
