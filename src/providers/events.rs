//! Upstream streams as the gateway forwards them: an SSE body split into
//! runs of whole events, and a protocol's stream translator run over them.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sluice_upstream::{InflightPermit, ResponseBody};
use sonic_rs::JsonValueTrait;

use super::EventStream;
use crate::error::GatewayError;
use crate::sse::SseSplitter;
use crate::translate::{SseOut, StreamTranslate};

/// The upstream's SSE body as runs of whole events. The permit rides along
/// so the provider's connection slot is held exactly as long as the stream.
///
/// What the upstream sends is checked before it goes anywhere: an event
/// longer than the provider's `max_event_bytes` without its end, data that
/// is not UTF-8 or not JSON, or an error object (`{"error": ...}`) where a
/// chunk was expected end the stream with an error — before the first
/// event, a failed attempt another deployment may make good; after it, an
/// error event for the client.
pub fn event_stream(body: ResponseBody, permit: InflightPermit, p: &super::Provider) -> EventStream {
    /// The state of one SSE body being split.
    struct SseBody {
        body: ResponseBody,
        split: SseSplitter,
        _permit: InflightPermit,
        provider: String,
        /// The events' JSON, checked as one stream's.
        json: crate::json::StreamCheck,
        done: bool,
    }
    impl SseBody {
        fn fail(&mut self, detail: String) -> GatewayError {
            self.done = true;
            GatewayError::UpstreamProtocol { provider: self.provider.clone(), detail }
        }
    }
    let stopper = body.stopper();
    let st = SseBody {
        body,
        split: SseSplitter::with_max_event(p.max_event_bytes),
        _permit: permit,
        provider: p.name.clone(),
        json: crate::json::StreamCheck::default(),
        done: false,
    };
    let runs = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.chunk().await {
                Some(Ok(data)) => match st.split.push(data) {
                    Ok(Some(events)) => {
                        if let Err(detail) = check_events(&mut st.json, &events) {
                            let e = st.fail(detail);
                            return Some((Err(e), st));
                        }
                        return Some((Ok(events), st));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let e = st.fail(e.to_string());
                        return Some((Err(e), st));
                    }
                },
                Some(Err(e)) => {
                    let e = st.fail(format!("the stream was cut off: {e}"));
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    // A last event without its blank line still counts.
                    let rest = st.split.remainder()?;
                    let mut b = BytesMut::with_capacity(rest.len() + 2);
                    b.extend_from_slice(&rest);
                    b.extend_from_slice(b"\n\n");
                    let events = b.freeze();
                    if let Err(detail) = check_events(&mut st.json, &events) {
                        return Some((Err(st.fail(detail)), st));
                    }
                    return Some((Ok(events), st));
                }
            }
        }
    })
    .boxed_local();
    EventStream::new(runs).with_stopper(stopper)
}

/// Every event's data of a run is JSON a client can read, and no error
/// object (`[DONE]` and comment-only events pass).
fn check_events(json: &mut crate::json::StreamCheck, run: &[u8]) -> Result<(), String> {
    for ev in crate::sse::events(run) {
        if ev.data.is_empty() || ev.data == b"[DONE]" {
            continue;
        }
        if let Err(why) = json.check(ev.data) {
            return Err(format!("a stream event {why}"));
        }
        if crate::json::is_error_object(ev.data) {
            let message = sonic_rs::get(ev.data, ["error", "message"])
                .ok()
                .and_then(|m| m.as_str().map(|s| s.chars().take(300).collect::<String>()))
                .unwrap_or_default();
            return Err(format!("the stream carried an error instead of a chunk: {message}"));
        }
    }
    Ok(())
}

/// Run `t` over a stream of whole-event runs: each run becomes the events
/// `t` writes for it (runs that translate to nothing are skipped, so every
/// item carries at least one event); the end of `raw` is told to `t`, whose
/// final events (or complaint) close the stream. A complaint becomes an
/// error item after the events already translated, its text scrubbed of
/// `secrets` (an upstream's error event is quoted in it).
pub fn translated<T: StreamTranslate + 'static>(
    raw: EventStream,
    t: T,
    provider: String,
    secrets: Vec<String>,
) -> EventStream {
    /// The state of one stream being translated by `T`.
    struct Translating<T> {
        raw: EventStream,
        t: T,
        out: SseOut,
        provider: String,
        secrets: Vec<String>,
        /// An error to yield after the events translated before it.
        failed: Option<GatewayError>,
        /// Events went out: a failure now ends the stream in the client's
        /// protocol. (Before the first item the error must come first, so
        /// the attempt fails and another deployment may still be tried.)
        emitted: bool,
        done: bool,
    }
    impl<T: StreamTranslate> Translating<T> {
        /// The translator writes its protocol's failure events (if it has
        /// any), then the error follows them.
        fn fail(&mut self, e: crate::translate::StreamError) -> Option<Bytes> {
            if self.emitted || !self.out.is_empty() {
                self.t.fail(&e, &mut self.out);
            }
            let mut detail = e.to_string();
            for s in &self.secrets {
                detail = detail.replace(s.as_str(), "***");
            }
            self.failed = Some(GatewayError::UpstreamProtocol { provider: self.provider.clone(), detail });
            // The failure events may quote the upstream's message: scrubbed too.
            (!self.out.is_empty()).then(|| super::errors::scrub(self.out.take(), &self.secrets))
        }
    }
    let stopper = raw.stopper();
    let st = Translating { raw, t, out: SseOut::new(), provider, secrets, failed: None, emitted: false, done: false };
    let runs = futures_util::stream::unfold(st, move |mut st| async move {
        if let Some(e) = st.failed.take() {
            st.done = true;
            return Some((Err(e), st));
        }
        if st.done {
            return None;
        }
        loop {
            match st.raw.next().await {
                Some(Ok(run)) => {
                    for ev in crate::sse::events(&run) {
                        if let Err(e) = st.t.event(ev.data, &mut st.out) {
                            return match st.fail(e) {
                                Some(before) => Some((Ok(before), st)),
                                None => {
                                    st.done = true;
                                    let e = st.failed.take()?;
                                    Some((Err(e), st))
                                }
                            };
                        }
                    }
                    if !st.out.is_empty() {
                        st.emitted = true;
                        let b = st.out.take();
                        return Some((Ok(b), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    // The translator closes the stream in its protocol first.
                    if st.emitted {
                        st.t.fail(&crate::translate::StreamError::Invalid(e.to_string()), &mut st.out);
                    }
                    if st.out.is_empty() {
                        return Some((Err(e), st));
                    }
                    st.failed = Some(e);
                    let before = super::errors::scrub(st.out.take(), &st.secrets);
                    return Some((Ok(before), st));
                }
                None => {
                    st.done = true;
                    return match st.t.end(&mut st.out) {
                        Err(e) => match st.fail(e) {
                            Some(before) => Some((Ok(before), st)),
                            None => st.failed.take().map(|e| (Err(e), st)),
                        },
                        Ok(()) if st.out.is_empty() => None,
                        Ok(()) => {
                            let b = st.out.take();
                            Some((Ok(b), st))
                        }
                    };
                }
            }
        }
    })
    .boxed_local();
    EventStream::new(runs).with_stopper(stopper)
}
