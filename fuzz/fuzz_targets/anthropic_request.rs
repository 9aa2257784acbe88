//! Fuzz target: OpenAI chat request -> Anthropic Messages request. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz anthropic_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::anthropic;

fuzz_target!(|data: &[u8]| {
    let opts = anthropic::request::Options::default();
    let _ = anthropic::request::translate(data, "m", &opts);
});
