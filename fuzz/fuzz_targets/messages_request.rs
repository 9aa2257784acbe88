//! Fuzz target: Anthropic Messages request -> OpenAI chat request. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz messages_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::messages;

fuzz_target!(|data: &[u8]| {
    let _ = messages::request::translate(data, "m");
});
