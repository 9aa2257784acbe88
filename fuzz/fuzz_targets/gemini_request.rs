//! Fuzz target: OpenAI chat request -> GenerateContentRequest. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz gemini_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::gemini;

fuzz_target!(|data: &[u8]| {
    let _ = gemini::request::translate(data);
});
