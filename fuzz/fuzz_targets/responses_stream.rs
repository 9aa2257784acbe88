//! Fuzz target: OpenAI chunks -> Responses stream events. Any input must give a result or an error, never a panic,
//! hang or overflow; a failed stream is ended with `response.failed`. Run: `scripts/fuzz responses_stream`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::sse::{SseSplitter, events};
use sluice::translate::{SseOut, responses};

/// A request whose tools exercise the name mapping back (namespace, custom).
const REQUEST: &[u8] = br#"{"model":"m","input":"x","stream":true,"tools":[{"type":"function","name":"f"},
{"type":"namespace","name":"ns","tools":[{"type":"function","name":"g"}]},{"type":"custom","name":"patch"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = responses::request::translate(REQUEST, "m", None, &Default::default()) else { return };
    let mut t = responses::stream::StreamTranslator::new(req.context("resp_f".into(), 0));
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = usize::from(cut).min(rest.len());
    let mut split = SseSplitter::new();
    let mut out = SseOut::new();
    for piece in [&rest[..at], &rest[at..]] {
        if let Ok(Some(run)) = split.push(Bytes::copy_from_slice(piece)) {
            for ev in events(&run) {
                if let Err(e) = t.event(ev.data, &mut out) {
                    t.fail_with(&mut out, &e);
                    return;
                }
            }
        }
    }
    if let Err(e) = t.end(&mut out) {
        t.fail_with(&mut out, &e);
    }
    let _ = t.response_body();
});
