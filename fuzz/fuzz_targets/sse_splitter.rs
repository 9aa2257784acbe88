//! Fuzz target: an upstream's SSE bytes, cut anywhere, -> the splitter and
//! the event iterator. Every run it yields ends on an event boundary, it
//! never holds more than its maximum event plus one chunk, and the events
//! it yields are the input's bytes, in order. Run: `scripts/fuzz sse_splitter`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::sse::{SseSplitter, events};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else { return };
    // A small maximum, so the bound is exercised too.
    let max = 64 + usize::from(cuts) * 4;
    let mut split = SseSplitter::with_max_event(max);
    let mut out = Vec::new();
    let step = usize::from(cuts % 16) + 1;
    for piece in rest.chunks(step) {
        match split.push(Bytes::copy_from_slice(piece)) {
            Ok(Some(run)) => {
                assert!(run.ends_with(b"\n\n") || run.ends_with(b"\n\r\n"), "{run:?}");
                let mut end = 0;
                for ev in events(&run) {
                    assert_eq!(ev.start, end);
                    end = ev.end;
                }
                assert_eq!(end, run.len());
                out.extend_from_slice(&run);
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    if let Some(r) = split.remainder() {
        out.extend_from_slice(&r);
    }
    // Whitespace-only tails are dropped; everything else came through whole.
    assert!(rest.starts_with(&out), "the splitter reordered or invented bytes");
});
