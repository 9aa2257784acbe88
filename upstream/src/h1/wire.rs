//! A whole response read from bytes in memory by the very code the client
//! runs on a socket — the head parse and the body framing — without I/O:
//! what the fuzzer (`fuzz/fuzz_targets/h1_response.rs`) and the property
//! tests feed arbitrary bytes to.

use bytes::{Buf, BytesMut};

use super::H1Error;
use super::body::Framing;
use super::head::{MAX_HEAD, parse_head};

/// A response as read from a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeResponse {
    pub status: u16,
    pub event_stream: bool,
    pub retry_after: Option<crate::RetryAfter>,
    pub body: Vec<u8>,
    /// The body's framing wanted more bytes than the buffer had (a
    /// connection closing here would be a cut-off body, except for a
    /// close-delimited one, which ends there).
    pub incomplete: bool,
}

/// Read interim (1xx) heads, the final head and as much of the body as
/// `bytes` holds. `Ok(None)`: the head is not complete yet.
pub fn read_response(bytes: &[u8]) -> Result<Option<WholeResponse>, H1Error> {
    let mut buf = BytesMut::from(bytes);
    let parsed = loop {
        if buf.len() > MAX_HEAD && matches!(parse_head(&buf), Ok(None)) {
            return Err(H1Error::Invalid("response head too large".into()));
        }
        let Some(p) = parse_head(&buf)? else { return Ok(None) };
        buf.advance(p.len);
        if !(100..200).contains(&p.status) {
            break p;
        }
    };
    let mut framing = parsed.framing;
    let mut body = Vec::new();
    let incomplete = loop {
        match framing.step(&mut buf)? {
            super::body::Step::Data(b) => body.extend_from_slice(&b),
            super::body::Step::Again if framing == Framing::Done => break false,
            super::body::Step::Again => {}
            super::body::Step::NeedMore => break framing != Framing::Close,
        }
    };
    Ok(Some(WholeResponse {
        status: parsed.status,
        event_stream: parsed.event_stream,
        retry_after: parsed.retry_after,
        body,
        incomplete,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_responses_from_bytes() {
        let r = read_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nretry-after: 1e300\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.incomplete), (429, &b"{}"[..], false));
        assert_eq!(r.retry_after, Some(Ok(crate::retry_after::CEILING)));
        let r = read_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n").unwrap().unwrap();
        assert_eq!((r.body.as_slice(), r.incomplete), (&b"abc"[..], true));
        assert_eq!(read_response(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert!(read_response(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n").is_err());
        assert!(read_response(b"NOT HTTP\r\n\r\n").is_err());
    }
}
