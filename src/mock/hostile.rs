//! Hostile answers: what a broken or malicious upstream may send — heads
//! that never end, lines that never end, bodies longer or shorter than
//! their `content-length`, bytes that are not UTF-8, resets at every phase.
//!
//! hyper refuses to produce most of these, so a hostile answer is written
//! as raw bytes past it: every connection's socket is shared
//! ([`SharedConn`]) between hyper, which reads and writes it through
//! [`ConnIo`], and the answer's [`Script`], which hyper polls as the body of
//! the response it believes it is sending. Once a script starts, hyper's
//! own writes on that connection are swallowed; the script writes instead,
//! and ends by closing (FIN) or resetting (RST) the connection.
//!
//! Chosen per request with `x-mock-hostile: <mode>`, or for every request
//! with `POST /mock/faults?hostile=<mode>` (`hostile=` clears it).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::body::Abort;

/// A hostile answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// A 200 whose head carries 1 MiB of headers, then a good body.
    HugeHeaders,
    /// A status line, then header lines forever.
    EndlessHeaders,
    /// A stream: its first event, then one `data:` line that never ends.
    EndlessLine,
    /// The whole answer, one byte every `x-mock-drip-ms` (default 1000).
    Drip,
    /// A body longer than its `content-length`: the excess is a second,
    /// smuggled response, sent a moment later on the kept-alive connection.
    LongBody,
    /// Half the body its `content-length` promises, then a close (FIN).
    ShortBody,
    /// Answer text with bytes that are not UTF-8.
    BadUtf8,
    /// Answers (or events) that are not JSON.
    BadJson,
    /// A reset (RST) in the middle of the response head.
    ResetHead,
    /// A reset right after the head, before any body byte.
    ResetBody,
    /// A reset in the middle of a non-stream body.
    ResetMidBody,
    /// A reset after a stream's first events.
    ResetMidStream,
    /// A 200 whose body (or event) is an error object.
    Error200,
}

impl Hostile {
    pub const ALL: [Hostile; 13] = [
        Hostile::HugeHeaders,
        Hostile::EndlessHeaders,
        Hostile::EndlessLine,
        Hostile::Drip,
        Hostile::LongBody,
        Hostile::ShortBody,
        Hostile::BadUtf8,
        Hostile::BadJson,
        Hostile::ResetHead,
        Hostile::ResetBody,
        Hostile::ResetMidBody,
        Hostile::ResetMidStream,
        Hostile::Error200,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hostile::HugeHeaders => "huge-headers",
            Hostile::EndlessHeaders => "endless-headers",
            Hostile::EndlessLine => "endless-line",
            Hostile::Drip => "drip",
            Hostile::LongBody => "long-body",
            Hostile::ShortBody => "short-body",
            Hostile::BadUtf8 => "bad-utf8",
            Hostile::BadJson => "bad-json",
            Hostile::ResetHead => "reset-head",
            Hostile::ResetBody => "reset-body",
            Hostile::ResetMidBody => "reset-mid-body",
            Hostile::ResetMidStream => "reset-mid-stream",
            Hostile::Error200 => "error-200",
        }
    }
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hostile {
    type Err = String;

    fn from_str(s: &str) -> Result<Hostile, String> {
        let s = s.trim();
        Hostile::ALL.into_iter().find(|h| h.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Hostile::ALL.iter().map(|h| h.as_str()).collect();
            format!("unknown hostile mode {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// One connection's socket, shared by hyper and a hostile answer.
pub(crate) struct SharedConn {
    stream: TcpStream,
    /// A script owns the connection: hyper's writes are swallowed.
    raw: AtomicBool,
}

impl SharedConn {
    pub fn new(stream: TcpStream) -> Arc<SharedConn> {
        Arc::new(SharedConn { stream, raw: AtomicBool::new(false) })
    }
}

/// hyper's side of a [`SharedConn`]: the socket as usual until a script
/// takes over (`AsyncRead`/`AsyncWrite` over `&TcpStream`'s readiness, as
/// tokio's own `TcpStream` does).
pub(crate) struct ConnIo(pub Arc<SharedConn>);

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let s = &self.0.stream;
        loop {
            ready!(s.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match s.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.0.raw.load(Ordering::Acquire) {
            return Poll::Ready(Ok(buf.len()));
        }
        let s = &self.0.stream;
        loop {
            ready!(s.poll_write_ready(cx))?;
            match s.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.0.raw.load(Ordering::Acquire) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let s = &self.0.stream;
        loop {
            ready!(s.poll_write_ready(cx))?;
            match s.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes (FIN) when hyper drops the connection.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One step of a script.
enum Step {
    Write(Bytes),
    /// One byte every `every`.
    Drip(Bytes, Duration),
    /// `chunk` again and again, until the peer goes away.
    Forever(Bytes),
    Pause(Duration),
    /// Close with a reset (RST): `SO_LINGER` 0, then drop.
    Reset,
}

/// A hostile answer being written; hyper polls it as a response body.
/// It never yields a frame: it ends with an error, which makes hyper drop
/// (and so close) the connection.
pub(crate) struct Script {
    conn: Arc<SharedConn>,
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Script {
    fn new(conn: &Arc<SharedConn>, steps: Vec<Step>) -> Script {
        conn.raw.store(true, Ordering::Release);
        Script { conn: conn.clone(), steps: steps.into(), sleep: None }
    }

    /// Write as much of `b` as the socket takes now; `Ready(Ok(n))` when
    /// some went out.
    fn write(&self, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let s = &self.conn.stream;
        loop {
            ready!(s.poll_write_ready(cx))?;
            match s.try_write(b) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        let abort = Poll::Ready(Some(Err(Abort)));
        loop {
            if let Some(s) = &mut self.sleep {
                ready!(s.as_mut().poll(cx));
                self.sleep = None;
            }
            let Some(step) = self.steps.front() else { return abort };
            match step {
                Step::Write(b) => {
                    let b = b.clone();
                    match ready!(self.write(cx, &b)) {
                        Ok(n) if n > 0 && n < b.len() => self.steps[0] = Step::Write(b.slice(n..)),
                        Ok(n) if n > 0 || b.is_empty() => {
                            self.steps.pop_front();
                        }
                        _ => return abort,
                    }
                }
                Step::Drip(b, every) => {
                    let (b, every) = (b.clone(), *every);
                    if b.is_empty() {
                        self.steps.pop_front();
                        continue;
                    }
                    match ready!(self.write(cx, &b[..1])) {
                        Ok(1) => {
                            self.steps[0] = Step::Drip(b.slice(1..), every);
                            self.sleep = Some(Box::pin(tokio::time::sleep(every)));
                        }
                        _ => return abort,
                    }
                }
                Step::Forever(chunk) => {
                    let chunk = chunk.clone();
                    match ready!(self.write(cx, &chunk)) {
                        // Let the rest of this worker run between chunks.
                        Ok(n) if n > 0 => {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        _ => return abort,
                    }
                }
                Step::Pause(d) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(*d)));
                    self.steps.pop_front();
                }
                Step::Reset => {
                    let _ = self.conn.stream.set_zero_linger();
                    return abort;
                }
            }
        }
    }
}

/// What the script is made of: the answer the request would have had.
pub(crate) enum Answer<'a> {
    /// A whole JSON body.
    Json(&'a [u8]),
    /// A stream's events, in order.
    Events(&'a [Bytes]),
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
const ERROR_OBJECT: &[u8] =
    br#"{"error":{"message":"The engine is currently overloaded (mock, sent with 200).","type":"server_error","param":null,"code":null}}"#;

fn json_head(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n").into_bytes()
}

fn concat(parts: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

/// Replace the answer text's first letter by bytes that are not UTF-8.
fn spoil_utf8(text: &[u8]) -> Bytes {
    let key = b"\"content\":\"";
    let mut out = text.to_vec();
    let at = memchr::memmem::find(&out, key)
        .map(|i| i + key.len())
        .or_else(|| memchr::memmem::find(&out, b"\"text\":\"").map(|i| i + 8));
    if let Some(i) = at.filter(|i| i + 2 <= out.len()) {
        out.splice(i..i, [0xff, 0xfe]);
    }
    Bytes::from(out)
}

/// The event `ev` (`data: {...}\n\n`) with a comma before its data's last
/// `}`: the same bytes up to there, then not JSON.
fn spoil_tail(ev: &[u8]) -> Option<Bytes> {
    let data = ev.strip_suffix(b"\n\n")?;
    let last = memchr::memrchr(b'}', data)?;
    let mut out = Vec::with_capacity(ev.len() + 1);
    out.extend_from_slice(&data[..last]);
    out.push(b',');
    out.extend_from_slice(&ev[last..]);
    Some(Bytes::from(out))
}

/// The script of `mode` for `answer`. `drip` paces [`Hostile::Drip`].
pub(crate) fn script(conn: &Arc<SharedConn>, mode: Hostile, answer: Answer<'_>, drip: Duration) -> Script {
    let events: Vec<Bytes> = match answer {
        Answer::Events(e) => e.to_vec(),
        Answer::Json(_) => Vec::new(),
    };
    let stream = matches!(answer, Answer::Events(_));
    let body: Bytes = match answer {
        Answer::Json(b) => Bytes::copy_from_slice(b),
        Answer::Events(e) => concat(&e.iter().map(|b| b.as_ref()).collect::<Vec<_>>()),
    };
    let head = if stream { Bytes::from_static(SSE_HEAD) } else { Bytes::from(json_head(body.len())) };
    let first = events.first().cloned().unwrap_or_default();
    let steps = match mode {
        Hostile::HugeHeaders => {
            let mut h = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
            let filler = "a".repeat(500);
            for i in 0..2048 {
                h.extend_from_slice(format!("x-filler-{i}: {filler}\r\n").as_bytes());
            }
            h.extend_from_slice(&head[b"HTTP/1.1 200 OK\r\n".len()..]);
            vec![Step::Write(h.freeze()), Step::Write(body)]
        }
        Hostile::EndlessHeaders => vec![
            Step::Write(Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")),
            Step::Forever(Bytes::from(format!("x-endless: {}\r\n", "a".repeat(1000)))),
        ],
        Hostile::EndlessLine => vec![
            Step::Write(concat(&[&head, &first, b"data: {\"choices\":[{\"delta\":{\"content\":\""])),
            Step::Forever(Bytes::from(vec![b'x'; 64 * 1024])),
        ],
        Hostile::Drip => vec![Step::Write(head), Step::Drip(body, drip)],
        Hostile::LongBody => {
            let smuggled: &[u8] = br#"{"id":"smuggled","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"SMUGGLED answer meant for another request"},"finish_reason":"stop"}]}"#;
            vec![
                Step::Write(concat(&[&head, &body])),
                Step::Pause(Duration::from_millis(20)),
                Step::Write(concat(&[&json_head(smuggled.len()), smuggled])),
                Step::Pause(Duration::from_secs(30)),
            ]
        }
        Hostile::ShortBody => vec![Step::Write(concat(&[&head, &body[..body.len() / 2]]))],
        Hostile::BadUtf8 => vec![Step::Write(head), Step::Write(spoil_utf8(&body))],
        Hostile::BadJson if stream => {
            // Two events go out fine; the third breaks only at its end (a
            // trailing comma), after the start it shares with the second:
            // the gateway checks each event from where it stops agreeing
            // with the one before (json::StreamCheck) and must still see
            // it. A stream of fewer events: one goes out, then one that is
            // not JSON at all.
            let (good, bad, skip) = match events.get(2).and_then(|e| spoil_tail(e)) {
                Some(bad) => (&events[..2], bad, 3),
                None => {
                    let one = events.len().min(1);
                    let bad = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}, nope\n\n";
                    (&events[..one], Bytes::from_static(bad), one)
                }
            };
            let rest: usize = events[..skip].iter().map(Bytes::len).sum();
            vec![
                Step::Write(concat(&[&head, &concat(&good.iter().map(|b| b.as_ref()).collect::<Vec<_>>())])),
                Step::Pause(Duration::from_millis(20)),
                Step::Write(concat(&[&bad, &body[rest.min(body.len())..]])),
            ]
        }
        Hostile::BadJson => {
            let spoiled: &[u8] =
                br#"{"id":"x","object":"chat.completion","choices":[{"message":{"content":"x"}}, nope],"usage":null}"#;
            vec![Step::Write(concat(&[&json_head(spoiled.len()), spoiled]))]
        }
        Hostile::ResetHead => vec![Step::Write(head.slice(..head.len() / 2)), Step::Reset],
        Hostile::ResetBody => vec![Step::Write(head), Step::Reset],
        Hostile::ResetMidBody => vec![Step::Write(concat(&[&head, &body[..body.len() / 2]])), Step::Reset],
        Hostile::ResetMidStream => {
            let two = concat(&events.iter().take(2).map(|b| b.as_ref()).collect::<Vec<_>>());
            vec![Step::Write(concat(&[&head, &two])), Step::Pause(Duration::from_millis(20)), Step::Reset]
        }
        Hostile::Error200 => {
            if stream {
                vec![Step::Write(concat(&[&head, b"data: ", ERROR_OBJECT, b"\n\n"]))]
            } else {
                vec![Step::Write(concat(&[&json_head(ERROR_OBJECT.len()), ERROR_OBJECT]))]
            }
        }
    };
    Script::new(conn, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in Hostile::ALL {
            assert_eq!(h.as_str().parse::<Hostile>(), Ok(h));
        }
        assert!("nice".parse::<Hostile>().unwrap_err().contains("endless-line"));
    }

    #[test]
    fn utf8_is_spoiled_inside_the_text() {
        let b = spoil_utf8(br#"{"choices":[{"message":{"content":"hello"}}]}"#);
        assert!(std::str::from_utf8(&b).is_err());
        assert!(b.ends_with(br#"hello"}}]}"#));
    }
}
