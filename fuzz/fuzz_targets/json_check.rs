//! Fuzz target: upstream bytes -> `json::check`, the per-event and per-answer
//! check. The input is a stream of documents cut at 0x1E. Each one must get
//! the answer serde_json's `IgnoredAny` (after the depth scan) gives, and
//! `StreamCheck`, which resumes each event where the one before it agrees,
//! must answer exactly as a fresh `check` does. `check_member` answers as
//! `check` does, and the member it finds is read back by `members` as one
//! of the top-level object's, whose values are whole documents;
//! `check_top` finds the same members `members` walks.
//! Run: `scripts/fuzz json_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::json::{MAX_DEPTH, StreamCheck, check, check_member, check_top, members, nesting_exceeds};

fuzz_target!(|data: &[u8]| {
    let mut stream = StreamCheck::default();
    for doc in data.split(|&b| b == 0x1e) {
        let serde = std::str::from_utf8(doc).is_ok()
            && !nesting_exceeds(doc, MAX_DEPTH)
            && serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok();
        let fresh = check(doc);
        assert_eq!(fresh.is_ok(), serde, "{:?}", String::from_utf8_lossy(doc));
        assert_eq!(stream.check(doc), fresh, "{:?}", String::from_utf8_lossy(doc));
        let member = check_member(doc, b"\"usage\"");
        assert_eq!(member.map(drop), fresh);
        if let Ok(found) = member {
            let top = doc.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
            let last = members(doc, top).filter(|(k, _)| *k == b"usage").last();
            assert_eq!(last.as_ref().map(|(_, v)| v.start), found);
            for (_, v) in members(doc, top) {
                assert!(check(&doc[v]).is_ok(), "{:?}", String::from_utf8_lossy(doc));
            }
            let walked: Vec<_> = members(doc, top).map(|(k, v)| (k.to_vec(), v)).collect();
            let found: Vec<_> = check_top(doc).map(|t| t.into_iter().map(|(k, v)| (doc[k].to_vec(), v)).collect());
            assert_eq!(found, Ok(walked), "{:?}", String::from_utf8_lossy(doc));
        }
    }
});
