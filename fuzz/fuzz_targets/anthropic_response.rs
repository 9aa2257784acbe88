//! Fuzz target: Anthropic Messages answer -> chat.completion. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz anthropic_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::anthropic;

fuzz_target!(|data: &[u8]| {
    let _ = anthropic::response::translate(data, 0);
    let _ = anthropic::response::error_parts(data);
    let _ = anthropic::usage_from_body(data);
});
