//! Fuzz target: GenerateContentResponse -> chat.completion. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz gemini_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::gemini;

fuzz_target!(|data: &[u8]| {
    let _ = gemini::response::translate(data, "m", 0);
    let _ = gemini::error_parts(data);
});
