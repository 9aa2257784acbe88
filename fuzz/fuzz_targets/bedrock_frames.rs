//! Fuzz target: the bytes a Bedrock upstream sends on a stream
//! (`application/vnd.amazon.eventstream` frames), cut into pieces, ->
//! `FramesToSse` in both modes (ConverseStream, and InvokeModel's Claude
//! chunks), then the end of the stream. Any input must give events, an error
//! or "not complete yet", never a panic, hang or overflow; what comes out is
//! whole SSE events, and Claude's are one `data:` line of checked JSON each.
//! Run: `scripts/fuzz bedrock_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::providers::bedrock::{FramesToSse, Mode};
use sluice::sse::events;

fuzz_target!(|data: &[u8]| {
    // First byte: the size of the pieces the stream arrives in (1..=256).
    let Some((&cut, rest)) = data.split_first() else { return };
    let step = usize::from(cut) + 1;
    for mode in [Mode::Converse, Mode::Invoke] {
        let mut frames = FramesToSse::new(mode, "p".into(), vec!["sk-secret".into()]);
        for piece in rest.chunks(step) {
            let (run, err) = frames.push(piece);
            assert!(run.is_empty() || run.ends_with(b"\n\n"), "{mode:?}: a run cut inside an event: {run:?}");
            if mode == Mode::Invoke {
                let mut end = 0;
                for ev in events(&run) {
                    assert_eq!(ev.start, end);
                    end = ev.end;
                    assert!(sluice::json::check(ev.data).is_ok(), "unchecked Claude event: {run:?}");
                }
                assert_eq!(end, run.len());
            }
            if err.is_some() {
                break;
            }
        }
        let _ = frames.finish();
    }
});
