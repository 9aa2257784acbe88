//! Fuzz target: upstream bytes -> `json::check`, the per-event and per-answer
//! check. The input is a stream of documents cut at 0x1E. Each one must get
//! the answer serde_json's `IgnoredAny` (after the depth scan) gives, and
//! `StreamCheck`, which resumes each event where the one before it agrees,
//! must answer exactly as a fresh `check` does.
//! Run: `scripts/fuzz json_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::json::{MAX_DEPTH, StreamCheck, check, nesting_exceeds};

fuzz_target!(|data: &[u8]| {
    let mut stream = StreamCheck::default();
    for doc in data.split(|&b| b == 0x1e) {
        let serde = std::str::from_utf8(doc).is_ok()
            && !nesting_exceeds(doc, MAX_DEPTH)
            && serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok();
        let fresh = check(doc);
        assert_eq!(fresh.is_ok(), serde, "{:?}", String::from_utf8_lossy(doc));
        assert_eq!(stream.check(doc), fresh, "{:?}", String::from_utf8_lossy(doc));
    }
});
