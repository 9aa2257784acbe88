//! Bedrock's streams, `application/vnd.amazon.eventstream`, as runs of SSE
//! events the rest of the gateway already handles: the binary frames are
//! decoded incrementally with both CRC checks (`cloud::aws::eventstream`),
//! and each event becomes one SSE event —
//!
//! - ConverseStream: `data: {"<eventType>": <payload>}`, the union member of
//!   `ConverseStreamOutput` the API reference documents, for
//!   `translate::bedrock::stream`;
//! - InvokeModelWithResponseStream: the model's own event from the
//!   `{"bytes": base64}` chunk, for Claude `event: <type>` and `data: <json>`
//!   exactly as Anthropic's API streams it.
//!
//! An exception frame (`throttlingException`, ...) ends the stream with the
//! gateway error of the HTTP status Bedrock gives that exception, so a
//! throttled stream that fails before its first event is retried and cools
//! its deployment down like a 429 answer.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sluice_upstream::{InflightPermit, ResponseBody};

use crate::cloud::aws::eventstream::{Decoder, StreamEvent, chunk_bytes, classify};
use crate::error::GatewayError;
use crate::providers::EventStream;
use crate::providers::errors::{ErrorStyle, map_status_error, scrub};

/// Which Bedrock call the stream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Converse,
    Invoke,
}

/// Frames in, SSE out: the pure part of the stream, fed chunks as they arrive.
pub struct FramesToSse {
    decoder: Decoder,
    mode: Mode,
    provider: String,
    secrets: Vec<String>,
    /// Claude's events (Invoke), checked as one stream's.
    json: crate::json::StreamCheck,
}

impl FramesToSse {
    pub fn new(mode: Mode, provider: String, secrets: Vec<String>) -> FramesToSse {
        FramesToSse { decoder: Decoder::default(), mode, provider, secrets, json: Default::default() }
    }

    /// The SSE events of every frame `chunk` completes (empty while a frame
    /// is still arriving), or the error that ends the stream after them:
    /// `(events so far, error)`.
    pub fn push(&mut self, chunk: &[u8]) -> (Bytes, Option<GatewayError>) {
        self.decoder.push(chunk);
        let mut out = BytesMut::new();
        loop {
            let message = match self.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return (out.freeze(), None),
                Err(e) => return (out.freeze(), Some(self.protocol(e.to_string()))),
            };
            let event = match classify(&message) {
                Ok(e) => e,
                Err(e) => return (out.freeze(), Some(self.protocol(e.to_string()))),
            };
            match event {
                StreamEvent::Event { event_type, payload } => {
                    if let Err(e) = self.write(&mut out, &event_type, &payload) {
                        return (out.freeze(), Some(e));
                    }
                }
                StreamEvent::Exception { exception_type, payload } => {
                    return (out.freeze(), Some(self.exception(&exception_type, payload)));
                }
                StreamEvent::Error { code, message } => {
                    return (out.freeze(), Some(self.protocol(format!("the stream ended with {code}: {message}"))));
                }
            }
        }
    }

    /// The body ended: a frame left half-received means the stream was cut.
    pub fn finish(&self) -> Option<GatewayError> {
        self.decoder.finish().err().map(|e| self.protocol(e.to_string()))
    }

    fn write(&mut self, out: &mut BytesMut, event_type: &str, payload: &[u8]) -> Result<(), GatewayError> {
        match self.mode {
            Mode::Converse => {
                // The event type becomes a JSON key as it is: Bedrock's are
                // camelCase words, and anything else (a `"`, a line break)
                // would break the event for the translator reading it.
                if event_type.is_empty() || !event_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(self.protocol("a stream event's type is not a word".to_owned()));
                }
                out.extend_from_slice(b"data: {\"");
                out.extend_from_slice(event_type.as_bytes());
                out.extend_from_slice(b"\":");
                let start = out.len();
                out.extend_from_slice(if payload.is_empty() { b"{}" } else { payload });
                // As for Claude's events below: a line break in valid JSON is
                // whitespace between tokens; blanked, the event stays one line.
                for b in out[start..].iter_mut().filter(|b| **b == b'\n' || **b == b'\r') {
                    *b = b' ';
                }
                out.extend_from_slice(b"}\n\n");
            }
            Mode::Invoke if event_type == "chunk" => {
                let mut json = chunk_bytes(payload).map_err(|e| self.protocol(e.to_string()))?;
                // Raw line breaks in valid JSON can only be whitespace between
                // tokens (inside strings they must be escaped): blank them so
                // the event stays one `data:` line.
                for b in json.iter_mut().filter(|b| **b == b'\n' || **b == b'\r') {
                    *b = b' ';
                }
                // The event goes to the client as it is and is read below: it
                // passes the checks every SSE provider's events pass
                // (`events::check_events`). Without them a key that is not
                // UTF-8 reached the client, and nesting skipped over on the way
                // to `type` could overflow sonic-rs's stack.
                if let Err(why) = self.json.check(&json) {
                    return Err(self.protocol(format!("a stream event {why}")));
                }
                let kind = sonic_rs::get(&json[..], ["type"])
                    .ok()
                    .and_then(|t| sonic_rs::from_str::<String>(t.as_raw_str()).ok())
                    .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                if let Some(kind) = kind {
                    out.extend_from_slice(b"event: ");
                    out.extend_from_slice(kind.as_bytes());
                    out.extend_from_slice(b"\n");
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
            }
            // Event types added later carry nothing a client of Claude knows.
            Mode::Invoke => {}
        }
        Ok(())
    }

    fn exception(&self, kind: &str, payload: Bytes) -> GatewayError {
        // The HTTP status Bedrock documents for each exception.
        let status = match kind {
            "throttlingException" | "modelNotReadyException" => 429,
            "serviceUnavailableException" => 503,
            "modelTimeoutException" => 408,
            "validationException" => 400,
            "modelStreamErrorException" => 424,
            _ => 500,
        };
        let body = scrub(payload, &self.secrets);
        let body = map_status_error(ErrorStyle::Bedrock, &self.provider, status, body);
        GatewayError::UpstreamStatus {
            provider: self.provider.clone(),
            upstream_status: status,
            body,
            retry_after: None,
        }
    }

    fn protocol(&self, detail: String) -> GatewayError {
        GatewayError::UpstreamProtocol { provider: self.provider.clone(), detail }
    }
}

/// The upstream's event-stream body as runs of whole SSE events. The
/// permit rides along so the connection slot is held as long as the stream.
pub fn event_stream(body: ResponseBody, permit: InflightPermit, frames: FramesToSse) -> EventStream {
    struct State {
        body: ResponseBody,
        frames: FramesToSse,
        _permit: InflightPermit,
        /// An error to yield after the events decoded before it.
        failed: Option<GatewayError>,
        done: bool,
    }
    // A departed client's stream is half-closed and read to its end, so its
    // tokens are counted (`upstream::stream`), as for every SSE provider.
    let stopper = body.stopper();
    let st = State { body, frames, _permit: permit, failed: None, done: false };
    let runs = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(e) = st.failed.take() {
            st.done = true;
            return Some((Err(e), st));
        }
        if st.done {
            return None;
        }
        loop {
            let (events, failed) = match st.body.chunk().await {
                Some(Ok(data)) => st.frames.push(&data),
                Some(Err(e)) => {
                    let e = GatewayError::UpstreamProtocol {
                        provider: st.frames.provider.clone(),
                        detail: format!("the stream was cut off: {e}"),
                    };
                    (Bytes::new(), Some(e))
                }
                None => {
                    st.done = true;
                    return st.frames.finish().map(|e| (Err(e), st));
                }
            };
            st.failed = failed;
            if !events.is_empty() {
                return Some((Ok(events), st));
            }
            if let Some(e) = st.failed.take() {
                st.done = true;
                return Some((Err(e), st));
            }
        }
    })
    .boxed_local();
    EventStream::new(runs).with_stopper(stopper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::eventstream::{encode_event, encode_exception};

    fn frames(events: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, p) in events {
            out.extend_from_slice(&encode_event(t, p.as_bytes()).unwrap());
        }
        out
    }

    #[test]
    fn converse_events_become_union_members_at_any_split() {
        let wire = frames(&[
            ("messageStart", r#"{"role":"assistant","p":"abc"}"#),
            ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#),
            ("messageStop", r#"{"stopReason":"end_turn"}"#),
        ]);
        let whole = FramesToSse::new(Mode::Converse, "p".into(), vec![]).push(&wire);
        assert!(whole.1.is_none());
        assert_eq!(
            std::str::from_utf8(&whole.0).unwrap(),
            "data: {\"messageStart\":{\"role\":\"assistant\",\"p\":\"abc\"}}\n\n\
             data: {\"contentBlockDelta\":{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}}\n\n\
             data: {\"messageStop\":{\"stopReason\":\"end_turn\"}}\n\n"
        );
        for cut in 0..=wire.len() {
            let mut f = FramesToSse::new(Mode::Converse, "p".into(), vec![]);
            let (a, e1) = f.push(&wire[..cut]);
            let (b, e2) = f.push(&wire[cut..]);
            assert!(e1.is_none() && e2.is_none() && f.finish().is_none());
            assert_eq!([a, b].concat(), whole.0.to_vec(), "cut at {cut}");
        }
    }

    /// A payload with line breaks between its tokens stays one event; an
    /// event type that is not a word ends the stream with a protocol error.
    #[test]
    fn converse_payload_line_breaks_and_odd_event_types() {
        let wire = frames(&[("contentBlockDelta", "{\"contentBlockIndex\":0,\r\n\n\"delta\":{\"text\":\"Hi\"}}")]);
        let (out, err) = FramesToSse::new(Mode::Converse, "p".into(), vec![]).push(&wire);
        assert!(err.is_none());
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "data: {\"contentBlockDelta\":{\"contentBlockIndex\":0,   \"delta\":{\"text\":\"Hi\"}}}\n\n"
        );
        for odd in ["a\"b", "x\n\ndata: y", ""] {
            let wire = frames(&[("messageStart", r#"{"role":"assistant"}"#), (odd, "{}")]);
            let (out, err) = FramesToSse::new(Mode::Converse, "p".into(), vec![]).push(&wire);
            assert!(out.starts_with(b"data: {\"messageStart\"") && out.ends_with(b"}\n\n"), "{odd:?}");
            assert!(matches!(err, Some(GatewayError::UpstreamProtocol { .. })), "{odd:?}: {err:?}");
        }
    }

    #[test]
    fn invoke_chunks_become_anthropic_events() {
        use base64::Engine;
        let event = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi\n"}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(event);
        let wire = frames(&[("chunk", &format!(r#"{{"bytes":"{b64}","p":"abcd"}}"#))]);
        let (out, err) = FramesToSse::new(Mode::Invoke, "p".into(), vec![]).push(&wire);
        assert!(err.is_none());
        assert_eq!(std::str::from_utf8(&out).unwrap(), format!("event: content_block_delta\ndata: {event}\n\n"));
    }

    #[test]
    fn invoke_chunks_that_are_not_readable_json_end_the_stream() {
        use base64::Engine;
        let deep = format!(r#"{{"x":{}1{},"type":"ping"}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let not_utf8 = b"{\"type\":\"ping\",\"k\x80\":1}".to_vec();
        for event in [deep.into_bytes(), not_utf8, b"{\"type\":".to_vec()] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&event);
            let wire = frames(&[("chunk", &format!(r#"{{"bytes":"{b64}"}}"#))]);
            let (out, err) = FramesToSse::new(Mode::Invoke, "p".into(), vec![]).push(&wire);
            assert!(out.is_empty());
            assert!(matches!(err, Some(GatewayError::UpstreamProtocol { .. })), "{err:?}");
        }
        // The `{"bytes": ...}` wrapper itself, too deep or not UTF-8.
        let deep = format!(r#"{{"x":{}1{},"bytes":""}}"#, "[".repeat(100_000), "]".repeat(100_000));
        for payload in [deep.into_bytes(), b"{\"k\x80\":1,\"bytes\":\"\"}".to_vec()] {
            let wire = encode_event("chunk", &payload).unwrap();
            let (out, err) = FramesToSse::new(Mode::Invoke, "p".into(), vec![]).push(&wire);
            assert!(out.is_empty());
            assert!(matches!(err, Some(GatewayError::UpstreamProtocol { .. })), "{err:?}");
        }
    }

    #[test]
    fn exceptions_end_the_stream_with_their_status_and_cuts_are_errors() {
        let mut wire = frames(&[("messageStart", r#"{"role":"assistant"}"#)]);
        wire.extend_from_slice(
            &encode_exception("throttlingException", br#"{"message":"slow down sk-secret-1"}"#).unwrap(),
        );
        let (out, err) = FramesToSse::new(Mode::Converse, "p".into(), vec!["sk-secret-1".into()]).push(&wire);
        assert!(out.starts_with(b"data: {\"messageStart\""));
        match err {
            Some(GatewayError::UpstreamStatus { upstream_status: 429, body, .. }) => {
                let b = String::from_utf8_lossy(&body);
                assert!(b.contains("slow down ***") && b.contains("rate_limit_exceeded"), "{b}");
            }
            other => panic!("{other:?}"),
        }
        let wire = frames(&[("messageStart", r#"{"role":"assistant"}"#)]);
        let mut f = FramesToSse::new(Mode::Converse, "p".into(), vec![]);
        let _ = f.push(&wire[..wire.len() - 3]);
        assert!(matches!(f.finish(), Some(GatewayError::UpstreamProtocol { .. })));
        let mut bad = wire.clone();
        bad[20] ^= 0xff;
        let (_, err) = FramesToSse::new(Mode::Converse, "p".into(), vec![]).push(&bad);
        assert!(matches!(err, Some(GatewayError::UpstreamProtocol { .. })), "{err:?}");
    }

    /// The ConverseStream fixture of the golden tests, framed as Bedrock
    /// sends it: (event type, payload) per frame.
    fn fixture_frames() -> Vec<u8> {
        let text = include_str!("../../../tests/fixtures/bedrock/stream/tool_use.txt");
        let input = text.split("--- input\n").nth(1).and_then(|s| s.split("--- expected").next()).unwrap();
        let mut events = Vec::new();
        for line in input.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (kind, payload) = v.as_object().unwrap().iter().next().unwrap();
            events.push((kind.clone(), payload.to_string()));
        }
        let refs: Vec<(&str, &str)> = events.iter().map(|(k, p)| (k.as_str(), p.as_str())).collect();
        frames(&refs)
    }

    /// Frames → SSE → the ConverseStream translator, as the provider runs it.
    fn translate(chunks: &[&[u8]]) -> Vec<u8> {
        use crate::translate::{SseOut, bedrock::stream::StreamTranslator};
        let mut f = FramesToSse::new(Mode::Converse, "p".into(), vec![]);
        let mut t = StreamTranslator::new("id", "m", 1);
        let mut out = SseOut::new();
        for c in chunks {
            let (run, err) = f.push(c);
            assert!(err.is_none(), "{err:?}");
            for ev in crate::sse::events(&run) {
                t.event(ev.data, &mut out).unwrap();
            }
        }
        assert!(f.finish().is_none());
        t.end(&mut out).unwrap();
        out.take().to_vec()
    }

    #[test]
    fn a_framed_stream_split_at_every_byte_translates_the_same() {
        let wire = fixture_frames();
        let whole = translate(&[&wire]);
        assert!(String::from_utf8_lossy(&whole).contains("\"tool_calls\""));
        for cut in 0..=wire.len() {
            assert_eq!(translate(&[&wire[..cut], &wire[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(translate(&bytes), whole);
    }

    proptest::proptest! {
        #[test]
        fn a_framed_stream_split_anywhere_translates_the_same(
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..24),
        ) {
            let wire = fixture_frames();
            let whole = translate(&[&wire]);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in at {
                chunks.push(&wire[prev..c]);
                prev = c;
            }
            chunks.push(&wire[prev..]);
            proptest::prop_assert_eq!(translate(&chunks), whole);
        }
    }
}
