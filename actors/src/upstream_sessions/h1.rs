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
//! Read buffers (docs/performance.md, "Memory"): a connection holds no read
//! buffer while it waits for its upstream — a stream between two events, a
//! request before its first byte, a connection idle in the pool. A buffer is
//! allocated when the socket is readable, sized by the connection's read
//! window (4 KiB, doubling up to 64 KiB while reads fill it, halving when
//! they stay small), and its data leaves as `Bytes` that share it, so with
//! 10,000 open streams only the few being relayed at that moment hold one.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::state::PoolStats;

/// Response heads longer than this are refused.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 96;
/// Idle this long, a pooled connection is checked for a close from the
/// server before reuse (one non-blocking read); busier ones are reused as is.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Read window of a new connection, and the least it shrinks to: a typical
/// response head and small JSON body in one read.
const MIN_WINDOW: usize = 4 * 1024;
/// Largest read window, reached by reads that keep filling it (large bodies).
const MAX_WINDOW: usize = 64 * 1024;

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

/// Counts a connection as open until dropped.
struct Counted(Arc<PoolStats>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

struct Conn {
    io: TcpStream,
    /// Bytes read and not yet consumed. Empty, it owns no allocation across
    /// a wait (see [`Conn::fill`]).
    buf: BytesMut,
    /// How much room the next read gets (`MIN_WINDOW..=MAX_WINDOW`).
    window: usize,
    _counted: Counted,
}

impl Conn {
    fn new(io: TcpStream, counted: Counted) -> Conn {
        Conn { io, buf: BytesMut::new(), window: MIN_WINDOW, _counted: counted }
    }

    /// Read once more into `buf`; `Ok(0)` at EOF. With nothing pending, a
    /// read is tried at once (the answer is often there already); if the
    /// socket has nothing yet, the buffer is let go before the wait (data
    /// already handed out as `Bytes` keeps its own share alive) and a new
    /// one is taken once the socket is readable: a connection waiting on a
    /// slow upstream owns no read buffer. A partial head, chunk line or frame
    /// stays in `buf`.
    async fn fill(&mut self) -> io::Result<usize> {
        if !self.buf.is_empty() {
            self.buf.reserve(self.window);
            let room = self.buf.capacity() - self.buf.len();
            let n = self.io.read_buf(&mut self.buf).await?;
            self.adapt(n, room);
            return Ok(n);
        }
        loop {
            self.buf.reserve(self.window);
            let room = self.buf.capacity() - self.buf.len();
            match self.io.try_read_buf(&mut self.buf) {
                Ok(n) => {
                    self.adapt(n, room);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buf = BytesMut::new();
                    self.io.readable().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Grow the window while reads fill it; shrink it when they use little.
    fn adapt(&mut self, read: usize, room: usize) {
        if read >= room {
            self.window = (self.window * 2).min(MAX_WINDOW);
        } else if read < self.window / 4 {
            self.window = (self.window / 2).max(MIN_WINDOW);
        }
    }
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
    pub retry_after: Option<String>,
    pub body: H1Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
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

fn encode_head(t: &H1Target, req: &H1Request<'_>) -> BytesMut {
    let extra: usize = req.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut h = BytesMut::with_capacity(64 + req.path.len() + t.authority.len() + extra);
    h.extend_from_slice(req.method.as_bytes());
    h.extend_from_slice(b" ");
    h.extend_from_slice(req.path.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    h.extend_from_slice(t.authority.as_bytes());
    if !req.body.is_empty() || req.method != "GET" {
        h.extend_from_slice(b"\r\ncontent-length: ");
        h.extend_from_slice(req.body.len().to_string().as_bytes());
    }
    for (n, v) in req.headers {
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(n.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v.as_bytes());
    }
    h.extend_from_slice(b"\r\n\r\n");
    h
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

struct ParsedHead {
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
    event_stream: bool,
    retry_after: Option<String>,
}

fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>, H1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(H1Error::Invalid(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    let mut event_stream = false;
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok().and_then(|s| s.trim().parse::<u64>().ok());
            match (v, length) {
                (Some(v), None) => length = Some(v),
                (Some(v), Some(l)) if v == l => {}
                _ => return Err(H1Error::Invalid("bad or conflicting content-length".into())),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding must be chunked for us to frame by it.
            chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            event_stream = h.value.trim_ascii_start().starts_with(b"text/event-stream");
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = std::str::from_utf8(h.value).ok().map(|s| s.trim().to_string());
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Done
    } else if chunked {
        Framing::Chunked(Chunk::Size)
    } else if let Some(l) = length {
        if l == 0 { Framing::Done } else { Framing::Length(l) }
    } else {
        keep_alive = false;
        Framing::Close
    };
    Ok(Some(ParsedHead { len, status, framing, keep_alive, event_stream, retry_after }))
}

/// A response body, read on demand. Its connection goes back to the pool
/// when the body ended cleanly; dropped early, the connection closes.
pub struct H1Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Rc<PoolInner>,
}

impl H1Body {
    /// The next piece of body data; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, H1Error>> {
        loop {
            if self.framing == Framing::Done {
                self.release();
                return None;
            }
            let conn = self.conn.as_mut()?;
            match self.framing.step(&mut conn.buf) {
                Ok(Step::Data(b)) => return Some(Ok(b)),
                Ok(Step::Again) => continue,
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(e));
                }
            }
            match conn.fill().await {
                Ok(0) => {
                    if self.framing == Framing::Close {
                        self.framing = Framing::Done;
                        self.keep_alive = false;
                        continue;
                    }
                    self.conn = None;
                    return Some(Err(H1Error::Closed));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(H1Error::Io(e)));
                }
            }
        }
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
        {
            self.pool.checkin(conn);
        }
    }
}

enum Step {
    Data(Bytes),
    /// State advanced without data; go on.
    Again,
    /// Read more bytes first.
    NeedMore,
}

impl Framing {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        match *self {
            Framing::Done => Ok(Step::Again),
            Framing::Close => {
                if buf.is_empty() {
                    Ok(Step::NeedMore)
                } else {
                    Ok(Step::Data(buf.split().freeze()))
                }
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (buf.len() as u64).min(left) as usize;
                let left = left - n as u64;
                *self = if left == 0 { Framing::Done } else { Framing::Length(left) };
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Framing::Chunked(c) => match c {
                Chunk::Size => {
                    let Some(eol) = find_crlf(buf) else {
                        return if buf.len() > 1024 {
                            Err(invalid("chunk size line too long"))
                        } else {
                            Ok(Step::NeedMore)
                        };
                    };
                    let line = &buf[..eol];
                    let hex = line.split(|&b| b == b';').next().unwrap_or(line).trim_ascii();
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| invalid("bad chunk size"))?;
                    buf.advance(eol + 2);
                    *self = Framing::Chunked(if size == 0 { Chunk::Trailers } else { Chunk::Data(size) });
                    Ok(Step::Again)
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let left = left - n as u64;
                    *self = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                    Ok(Step::Data(buf.split_to(n).freeze()))
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("missing CRLF after chunk data"));
                    }
                    buf.advance(2);
                    *self = Framing::Chunked(Chunk::Size);
                    Ok(Step::Again)
                }
                Chunk::Trailers => {
                    let Some(eol) = find_crlf(buf) else {
                        return if buf.len() > MAX_HEAD {
                            Err(invalid("trailers too long"))
                        } else {
                            Ok(Step::NeedMore)
                        };
                    };
                    buf.advance(eol + 2);
                    if eol == 0 {
                        *self = Framing::Done;
                    }
                    Ok(Step::Again)
                }
            },
        }
    }
}

fn invalid(what: &str) -> H1Error {
    H1Error::Invalid(what.to_string())
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n")
}

#[cfg(test)]
mod tests;
