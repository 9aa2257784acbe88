//! Writing SSE events into one growing buffer.

use bytes::Bytes;
use serde::Serialize;

/// Output of a stream translator: whole SSE events appended to one buffer,
/// taken as one `Bytes` per upstream run of events.
#[derive(Debug, Default)]
pub struct SseOut {
    buf: Vec<u8>,
}

impl SseOut {
    pub fn new() -> SseOut {
        SseOut::default()
    }

    /// `data: <json>\n\n`
    pub fn data<T: Serialize>(&mut self, v: &T) {
        self.buf.extend_from_slice(b"data: ");
        super::write_json(&mut self.buf, v);
        self.buf.extend_from_slice(b"\n\n");
    }

    /// `event: <name>\ndata: <json>\n\n` (Anthropic's SDKs dispatch on the event name).
    pub fn event<T: Serialize>(&mut self, name: &str, v: &T) {
        self.buf.extend_from_slice(b"event: ");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\ndata: ");
        super::write_json(&mut self.buf, v);
        self.buf.extend_from_slice(b"\n\n");
    }

    /// Already-formed event bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything written so far; the buffer starts again empty.
    pub fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.buf))
    }
}
