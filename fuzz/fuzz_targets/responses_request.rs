//! Fuzz target: Responses request (and a stored conversation) -> OpenAI chat request. Any input must give a result
//! or an error, never a panic, hang or overflow. Run: `scripts/fuzz responses_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::responses;

fuzz_target!(|data: &[u8]| {
    let opts = responses::request::Options::default();
    let _ = responses::request::translate(data, "m", None, &opts);
    // The same bytes as the stored conversation of a follow-up turn.
    let _ = responses::request::translate(br#"{"model":"m","input":"next"}"#, "m", Some(data), &opts);
});
