//! Server-Sent Events: split a byte stream at event boundaries without
//! copying, so each complete event is forwarded the moment it arrives and
//! only an incomplete tail waits for the rest of its bytes.
//!
//! The tail is what an upstream controls: one that never sends a blank
//! line would grow it without end (64 MiB without a boundary once grew the
//! gateway by 228 MB). It is bounded by the largest event allowed
//! (`max_event_bytes`, per provider; [`DEFAULT_MAX_EVENT`] by default):
//! past it, the split fails and the stream ends with an error event.

use bytes::{Bytes, BytesMut};

/// The largest SSE event, by default: far above any LLM API's chunk (a
/// delta is a few hundred bytes; whole candidate chunks with inline data
/// reach a few MB).
pub const DEFAULT_MAX_EVENT: usize = 8 * 1024 * 1024;

/// An event grew past the largest allowed without its end arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an event grew past {max} bytes without its blank line (the upstream's events must end within max_event_bytes)"
)]
pub struct EventTooLong {
    pub max: usize,
}

/// Cuts an incoming byte stream into runs of whole SSE events.
#[derive(Debug)]
pub struct SseSplitter {
    /// Bytes of an event whose end has not arrived yet.
    tail: BytesMut,
    /// The most `tail` may hold.
    max_event: usize,
}

impl Default for SseSplitter {
    fn default() -> Self {
        SseSplitter::with_max_event(DEFAULT_MAX_EVENT)
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        SseSplitter::default()
    }

    /// A splitter that fails once an incomplete event passes `max` bytes.
    pub fn with_max_event(max: usize) -> Self {
        SseSplitter { tail: BytesMut::new(), max_event: max.max(1) }
    }

    /// Feed one chunk as read from the upstream. Returns every complete event
    /// it finishes (possibly several, in one buffer), or `None` if it only
    /// extended an incomplete event. When no tail is pending and the chunk
    /// ends on a boundary — the common case — this is zero-copy. An
    /// incomplete event longer than the maximum is an error (and the
    /// splitter holds no more than the maximum plus one chunk meanwhile).
    pub fn push(&mut self, chunk: Bytes) -> Result<Option<Bytes>, EventTooLong> {
        if self.tail.is_empty() {
            let Some(end) = last_boundary_end(&chunk, 0) else {
                return self.keep(&chunk).map(|()| None);
            };
            if end < chunk.len() {
                self.keep(&chunk[end..])?;
            }
            return Ok(Some(chunk.slice(..end)));
        }
        // A boundary may straddle the old tail and the new chunk ("\n" | "\n").
        let search_from = self.tail.len().saturating_sub(3);
        self.tail.extend_from_slice(&chunk);
        let Some(end) = last_boundary_end(&self.tail, search_from) else {
            return self.check().map(|()| None);
        };
        let complete = self.tail.split_to(end).freeze();
        self.check()?;
        Ok(Some(complete))
    }

    /// Keep `rest` as the start of an incomplete event, within the maximum.
    fn keep(&mut self, rest: &[u8]) -> Result<(), EventTooLong> {
        if rest.len() > self.max_event {
            return Err(self.overflow());
        }
        self.tail.extend_from_slice(rest);
        Ok(())
    }

    fn check(&mut self) -> Result<(), EventTooLong> {
        if self.tail.len() > self.max_event { Err(self.overflow()) } else { Ok(()) }
    }

    /// Let the tail go: the stream is over.
    fn overflow(&mut self) -> EventTooLong {
        self.tail = BytesMut::new();
        EventTooLong { max: self.max_event }
    }

    /// Bytes left over when the stream ended (an unterminated last event).
    pub fn remainder(&mut self) -> Option<Bytes> {
        if self.tail.iter().all(|b| b.is_ascii_whitespace()) {
            self.tail.clear();
            None
        } else {
            Some(std::mem::take(&mut self.tail).freeze())
        }
    }
}

/// End offset (exclusive) of the last event boundary in `buf[from..]`:
/// a blank line, written `\n\n` or `\r\n\r\n`.
fn last_boundary_end(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    // Upstreams write whole events, so a chunk almost always ends exactly on
    // a boundary: answer that without the reverse scans (most of the
    // splitter's cost in the micro-benchmark).
    if hay.ends_with(b"\n\n") {
        return Some(buf.len());
    }
    // Back from the end, each line feed: the last one that ends a blank
    // line (`\n\n` or `\n\r\n`) ends the last event. `memmem::rfind`
    // built a reverse searcher per call, ~9k instructions each (callgrind,
    // twice per 50-event stream): more than the rest of the split.
    let mut end = hay.len();
    while let Some(i) = memchr::memrchr(b'\n', &hay[..end]) {
        let before = &hay[..i];
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            return Some(from + i + 1);
        }
        end = i;
    }
    None
}

/// Iterate the events of a buffer of whole events, yielding each event's
/// `data` payload (multi-line data is not used by LLM APIs; the first `data:`
/// line is taken) with its byte range in the buffer.
pub fn events(buf: &[u8]) -> EventIter<'_> {
    EventIter { buf, pos: 0 }
}

pub struct EventIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One event within a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Byte range of the whole event, including its terminating blank line.
    pub start: usize,
    pub end: usize,
    /// The `data:` payload, trimmed; empty if the event had none.
    pub data: &'a [u8],
}

impl<'a> Iterator for EventIter<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.buf[start..];
        let (len, body_len) = blank_line(rest).unwrap_or((rest.len(), rest.len()));
        self.pos = start + len;
        let data = data_line(&rest[..body_len]);
        Some(Event { start, end: start + len, data })
    }
}

/// The payload of the first `data:` line of an event's lines, trimmed.
/// Lines are found with memchr: a byte-at-a-time split cost more than the
/// rest of the event's handling together (docs/performance.md, issue 14).
fn data_line(mut lines: &[u8]) -> &[u8] {
    loop {
        let (line, next) = match memchr::memchr(b'\n', lines) {
            Some(i) => (&lines[..i], Some(&lines[i + 1..])),
            None => (lines, None),
        };
        if let Some(d) = line.strip_prefix(b"data:") {
            return d.trim_ascii();
        }
        match next {
            Some(n) => lines = n,
            None => return &[],
        }
    }
}

/// The first blank line of `rest` (`\n\n` or `\n\r\n`, whichever comes
/// first): the event's length through it, and where it starts. One memchr
/// walk over the line ends, not a memmem search per kind: building a memmem
/// searcher for each event was the larger part of the stream path's event
/// splitting (docs/performance.md, issue 14).
fn blank_line(rest: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &rest[from..]) {
        let at = from + i;
        match rest.get(at + 1) {
            Some(b'\n') => return Some((at + 2, at)),
            Some(b'\r') if rest.get(at + 2) == Some(&b'\n') => return Some((at + 3, at)),
            _ => from = at + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n: keepalive\n\ndata: [DONE]\n\n";

    fn collect_split(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            if let Some(b) = s.push(Bytes::copy_from_slice(c)).unwrap() {
                // Every emitted buffer holds whole events only.
                assert!(b.ends_with(b"\n\n") || b.ends_with(b"\r\n\r\n"), "{b:?}");
                out.extend_from_slice(&b);
            }
        }
        assert!(s.remainder().is_none());
        out
    }

    #[test]
    fn split_at_every_byte_boundary_yields_same_events() {
        for cut in 0..=STREAM.len() {
            let out = collect_split(&[&STREAM[..cut], &STREAM[cut..]]);
            assert_eq!(out, STREAM, "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(collect_split(&bytes), STREAM);
    }

    #[test]
    fn whole_chunk_is_zero_copy() {
        let chunk = Bytes::from_static(STREAM);
        let mut s = SseSplitter::new();
        let out = s.push(chunk.clone()).unwrap().unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }

    /// The boundary search against its definition (the end of the last
    /// `\n\n` or `\n\r\n`), over every string of up to 7 bytes from the
    /// bytes that matter, at every start offset.
    #[test]
    fn last_boundary_matches_its_definition() {
        fn reference(buf: &[u8], from: usize) -> Option<usize> {
            let hay = buf.get(from..)?;
            let lf = hay.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
            let crlf = hay.windows(3).rposition(|w| w == b"\n\r\n").map(|i| i + 3);
            lf.max(crlf).map(|e| e + from)
        }
        let alphabet = [b'\n', b'\r', b'd'];
        for len in 0..=7u32 {
            for n in 0..3usize.pow(len) {
                let buf: Vec<u8> = (0..len).map(|k| alphabet[n / 3usize.pow(k) % 3]).collect();
                for from in 0..=buf.len() + 1 {
                    assert_eq!(last_boundary_end(&buf, from), reference(&buf, from), "{buf:?} from {from}");
                }
            }
        }
    }

    #[test]
    fn crlf_boundaries() {
        let crlf: &[u8] = b"data: 1\r\n\r\ndata: 2\r\n\r\n";
        for cut in 0..=crlf.len() {
            assert_eq!(collect_split(&[&crlf[..cut], &crlf[cut..]]), crlf);
        }
        let evs: Vec<_> = events(crlf).map(|e| e.data).collect();
        assert_eq!(evs, vec![&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn event_iteration() {
        let evs: Vec<_> = events(STREAM).collect();
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[0].data, b"{\"a\":1}");
        assert_eq!(evs[2].data, b"");
        assert_eq!(evs[3].data, b"[DONE]");
        assert_eq!(evs[3].end, STREAM.len());
        assert_eq!(&STREAM[evs[1].start..evs[1].end], b"data: {\"b\":2}\n\n");
    }

    #[test]
    fn unterminated_tail_is_remainder() {
        let mut s = SseSplitter::new();
        assert_eq!(s.push(Bytes::from_static(b"data: 1\n\ndata: 2")).unwrap().unwrap(), &b"data: 1\n\n"[..]);
        assert_eq!(s.remainder().unwrap(), &b"data: 2"[..]);
    }

    #[test]
    fn an_event_without_end_is_bounded() {
        let mut s = SseSplitter::with_max_event(100);
        assert_eq!(s.push(Bytes::from_static(b"data: 1\n\ndata: ")).unwrap().unwrap(), &b"data: 1\n\n"[..]);
        for _ in 0..9 {
            assert_eq!(s.push(Bytes::from(vec![b'x'; 10])), Ok(None));
        }
        assert_eq!(s.push(Bytes::from(vec![b'x'; 10])), Err(EventTooLong { max: 100 }));
        assert!(s.tail.capacity() <= 256, "the tail was let go");
        // One chunk alone longer than the maximum, with or without a boundary before it.
        let mut s = SseSplitter::with_max_event(100);
        assert!(s.push(Bytes::from(vec![b'x'; 101])).is_err());
        let mut s = SseSplitter::with_max_event(100);
        let mut chunk = b"data: 1\n\n".to_vec();
        chunk.extend_from_slice(&[b'x'; 101]);
        assert!(s.push(Bytes::from(chunk)).is_err());
        // A complete event of exactly the maximum passes.
        let mut s = SseSplitter::with_max_event(100);
        let mut ev = vec![b'x'; 98];
        assert_eq!(s.push(Bytes::from(ev.clone())), Ok(None));
        ev.clear();
        ev.extend_from_slice(b"\n\n");
        assert_eq!(s.push(Bytes::from(ev)).unwrap().unwrap().len(), 100);
    }
}
