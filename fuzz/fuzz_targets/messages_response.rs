//! Fuzz target: chat.completion -> Anthropic Messages answer. Any input must give a result or an error, never a
//! panic, hang or overflow. Run: `scripts/fuzz messages_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::messages;

fuzz_target!(|data: &[u8]| {
    let _ = messages::response::translate(data);
});
