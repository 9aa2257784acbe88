//! A response body, read on demand in the caller's task: length-delimited,
//! chunked or until close. Its connection goes back to the pool when the
//! body ended cleanly; dropped before its end, the connection closes, which
//! is how a disconnected client cancels its upstream request.

use std::cell::Cell;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

use super::conn::Conn;
use super::head::MAX_HEAD;
use super::{H1Error, PoolInner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A response body, read on demand. Its connection goes back to the pool
/// when the body ended cleanly; dropped early, the connection closes.
pub struct H1Body {
    pub(super) conn: Option<Conn>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) pool: Rc<PoolInner>,
    /// Set by a [`Stopper`]: half-close the connection before reading on.
    pub(super) stop: Stopper,
}

/// Tells an upstream to stop sending a body, while what it already sent can
/// still be read: the connection is half-closed (our side shuts its writing
/// half: the upstream reads EOF, as from a client that left), then the body
/// reads on until the upstream closes. How a departed client's stream is
/// cancelled and still counted to the token: nothing the upstream wrote
/// before it saw the close is lost in a socket buffer.
#[derive(Clone, Debug, Default)]
pub struct Stopper(Rc<Cell<StopState>>);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum StopState {
    #[default]
    Reading,
    Asked,
    HalfClosed,
}

impl Stopper {
    /// Half-close at the body's next read.
    pub fn stop(&self) {
        if self.0.get() == StopState::Reading {
            self.0.set(StopState::Asked);
        }
    }
}

impl H1Body {
    /// The body's [`Stopper`].
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// The next piece of body data; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, H1Error>> {
        loop {
            if self.stop.0.get() == StopState::Asked {
                self.stop.0.set(StopState::HalfClosed);
                // The connection cannot be reused after this.
                self.keep_alive = false;
                if let Some(c) = self.conn.as_mut() {
                    c.shutdown_write();
                }
            }
            if self.framing == Framing::Done {
                self.release();
                return None;
            }
            let conn = self.conn.as_mut()?;
            match self.framing.step(&mut conn.buf) {
                Ok(Step::Data(b)) => return Some(Ok(self.framing.join_buffered(b, &mut conn.buf))),
                Ok(Step::Again) => continue,
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(e));
                }
            }
            match conn.fill(matches!(self.framing, Framing::Length(_))).await {
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

pub(super) enum Step {
    Data(Bytes),
    /// State advanced without data; go on.
    Again,
    /// Read more bytes first.
    NeedMore,
}

impl Framing {
    /// `first`, a chunk's data, joined by the data of every whole chunk
    /// after it that is already in `buf`. An upstream that writes each SSE
    /// event as its own chunk (most do) would otherwise cost one piece per
    /// event all the way to the client — one pass through the relay, one
    /// chunk on the client's connection — although one read brought them
    /// all: a run of 50 such events went out as 50 chunks where nginx
    /// sends 3 (docs/performance.md, "Streams: one chunk per read").
    /// Nothing waits for data that has not come: only what this read
    /// brought is joined, at the price of copying it once. A framing error
    /// in what follows is left in `buf` for the next call to report.
    fn join_buffered(&mut self, first: Bytes, buf: &mut BytesMut) -> Bytes {
        if !matches!(self, Framing::Chunked(_)) || buf.is_empty() {
            return first;
        }
        let mut joined: Option<BytesMut> = None;
        let mut push = |data: &[u8], more: usize| {
            joined
                .get_or_insert_with(|| {
                    let mut j = BytesMut::with_capacity(first.len() + data.len() + more);
                    j.extend_from_slice(&first);
                    j
                })
                .extend_from_slice(data)
        };
        while *self != Framing::Done {
            // A chunk's data is copied straight from `buf`: splitting it off
            // as `Bytes` first (as `step` does) costs a reference count up
            // and down per chunk, for bytes that are copied anyway.
            if let Framing::Chunked(Chunk::Data(left)) = *self
                && !buf.is_empty()
            {
                let (n, next) = chunk_data(left, buf.len());
                push(&buf[..n], buf.len() - n);
                buf.advance(n);
                *self = Framing::Chunked(next);
                continue;
            }
            match self.step(buf) {
                Ok(Step::Data(b)) => push(&b, buf.len()),
                Ok(Step::Again) => {}
                Ok(Step::NeedMore) | Err(_) => break,
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }

    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
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
                    let (n, next) = chunk_data(left, buf.len());
                    *self = Framing::Chunked(next);
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

/// Of a chunk with `left` bytes of data to come, how many of the `avail`
/// buffered bytes are its data, and the state after them.
fn chunk_data(left: u64, avail: usize) -> (usize, Chunk) {
    let n = (avail as u64).min(left) as usize;
    let left = left - n as u64;
    (n, if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) })
}

fn invalid(what: &str) -> H1Error {
    H1Error::Invalid(what.to_string())
}

/// Where the first `\r\n` starts. The lines searched (a chunk's size, a
/// trailer) are a few bytes long, so a `memchr` for the `\n` beats
/// `memmem`, whose searcher setup cost ~250 instructions per chunk of a
/// stream (callgrind, docs/performance.md).
fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let at = from + i;
        if at > 0 && buf[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    /// Every string of up to seven bytes over `\r`, `\n` and one other byte:
    /// the first CRLF, as `memmem` finds it.
    #[test]
    fn find_crlf_is_the_first_crlf() {
        let alphabet = [b'\r', b'\n', b'x'];
        for len in 0..=7u32 {
            for mut n in 0..3usize.pow(len) {
                let mut s = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    s.push(alphabet[n % 3]);
                    n /= 3;
                }
                assert_eq!(super::find_crlf(&s), memchr::memmem::find(&s, b"\r\n"), "{s:?}");
            }
        }
    }
}
