//! Fuzz target: chat.completion -> Responses object. Any input must give a result or an error, never a panic, hang
//! or overflow. Run: `scripts/fuzz responses_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::translate::responses;

fuzz_target!(|data: &[u8]| {
    let _ = responses::response::translate(data, &responses::Context::default());
    let _ = responses::history::usage_from_body(data);
    let _ = responses::history::output_items(data);
    let _ = responses::history::conversation(Some(data), b"[]", b"[]");
});
