//! The wire format of a request head, and the parse of a response head
//! (httparse) into what the client needs: status, body framing,
//! keep-alive, event stream, Retry-After.

use bytes::BytesMut;

use super::body::{Chunk, Framing};
use super::{H1Error, H1Request, H1Target};
use crate::RetryAfter;

/// Response heads longer than this are refused.
pub(super) const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 96;

/// How a request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body and no length (a GET without one).
    None,
    Length(u64),
    /// A streamed body of unknown length.
    Chunked,
}

pub(super) fn encode_head(t: &H1Target, req: &H1Request<'_>) -> BytesMut {
    let framing = if !req.body.is_empty() || req.method != "GET" {
        BodyFraming::Length(req.body.len() as u64)
    } else {
        BodyFraming::None
    };
    encode_framed_head(t, req, framing)
}

pub(super) fn encode_framed_head(t: &H1Target, req: &H1Request<'_>, framing: BodyFraming) -> BytesMut {
    let extra: usize = req.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut h = BytesMut::with_capacity(64 + req.path.len() + t.authority.len() + extra);
    h.extend_from_slice(req.method.as_bytes());
    h.extend_from_slice(b" ");
    h.extend_from_slice(req.path.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    h.extend_from_slice(t.authority.as_bytes());
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            h.extend_from_slice(b"\r\ncontent-length: ");
            // Without `to_string`'s allocation and formatter.
            h.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        BodyFraming::Chunked => h.extend_from_slice(b"\r\ntransfer-encoding: chunked"),
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

pub(super) struct ParsedHead {
    pub(super) len: usize,
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) event_stream: bool,
    pub(super) retry_after: Option<RetryAfter>,
}

pub(super) fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>, H1Error> {
    // Left uninitialised for httparse to fill: 3 KiB not zeroed per answer.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
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
            retry_after = Some(crate::retry_after::parse(h.value, std::time::SystemTime::now()));
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
