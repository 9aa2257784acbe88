//! Fuzz target: Anthropic stream events -> OpenAI chunks. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz anthropic_stream`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::sse::{SseSplitter, events};
use sluice::translate::{SseOut, StreamTranslate, anthropic};

fuzz_target!(|data: &[u8]| {
    stream(data, &mut anthropic::stream::StreamTranslator::new(0));
});

/// Cut the input where its first byte says, feed the pieces through the SSE
/// splitter and the translator as a provider would, then end the stream.
fn stream(data: &[u8], t: &mut dyn StreamTranslate) {
    let Some((&cut, rest)) = data.split_first() else { return };
    let at = usize::from(cut).min(rest.len());
    let mut split = SseSplitter::new();
    let mut out = SseOut::new();
    for piece in [&rest[..at], &rest[at..]] {
        if let Ok(Some(run)) = split.push(Bytes::copy_from_slice(piece)) {
            for ev in events(&run) {
                if t.event(ev.data, &mut out).is_err() {
                    return;
                }
            }
        }
    }
    let _ = t.end(&mut out);
}
