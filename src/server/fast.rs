//! The fast ingress: Sluice's own HTTP/1.1 connection loop for the
//! proxied routes (issue 14; docs/performance.md, "Own HTTP/1 ingress").
//!
//! Every accepted connection starts here. While its requests are plain
//! HTTP/1.1 `POST`s to a proxied route with a `Content-Length` body (what
//! the OpenAI and Anthropic SDKs and the coding agents send), this loop
//! reads them, runs them through `request::run` and writes the answers
//! itself: one `httparse` pass over the head, the headers as slices of the
//! read buffer, the answer's head and a small body in one write. At the
//! first request that is anything else — another route or method, HTTP/1.0,
//! `Transfer-Encoding`, `Expect`, `Upgrade`, `Connection: close`, a head
//! `httparse` refuses or one larger than [`MAX_HEAD`] — the connection,
//! with the bytes read and not yet answered, is handed to actix-http's
//! HTTP/1 dispatcher and the actix-web routes for the rest of its life.
//! So every case this loop does not know is actix-http's, as before.
//!
//! What it keeps of actix-http's behaviour for the requests it serves (the
//! `[server]` settings): a head must arrive within
//! `client_request_timeout_ms` (408 and close; an unused connection too),
//! an idle keep-alive connection is closed after `keep_alive_ms` (0: after
//! each answer), a client that closes its side while its request runs has
//! left (the request's future is dropped, which cancels the upstream call,
//! as `h1_allow_half_closed(false)` did), pipelined requests are answered in
//! order, and a graceful shutdown closes idle connections at once and the
//! others after their answer.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_server::GracefulShutdownSignal;
use actix_service::Service;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::endpoint::Endpoint;
use crate::gateway::Worker;
use crate::request::relay::{Answer, Reply, line};
use crate::request::{self, Head};

/// The largest request head this loop reads; a larger one is actix-http's
/// (which answers 431 past its own limit).
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers this loop parses; a request with more is actix-http's.
const MAX_HEADERS: usize = 64;
/// A read asking for no more than this is a head's (or what a client sends
/// while its request runs) and goes through [`SCRATCH`]; a body still to
/// come is read straight into the connection's buffer, at least this much.
const READ_CHUNK: usize = 4096;
/// The worker's buffer for reads of a head: a head up to [`MAX_HEAD`] in one read.
const SCRATCH_LEN: usize = MAX_HEAD;
/// What one read of a body still to come asks for, at most.
const MAX_BODY_READ: usize = 256 * 1024;
/// Pipelined bytes read ahead while a request runs (to see the client
/// leave); past this the loop stops reading until the answer is out.
const MAX_READ_AHEAD: usize = 64 * 1024;
/// Stream chunks gathered into one write, at most.
const MAX_WRITE_BATCH: usize = 64 * 1024;
/// A whole answer up to this size goes out in one copy-and-write; a larger
/// one in two slices of one `writev`.
const COPY_BODY_UP_TO: usize = 16 * 1024;

thread_local! {
    /// Heads are read here, and only the bytes that came are copied into the
    /// connection's buffer: a connection holds its request's ~300 bytes (and
    /// nothing between requests) instead of a 4 KiB read buffer for its whole
    /// life (docs/performance.md, "Reads into one buffer per worker").
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// One worker's part of the ingress: the state its requests run on, and
/// actix-http's dispatcher for the connections it hands over.
pub struct Fast<S> {
    pub worker: web::Data<Worker>,
    /// actix-http's HTTP/1 service over a [`Handed`] connection.
    pub h1: S,
    /// `server.fast_ingress`: when false, every connection is handed over at once.
    pub on: bool,
    pub request_timeout: Duration,
    /// `None`: keep-alive off, close after each answer.
    pub keep_alive: Option<Duration>,
    pub disconnect_timeout: Duration,
    pub shutdown: GracefulShutdownSignal,
}

/// Serve one accepted connection, here or (from its first request this
/// loop does not serve) in actix-http.
pub async fn serve<S>(io: TcpStream, fast: Rc<Fast<S>>) -> Result<(), ()>
where
    S: Service<(Handed, Option<SocketAddr>), Response = ()>,
{
    if let Err(e) = io.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a client connection");
    }
    if !fast.on {
        handed_over(Why::Off);
        let peer = io.peer_addr().ok();
        return fast.h1.call((Handed::new(io, Bytes::new()), peer)).await.map_err(drop);
    }
    let conn =
        Rc::new(Conn { io, rbuf: RefCell::new(BytesMut::new()), body_left: Cell::new(0), eof: Cell::new(false) });
    let mut first = true;
    let mut shutdown = pin!(fast.shutdown.notified());
    // One timer for the connection's life, moved on at each wait: a later
    // deadline only updates the registered entry (tokio re-files it when
    // the old one comes due), where a timer per wait was filed into and
    // taken out of the wheel once per request.
    let mut deadline = pin!(tokio::time::sleep_until(Instant::now() + fast.request_timeout));
    loop {
        let parsed = match next_head(&conn, &fast, first, shutdown.as_mut(), deadline.as_mut()).await {
            Next::Request(p) => p,
            Next::HandOver(why) => {
                handed_over(why);
                let rest = conn.rbuf.replace(BytesMut::new()).freeze();
                let Ok(conn) = Rc::try_unwrap(conn) else { return Err(()) };
                let peer = conn.io.peer_addr().ok();
                return fast.h1.call((Handed::new(conn.io, rest), peer)).await.map_err(drop);
            }
            Next::Close => return Ok(()),
            Next::TimedOut => {
                let _ = write_all(&conn.io, REQUEST_TIMEOUT).await;
                linger(&conn, fast.disconnect_timeout).await;
                return Ok(());
            }
        };
        first = false;
        match serve_one(&conn, &fast, parsed).await {
            After::KeepAlive => {}
            After::Close => {
                linger(&conn, fast.disconnect_timeout).await;
                return Ok(());
            }
            After::Gone => return Ok(()),
        }
    }
}

/// A client connection this loop reads and writes.
struct Conn {
    io: TcpStream,
    /// Read and not yet consumed: the rest of a head, a body, pipelined requests.
    rbuf: RefCell<BytesMut>,
    /// Body bytes of the running request still to come from the socket.
    body_left: Cell<u64>,
    /// The client closed its side.
    eof: Cell<bool>,
}

impl Conn {
    /// One read into the buffer, without waiting: `Ready(Ok(n))` with n > 0
    /// bytes, `Ready(Ok(0))` at the client's close, `Pending` when the
    /// socket has nothing (the task is woken when it has).
    fn poll_fill(&self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.poll_fill_for(cx, READ_CHUNK)
    }

    /// [`Conn::poll_fill`], making room for `want` bytes first (up to
    /// [`MAX_BODY_READ`]): a large body is read in large reads.
    fn poll_fill_for(&self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.eof.get() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.io.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let mut buf = self.rbuf.borrow_mut();
            let want = want.clamp(READ_CHUNK, MAX_BODY_READ);
            let mut room = buf.capacity() - buf.len();
            // `want` is READ_CHUNK (a head) unless a body is still to come.
            let read = if want == READ_CHUNK && room < READ_CHUNK / 2 {
                // A head, or bytes during a request: through the scratch.
                SCRATCH.with_borrow_mut(|scratch| {
                    room = scratch.len();
                    let n = self.io.try_read(scratch)?;
                    buf.extend_from_slice(&scratch[..n]);
                    Ok(n)
                })
            } else {
                // A body still to come: straight into the buffer, sized for it.
                if room < want / 2 {
                    buf.reserve(want);
                    room = buf.capacity() - buf.len();
                }
                self.io.try_read_buf(&mut *buf)
            };
            match read {
                Ok(0) => {
                    self.eof.set(true);
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => {
                    if n < room {
                        // A short read drained the socket: forget its
                        // readiness, as tokio's own `poll_read` does, so
                        // the next wait asks epoll and not the socket (a
                        // `recvfrom` that says EAGAIN, once per request).
                        // Bytes that came meanwhile raise a new edge.
                        let _ = self.io.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                    }
                    return Poll::Ready(Ok(n));
                }
                // The readiness was stale; tokio cleared it: ask again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// While a request runs or its answer streams: has the client left?
    /// Reads what it sends meanwhile (its next pipelined requests) into the
    /// buffer; a close, or a reset, is leaving. Not while the running
    /// request still reads its body (that read sees the close itself).
    fn poll_gone(&self, cx: &mut Context<'_>) -> bool {
        if self.eof.get() {
            return true;
        }
        if self.body_left.get() > 0 {
            return false;
        }
        loop {
            if self.rbuf.borrow().len() >= MAX_READ_AHEAD {
                return false;
            }
            match self.poll_fill(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

enum Next {
    Request(Parsed),
    HandOver(Why),
    Close,
    TimedOut,
}

/// Wait for the next request's whole head, and say what to do with it.
async fn next_head<S>(
    conn: &Conn,
    fast: &Fast<S>,
    first: bool,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    mut sleep: Pin<&mut tokio::time::Sleep>,
) -> Next {
    // An unused connection has `client_request_timeout_ms` for its first
    // request (408 after it); an idle keep-alive one `keep_alive_ms`. Both
    // clocks start when the loop first has to wait (for a head, for the
    // rest of one): a head already read, the common case under load, is
    // served without a clock read.
    let idle_for = if first { fast.request_timeout } else { fast.keep_alive.unwrap_or_default() };
    let mut idle_until: Option<Instant> = None;
    let mut head_until: Option<Instant> = None;
    loop {
        {
            let mut buf = conn.rbuf.borrow_mut();
            if !buf.is_empty() {
                match parse(&mut buf) {
                    Parse::Request(p) => return Next::Request(p),
                    Parse::Partial if buf.len() < MAX_HEAD => {
                        head_until.get_or_insert_with(|| Instant::now() + fast.request_timeout);
                    }
                    Parse::Partial => return Next::HandOver(Why::Head),
                    Parse::Other(why) => return Next::HandOver(why),
                }
            }
        }
        if conn.eof.get() {
            return Next::Close;
        }
        let idle = head_until.is_none();
        let deadline = match head_until {
            Some(at) => at,
            None => *idle_until.get_or_insert_with(|| Instant::now() + idle_for),
        };
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        let woke = poll_fn(|cx| {
            // The socket first: bytes that came are read (and a request
            // served) before the shutdown signal is asked, which costs a
            // lock; a shutdown's answer is then the connection's last.
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Woke::Closed),
                Poll::Ready(Ok(_)) => return Poll::Ready(Woke::Read),
                Poll::Pending => {}
            }
            if idle && shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Shutdown);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Deadline);
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Read => {}
            Woke::Shutdown => return Next::Close,
            // A half-sent head, then a close: nothing to answer.
            Woke::Closed => return Next::Close,
            Woke::Deadline if !first && idle => return Next::Close,
            Woke::Deadline => return Next::TimedOut,
        }
    }
}

enum Woke {
    Read,
    Shutdown,
    Closed,
    Deadline,
}

/// What the head parse found.
enum Parse {
    Request(Parsed),
    /// Not a whole head yet.
    Partial,
    /// Anything this loop does not serve: actix-http's.
    Other(Why),
}

/// Why a connection went to actix-http (`sluice_ingress_handovers_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Another route or method.
    Route,
    /// Another HTTP version or framing: HTTP/1.0, `Transfer-Encoding`,
    /// `Expect`, `Upgrade`, `Connection` but keep-alive, no or an odd
    /// `Content-Length`.
    Protocol,
    /// A head `httparse` refuses, or one larger than [`MAX_HEAD`].
    Head,
    /// `server.fast_ingress = false`.
    Off,
}

fn handed_over(why: Why) {
    let reason = match why {
        Why::Route => "route",
        Why::Protocol => "protocol",
        Why::Head => "head",
        Why::Off => "off",
    };
    metrics::counter!(crate::metrics::INGRESS_HANDOVERS, "reason" => reason).increment(1);
}

/// A request this loop serves.
struct Parsed {
    endpoint: Endpoint,
    headers: HeaderMap,
    /// The head's bytes the query string is a slice of.
    head: Bytes,
    query: std::ops::Range<usize>,
    content_length: u64,
}

/// The proxied routes this loop serves: every `POST` route whose handler
/// is `request::run` on a JSON body (not the multipart uploads).
fn endpoint(path: &[u8]) -> Option<Endpoint> {
    Some(match path {
        b"/v1/chat/completions" => Endpoint::Chat,
        b"/v1/completions" => Endpoint::Completions,
        b"/v1/embeddings" => Endpoint::Embeddings,
        b"/v1/messages" => Endpoint::Messages,
        b"/v1/messages/count_tokens" => Endpoint::CountTokens,
        b"/v1/responses" => Endpoint::Responses,
        b"/v1/responses/input_tokens" => Endpoint::InputTokens,
        b"/v1/images/generations" => Endpoint::Images,
        b"/v1/moderations" => Endpoint::Moderations,
        b"/v1/audio/speech" => Endpoint::Speech,
        _ => return None,
    })
}

/// Parse the head at the start of `buf`; on a request this loop serves,
/// split it (not its body) off the buffer.
fn parse(buf: &mut BytesMut) -> Parse {
    // Left uninitialised for httparse to fill: 2 KiB not zeroed per parse.
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other(Why::Head),
    };
    if req.method != Some("POST") {
        return Parse::Other(Why::Route);
    }
    let Some(target) = req.path else { return Parse::Other(Why::Head) };
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let Some(endpoint) = endpoint(path.as_bytes()) else { return Parse::Other(Why::Route) };
    if req.version != Some(1) {
        return Parse::Other(Why::Protocol);
    }
    // Where a slice of the head sits in `buf` (an empty one: nowhere).
    let (base, end) = (buf.as_ptr() as usize, buf.len());
    let span = |s: &[u8]| -> Option<std::ops::Range<usize>> {
        if s.is_empty() {
            return Some(0..0);
        }
        let start = (s.as_ptr() as usize).checked_sub(base)?;
        (start + s.len() <= end).then_some(start..start + s.len())
    };
    let query = match query {
        Some(q) => match span(q.as_bytes()) {
            Some(r) => r,
            None => return Parse::Other(Why::Head),
        },
        None => 0..0,
    };
    let mut content_length = None;
    // Header names as actix's type (standard ones without an allocation),
    // values as offsets into the head, taken as shared slices once split.
    let mut names = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (content_length, digits(h.value)) {
                (None, Some(n)) => content_length = Some(n),
                // Two lengths, or one that is not a plain number: actix-http's to refuse.
                _ => return Parse::Other(Why::Protocol),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
            || (name.eq_ignore_ascii_case(b"connection") && !is_keep_alive(h.value))
        {
            return Parse::Other(Why::Protocol);
        }
        let (Ok(n), Some(range)) = (HeaderName::from_bytes(name), span(h.value)) else {
            return Parse::Other(Why::Head);
        };
        names.push((n, range));
    }
    let Some(content_length) = content_length else { return Parse::Other(Why::Protocol) };
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(names.len());
    for (name, range) in names {
        // SAFETY: httparse took this value only if each byte is a tab, a
        // visible ASCII byte, a space or 0x80..=0xFF, else it failed the
        // parse (`Error::HeaderValue`, above) — the very bytes a
        // `HeaderValue` may hold; checking them again cost ~700
        // instructions per request (docs/performance.md). Debug builds (the
        // tests) check anyway and panic on a bad one.
        #[allow(unsafe_code)]
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(range)) };
        headers.append(name, value);
    }
    Parse::Request(Parsed { endpoint, headers, head, query, content_length })
}

/// A `Content-Length` value: digits only, no sign, no spaces, no overflow.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `Connection: keep-alive` (the HTTP/1.1 default anyway) is the only
/// value this loop serves; `close`, `upgrade` and lists are actix-http's.
fn is_keep_alive(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"keep-alive")
}

/// What becomes of the connection after an answer.
enum After {
    KeepAlive,
    /// Answered with `connection: close`; then closed, lingering.
    Close,
    /// The client left, or the connection broke: dropped.
    Gone,
}

/// Run one request and write its answer.
///
/// Its future is part of every connection's (docs/performance.md, "Async
/// functions that store their arguments twice"): an `async` block, so the
/// parsed head is stored once (an `async fn` keeps its arguments twice),
/// and the request's future and the head it borrows end before the answer
/// is written, so the two share their bytes.
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
fn serve_one<S>(conn: &Rc<Conn>, fast: &Fast<S>, p: Parsed) -> impl Future<Output = After> {
    async move {
        let state = fast.worker.state();
        let payload = {
            let mut buf = conn.rbuf.borrow_mut();
            let payload = if p.content_length == 0 {
                Payload::None
            } else if buf.len() as u64 >= p.content_length {
                Payload::from(buf.split_to(p.content_length as usize).freeze())
            } else {
                conn.body_left.set(p.content_length);
                let body: actix_http::BoxedPayloadStream = Box::pin(Body { conn: conn.clone() });
                Payload::from(body)
            };
            if buf.is_empty() {
                // Let go of the allocation the head and body came in (they keep
                // their own share of it while the request runs).
                *buf = BytesMut::new();
            }
            payload
        };
        // The reply becomes the head's bytes in this block, before the
        // answer's first wait: the reply's own storage is then no part of
        // this future.
        let (sending, close) = {
            let resp = {
                // Moved into this block: the head and its header map are let
                // go when the request's future ends, before the answer is written.
                let p = p;
                let query = std::str::from_utf8(&p.head[p.query.clone()]).unwrap_or("");
                let head = Head { headers: &p.headers, query };
                let mut run = pin!(request::run(&state, head, payload, p.endpoint));
                poll_fn(|cx| {
                    if let Poll::Ready(r) = run.as_mut().poll(cx) {
                        return Poll::Ready(Some(r));
                    }
                    if conn.poll_gone(cx) {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await
            };
            let Some(resp) = resp else { return After::Gone };
            // A body the request did not read (an error answered first): skipped
            // when it is all here, else the connection closes after the answer.
            let left = conn.body_left.replace(0);
            let mut close = fast.keep_alive.is_none() || conn.eof.get();
            if left > 0 {
                let mut buf = conn.rbuf.borrow_mut();
                if buf.len() as u64 >= left {
                    let _ = buf.split_to(left as usize);
                } else {
                    buf.clear();
                    close = true;
                }
            }
            // Shutting down: this answer is the connection's last.
            if state.gateway.is_shutting_down() {
                close = true;
            }
            (respond(conn, resp, close), close)
        };
        match sending.await {
            Ok(()) if close => After::Close,
            Ok(()) => After::KeepAlive,
            Err(()) => After::Gone,
        }
    }
}

/// The body of a request whose body had not all arrived with its head,
/// read from the connection as the pipeline asks for it.
struct Body {
    conn: Rc<Conn>,
}

impl Stream for Body {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let conn = &self.conn;
        loop {
            let left = conn.body_left.get();
            if left == 0 {
                return Poll::Ready(None);
            }
            {
                let mut buf = conn.rbuf.borrow_mut();
                if !buf.is_empty() {
                    let n = left.min(buf.len() as u64);
                    conn.body_left.set(left - n);
                    return Poll::Ready(Some(Ok(buf.split_to(n as usize).freeze())));
                }
            }
            match conn.poll_fill_for(cx, usize::try_from(left).unwrap_or(usize::MAX)) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    // The client left mid-body: not a bad request but a
                    // client gone. The body never ends; `serve_one` sees
                    // the close and drops the request, as actix-http did.
                    conn.eof.set(true);
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

/// Write the answer: its head, then its body whole (`content-length`) or as
/// HTTP chunks as it comes (a stream), watching for the client's leaving.
///
/// The head is made before the future is: neither the reply (its stamp,
/// actix's response head) nor a copy of it is part of the future, which
/// every connection holds (`the_connection_future_fits_in_a_kib_and_a_half`).
fn respond(conn: &Conn, reply: Reply, close: bool) -> impl Future<Output = Result<(), ()>> + '_ {
    let (mut w, rest) = head_of(reply, close);
    async move {
        match rest {
            Rest::Nothing => write_all(&conn.io, &w).await.map_err(drop),
            Rest::Whole(b) if b.len() <= COPY_BODY_UP_TO => {
                w.extend_from_slice(&b);
                drop(b);
                write_all(&conn.io, &w).await.map_err(drop)
            }
            Rest::Whole(b) => write_two(&conn.io, &w, &b).await.map_err(drop),
            Rest::Body(body, chunked) => {
                if !chunked {
                    write_all(&conn.io, &w).await.map_err(drop)?;
                    w.clear();
                }
                relay_body(conn, body, w, chunked).await
            }
        }
    }
}

/// What follows the head.
enum Rest {
    Nothing,
    /// A whole body (`content-length` is in the head).
    Whole(Bytes),
    /// A body that comes as it comes: of a known length (in the head), or
    /// as HTTP chunks (`true`).
    Body(BoxBody, bool),
}

/// The answer's head, and what is left to send after it.
fn head_of(reply: Reply, close: bool) -> (Vec<u8>, Rest) {
    // Room for a whole body that `respond` copies after the head: growing
    // the buffer then cost a reallocation and a copy of the head per
    // answer (~420 instructions per request, callgrind; docs/performance.md,
    // thirteenth session).
    let copied = match &reply.answer {
        Answer::Whole { body, .. } if body.len() <= COPY_BODY_UP_TO => body.len(),
        _ => 0,
    };
    let mut w = Vec::with_capacity(512 + copied);
    let resp = match reply.answer {
        // The common answer: its head written from the stamp, no actix
        // response made.
        Answer::Whole { media_type, body } => {
            status_line(&mut w, StatusCode::OK);
            if let Some(s) = &reply.stamp {
                s.write(&mut w);
            }
            line(&mut w, header::CONTENT_TYPE.as_str(), media_type.as_bytes());
            finish_head(&mut w, close);
            length_line(&mut w, body.len() as u64);
            return (w, Rest::Whole(body));
        }
        Answer::Response(resp) => resp,
    };
    let (res, body) = resp.into_parts();
    let status = res.status();
    write_head(&mut w, status, res.headers());
    if let Some(s) = &reply.stamp {
        s.write(&mut w);
    }
    finish_head(&mut w, close);
    let no_body = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    match body.size() {
        BodySize::None | BodySize::Sized(0) => {
            if !no_body {
                w.extend_from_slice(b"content-length: 0\r\n");
            }
            w.extend_from_slice(b"\r\n");
            (w, Rest::Nothing)
        }
        BodySize::Sized(n) => {
            length_line(&mut w, n);
            match body.try_into_bytes() {
                Ok(b) => (w, Rest::Whole(b)),
                Err(body) => (w, Rest::Body(body, false)),
            }
        }
        BodySize::Stream => {
            w.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            (w, Rest::Body(body, true))
        }
    }
}

/// The status line and the answer's own headers. The framing headers are
/// this loop's to write, never the handler's.
fn write_head(w: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    status_line(w, status);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name == header::DATE
        {
            continue;
        }
        line(w, name.as_str(), value.as_bytes());
    }
}

fn status_line(w: &mut Vec<u8>, status: StatusCode) {
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(status.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\n");
}

/// `date`, and `connection: close` when this answer is the connection's last.
fn finish_head(w: &mut Vec<u8>, close: bool) {
    date(w);
    if close {
        w.extend_from_slice(b"connection: close\r\n");
    }
}

fn length_line(w: &mut Vec<u8>, n: u64) {
    w.extend_from_slice(b"content-length: ");
    w.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    w.extend_from_slice(b"\r\n\r\n");
}

/// `date: <IMF-fixdate>`, formatted once a second per worker.
fn date(w: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        line(w, header::DATE.as_str(), text.as_bytes());
    });
}

/// A body that is not in hand (a stream; a file's content): written as it
/// comes, each write gathering what is ready (up to [`MAX_WRITE_BATCH`]),
/// as HTTP chunks when `chunked`. The client's leaving, or the body's
/// failing midway, ends the connection (an answer cut short cannot say so
/// any other way).
async fn relay_body(conn: &Conn, mut body: BoxBody, mut w: Vec<u8>, chunked: bool) -> Result<(), ()> {
    loop {
        let mut done = false;
        let ready = poll_fn(|cx| {
            loop {
                match Pin::new(&mut body).poll_next(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        if !b.is_empty() {
                            if chunked {
                                chunk(&mut w, &b);
                            } else {
                                w.extend_from_slice(&b);
                            }
                        }
                        if w.len() >= MAX_WRITE_BATCH {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "an answer's body failed midway; closing the connection");
                        return Poll::Ready(Err(()));
                    }
                    Poll::Ready(None) => {
                        if chunked {
                            w.extend_from_slice(b"0\r\n\r\n");
                        }
                        done = true;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending if !w.is_empty() => return Poll::Ready(Ok(())),
                    Poll::Pending if conn.poll_gone(cx) => return Poll::Ready(Err(())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        ready?;
        write_all(&conn.io, &w).await.map_err(drop)?;
        w.clear();
        if done {
            return Ok(());
        }
    }
}

/// One HTTP chunk: its size in hex, the data, CRLF.
fn chunk(w: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
    w.extend_from_slice(b"\r\n");
    w.extend_from_slice(data);
    w.extend_from_slice(b"\r\n");
}

async fn write_all(io: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match io.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A head and a large body in one `writev` (then the rest as it goes).
async fn write_two(io: &TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut sent = 0usize;
    let total = head.len() + body.len();
    while sent < head.len() {
        let slices = [IoSlice::new(&head[sent..]), IoSlice::new(body)];
        match io.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    if sent < total {
        write_all(io, &body[sent - head.len()..]).await?;
    }
    Ok(())
}

/// Sent when a head does not arrive in time (as actix-http does).
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Close after a last answer without losing it: shut the writing side,
/// then read and drop what the client still sends (a body nobody reads)
/// until it closes, for at most `client_disconnect_timeout_ms`. Closing
/// with unread bytes would send a reset, and the client could lose the
/// answer before reading it.
async fn linger(conn: &Conn, limit: Duration) {
    if let Err(e) = socket2::SockRef::from(&conn.io).shutdown(std::net::Shutdown::Write) {
        tracing::debug!(error = %e, "cannot shut the writing side of a client connection");
        return;
    }
    let until = Instant::now() + limit;
    let drain = poll_fn(|cx| {
        loop {
            conn.rbuf.borrow_mut().clear();
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
            }
        }
    });
    let _ = tokio::time::timeout_at(until, drain).await;
}

/// A connection handed to actix-http: the bytes this loop read and did not
/// answer come first, then the socket.
pub struct Handed {
    io: TcpStream,
    pre: Bytes,
}

impl Handed {
    fn new(io: TcpStream, pre: Bytes) -> Self {
        Handed { io, pre }
    }
}

impl AsyncRead for Handed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            let part = self.pre.split_to(n);
            buf.put_slice(&part);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Handed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> (Parse, BytesMut) {
        let mut buf = BytesMut::from(raw.as_bytes());
        (parse(&mut buf), buf)
    }

    /// A service that answers nothing: only its type matters below.
    struct NoService;

    impl Service<(Handed, Option<SocketAddr>)> for NoService {
        type Response = ();
        type Error = ();
        type Future = std::future::Ready<Result<(), ()>>;

        actix_service::always_ready!();

        fn call(&self, _: (Handed, Option<SocketAddr>)) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    /// The size of what `f` returns, without calling it.
    fn returned_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(TcpStream, Rc<Fast<NoService>>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every client connection holds this future (boxed) for its life, so
    /// its size is memory per connection: 2,088 bytes (mimalloc's 2.5 KiB
    /// class) while the request's future and the answer's were stored side
    /// by side, 1,400 with the request's ended before the answer is
    /// written (docs/performance.md, "Async functions that store their
    /// arguments twice"). A change that makes it larger again fails here.
    #[test]
    fn the_connection_future_fits_in_a_kib_and_a_half() {
        let size = returned_size(serve::<NoService>);
        assert!(size <= 1536, "fast::serve's future is {size} bytes");
    }

    #[test]
    fn a_chat_request_is_served_here_and_its_body_stays_in_the_buffer() {
        let raw = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\nX-Custom: v\r\n\r\n{}";
        let (p, rest) = parsed(raw);
        let Parse::Request(p) = p else { panic!("not served here") };
        assert_eq!(p.endpoint, Endpoint::Chat);
        assert_eq!(p.content_length, 2);
        assert_eq!(&p.head[p.query.clone()], b"x=1");
        assert_eq!(p.headers.get("authorization").map(|v| v.as_bytes()), Some(&b"Bearer k"[..]));
        assert_eq!(p.headers.get("x-custom").map(|v| v.as_bytes()), Some(&b"v"[..]));
        assert_eq!(&rest[..], b"{}");
    }

    #[test]
    fn anything_else_is_handed_over_with_its_bytes_untouched() {
        for (raw, why) in [
            ("GET /v1/models HTTP/1.1\r\nhost: a\r\n\r\n", Why::Route),
            ("POST /v1/files HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}", Why::Route),
            ("POST /v1/chat/completions HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}", Why::Protocol),
            (
                "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                Why::Protocol,
            ),
            (
                "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
                Why::Protocol,
            ),
            ("POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}", Why::Protocol),
            ("POST /v1/chat/completions HTTP/1.1\r\ncontent-length: +2\r\n\r\n{}", Why::Protocol),
            ("POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n", Why::Protocol),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n{}",
                Why::Protocol,
            ),
            ("POST /v1/chat/completions HTTP/1.1\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}", Why::Protocol),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nconnection: upgrade\r\nupgrade: h2c\r\ncontent-length: 2\r\n\r\n{}",
                Why::Protocol,
            ),
            ("POST /v1/chat/completions HTTP/1.1\r\n\r\n", Why::Protocol),
            ("POST /v1/chat/completions/ HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}", Why::Route),
            ("BREW /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}", Why::Route),
            ("POST /v1/chat/completions HTTP/1.1\r\nbad header\r\n\r\n", Why::Head),
            ("POST /v1/chat/completions HTTP/1.1\r\nx-odd: a\x7fb\r\ncontent-length: 2\r\n\r\n{}", Why::Head),
            ("POST /v1/chat/completions HTTP/1.1\r\nx-odd: a\x01b\r\ncontent-length: 2\r\n\r\n{}", Why::Head),
            // Past the first 32 bytes of a value (httparse's vectored scan).
            (
                "POST /v1/chat/completions HTTP/1.1\r\nx-odd: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x00b\r\ncontent-length: 2\r\n\r\n{}",
                Why::Head,
            ),
            (
                "POST /v1/chat/completions HTTP/1.1\r\nx-odd: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x1bb\r\ncontent-length: 2\r\n\r\n{}",
                Why::Head,
            ),
        ] {
            let (p, rest) = parsed(raw);
            assert!(matches!(p, Parse::Other(w) if w == why), "served here, or not for {why:?}: {raw:?}");
            assert_eq!(&rest[..], raw.as_bytes(), "bytes kept for actix-http: {raw:?}");
        }
    }

    #[test]
    fn empty_values_and_an_empty_query_are_served_here() {
        let (p, rest) =
            parsed("POST /v1/embeddings? HTTP/1.1\r\nx-empty:\r\nx-also: \r\ncontent-length: 0\r\n\r\nnext");
        let Parse::Request(p) = p else { panic!("not served here") };
        assert_eq!(&p.head[p.query.clone()], b"");
        assert_eq!(p.headers.get("x-empty").map(|v| v.as_bytes()), Some(&b""[..]));
        assert_eq!(p.headers.get("x-also").map(|v| v.as_bytes()), Some(&b""[..]));
        assert_eq!(&rest[..], b"next");
    }

    #[test]
    fn tabs_and_bytes_past_ascii_in_values_are_served_here_as_sent() {
        // The values a `HeaderValue` may hold, taken without a second check.
        let (p, _) = parsed(
            "POST /v1/chat/completions HTTP/1.1\r\nx-tab: a\tb\r\nx-name: café ☕\r\nx-long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaé\r\ncontent-length: 0\r\n\r\n",
        );
        let Parse::Request(p) = p else { panic!("not served here") };
        assert_eq!(p.headers.get("x-tab").map(|v| v.as_bytes()), Some(&b"a\tb"[..]));
        assert_eq!(p.headers.get("x-name").map(|v| v.as_bytes()), Some("café ☕".as_bytes()));
        assert_eq!(
            p.headers.get("x-long").map(|v| v.as_bytes()),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaé".as_bytes())
        );
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        let raw = "POST /v1/chat/completions HTTP/1.1\r\ncontent-len";
        let (p, rest) = parsed(raw);
        assert!(matches!(p, Parse::Partial));
        assert_eq!(&rest[..], raw.as_bytes());
    }

    #[test]
    fn connection_keep_alive_is_served_here() {
        let (p, _) = parsed("POST /v1/messages HTTP/1.1\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(p, Parse::Request(Parsed { endpoint: Endpoint::Messages, content_length: 0, .. })));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        let mut w = Vec::new();
        chunk(&mut w, &[b'a'; 26]);
        assert_eq!(&w[..4], b"1a\r\n");
        let mut w = Vec::new();
        chunk(&mut w, b"x");
        assert_eq!(w, b"1\r\nx\r\n");
    }

    #[test]
    fn content_lengths_are_plain_digits() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"1234"), Some(1234));
        assert_eq!(digits(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1 ", b"0x10", b"12345678901234567890"] {
            assert_eq!(digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_head_written_carries_framing_of_its_own_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let mut w = Vec::new();
        write_head(&mut w, StatusCode::OK, &h);
        finish_head(&mut w, true);
        length_line(&mut w, 2);
        let text = String::from_utf8(w).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: "), "{text}");
        assert!(text.ends_with("connection: close\r\ncontent-length: 2\r\n\r\n"), "{text}");
        assert!(!text.contains("999"), "{text}");
    }
}
