//! Upstream streams as the gateway forwards them: an SSE body split into
//! runs of whole events, and a protocol's stream translator run over them.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sluice_upstream::{InflightPermit, ResponseBody};

use super::EventStream;
use crate::error::GatewayError;
use crate::sse::SseSplitter;
use crate::translate::{SseOut, StreamTranslate};

/// The upstream's SSE body as runs of whole events. The permit rides along
/// so the provider's connection slot is held exactly as long as the stream.
pub fn event_stream(body: ResponseBody, permit: InflightPermit, provider: String) -> EventStream {
    /// The state of one SSE body being split.
    struct SseBody {
        body: ResponseBody,
        split: SseSplitter,
        _permit: InflightPermit,
        provider: String,
        done: bool,
    }
    let stopper = body.stopper();
    let st = SseBody { body, split: SseSplitter::new(), _permit: permit, provider, done: false };
    let runs = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.chunk().await {
                Some(Ok(data)) => {
                    if let Some(events) = st.split.push(data) {
                        return Some((Ok(events), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err = GatewayError::UpstreamProtocol {
                        provider: st.provider.clone(),
                        detail: format!("the stream was cut off: {e}"),
                    };
                    return Some((Err(err), st));
                }
                None => {
                    st.done = true;
                    // A last event without its blank line still counts.
                    let rest = st.split.remainder()?;
                    let mut b = BytesMut::with_capacity(rest.len() + 2);
                    b.extend_from_slice(&rest);
                    b.extend_from_slice(b"\n\n");
                    return Some((Ok(b.freeze()), st));
                }
            }
        }
    })
    .boxed_local();
    EventStream::new(runs).with_stopper(stopper)
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
        done: bool,
    }
    impl<T> Translating<T> {
        fn fail(&mut self, e: crate::translate::StreamError) -> Option<Bytes> {
            let mut detail = e.to_string();
            for s in &self.secrets {
                detail = detail.replace(s.as_str(), "***");
            }
            self.failed = Some(GatewayError::UpstreamProtocol { provider: self.provider.clone(), detail });
            (!self.out.is_empty()).then(|| self.out.take())
        }
    }
    let stopper = raw.stopper();
    let st = Translating { raw, t, out: SseOut::new(), provider, secrets, failed: None, done: false };
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
                        let b = st.out.take();
                        return Some((Ok(b), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
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
