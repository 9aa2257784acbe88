//! Bedrock's streaming answers: `application/vnd.amazon.eventstream`, a
//! binary framing of length-prefixed messages, each with CRC32s over its
//! prelude and over the whole message.
//!
//! Parsing and both CRC checks are AWS's own (`aws-smithy-eventstream`).
//! Around it sits a guard that the crate lacks: its streaming decoder trusts
//! the prelude's length and checks the prelude CRC only once the whole frame
//! has arrived, so a corrupt or hostile length would make it buffer up to
//! 4 GiB. [`Decoder`] checks the prelude CRC and the length against a limit
//! as soon as the 12 prelude bytes are in, before buffering the frame.

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Prelude: total length, headers length, prelude CRC (4 bytes each).
const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC: the smallest possible frame.
const MIN_FRAME: usize = PRELUDE + 4;
/// The largest frame accepted by default. Bedrock's events carry one chunk
/// of model output each (a few KB); AWS caps an event-stream message at
/// 16 MiB, and so do we.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// The most a declared frame length makes the decoder reserve ahead of the
/// bytes that have arrived.
const RESERVE_AHEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("event-stream prelude checksum mismatch (computed {computed:#010x}, frame says {stated:#010x})")]
    PreludeChecksum { computed: u32, stated: u32 },
    #[error("event-stream frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("event-stream frame length {0} is shorter than a prelude and checksum")]
    TooShort(usize),
    /// AWS's parser refused the frame: message checksum, header encoding.
    #[error("malformed event-stream frame: {0}")]
    Malformed(String),
    #[error("the event stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Incremental decoder: feed bytes as they arrive, take messages out.
/// Memory is bounded by one frame (at most `max_frame`) plus the last chunk
/// fed, and follows the bytes that arrived, not the length a prelude declares.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_frame: usize,
    /// Once an error is returned the stream cannot be resynchronised: the
    /// next frame boundary is unknown. Every later call returns it again.
    failed: Option<FrameError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder { buf: BytesMut::new(), max_frame, failed: None }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next whole message, `Ok(None)` until one has fully arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.try_next() {
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = BytesMut::new();
                Err(e)
            }
            ok => ok,
        }
    }

    /// Call at the end of the stream: leftover bytes mean a cut frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match (&self.failed, self.buf.len()) {
            (Some(e), _) => Err(e.clone()),
            (None, 0) => Ok(()),
            (None, n) => Err(FrameError::Truncated(n)),
        }
    }

    fn try_next(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let stated = u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
        let computed = crc32fast::hash(&self.buf[..8]);
        if computed != stated {
            return Err(FrameError::PreludeChecksum { computed, stated });
        }
        if total < MIN_FRAME {
            return Err(FrameError::TooShort(total));
        }
        if total > self.max_frame {
            return Err(FrameError::TooLarge { len: total, max: self.max_frame });
        }
        if self.buf.len() < total {
            // Room for the rest of a frame of ordinary size at once, but not
            // for whatever the prelude declares: an upstream that declares
            // 16 MiB frames and sends a trickle would make every stream hold
            // (and, under strict overcommit, commit) 16 MiB. Beyond this the
            // buffer grows as bytes arrive.
            self.buf.reserve((total - self.buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        let message = read_message_from(frame.clone()).map_err(|e| FrameError::Malformed(e.to_string()))?;
        Ok(Some(message))
    }
}

/// What a Bedrock stream message means, from its `:message-type` header.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// `:message-type: event`: `:event-type` (`chunk` for InvokeModel
    /// streams; `messageStart`, `contentBlockDelta`, ... for ConverseStream)
    /// and its JSON payload.
    Event { event_type: String, payload: Bytes },
    /// `:message-type: exception`: a modelled error such as
    /// `throttlingException` or `modelStreamErrorException`, JSON payload.
    Exception { exception_type: String, payload: Bytes },
    /// `:message-type: error`: `:error-code` and `:error-message`.
    Error { code: String, message: String },
}

/// Classifies a decoded message; one without a known `:message-type` is malformed.
pub fn classify(message: &Message) -> Result<StreamEvent, FrameError> {
    let header = |name: &str| {
        message.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
    };
    let missing = |name: &str| FrameError::Malformed(format!("message without a string {name} header"));
    match header(":message-type").as_deref() {
        Some("event") => Ok(StreamEvent::Event {
            event_type: header(":event-type").ok_or_else(|| missing(":event-type"))?,
            payload: message.payload().clone(),
        }),
        Some("exception") => Ok(StreamEvent::Exception {
            exception_type: header(":exception-type").ok_or_else(|| missing(":exception-type"))?,
            payload: message.payload().clone(),
        }),
        Some("error") => Ok(StreamEvent::Error {
            code: header(":error-code").ok_or_else(|| missing(":error-code"))?,
            message: header(":error-message").unwrap_or_default(),
        }),
        Some(other) => Err(FrameError::Malformed(format!("unknown :message-type {other:?}"))),
        None => Err(missing(":message-type")),
    }
}

/// One event frame as Bedrock sends it (the mock's side, and tests'):
/// `:event-type`, `:content-type: application/json`, `:message-type: event`.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Result<Bytes, FrameError> {
    encode(
        vec![
            Header::new(":event-type", HeaderValue::String(event_type.to_owned().into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
            Header::new(":message-type", HeaderValue::String("event".into())),
        ],
        payload,
    )
}

/// One exception frame (`throttlingException`, ...), as Bedrock sends mid-stream errors.
pub fn encode_exception(exception_type: &str, payload: &[u8]) -> Result<Bytes, FrameError> {
    encode(
        vec![
            Header::new(":exception-type", HeaderValue::String(exception_type.to_owned().into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
            Header::new(":message-type", HeaderValue::String("exception".into())),
        ],
        payload,
    )
}

fn encode(headers: Vec<Header>, payload: &[u8]) -> Result<Bytes, FrameError> {
    let message = Message::new_from_parts(headers, Bytes::copy_from_slice(payload));
    let mut out = Vec::with_capacity(payload.len() + 128);
    write_message_to(&message, &mut out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// InvokeModelWithResponseStream wraps each model event as
/// `{"bytes":"<base64>"}`; this returns the model's own JSON event.
pub fn chunk_bytes(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        bytes: &'a str,
    }
    use base64::Engine;
    // Checked here, then parsed as text: sonic-rs reads keys from bytes
    // without checking UTF-8 (its `from_slice` reports it only afterwards),
    // and recurses over the members it skips.
    let text = crate::translate::readable(payload).map_err(|e| FrameError::Malformed(format!("chunk payload: {e}")))?;
    let chunk: Chunk<'_> = sonic_rs::from_str(text)
        .map_err(|e| FrameError::Malformed(format!("chunk payload is not {{\"bytes\":…}}: {e}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(chunk.bytes)
        .map_err(|e| FrameError::Malformed(format!("chunk bytes are not base64: {e}")))
}

impl Decoder {
    /// Bytes currently buffered (for tests of the memory bound).
    pub fn buffered(&self) -> usize {
        self.buf.remaining()
    }
}

#[cfg(test)]
mod tests;
